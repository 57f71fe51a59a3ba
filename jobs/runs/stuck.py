"""The stuck check: retry or fail the runs left `running` by a worker that is gone.

A worker that dies with its pool (killed, out of memory, machine lost) leaves
its runs `running`. Redis hands their tasks out again after
CELERY_VISIBILITY_TIMEOUT (an hour by default), and the worker's start check
then runs them again or fails them (tracking.run_started); the stuck check,
sent by beat every JOBS_STUCK_CHECK_SECONDS, is sooner. A run still `running`
JOBS_STUCK_MARGIN_SECONDS after its job type's hard time limit cannot still be
running on a live prefork worker, which would have killed it at that limit;
unless a worker reports it as active (pools that do not enforce time limits),
its attempt is lost ("Worker lost"): it is retried like any failed attempt
while its job type's max_retries allows (after the backoff; the lost
attempt's message is dropped from Redis, which would otherwise hand it out
again later), and fails otherwise. Either frees its max_concurrency slot.

The query reads only `running` runs (the status prefix of an index; there are
no more of them than worker processes) and the workers are asked only when one
is overdue.
"""

import logging
from collections import Counter
from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

from jobs.models import JobType, Run
from jobs.runs import tracking
from jobsite.celery import app

logger = logging.getLogger(__name__)


def overdue_runs(now: datetime) -> list[Run]:
    """`running` runs past their hard time limit plus the margin."""
    margin = timedelta(seconds=settings.JOBS_STUCK_MARGIN_SECONDS)
    # No job type's hard limit is shorter than a 1 s soft limit plus the grace.
    shortest = timedelta(seconds=1 + settings.JOBS_HARD_TIMEOUT_GRACE_SECONDS)
    running = (
        Run.objects.filter(status=Run.Status.RUNNING, started_at__lte=now - shortest - margin)
        .exclude(job_type__kind=JobType.Kind.WORKFLOW)  # runs no task of its own: its steps do
        .select_related("job_type", "parent__job_type")
    )
    return [run for run in running if run.started_at + timedelta(seconds=run.job_type.hard_time_limit) + margin <= now]


def active_task_ids() -> set[str] | None:
    """The ids of the tasks the workers that answer are executing; None if they cannot be asked."""
    try:
        replies = app.control.inspect(timeout=settings.MONITOR_INSPECT_TIMEOUT).active() or {}
    except Exception:
        logger.warning("Could not ask the workers what they run; not checking for stuck runs now", exc_info=True)
        return None
    return {task["id"] for tasks in replies.values() for task in tasks or []}


def runs_fail_stuck(now: datetime | None = None) -> int:
    """Retry, or fail when no retries are left, the overdue runs that no worker
    runs; how many were retried or failed."""
    now = now or timezone.now()
    overdue = overdue_runs(now)
    if not overdue:
        return 0
    active = active_task_ids()
    if active is None:
        return 0
    outcomes: Counter[str] = Counter()
    for run in overdue:
        if str(run.pk) in active:
            logger.warning("Run %s is past its hard time limit but %s still runs it", run.pk, run.worker)
            continue
        error = (
            f"Worker lost: {run.worker or 'its worker'} no longer runs it. Still running "
            f"{(now - run.started_at).total_seconds():.0f} s after attempt {run.attempts} started, past the "
            f"hard time limit of {run.job_type.hard_time_limit} s, and no worker reports it as active"
        )
        outcome = tracking.run_lost(run=run, error=error)
        if outcome:
            outcomes[outcome] += 1
    if outcomes:
        logger.warning(
            "Runs whose worker is gone: %d retried, %d failed",
            outcomes[Run.Status.RETRYING], outcomes[Run.Status.FAILED],
        )  # fmt: skip
    return outcomes.total()
