"""What a run costs the database: the queries of its trigger and of each state
change on the worker, pinned (bench/throughput.py measures what they cost in
time). Each test calls what the API or the worker's hooks call, with real
objects and a real Redis; a count is deterministic, a time is not.

Inside a test's transaction Django writes each `transaction.atomic()` as a
SAVEPOINT and its RELEASE, which the counts include; outside one, the same
blocks are a BEGIN and a COMMIT."""

import json
from datetime import timedelta
from types import SimpleNamespace

import pytest
from celery import states
from celery.app.task import Context
from django.db import connection
from django.utils import timezone
from django_celery_results.models import TaskResult
from kombu.exceptions import EncodeError, OperationalError

from jobs.core.statements import unprepared
from jobs.models import JobType, Run, RunToCount
from jobs.runs import tracking, trigger
from jobs.runs.executors import NOTIFY_HEADER, PARENT_HEADER, PARENT_RUNNING_HEADER, QUEUED_HEADER, RUN_HEADER
from jobs.worker import signals
from jobsite.celery import app
from tests.factories import JobTypeFactory, RunFactory

pytestmark = pytest.mark.postgres  # run on PostgreSQL too (see pyproject.toml)


@pytest.fixture
def broker(redis_server, settings):
    settings.CELERY_BROKER_URL = redis_server


def synchronous_commit() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SHOW synchronous_commit")
        return cursor.fetchone()[0]


def worker_request(run: Run) -> Context:
    """A run's task request as the worker builds it from the message Jobsite
    published (message protocol 2 puts custom headers at the top level)."""
    headers = {RUN_HEADER: True, NOTIFY_HEADER: "never", PARENT_HEADER: ""}
    return Context(id=str(run.pk), task=run.job_type.task, hostname="w@host", args=[], kwargs={}, **headers)


def test_it_triggers_a_run_with_one_insert(broker, job_type, django_assert_num_queries,
                                          django_capture_on_commit_callbacks):  # fmt: skip
    # SAVEPOINT, INSERT the run (`queued`), RELEASE; once committed: publish, and nothing more.
    with django_assert_num_queries(3), django_capture_on_commit_callbacks(execute=True):
        run, created = trigger.run_create(job_type=job_type, params={"n": 1}, trigger=Run.Trigger.API)
    run.refresh_from_db()
    assert created and run.status == Run.Status.QUEUED
    assert run.queued_at == run.created_at == run.released_at


def test_a_run_the_broker_did_not_take_is_left_pending_for_the_sweeper(broker, job_type, monkeypatch,
                                                                       django_assert_num_queries,
                                                                       django_capture_on_commit_callbacks):  # fmt: skip
    def broker_down(*args, **kwargs):  # what kombu raises once its publish retries are spent
        raise OperationalError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    # Where every publish goes through (app.send_task too); tests/e2e/test_faults.py stops a real Redis.
    monkeypatch.setattr(app.amqp, "send_task_message", broker_down)
    # SAVEPOINT, INSERT, RELEASE; the publish fails: one UPDATE back to `pending`.
    with django_assert_num_queries(4), django_capture_on_commit_callbacks(execute=True):
        run, _ = trigger.run_create(job_type=job_type, params={}, trigger=Run.Trigger.API)
    assert (run.status, run.queued_at) == (Run.Status.PENDING, None)
    run.refresh_from_db()
    assert (run.status, run.queued_at) == (Run.Status.PENDING, None)
    assert run.republish_after is not None  # the sweeper publishes it again then


def test_it_triggers_a_run_over_the_api_with_a_fixed_number_of_queries(broker, api, job_type,
                                                                       django_assert_max_num_queries,
                                                                       django_capture_on_commit_callbacks):  # fmt: skip
    # The token and the user's permissions, the job type, the run's INSERT (as above).
    with django_assert_max_num_queries(7), django_capture_on_commit_callbacks(execute=True):
        response = api.post(f"/api/v1/job-types/{job_type.name}/run/", {"params": {}}, format="json")
    assert response.status_code == 201
    assert Run.objects.get(pk=response.data["id"]).status == Run.Status.QUEUED


