"""Celery signal handlers that move runs through their states on the worker."""

from celery import signals
from celery.exceptions import SoftTimeLimitExceeded

from . import services
from .executors import NOTIFY_HEADER, PARENT_HEADER, RUN_HEADER, RunFailed


def _header(task, name: str):
    request = task.request
    return request.get(name) or (request.headers or {}).get(name)


def _run_id(task) -> str | None:
    """The run id of a task Jobsite published, or None for any other task."""
    return task.request.id if _header(task, RUN_HEADER) else None


@signals.task_prerun.connect
def on_task_prerun(task_id, task, **_):
    run_id = _run_id(task)
    if run_id:
        services.run_started(run_id=run_id, worker=task.request.hostname or "", parent_id=_header(task, PARENT_HEADER))


@signals.task_success.connect
def on_task_success(sender, result, **_):
    run_id = _run_id(sender)
    if run_id:
        services.run_succeeded(
            run_id=run_id,
            result=result,
            notify_on=_header(sender, NOTIFY_HEADER),
            parent_id=_header(sender, PARENT_HEADER),
        )


@signals.task_failure.connect
def on_task_failure(sender, task_id, exception, einfo=None, **_):
    run_id = _run_id(sender)
    if not run_id:
        return
    if isinstance(exception, RunFailed):
        services.run_failed(run_id=run_id, error=str(exception))
    elif isinstance(exception, SoftTimeLimitExceeded):
        limit = sender.request.timelimit[1] if sender.request.timelimit else None
        services.run_failed(run_id=run_id, error=f"Timed out after {limit} s" if limit else "Timed out")
    else:
        error = f"{type(exception).__name__}: {exception}"
        services.run_failed(run_id=run_id, error=error, traceback=einfo.traceback if einfo else "")
