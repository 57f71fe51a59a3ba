"""The hot path's statements planned once per connection (jobs/core/statements.py).

On PostgreSQL a statement Jobsite compiles once per process is PREPAREd the
first time a connection runs it and sent as `EXECUTE name(arguments)` from then
on; JOBS_DB_PREPARED_STATEMENTS=false sends the statements themselves. SQLite
plans its statements itself: they are sent as they are. A run's start (a
read, its start written with its end) and end, as the worker calls them."""

import re

import pytest
from celery import states
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from jobs.core import statements
from jobs.core.statements import unprepared
from jobs.models import Run
from jobs.runs import tracking
from jobs.worker import start_marks
from jobsite.celery import app
from tests.factories import JobTypeFactory, RunFactory
from tests.test_hot_path_queries import worker_request
from tests.test_worker_connection_checks import drop, session

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

postgres = pytest.mark.skipif(connection.vendor != "postgresql", reason="SQLite plans its statements itself")


@pytest.fixture(autouse=True)
def delay(settings):
    settings.JOBS_START_MARK_DELAY_SECONDS = 60  # each start is written by its end
    return settings


def start_and_end(run: Run, result) -> list[str]:
    """What the worker sends for a run's task, start (a read) and end (with the start)."""
    with CaptureQueriesContext(connection) as captured:
        started = tracking.run_started(
            run_id=str(run.pk), worker="w@host", parent_id="", written_queued=True, defer=True
        )
        start_marks.marks.defer(str(run.pk), started.late)
        app.backend.store_result(str(run.pk), result, states.SUCCESS, request=worker_request(run))
    return [query["sql"] for query in captured.captured_queries]


def queued_runs(count: int) -> list[Run]:
    job_type = JobTypeFactory()
    return [RunFactory(job_type=job_type, status=Run.Status.QUEUED) for _ in range(count)]


