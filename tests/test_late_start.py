"""A run's start written with its end, or a moment late (jobs/worker/start_marks.py).

A run written `queued` before its publish, whose job type has no
max_concurrency, is only read when its task starts; its start is written by
the UPDATE that ends it, or by the pool process's thread once the task has run
JOBS_START_MARK_DELAY_SECONDS, or before its failure is recorded. The worker's
signal handlers and result backend are called as Celery calls them, with real
objects, a real Redis and the database's own transactions."""

import time
from datetime import timedelta
from types import SimpleNamespace

import pytest
from celery import states
from celery.app.task import Context
from django.db import connection
from django.utils import timezone
from django_celery_results.models import TaskResult

from jobs.builtin import echo
from jobs.core.statements import unprepared
from jobs.models import Run, RunToCount
from jobs.runs import tracking
from jobs.runs.executors import NOTIFY_HEADER, PARENT_HEADER, QUEUED_HEADER, RUN_HEADER
from jobs.worker import run_logs, signals, start_marks
from jobsite.celery import app
from tests.factories import JobTypeFactory, RunFactory

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def delay(settings):
    """Long enough that a start is written by the thread only where a test waits for it."""
    settings.JOBS_START_MARK_DELAY_SECONDS = 60
    return settings


@pytest.fixture(autouse=True)
def log_capture_ended(transactional_db):
    """The run log capture that on_task_prerun began on this thread, ended as the
    worker's postrun ends it, while the test's runs still exist: else a later test's
    end would write what this thread logged meanwhile as a line of a run gone by then."""
    yield
    run_logs.end()


@pytest.fixture
def broker(redis_server, settings):
    settings.CELERY_BROKER_URL = redis_server


def queued_run(**job_type) -> Run:
    queued_at = timezone.now() - timedelta(seconds=1)
    return RunFactory(job_type=JobTypeFactory(**job_type), status=Run.Status.QUEUED, queued_at=queued_at)


def request_of(run: Run, **headers) -> Context:
    """The run's task request as the worker builds it from the message a trigger
    published; `headers`: other values of its headers."""
    headers = {RUN_HEADER: True, NOTIFY_HEADER: "never", PARENT_HEADER: "", QUEUED_HEADER: True, **headers}
    return Context(id=str(run.pk), task=run.job_type.task, hostname="w@host", args=[], kwargs={}, **headers)


def prerun(run: Run, **headers) -> Context:
    """What the worker does as the run's task is about to execute (on_task_prerun),
    for the registered task (a RunTask, as every task on Jobsite's app)."""
    task = echo  # queued_run's job type's task
    task.push_request(**vars(request_of(run, **headers)))
    try:
        signals.on_task_prerun(task_id=str(run.pk), task=task)
        return task.request
    finally:
        task.pop_request()


def test_the_start_is_a_read_and_the_end_writes_it_in_its_one_update(django_assert_num_queries):
    run = queued_run()
    before = timezone.now()
    with django_assert_num_queries(1) as captured:
        prerun(run)
    assert unprepared(captured.captured_queries[0]["sql"]).startswith("SELECT")
    run.refresh_from_db()
    assert (run.status, run.attempts, run.started_at) == (Run.Status.QUEUED, 0, None)  # nothing written yet

    postgres, request = connection.vendor == "postgresql", request_of(run)
    with django_assert_num_queries(1 if postgres else 5) as captured:  # as an end whose start was written
        app.backend.store_result(str(run.pk), {"n": 1}, states.SUCCESS, request=request)
    sql = [unprepared(query["sql"]) for query in captured.captured_queries]
    assert sum(statement.count('UPDATE "jobs_run"') for statement in sql) == 1
    queued_at = run.queued_at
    run.refresh_from_db()
    assert (run.status, run.result, run.attempts, run.worker) == (Run.Status.SUCCEEDED, {"n": 1}, 1, "w@host")
    assert before <= run.started_at <= run.finished_at
    assert run.queued_at == queued_at  # written before its start: kept
    assert TaskResult.objects.get(task_id=str(run.pk)).status == states.SUCCESS
    assert RunToCount.objects.filter(run_id=run.pk).count() == 1
    assert start_marks.marks.take(str(run.pk)) is None  # nothing left to write