def test_it_starts_a_run_with_one_update(job_type, django_assert_num_queries):
    run = RunFactory(job_type=job_type, status=Run.Status.QUEUED)
    with django_assert_num_queries(1):
        start = tracking.run_started(run_id=str(run.pk), worker="w@host", parent_id="")
    run.refresh_from_db()
    assert start.go and (run.status, run.attempts, run.worker) == (Run.Status.RUNNING, 1, "w@host")


def test_a_run_started_before_the_web_marked_it_queued_counts_as_queued_at_its_start(
    job_type, django_assert_num_queries
):
    # A run the sweeper publishes is marked `queued` after its publish: the worker
    # can take the message before that UPDATE, which then no longer applies (it
    # needs `pending`): the run is still `pending`.
    run = RunFactory(job_type=job_type, status=Run.Status.PENDING)
    with django_assert_num_queries(1):
        tracking.run_started(run_id=str(run.pk), worker="w@host", parent_id="")
    run.refresh_from_db()
    assert run.status == Run.Status.RUNNING
    assert run.queued_at == run.started_at is not None
    queued = RunFactory(job_type=job_type, status=Run.Status.QUEUED, queued_at=run.started_at)
    tracking.run_started(run_id=str(queued.pk), worker="w@host", parent_id="")
    queued.refresh_from_db()
    assert queued.queued_at < queued.started_at  # kept when it was marked
    # The dispatcher takes its mark's time after the publish; a worker that took the
    # message at once may take its start's before that, and commit after the mark.
    late_mark = RunFactory(job_type=job_type, status=Run.Status.QUEUED, queued_at=timezone.now() + timedelta(seconds=5))
    tracking.run_started(run_id=str(late_mark.pk), worker="w@host", parent_id="")
    late_mark.refresh_from_db()
    assert late_mark.queued_at == late_mark.started_at  # queued no later than it started


def test_it_records_a_success_and_its_task_result_in_one_transaction(job_type, django_assert_num_queries):
    run = RunFactory(job_type=job_type, status=Run.Status.RUNNING, attempts=1)
    request = worker_request(run)
    # SAVEPOINT; UPDATE the run; INSERT its row to be counted for /metrics
    # (RunToCount); INSERT the TaskResult (an upsert); RELEASE. PostgreSQL:
    # the three writes are one query string (jobs/core/statements.py).
    # Outside a test: no savepoint (see the test below).
    postgres = connection.vendor == "postgresql"
    with django_assert_num_queries(3 if postgres else 5):
        app.backend.store_result(str(run.pk), {"n": 1}, states.SUCCESS, request=request)
    run.refresh_from_db()
    assert (run.status, run.result) == (Run.Status.SUCCEEDED, {"n": 1})
    assert TaskResult.objects.get(task_id=str(run.pk)).status == states.SUCCESS
    assert RunToCount.objects.filter(run_id=run.pk).count() == 1


@pytest.mark.django_db(transaction=True)
def test_outside_a_transaction_a_success_is_one_round_trip_on_postgresql(django_assert_num_queries):
    # The worker's end of the usual run (no workflow): on PostgreSQL the run's
    # conditional UPDATE, its RunToCount row (only if the UPDATE applied) and the
    # TaskResult's upsert, as one query string that the server runs as one
    # implicit transaction, committed durably; SQLite: BEGIN, the three, COMMIT.
    run = RunFactory(job_type=JobTypeFactory(), status=Run.Status.RUNNING, attempts=1)
    postgres = connection.vendor == "postgresql"
    with django_assert_num_queries(1 if postgres else 5) as captured:
        app.backend.store_result(str(run.pk), {"n": 1}, states.SUCCESS, request=worker_request(run))
    statements = [unprepared(q["sql"]) for q in captured.captured_queries]
    if postgres:
        assert statements[0].startswith('WITH updated AS (UPDATE "jobs_run" SET')
        assert "synchronous_commit" not in statements[0]  # durable, as any end
    else:
        assert [sql.split(" ", 1)[0] for sql in statements] == ["BEGIN", "UPDATE", "INSERT", "INSERT", "COMMIT"]
    run.refresh_from_db()
    assert (run.status, run.result, run.notify_status) == (Run.Status.SUCCEEDED, {"n": 1}, "")
    assert TaskResult.objects.get(task_id=str(run.pk)).status == states.SUCCESS
    assert RunToCount.objects.filter(run_id=run.pk).count() == 1