def prepared_here() -> dict[str, str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT name, statement FROM pg_prepared_statements")
        return dict(cursor.fetchall())


def shape(sql: str) -> str:
    """A statement with its values left out (string literals, numbers)."""
    return re.sub(r"'(?:[^']|'')*'(::\w+)?|\b\d+\b", "?", sql)


def test_the_start_and_end_of_a_run_are_sent_each_once_and_end_it():
    first, second, third = queued_runs(3)
    sent = [start_and_end(run, {"n": index}) for index, run in enumerate((first, second, third))]
    # The read; the end: one query string on PostgreSQL, BEGIN, three statements and COMMIT on SQLite.
    assert [len(each) for each in sent] == ([2, 2, 2] if connection.vendor == "postgresql" else [6, 6, 6])
    for index, run in enumerate((first, second, third)):
        run.refresh_from_db()
        assert (run.status, run.result, run.attempts, run.worker) == (Run.Status.SUCCEEDED, {"n": index}, 1, "w@host")
    if connection.vendor != "postgresql":
        assert [sql.split(" ", 1)[0] for sql in sent[2]] == ["SELECT", "BEGIN", "UPDATE", "INSERT", "INSERT", "COMMIT"]


@postgres
def test_on_postgresql_they_are_prepared_once_per_connection():
    runs = queued_runs(3)
    connection.close()  # a new connection, as a worker's first task has
    first = start_and_end(runs[0], {"n": 1})
    names = prepared_here()
    later = [start_and_end(run, {"n": 2}) for run in runs[1:]]
    # Every later statement EXECUTEs one prepared on this connection, and none was prepared again.
    executed = [re.findall(r"EXECUTE (jobsite_\d+)", sql) for each in [first, *later] for sql in each]
    assert [len(names_in) for names_in in executed] == [1, 2, 1, 2, 1, 2]  # the end: its UPDATE, its TaskResult's
    assert {name for names_in in executed for name in names_in} <= set(names)
    assert prepared_here() == names
    # What was prepared is the statement itself, its values as parameters.
    read, end = (unprepared(sql) for sql in later[-1])
    assert read.startswith('SELECT "jobs_run"."id"') and str(runs[2].pk).replace("-", "") in read
    assert end.startswith('WITH updated AS (UPDATE "jobs_run" SET "status" = \'succeeded\'')
    assert 'INSERT INTO "django_celery_results_taskresult"' in end


@postgres
def test_a_new_connection_prepares_them_again():
    first, second = queued_runs(2)
    start_and_end(first, {"n": 1})
    connection.close()
    start_and_end(second, {"n": 2})
    second.refresh_from_db()
    assert (second.status, second.result) == (Run.Status.SUCCEEDED, {"n": 2})
    assert any(" AS WITH updated AS (UPDATE" in statement for statement in prepared_here().values())


@postgres
def test_a_rolled_back_transaction_keeps_what_it_prepared():
    first, second = queued_runs(2)
    connection.close()
    with pytest.raises(RuntimeError), transaction.atomic():
        start_and_end(first, {"n": 1})  # prepared inside the transaction
        raise RuntimeError("rolled back")
    first.refresh_from_db()
    assert first.status == Run.Status.QUEUED  # its end rolled back
    start_and_end(second, {"n": 2})  # the prepared statements are still there
    second.refresh_from_db()
    assert (second.status, second.result) == (Run.Status.SUCCEEDED, {"n": 2})


@postgres
def test_a_connection_dropped_before_its_first_prepare_leaves_the_statements_preparable():
    # The server ended the session (a restart, an idle timeout): the read's PREPARE
    # fails as the read would have, the read goes again on a new connection
    # (jobs/core/reconnect.py), and its statement is prepared there.
    [run] = queued_runs(1)
    connection.close()
    drop(session())
    sent = start_and_end(run, {"n": 2})
    assert [len(re.findall(r"EXECUTE jobsite_\d+", sql)) for sql in sent] == [1, 2]
    run.refresh_from_db()
    assert (run.status, run.result) == (Run.Status.SUCCEEDED, {"n": 2})


@postgres
def test_turned_off_the_statements_themselves_are_sent_as_prepared_ones_show(settings):
    prepared_run, plain_run = queued_runs(2)
    prepared = start_and_end(prepared_run, {"n": 1})
    settings.JOBS_DB_PREPARED_STATEMENTS = False
    plain = start_and_end(plain_run, {"n": 1})
    assert all("EXECUTE" not in sql for sql in plain)
    assert [shape(unprepared(sql)) for sql in prepared] == [shape(sql) for sql in plain]
    plain_run.refresh_from_db()
    assert plain_run.status == Run.Status.SUCCEEDED


def test_a_result_with_quotes_commas_and_parentheses_is_stored_as_given():
    [run] = queued_runs(1)
    result = {"text": "it's (a, b); 'c'", "list": [1, "2)"], "none": None}
    sent = start_and_end(run, result)
    run.refresh_from_db()
    assert run.result == result
    if connection.vendor == "postgresql":
        # Read back from what was sent: the literal is whole where the statement shows it.
        assert "it''s (a, b); ''c''" in unprepared(sent[1])


@postgres
def test_a_statement_the_server_will_not_prepare_is_sent_as_it_is_and_leaves_a_transaction_usable(caplog):
    # Two parameters of unknown type added: PREPARE refuses it ("operator is not
    # unique"), while the same SQL with its values written in runs.
    sql = statements._compiled_once("SELECT %s + %s")
    with transaction.atomic():
        assert statements.joined([(sql, [1, 2])], using="default") == (sql, [1, 2])
        with connection.cursor() as cursor:
            cursor.execute(sql, [1, 2])
            assert cursor.fetchone() == (3,)
    assert "Statement not prepared" in caplog.text
    assert statements.joined([(sql, [3, 4])], using="default") == (sql, [3, 4])  # not tried again


def test_an_execute_of_a_statement_this_process_did_not_prepare_is_shown_as_it_is():
    sent = "SET LOCAL synchronous_commit TO OFF; EXECUTE jobsite_999999('a, (b)', 2)"
    assert unprepared(sent) == sent
