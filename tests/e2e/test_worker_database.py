"""A worker keeps its database connection from task to task (settings:
CELERY_DB_REUSE_MAX) and checks it around each, as Django does around a
request (jobs/signals.py), so a connection the server dropped costs no run.

PostgreSQL only: it takes a server that has sessions to count and to drop;
SQLite's connections go through the same code."""

import pytest
from django.db import connection

from jobs import services
from jobs.models import Run
from tests.conftest import wait_for_run
from tests.factories import JobTypeFactory

pytestmark = pytest.mark.skipif(connection.vendor != "postgresql", reason="a PostgreSQL server's sessions")


def run_once(job_type) -> Run:
    run, _ = services.run_create(job_type=job_type, params={}, trigger=Run.Trigger.API)
    run = wait_for_run(run)
    assert run.status == Run.Status.SUCCEEDED, run.error
    return run


def test_a_worker_reuses_its_connection_and_replaces_one_the_server_dropped(worker):
    job_type = JobTypeFactory(task="tests.database_session")
    sessions = [run_once(job_type).result["backend_pid"] for _ in range(6)]
    # Two pool processes: at most two sessions for six runs, not one each.
    assert len(set(sessions)) <= 2, sessions

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(pid) FROM unnest(%s::int[]) AS pid", [sorted(set(sessions))])
    after = [run_once(job_type) for _ in range(4)]
    assert all(run.attempts == 1 for run in after)
    assert not {run.result["backend_pid"] for run in after} & set(sessions)