@pytest.mark.django_db(transaction=True)
def test_outside_a_transaction_a_success_prepares_its_values_before_its_transaction_opens(monkeypatch):
    # SQLite's transaction holds the database's one write lock from its BEGIN, and
    # every other worker and the triggers wait for it: the run's result and the
    # TaskResult's meta are prepared for the database before it opens.
    run = RunFactory(job_type=JobTypeFactory(), status=Run.Status.RUNNING, attempts=1)
    prepared = []
    for field in (Run._meta.get_field("result"), TaskResult._meta.get_field("meta")):

        def spy(value, connection, original=field.get_db_prep_save, model=field.model.__name__):
            prepared.append((model, connection.in_atomic_block))
            return original(value, connection)

        monkeypatch.setattr(field, "get_db_prep_save", spy)
    app.backend.store_result(str(run.pk), {"n": 1}, states.SUCCESS, request=worker_request(run))
    assert set(prepared) == {("Run", False), ("TaskResult", False)}
    run.refresh_from_db()
    assert (run.status, run.result) == (Run.Status.SUCCEEDED, {"n": 1})
    assert TaskResult.objects.get(task_id=str(run.pk)).status == states.SUCCESS


def test_each_run_ends_with_its_own_values_though_its_statements_are_compiled_once(job_type):
    # The end's statements are compiled once per process and shape, then sent
    # with each run's values (jobs/core/statements.py).
    runs = [RunFactory(job_type=job_type, status=Run.Status.RUNNING, attempts=1) for _ in range(4)]
    ends = [({"n": 1}, "never"), (None, "never"), ([1, "two"], "completion"), ({"n": 4}, "never")]
    for run, (result, notify_on) in zip(runs, ends, strict=True):
        request = worker_request(run)
        setattr(request, NOTIFY_HEADER, notify_on)
        app.backend.store_result(str(run.pk), result, states.SUCCESS, request=request)
    for run, (result, notify_on) in zip(runs, ends, strict=True):
        run.refresh_from_db()
        assert (run.status, run.result) == (Run.Status.SUCCEEDED, result)
        assert run.notify_status == ("pending" if notify_on == "completion" else "")
        assert app.AsyncResult(str(run.pk)).result == result
    assert RunToCount.objects.filter(run_id__in=[run.pk for run in runs]).count() == 4
    assert Run.objects.get(pk=runs[0].pk).finished_at < Run.objects.get(pk=runs[3].pk).finished_at


@pytest.mark.django_db(transaction=True)
def test_a_redelivered_success_is_counted_once_and_keeps_the_first_result():
    # A task redelivered after its end was written (its worker died before the
    # ack) ends again: the run is terminal, so its end does not apply, and no
    # second RunToCount row counts it twice on /metrics.
    run = RunFactory(job_type=JobTypeFactory(), status=Run.Status.RUNNING, attempts=1)
    app.backend.store_result(str(run.pk), {"n": 1}, states.SUCCESS, request=worker_request(run))
    app.backend.store_result(str(run.pk), {"n": 2}, states.SUCCESS, request=worker_request(run))
    run.refresh_from_db()
    assert (run.status, run.result) == (Run.Status.SUCCEEDED, {"n": 1})
    assert RunToCount.objects.filter(run_id=run.pk).count() == 1
    assert TaskResult.objects.filter(task_id=str(run.pk)).count() == 1


@pytest.mark.django_db(transaction=True)
def test_outside_a_transaction_a_result_that_cannot_be_stored_fails_the_run():
    # NaN gets through the TaskResult's encoding but not into the run's JSON (the
    # database refuses it): the whole end rolls back, the run fails with the
    # reason, and the worker's connection goes on working.
    run = RunFactory(job_type=JobTypeFactory(max_retries=2), status=Run.Status.RUNNING, attempts=1)
    with pytest.raises(EncodeError, match="not JSON-serialisable"):
        app.backend.store_result(str(run.pk), {"x": float("nan")}, states.SUCCESS, request=worker_request(run))
    run.refresh_from_db()
    assert (run.status, run.result, run.attempts) == (Run.Status.FAILED, None, 1)
    assert run.error.startswith("result is not JSON-serialisable: Out of range float values")
    assert not TaskResult.objects.filter(task_id=str(run.pk), status=states.SUCCESS).exists()
    assert RunToCount.objects.filter(run_id=run.pk).count() == 1  # its failure's
    other = RunFactory(job_type=run.job_type, status=Run.Status.RUNNING, attempts=1)
    app.backend.store_result(str(other.pk), {"n": 1}, states.SUCCESS, request=worker_request(other))
    assert Run.objects.get(pk=other.pk).status == Run.Status.SUCCEEDED


