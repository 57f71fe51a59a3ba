"""The project's .env (make run writes SECRET_KEY to it) is read by every
`manage.py` command, in any shell; variables already set win; the tests never
read it.

Each test runs `manage.py` in a copy of the project's folder (jobs/, templates/
and tests/ linked), whose .env the test writes, so a developer's own .env is
never touched.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

ENV_FILE = """\
# Written by scripts/run.sh; keep it secret, keep it stable (sessions depend on it).
SECRET_KEY=from-the-env-file
TIME_ZONE=Europe/Paris
DATABASE_URL=postgres://nobody@db.invalid:5432/production
JOBS_COMMAND_ALLOWLIST=/bin/rm
"""


@pytest.fixture
def project(tmp_path) -> Path:
    shutil.copy(ROOT / "manage.py", tmp_path)
    # A copy, not a link: the settings find .env beside their own folder.
    shutil.copytree(ROOT / "jobsite", tmp_path / "jobsite", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("jobs", "templates", "tests"):
        (tmp_path / name).symlink_to(ROOT / name)
    (tmp_path / ".env").write_text(ENV_FILE)
    return tmp_path


def manage(project: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    """`python manage.py ARGS` in `project`, in a shell that has none of the .env's variables."""
    clean = {
        name: value
        for name, value in os.environ.items()
        if name not in {"SECRET_KEY", "TIME_ZONE", "DATABASE_URL", "JOBS_COMMAND_ALLOWLIST", "JOBS_ENV_FILE"}
        and not name.startswith("DJANGO_")
    }
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=project,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def settings_of(result: subprocess.CompletedProcess) -> dict[str, str]:
    assert result.returncode == 0, result.stderr
    return dict(line.split(" = ", 1) for line in result.stdout.splitlines() if " = " in line)


def test_a_manage_py_command_in_a_fresh_shell_reads_the_env_file(project):
    settings = settings_of(manage(project, "diffsettings"))
    assert settings["SECRET_KEY"] == "'from-the-env-file'"
    assert settings["TIME_ZONE"] == "'Europe/Paris'"
    assert "db.invalid" in settings["DATABASES"]


def test_a_variable_set_in_the_shell_wins_over_the_env_file(project):
    settings = settings_of(manage(project, "diffsettings", TIME_ZONE="Asia/Tokyo", SECRET_KEY="from-the-shell"))
    assert settings["TIME_ZONE"] == "'Asia/Tokyo'"
    assert settings["SECRET_KEY"] == "'from-the-shell'"


def test_jobs_env_file_names_another_file_or_none(project, tmp_path_factory):
    other = tmp_path_factory.mktemp("elsewhere") / "jobsite.env"
    other.write_text("SECRET_KEY=from-another-file\n")
    assert settings_of(manage(project, "diffsettings", JOBS_ENV_FILE=str(other)))["SECRET_KEY"] == "'from-another-file'"

    ignored = manage(project, "check", JOBS_ENV_FILE="")
    assert ignored.returncode == 1
    assert "SECRET_KEY" in ignored.stderr

    missing = manage(project, "check", JOBS_ENV_FILE=str(other.with_name("missing.env")))
    assert missing.returncode == 1
    assert "JOBS_ENV_FILE=" in missing.stderr and "no such file" in missing.stderr


def test_the_tests_settings_never_read_a_developers_env_file(project):
    settings = settings_of(manage(project, "diffsettings", DJANGO_SETTINGS_MODULE="tests.settings"))
    assert settings["SECRET_KEY"] == "'tests-only-secret-key'"
    assert settings["TIME_ZONE"] != "'Europe/Paris'"
    assert "django.db.backends.sqlite3" in settings["DATABASES"]
    assert "/bin/rm" not in settings["JOBS_COMMAND_ALLOWLIST"]
