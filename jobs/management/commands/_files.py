"""What the import and export commands share: reading a YAML file and
saying where it is wrong."""

from pathlib import Path
from typing import Any

from django.core.management.base import CommandError

from jobs import yaml_lines


def read_yaml(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise CommandError(f"Cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise CommandError(f"{path} is not UTF-8 text: save it as UTF-8") from None
    try:
        return yaml_lines.load(text)
    except yaml_lines.FileError as exc:
        raise file_error(path, exc) from None


def file_error(path: Path, exc: yaml_lines.FileError) -> CommandError:
    """One line saying where the problem is and what to fix: 'workflows.yml:12: ...'."""
    return CommandError(f"{path}:{exc.line}: {exc.message}" if exc.line else f"{path}: {exc.message}")