def test_a_success_after_a_failed_attempt_replaces_its_task_result(job_type):
    run = RunFactory(job_type=job_type, status=Run.Status.RUNNING, attempts=2)
    request = worker_request(run)
    app.backend.store_result(str(run.pk), ValueError("first attempt"), states.FAILURE, request=request)
    created = TaskResult.objects.get(task_id=str(run.pk)).date_created
    app.backend.store_result(str(run.pk), {"n": 2}, states.SUCCESS, request=request)
    task_result = TaskResult.objects.get(task_id=str(run.pk))
    assert (task_result.status, task_result.result, task_result.task_name) == (
        states.SUCCESS,
        '{"n": 2}',
        job_type.task,
    )
    assert task_result.date_created == created and task_result.date_done >= created
    # What Celery reads back for the task id, as for any task.
    assert app.AsyncResult(str(run.pk)).result == {"n": 2}


def test_the_success_signal_leaves_a_run_the_backend_ended_alone(job_type, django_assert_num_queries):
    run = RunFactory(job_type=job_type, status=Run.Status.RUNNING, attempts=1)
    request = worker_request(run)
    app.backend.store_result(str(run.pk), {"n": 1}, states.SUCCESS, request=request)
    with django_assert_num_queries(0):
        signals.on_task_success(sender=SimpleNamespace(request=request), result={"n": 1})


def test_with_another_result_backend_the_success_signal_ends_the_run(job_type, django_assert_num_queries):
    run = RunFactory(job_type=job_type, status=Run.Status.RUNNING, attempts=1)
    # The conditional UPDATE; the INSERT to count it for /metrics (PostgreSQL: one statement).
    with django_assert_num_queries(1 if connection.vendor == "postgresql" else 2):
        signals.on_task_success(sender=SimpleNamespace(request=worker_request(run)), result={"n": 1})
    run.refresh_from_db()
    assert (run.status, run.result) == (Run.Status.SUCCEEDED, {"n": 1})


def test_a_late_success_changes_neither_a_cancelled_run_nor_costs_more(job_type, django_assert_num_queries):
    run = RunFactory(job_type=job_type, status=Run.Status.CANCELLED)
    # SAVEPOINT, the UPDATE that does not apply, the TaskResult, RELEASE (PostgreSQL: the two in one query string).
    with django_assert_num_queries(3 if connection.vendor == "postgresql" else 4):
        app.backend.store_result(str(run.pk), {"n": 1}, states.SUCCESS, request=worker_request(run))
    run.refresh_from_db()
    assert (run.status, run.result) == (Run.Status.CANCELLED, None)
    assert not RunToCount.objects.filter(run_id=run.pk).exists()


def test_another_tasks_result_is_stored_as_django_celery_results_stores_it(db, django_assert_num_queries):
    request = Context(id="not-a-run", task="jobs.builtin.echo", hostname="w@host", args=[], kwargs={})
    with django_assert_num_queries(4):  # SELECT, SAVEPOINT, INSERT, RELEASE
        app.backend.store_result("not-a-run", {"n": 1}, states.SUCCESS, request=request)
    assert TaskResult.objects.get(task_id="not-a-run").status == states.SUCCESS
    assert not Run.objects.exists()


def test_it_fails_a_run_with_one_read_one_update_and_the_metrics_insert(db, django_assert_num_queries):
    run = RunFactory(job_type=JobTypeFactory(max_retries=0), status=Run.Status.RUNNING, attempts=1)
    # The read, the UPDATE, and the INSERT that counts its end for /metrics (PostgreSQL: with the UPDATE).
    with django_assert_num_queries(2 if connection.vendor == "postgresql" else 3):
        tracking.run_failed(run_id=str(run.pk), error="ValueError: no")
    run.refresh_from_db()
    assert (run.status, run.error) == (Run.Status.FAILED, "ValueError: no")


