"""What the import and export commands share: reading a YAML file, saying
where it is wrong, and reporting schedules."""

from pathlib import Path
from typing import Any

from django.core.management.base import CommandError

from jobs import yaml_lines
from jobs.definitions import import_schedules


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


def report_schedules(command, definitions: list[dict]) -> None:
    if not definitions:
        return
    summary = import_schedules(definitions)
    if summary is not None:
        command.stdout.write(str(summary).replace("Job types", "Schedules"))
        return
    command.stderr.write(
        f"Schedules: {len(definitions)} read but NOT created: the Schedule model is not part of this build yet."
    )
    for schedule in definitions:
        when = (
            f"cron '{schedule['cron']}' {schedule['timezone']}"
            if "cron" in schedule
            else f"every {schedule['interval_seconds']} s"
        )
        command.stderr.write(f"  {schedule['name']}: {schedule['job_type']} {when}, params {schedule['params']}")