def test_a_task_still_running_after_the_delay_shows_running_and_its_end_counts_one_attempt(delay):
    delay.JOBS_START_MARK_DELAY_SECONDS = 0.2
    run = queued_run()
    began = timezone.now()
    prerun(run)
    deadline = time.monotonic() + 10
    while Run.objects.get(pk=run.pk).status != Run.Status.RUNNING:
        assert time.monotonic() < deadline, "the start was not written"
        time.sleep(0.05)
    shown = timezone.now()
    run.refresh_from_db()
    assert (run.attempts, run.worker) == (1, "w@host")
    assert began <= run.started_at < shown - timedelta(seconds=0.15)  # when the task began, not when written

    app.backend.store_result(str(run.pk), {}, states.SUCCESS, request=request_of(run))
    run.refresh_from_db()
    assert (run.status, run.attempts) == (Run.Status.SUCCEEDED, 1)


def test_a_failed_task_counts_its_attempt_and_is_retried(broker):
    run = queued_run(max_retries=1)
    request = prerun(run)
    signals.on_task_failure(
        sender=SimpleNamespace(request=request), task_id=str(run.pk), exception=ValueError("no"), einfo=None
    )
    run.refresh_from_db()
    assert (run.status, run.attempts) == (Run.Status.RETRYING, 1)
    [attempt] = run.earlier_attempts
    assert (attempt["attempt"], attempt["worker"], attempt["error"]) == (1, "w@host", "ValueError: no")


def test_a_result_that_cannot_be_stored_fails_the_run_on_its_counted_attempt():
    run = queued_run()
    request = prerun(run)
    with pytest.raises(Exception, match="not JSON-serialisable"):
        app.backend.store_result(str(run.pk), {"at": object()}, states.SUCCESS, request=request)
    run.refresh_from_db()
    assert (run.status, run.attempts, run.worker) == (Run.Status.FAILED, 1, "w@host")
    assert run.error.startswith("result is not JSON-serialisable")


def test_a_task_that_neither_succeeded_nor_failed_has_its_start_written_as_it_ends():
    run = queued_run()
    request = prerun(run)
    signals.on_task_postrun(task=SimpleNamespace(request=request))  # e.g. it raised Ignore
    run.refresh_from_db()
    assert (run.status, run.attempts) == (Run.Status.RUNNING, 1)


def test_a_run_cancelled_while_its_task_ran_stays_cancelled():
    run = queued_run()
    request = prerun(run)
    Run.objects.get(pk=run.pk).mark_cancelled()
    app.backend.store_result(str(run.pk), {"n": 1}, states.SUCCESS, request=request)
    run.refresh_from_db()
    assert (run.status, run.attempts, run.result) == (Run.Status.CANCELLED, 0, None)
    assert TaskResult.objects.get(task_id=str(run.pk)).status == states.SUCCESS  # Celery's record, as ever


def test_a_run_that_ended_before_its_task_started_is_skipped():
    run = queued_run()
    Run.objects.get(pk=run.pk).mark_cancelled()
    start = tracking.run_started(run_id=str(run.pk), worker="w@host", parent_id="", written_queued=True, defer=True)
    assert not start.go


def test_a_job_type_with_max_concurrency_takes_its_slot_at_once():
    run = queued_run(max_concurrency=1)
    start = tracking.run_started(run_id=str(run.pk), worker="w@host", parent_id="", written_queued=True, defer=True)
    assert (start.go, start.late) == (True, None)
    assert Run.objects.get(pk=run.pk).status == Run.Status.RUNNING  # counted among the job type's running runs


def test_a_run_put_back_to_pending_is_started_at_once():
    # Its publish failed on the way, perhaps after Redis took its message: the
    # sweeper publishes it again, and the second message must find it running.
    run = RunFactory(job_type=JobTypeFactory(), status=Run.Status.PENDING)
    start = tracking.run_started(run_id=str(run.pk), worker="w@host", parent_id="", written_queued=True, defer=True)
    assert (start.go, start.late) == (True, None)
    assert Run.objects.get(pk=run.pk).status == Run.Status.RUNNING


def test_a_run_not_written_queued_before_its_publish_is_started_at_once():
    run = queued_run()  # `queued` now, but its message does not say it was before its publish
    start = tracking.run_started(run_id=str(run.pk), worker="w@host", parent_id="", written_queued=False, defer=True)
    assert (start.go, start.late) == (True, None)
    assert Run.objects.get(pk=run.pk).status == Run.Status.RUNNING  # the sweeper must not publish it again


def test_with_no_delay_every_start_is_written_as_its_task_starts(delay, django_assert_num_queries):
    delay.JOBS_START_MARK_DELAY_SECONDS = 0
    run = queued_run()
    with django_assert_num_queries(1) as captured:
        prerun(run)
    assert captured.captured_queries[0]["sql"].startswith(("UPDATE", "SET LOCAL"))
    assert Run.objects.get(pk=run.pk).status == Run.Status.RUNNING