def test_it_retries_a_run_with_one_read_and_one_update(db, broker, django_assert_num_queries):
    run = RunFactory(job_type=JobTypeFactory(max_retries=1), status=Run.Status.RUNNING, attempts=1)
    # The read, the UPDATE to `retrying` with the attempt recorded, the publish
    # with a countdown, and runs_publish's UPDATE of runs still `pending` (none here).
    with django_assert_num_queries(3):
        tracking.run_failed(run_id=str(run.pk), error="ValueError: no")
    run.refresh_from_db()
    assert (run.status, len(run.earlier_attempts)) == (Run.Status.RETRYING, 1)


@pytest.mark.django_db(transaction=True)
def test_outside_a_transaction_a_trigger_is_one_insert(broker, django_assert_num_queries):
    # On a queue no worker consumes: the session's worker, if one runs, must not
    # start this committed run while the test's teardown empties the tables.
    job_type = JobTypeFactory(queue="hot-path-not-consumed")
    # The INSERT, `queued`, commits on its own (no BEGIN/COMMIT around one
    # statement, durable); then the publish, and no other statement.
    with django_assert_num_queries(1) as captured:
        run, _ = trigger.run_create(job_type=job_type, params={}, trigger=Run.Trigger.API)
    assert unprepared(captured.captured_queries[0]["sql"]).startswith("INSERT")
    run.refresh_from_db()
    assert run.status == Run.Status.QUEUED


@pytest.mark.django_db(transaction=True)
def test_outside_a_transaction_the_dispatchers_queued_mark_does_not_wait_for_the_disk(
    broker, django_assert_num_queries
):
    # Runs the dispatcher or a workflow publishes are `pending` until published,
    # then marked `queued` in one UPDATE (PostgreSQL: without waiting for the disk,
    # its SET LOCAL in the same query string, one round trip, jobs/core/durability.py;
    # SQLite in WAL mode commits without an fsync anyway).
    run = RunFactory(job_type=JobTypeFactory(queue="hot-path-not-consumed"), status=Run.Status.PENDING)
    postgres = connection.vendor == "postgresql"
    setting = synchronous_commit() if postgres else None
    with django_assert_num_queries(1) as captured:
        trigger.runs_publish([run])
    sql = captured.captured_queries[0]["sql"]
    assert sql.startswith("SET LOCAL synchronous_commit TO OFF; UPDATE" if postgres else "UPDATE")
    if postgres:
        assert synchronous_commit() == setting  # changed for that transaction only
    run.refresh_from_db()
    assert run.status == Run.Status.QUEUED


@pytest.mark.django_db(transaction=True)
def test_outside_a_transaction_the_start_is_one_update(django_assert_num_queries):
    run = RunFactory(job_type=JobTypeFactory(), status=Run.Status.QUEUED)
    with django_assert_num_queries(1) as captured:
        tracking.run_started(run_id=str(run.pk), worker="w@host", parent_id="")
    assert unprepared(captured.captured_queries[0]["sql"]).startswith("UPDATE")  # durable: it may have been `pending`
    run.refresh_from_db()
    assert run.status == Run.Status.RUNNING


