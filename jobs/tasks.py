"""Jobsite's own Celery tasks. Thin: load by id, call the executor or a service."""

import logging

from celery import shared_task
from celery.exceptions import Ignore, SoftTimeLimitExceeded
from django.conf import settings

from jobs import notifications
from jobs.models import Run
from jobs.runs import retention
from jobs.runs.executors import executor_for
from jobs.schedules import deadlines

logger = logging.getLogger(__name__)


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
    from jobs.schedules.dispatcher import dispatch_due

    return dispatch_due()


@shared_task(name="jobsite.check_stuck", ignore_result=True)
def check_stuck() -> int:
    """Fail the runs whose worker is gone (sent by beat every JOBS_STUCK_CHECK_SECONDS)."""
    from jobs.runs.stuck import runs_fail_stuck

    return runs_fail_stuck()


@shared_task(name="jobsite.check_lost_messages", ignore_result=True)
def check_lost_messages() -> int:
    """Publish again the runs whose broker message is lost (sent by beat every JOBS_QUEUED_CHECK_SECONDS)."""
    from jobs.runs.lost import runs_republish_lost

    return runs_republish_lost()


@shared_task(
    bind=True,
    name="jobsite.notify_run",
    acks_late=True,
    max_retries=None,  # the run's own attempt count decides when to give up
    # Stops an attempt before its hold on the notification ends (see run_notify).
    soft_time_limit=settings.JOBS_NOTIFY_LEASE_SECONDS - 10,
    time_limit=settings.JOBS_NOTIFY_LEASE_SECONDS,
)
def notify_run(self, run_id: str) -> str:
    """Email and call the webhook about a run that ended, exactly once."""
    try:
        result = notifications.run_notify(run_id=run_id)
    except SoftTimeLimitExceeded:
        # This attempt outlived its hold; the next one takes over once the hold ends.
        raise self.retry(countdown=settings.JOBS_NOTIFY_LEASE_SECONDS) from None
    if result.retry_in is not None:
        raise self.retry(countdown=result.retry_in)
    return result.state


@shared_task(
    bind=True,
    name=deadlines.LATE_TASK,
    acks_late=True,
    max_retries=None,  # alert_send counts the attempts against JOBS_NOTIFY_MAX_ATTEMPTS
    soft_time_limit=settings.JOBS_NOTIFY_LEASE_SECONDS - 10,
    time_limit=settings.JOBS_NOTIFY_LEASE_SECONDS,
)
def notify_late(self, event: str, about: dict, sent: list[str] | None = None) -> str:
    """Email and call the webhook about a late run (`run.late`) or tick (`schedule.late`)."""
    result = deadlines.alert_send(event=event, about=about, sent=sent or [], attempt=self.request.retries + 1)
    if result.retry_in is not None:
        # The channels that went out ride along, so that a retry sends only the others.
        raise self.retry(args=[event, about, result.sent], countdown=result.retry_in)
    return result.state


@shared_task(name="jobsite.notify_sweep", ignore_result=True)
def notify_sweep() -> int:
    """Queue again the notifications whose task was lost (run by beat every minute)."""
    return notifications.notification_sweep()


@shared_task(name="jobsite.purge_runs", ignore_result=True)
def purge_runs() -> str | None:
    """Delete the runs older than JOBS_RUN_RETENTION_DAYS (sent by beat daily).

    Reads the setting when it runs: the beat entry stays in the database after
    retention is turned off, and then this does nothing."""
    days = settings.JOBS_RUN_RETENTION_DAYS
    if not days:
        return None
    summary = str(retention.runs_purge(older_than_days=days))
    logger.info("purge_runs: %s", summary)
    return summary
