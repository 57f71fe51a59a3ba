"""Celery signal handlers that move runs through their states on the worker."""

import uuid
from contextlib import contextmanager

from celery import signals
from celery.exceptions import SoftTimeLimitExceeded, TimeLimitExceeded
from django import db
from django.conf import settings

from jobs.models import Run
from jobs.runs import tracking
from jobs.runs.executors import (
    NOTIFY_HEADER,
    PARENT_HEADER,
    PARENT_RUNNING_HEADER,
    QUEUED_HEADER,
    RUN_HEADER,
    RunFailed,
)
from jobs.worker import connections, run_logs, start_marks
from jobs.worker.result_backend import RECORDED_ATTRIBUTE, request_header
from jobs.worker.task_base import START_ATTRIBUTE, RunTask


def _header(task, name: str):
    return request_header(task.request, name)


def _run_id(task) -> str | None:
    """The run id of a task Jobsite published, or None for any other task."""
    return task.request.id if _header(task, RUN_HEADER) else None


@signals.task_prerun.connect
def on_task_prerun(task_id, task, **_):
    run_id = _run_id(task)
    if not run_id:
        connections.checkup(task.request)
    else:
        facts = {
            "parent_id": _header(task, PARENT_HEADER),
            "parent_running": bool(_header(task, PARENT_RUNNING_HEADER)),
            "can_hold": isinstance(task, RunTask),
            "written_queued": bool(_header(task, QUEUED_HEADER)),
            "defer": settings.JOBS_START_MARK_DELAY_SECONDS > 0,
        }
        connections.checkup(task.request, reads_first=tracking.starts_with_read(**facts))
        start = tracking.run_started(
            run_id=run_id,
            worker=task.request.hostname or "",
            redelivered=bool((task.request.delivery_info or {}).get("redelivered")),
            **facts,
        )
        if start.late:
            start_marks.marks.defer(run_id, start.late)
        setattr(task.request, START_ATTRIBUTE, start)  # RunTask.before_start acts on it
        if start.go:
            run_logs.install()
            run_logs.begin(run_id, attempt=start.late.attempt if start.late else None)


@signals.task_success.connect
def on_task_success(sender, result, **_):
    run_id = _run_id(sender)
    # Jobsite's result backend (jobs/worker/result_backend.py) ended the run with its TaskResult.
    if run_id and not getattr(sender.request, RECORDED_ATTRIBUTE, False):
        connections.checkup_if_idle(sender.request)
        tracking.run_succeeded(
            run_id=run_id,
            result=result,
            notify_on=_header(sender, NOTIFY_HEADER),
            parent_id=_header(sender, PARENT_HEADER),
            late_start=start_marks.marks.take(run_id),
        )


@signals.task_failure.connect
def on_task_failure(sender, task_id, exception, einfo=None, **_):
    if isinstance(exception, TimeLimitExceeded):
        _on_hard_time_limit(task_id)
        return
    run_logs.flush_current()  # before the run's end, which its notification reads them after
    run_id = _run_id(sender)
    # Not when Jobsite's result backend ended the run already (its result could not be stored).
    if not run_id or getattr(sender.request, RECORDED_ATTRIBUTE, False):
        return
    connections.checkup_if_idle(sender.request)
    start_marks.marks.flush(run_id)  # the attempt counts for its retries
    if isinstance(exception, RunFailed):
        tracking.run_failed(run_id=run_id, error=str(exception))
    elif isinstance(exception, SoftTimeLimitExceeded):
        limit = sender.request.timelimit[1] if sender.request.timelimit else None
        tracking.run_failed(run_id=run_id, error=f"Timed out after {limit} s" if limit else "Timed out")
    else:
        error = f"{type(exception).__name__}: {exception}"
        tracking.run_failed(run_id=run_id, error=error, traceback=einfo.traceback if einfo else "")


@signals.task_postrun.connect
def on_task_postrun(task, **_):
    run_id = _run_id(task)
    if run_id:
        # Neither its success nor its failure wrote the start (the task raised
        # Ignore or Retry, say): written as the task's end, as it would have been.
        start_marks.marks.flush(run_id)
    run_logs.end()
    connections.task_ended(task.request)


@signals.task_revoked.connect
def on_task_revoked(sender, request=None, terminated=False, **_):
    """A revoke ended the task's pool process, or so Celery believes: once a
    process was sent a revoke's signal (a cooperative cancel, SIGUSR1, which
    it survives), billiard takes its death for a revoke forever after, and a
    run it dies running (out of memory, killed) is neither failed nor handed
    out again. Sent in the worker's main process, with the task's request."""
    if terminated and request is not None and (request.get(RUN_HEADER) or (request.headers or {}).get(RUN_HEADER)):
        with _main_process_database():
            tracking.run_process_ended(run_id=request.id)


def _on_hard_time_limit(task_id: str) -> None:
    """The hard time limit killed the pool process running the task: Celery
    says so from the worker's main process, where the task's request (and so
    its headers) is not at hand. Runs are told apart by their id, a UUID."""
    try:
        run_id = str(uuid.UUID(task_id))
    except (TypeError, ValueError):
        return  # not a run's task (e.g. "notify-…")
    with _main_process_database():
        run = Run.objects.select_related("job_type").filter(pk=run_id).first()
        if run is not None:
            job_type = run.job_type
            tracking.run_failed(
                run_id=run_id,
                error=f"Timed out after {job_type.hard_time_limit} s: it went on past its soft time limit "
                f"({job_type.soft_time_limit} s) and was killed at the hard one",
            )


@contextmanager
def _main_process_database():
    """The worker's main process serves no requests, so Django never recycles
    its connection: check it before, and close it after, as the pool processes
    forked from here must not share it."""
    db.close_old_connections()
    try:
        yield
    finally:
        db.connections.close_all()