@pytest.mark.django_db(transaction=True)
def test_a_steps_success_and_its_workflows_advance_are_one_commit_then_the_next_step_is_published(
    broker, django_assert_num_queries
):
    # A step hop (a step's end to the next step's message): the step's success,
    # its TaskResult and the next step made ready (written `queued`) commit together,
    # once; then the next step is published, and nothing more. On a queue no worker consumes.
    step_type = JobTypeFactory(queue="hot-path-not-consumed")
    workflow = JobTypeFactory(name="chain", kind=JobType.Kind.WORKFLOW, queue="hot-path-not-consumed")
    workflow.steps.create(name="a", job_type=step_type)
    workflow.steps.create(name="b", job_type=step_type, params={"after": "{{ steps.a.result.n }}"}, depends_on=["a"])
    parent, _ = trigger.run_create(job_type=workflow, params={}, trigger=Run.Trigger.API)
    first = parent.children.get(step_name="a")
    tracking.run_started(run_id=str(first.pk), worker="w@host", parent_id=str(parent.pk))
    request = worker_request(first)
    setattr(request, PARENT_HEADER, str(parent.pk))
    postgres = connection.vendor == "postgresql"
    # The step's UPDATE, its /metrics row and its TaskResult (PostgreSQL: one query
    # string); the workflow run locked and its steps read (PostgreSQL: one query
    # string, a statement each); the next one made ready; one COMMIT.
    end = ["WITH"] if postgres else ["UPDATE", "INSERT", "INSERT"]
    reads = ["SELECT"] if postgres else ["SELECT", "SELECT"]
    with django_assert_num_queries(3 + len(end) + len(reads)) as captured:
        app.backend.store_result(str(first.pk), {"n": 1}, states.SUCCESS, request=request)
    sent = [unprepared(q["sql"]) for q in captured.captured_queries]
    assert [sql.split(" ", 1)[0] for sql in sent] == ["BEGIN", *end, *reads, "UPDATE", "COMMIT"]
    locked, steps_read = "; ".join(sent[len(end) + 1 : -2]).split("; ")
    assert locked.endswith('FOR UPDATE OF "jobs_run"') or not postgres
    assert '"traceback"' not in steps_read and '"earlier_attempts"' not in steps_read  # what advancing never reads
    following = parent.children.get(step_name="b")
    assert (following.status, following.params) == (Run.Status.QUEUED, {"after": 1})
    # The workflow run was running (its first step started): the next step's
    # message says so, and that the step was written `queued`; its start is one
    # UPDATE, as any run's, that need not wait for the disk.
    assert published_headers(str(first.pk)).get(PARENT_RUNNING_HEADER) is None
    headers = published_headers(str(following.pk))
    assert headers[PARENT_RUNNING_HEADER] is True and headers[QUEUED_HEADER] is True
    with django_assert_num_queries(1):
        tracking.run_started(
            run_id=str(following.pk), worker="w@host", parent_id=str(parent.pk), parent_running=True,
            written_queued=True,
        )  # fmt: skip
    assert Run.objects.get(pk=following.pk).status == Run.Status.RUNNING


def published_headers(run_id: str, queue: str = "hot-path-not-consumed") -> dict:
    """The headers of the message published for a run, still in Redis (kombu keeps a queue as a list)."""
    with app.connection_for_write() as conn:
        client = conn.default_channel.client
        messages = [json.loads(raw) for raw in client.lrange(queue, 0, -1)]
    return next(m["headers"] for m in messages if m["headers"].get("id") == run_id)


def test_a_workflows_first_step_marks_it_running_at_its_start(job_type, django_assert_num_queries):
    parent = RunFactory(job_type=JobTypeFactory(kind=JobType.Kind.WORKFLOW), status=Run.Status.QUEUED)
    step = RunFactory(job_type=job_type, parent=parent, step_name="a", status=Run.Status.QUEUED)
    with django_assert_num_queries(2):  # its start; the workflow run's
        tracking.run_started(run_id=str(step.pk), worker="w@host", parent_id=str(parent.pk))
    parent.refresh_from_db()
    assert parent.status == Run.Status.RUNNING and parent.started_at is not None


@pytest.mark.django_db(transaction=True)
def test_the_start_of_a_run_its_trigger_wrote_queued_is_one_statement_not_waiting_for_the_disk(
    django_assert_num_queries,
):
    run = RunFactory(job_type=JobTypeFactory(), status=Run.Status.QUEUED)
    postgres = connection.vendor == "postgresql"
    setting = synchronous_commit() if postgres else None
    # PostgreSQL: SET LOCAL and the UPDATE in one query string, one implicit
    # transaction, one round trip (jobs/core/durability.py).
    with django_assert_num_queries(1) as captured:
        start = tracking.run_started(run_id=str(run.pk), worker="w@host", parent_id="", written_queued=True)
    sql = unprepared(captured.captured_queries[0]["sql"])
    assert sql.startswith("SET LOCAL synchronous_commit TO OFF; UPDATE" if postgres else "UPDATE")
    if postgres:
        assert synchronous_commit() == setting  # changed for that transaction only
    run.refresh_from_db()
    assert start.go and (run.status, run.attempts) == (Run.Status.RUNNING, 1)
    # A second message for it is still dropped: the start is conditional as ever.
    assert not tracking.run_started(run_id=str(run.pk), worker="w@host", parent_id="", written_queued=True).go
