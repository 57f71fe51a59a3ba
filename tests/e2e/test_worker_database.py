"""A worker keeps its database connection from task to task (settings:
CELERY_DB_REUSE_MAX) and checks it around each, as Django does around a
request, and again before a long task's end is written (jobs/worker/connections.py),
so a connection the server dropped costs no run.

PostgreSQL only: it takes a server that has sessions to count and to drop;
SQLite's connections go through the same code."""

import pytest
from django.db import connection

from jobs.models import Run
from jobs.runs import trigger
from tests.conftest import wait_for_run, wait_until
from tests.factories import JobTypeFactory
from tests.tasks import session_of

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.skipif(connection.vendor != "postgresql", reason="a PostgreSQL server's sessions"),
]


def terminate(*backend_pids: int) -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(pid) FROM unnest(%s::int[]) AS pid", [list(backend_pids)])


def run_once(job_type, **params) -> Run:
    run, _ = trigger.run_create(job_type=job_type, params=params, trigger=Run.Trigger.API)
    run = wait_for_run(run)
    assert run.status == Run.Status.SUCCEEDED, run.error
    return run


def test_a_worker_reuses_its_connection_and_replaces_one_the_server_dropped(worker):
    job_type = JobTypeFactory(task="tests.database_session")
    sessions = [run_once(job_type).result["backend_pid"] for _ in range(6)]
    # Two pool processes: at most two sessions for six runs, not one each.
    assert len(set(sessions)) <= 2, sessions

    terminate(*set(sessions))
    after = [run_once(job_type) for _ in range(4)]
    assert all(run.attempts == 1 for run in after)
    assert not {run.result["backend_pid"] for run in after} & set(sessions)


def test_a_run_ends_even_when_its_session_was_dropped_while_the_task_ran(worker):
    # A long task leaves its connection idle, and servers, poolers and load
    # balancers drop idle connections: the end must not be written on a dead one.
    job_type = JobTypeFactory(task="tests.database_session")
    run, _ = trigger.run_create(job_type=job_type, params={"seconds": 3}, trigger=Run.Trigger.API)
    session = wait_until(lambda: session_of(run.pk), 30, "the task never noted its database session")
    terminate(session)
    run = wait_for_run(run, timeout=30)
    assert (run.status, run.attempts, run.result) == (Run.Status.SUCCEEDED, 1, {"backend_pid": session})


def test_a_task_whose_session_broke_still_ends_its_run(worker):
    # The task's own query loses the connection at once: the run's end is
    # written on a new one, not on the broken one.
    job_type = JobTypeFactory(task="tests.drop_own_session", max_retries=0)
    run, _ = trigger.run_create(job_type=job_type, params={}, trigger=Run.Trigger.API)
    run = wait_for_run(run, timeout=30)
    assert (run.status, run.attempts) == (Run.Status.FAILED, 1)
    assert run.error.startswith("OperationalError"), run.error
    # The worker goes on with the next run.
    assert run_once(JobTypeFactory(task="tests.database_session")).status == Run.Status.SUCCEEDED
