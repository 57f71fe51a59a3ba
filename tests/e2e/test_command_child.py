"""What the child process of a `command` run can read of its worker, through a
real worker. This worker lets launchers in (JOBS_COMMAND_ALLOW_LAUNCHERS), as a
careless allowlist would, so that the child can look around with a shell; and it
runs as an ordinary user would (AS_ORDINARY_USER), as workers should."""

import os
from pathlib import Path

import pytest

from jobs.models import Run
from jobs.runs.trigger import run_create
from tests.conftest import AS_ORDINARY_USER, ROOT, wait_for_run
from tests.factories import JobTypeFactory

QUEUE = "command-child"
SECRETS = ("SECRET_KEY", "DATABASE_URL", "REDIS_URL", "EMAIL_URL")


@pytest.fixture
def child_worker(start_worker):
    env = {"JOBS_COMMAND_ALLOWLIST": "/usr/bin/env, /bin/sh", "JOBS_COMMAND_ALLOW_LAUNCHERS": "1"}
    return start_worker(1, QUEUE, env=env, prefix=AS_ORDINARY_USER)


def run_command(argv: list[str]) -> Run:
    # Saved without the checks of this process's allowlist: the worker checks its own.
    job_type = JobTypeFactory(kind="command", task="", command={"argv": argv}, queue=QUEUE)
    run, _ = run_create(job_type=job_type, trigger="cli")
    run = wait_for_run(run, timeout=30)
    assert run.status == "succeeded", run.error
    return run


def test_a_command_gets_none_of_the_workers_environment(child_worker):
    # The worker has them all: from this process (tests/settings.py), and DATABASE_URL from the fixture.
    assert all(name in os.environ for name in SECRETS if name != "DATABASE_URL")
    run = run_command(["/usr/bin/env"])
    env = dict(line.split("=", 1) for line in run.result["stdout"].splitlines())
    assert sorted(env) == ["HOME", "JOBSITE_PARAMS", "JOBSITE_RUN_ID", "LANG", "PATH", "TMPDIR"]
    assert env["JOBSITE_RUN_ID"] == str(run.pk)


def test_a_command_starts_in_an_empty_directory_of_its_own_that_is_removed_after(child_worker):
    run = run_command(["/bin/sh", "-c", 'pwd; echo "$HOME $TMPDIR"; ls -A'])
    workdir, home_and_tmp, *listed = run.result["stdout"].splitlines()
    assert not Path(workdir).is_relative_to(ROOT)  # not the project (the worker's own directory), with its .env
    assert home_and_tmp == f"{workdir} {workdir}"
    assert listed == []
    assert not Path(workdir).exists()


def test_a_command_cannot_read_its_workers_environment_from_proc(child_worker):
    # $PPID is the worker's pool process that started the command; the other is its main process.
    script = f"cat /proc/$PPID/environ /proc/{child_worker.process.pid}/environ; true"
    run = run_command(["/bin/sh", "-c", script])
    assert not any(name in run.result["stdout"] for name in SECRETS)
    assert run.result["stderr"].count("Permission denied") == 2, run.result["stderr"]


def test_a_worker_runs_only_what_its_own_allowlist_allows(child_worker):
    # The job type was saved where /bin/echo is allowed; this worker does not list it.
    job_type = JobTypeFactory(kind="command", task="", command={"argv": ["/bin/echo", "hi"]}, queue=QUEUE)
    run, _ = run_create(job_type=job_type, trigger="cli")
    run = wait_for_run(run, timeout=30)
    assert (run.status, run.error) == (
        "failed",
        "Not run: '/bin/echo hi' is not in JOBS_COMMAND_ALLOWLIST (it allows /usr/bin/env, /bin/sh); "
        "an administrator must add it.",
    )
