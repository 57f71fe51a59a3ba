"""When a worker checks its database connection before a run starts
(jobs/worker/connections.py), through the worker's signal handler as Celery calls it: a run
whose start is a read skips the check when a task ended on the connection under
a second ago, and that read goes again on a new connection if the server had
dropped the old one (jobs/core/reconnect.py).

PostgreSQL only: SQLite has no server to drop a connection, and its health
check sends nothing (Django's is_usable is True)."""

import time
from types import SimpleNamespace

import psycopg
import pytest
from django.db import OperationalError, connection, transaction

from jobs.core import reconnect
from jobs.models import Run
from jobs.runs.executors import QUEUED_HEADER
from jobs.worker import connections, run_logs, start_marks
from jobs.worker.task_base import START_ATTRIBUTE
from tests.factories import JobTypeFactory, RunFactory
from tests.test_late_start import prerun

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="a PostgreSQL server's sessions"),
]

# The headers of a run published by its trigger (written `queued`, no workflow): its start is a read.
READS_FIRST: dict = {}
# A run published `pending` (by the sweeper, say), marked `queued` after its publish: its start writes.
WRITES_FIRST = {QUEUED_HEADER: False}


@pytest.fixture
def health_checks(monkeypatch):
    """Django's health checks of the connection (is_usable), counted."""
    checks = []
    is_usable = connection.is_usable

    def counted():
        checks.append(time.monotonic())
        return is_usable()

    monkeypatch.setattr(connection, "is_usable", counted)
    return checks


def session() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return cursor.fetchone()[0]


def drop(pid: int) -> None:
    """End a session from another connection, as a server restart or an idle timeout would."""
    settings = connection.settings_dict
    with psycopg.connect(
        dbname=settings["NAME"], user=settings["USER"], password=settings["PASSWORD"] or None,
        host=settings["HOST"] or None, port=settings["PORT"] or None, autocommit=True,
    ) as other:  # fmt: skip
        other.execute("SELECT pg_terminate_backend(%s)", [pid])
    time.sleep(0.05)


def queued_run() -> Run:
    return RunFactory(job_type=JobTypeFactory(), status=Run.Status.QUEUED)


def start(run: Run, headers: dict, *, ended_ago: float):
    """The worker's prerun for `run`'s task (on_task_prerun, as Celery calls it, its
    message's `headers` as given), `ended_ago` seconds after its last task ended."""
    connections.task_ended(SimpleNamespace(is_eager=False))
    setattr(connection, connections.ENDED_ATTRIBUTE, time.monotonic() - ended_ago)
    try:
        return getattr(prerun(run, **headers), START_ATTRIBUTE)
    finally:
        start_marks.marks.take(str(run.pk))  # a deferred start: not left to the thread
        run_logs.end()


def test_a_run_read_soon_after_the_last_task_sends_no_health_check(health_checks):
    run = queued_run()
    started = start(run, READS_FIRST, ended_ago=0.1)
    assert started.go and started.late
    assert health_checks == []


def test_a_connection_idle_for_a_second_is_checked_first(health_checks):
    run = queued_run()
    started = start(run, READS_FIRST, ended_ago=connections.IDLE_SECONDS + 0.5)
    assert started.go and started.late
    assert len(health_checks) == 1


def test_a_run_whose_start_writes_is_checked_first(health_checks):
    run = queued_run()
    started = start(run, WRITES_FIRST, ended_ago=0.1)
    assert started.go
    assert len(health_checks) == 1
    assert Run.objects.get(pk=run.pk).status == Run.Status.RUNNING


def test_the_start_read_goes_again_on_a_new_connection_when_the_server_dropped_it():
    run = queued_run()
    old = session()
    drop(old)
    started = start(run, READS_FIRST, ended_ago=0.1)
    assert started.go and started.late and started.late.run.pk == run.pk
    assert session() != old


def test_a_dropped_connection_is_replaced_by_the_health_check_after_a_second(health_checks):
    run = queued_run()
    old = session()
    drop(old)
    started = start(run, READS_FIRST, ended_ago=connections.IDLE_SECONDS + 0.5)
    assert started.go
    assert len(health_checks) == 1
    assert session() != old


def test_an_error_on_a_live_connection_is_not_read_again():
    reads = []

    def slow_read():
        reads.append(session())
        with connection.cursor() as cursor:
            cursor.execute("SET statement_timeout = 50")
            try:
                cursor.execute("SELECT pg_sleep(1)")
            finally:
                cursor.execute("RESET statement_timeout")

    with pytest.raises(OperationalError, match="statement timeout"):
        reconnect.read_again_if_dropped(slow_read, using="default")
    assert len(reads) == 1


def test_a_read_inside_a_transaction_is_not_sent_again_on_a_new_connection():
    reads = []

    def read():
        reads.append(1)
        return session()

    with pytest.raises(OperationalError), transaction.atomic():
        drop(session())
        reconnect.read_again_if_dropped(read, using="default")
    assert len(reads) == 1
    connection.close()
