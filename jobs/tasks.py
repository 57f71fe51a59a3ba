"""Jobsite's own Celery tasks. Thin: load by id, call the executor or a service."""

from celery import shared_task
from celery.exceptions import Ignore, SoftTimeLimitExceeded

from .executors import executor_for
from .models import Run


@shared_task(name="jobsite.execute_run")
def execute_run(run_id: str):
    """Execute an `http` or `command` run on this worker and return its result."""
    run = Run.objects.select_related("job_type").get(pk=run_id)
    if run.is_terminal:  # Cancelled before it started, or redelivered after it ended.
        raise Ignore()
    try:
        return executor_for(run.job_type.kind).execute(run)
    except SoftTimeLimitExceeded:
        # A cancel interrupts the executor the same way a soft time limit does.
        if Run.objects.filter(pk=run_id, status=Run.Status.CANCELLED).exists():
            raise Ignore() from None
        raise


@shared_task(name="jobsite.dispatch", ignore_result=True)
def dispatch() -> dict[str, int]:
    """Fire due schedules and release due scheduled runs (sent by beat every second)."""
    from .dispatch import dispatch_due

    return dispatch_due()
