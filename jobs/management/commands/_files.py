"""What the import and export commands share: reading a YAML file, saying
where it is wrong, and who an import's changes are recorded under."""

import getpass
import os
from pathlib import Path
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import CommandError

from jobs import audit
from jobs.core import yaml_lines


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


SYSTEM_USERNAME = "system"


def command_author(command: str, path: Path, username: str | None) -> audit.Author:
    """Who an import's changes are recorded under: the user named by --user, or
    else an account "system" (created inactive, so nobody can log in as it),
    with the operating-system user who ran the command in the message."""
    User = get_user_model()
    if username:
        user = User.objects.filter(**{User.USERNAME_FIELD: username}).first()
        if user is None:
            raise CommandError(f"--user {username}: there is no such user; give the username of an existing user")
        via = f"by {command} from {path}"
    else:
        user, created = User.objects.get_or_create(
            **{User.USERNAME_FIELD: SYSTEM_USERNAME}, defaults={"is_active": False}
        )
        if created:
            user.set_unusable_password()
            user.save(update_fields=["password"])
        via = f"by {command} from {path} (run as {_os_user()}, without --user)"
    return audit.Author(user, via)


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a container, say)
        return f"uid {os.getuid()}"
