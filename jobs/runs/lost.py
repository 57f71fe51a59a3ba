"""The lost-message check: publish again the runs whose broker message is gone.

A run is `queued` once Redis has its message, and `retrying` while its retry's
message waits for its time. Redis can lose a message (restarted without
persistence, a key evicted or deleted, a worker's connection dropped between
taking a message and recording it as delivered): the run would wait for ever,
an `overlap: skip` schedule would skip every tick behind it, and a workflow
holding it would hang. Beat sends this check every JOBS_QUEUED_CHECK_SECONDS.
It looks at the runs `queued` for longer than that (or `retrying` that long
past their retry time), at most BATCH_SIZE of them, oldest first, and
publishes again those whose message is nowhere: not in its queue's lists,
not delivered to a worker (Redis's unacked hash), and not held by a worker
that answers (`celery inspect query_task`).

A message is in none of those places for a moment while a worker takes it (it
pops it from the list, then records it as delivered) and while Redis gives an
unacknowledged one back to its queue. So Redis is looked at twice, on either
side of asking the workers (which takes MONITOR_INSPECT_TIMEOUT), and a run is
published again only if both looks missed its message. The republish is
claimed with a conditional UPDATE (the status and time as read), so two
checks never both publish a run, and a run that started meanwhile is left
alone. It is the same task id: should the first message turn up after all,
whichever comes second finds the run running or ended and is dropped
(run_started in jobs/runs/tracking.py), for every task whose base is RunTask.
"""

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from jobs.models import JobType, Run
from jobs.runs import broker
from jobs.runs.executors import executor_for, queue_of

logger = logging.getLogger(__name__)

BATCH_SIZE = 1000


def _candidates(now: datetime) -> list[Run]:
    """Runs that should have started by now: queued, or retrying past their time, for longer than the check's period."""
    before = now - timedelta(seconds=settings.JOBS_QUEUED_CHECK_SECONDS)
    waiting = Q(status=Run.Status.QUEUED, queued_at__lte=before) | Q(
        status=Run.Status.RETRYING, scheduled_for__lte=before, republish_after__isnull=True
    )  # a retry whose publish failed has `republish_after`: the sweeper's (jobs/schedules/dispatcher.py)
    runs = (
        Run.objects.filter(waiting)
        .exclude(job_type__kind=JobType.Kind.WORKFLOW)  # no message of its own: its steps have theirs
        .select_related("job_type", "parent__job_type")
        .order_by("queued_at")
    )
    return list(runs[:BATCH_SIZE])


def _missing(runs: list[Run]) -> list[Run] | None:
    """The runs whose message Redis does not have; None if Redis cannot tell."""
    ids_by_queue: dict[str, set[str]] = {}
    for run in runs:
        ids_by_queue.setdefault(queue_of(run), set()).add(str(run.pk))
    found = broker.messages_in_redis(ids_by_queue)
    if found is None:
        return None
    return [run for run in runs if str(run.pk) not in found]


def runs_republish_lost(now: datetime | None = None) -> int:
    """Publish again the runs whose message is lost; how many were."""
    now = now or timezone.now()
    runs = _candidates(now)
    if not runs:
        return 0
    missing = _missing(runs)
    if not missing:
        return 0
    held = broker.held_by_workers(str(run.pk) for run in missing)
    if held is None:
        return 0
    missing = _missing([run for run in missing if str(run.pk) not in held])  # the second look
    republished = 0
    for run in missing or []:
        if _republish(run):
            republished += 1
    if republished:
        logger.warning("Published %d run(s) again whose message the broker had lost", republished)
    return republished


def _republish(run: Run) -> bool:
    """Claim the run (still as read) and publish its task again, now."""
    seen = Q(status=Run.Status.QUEUED, queued_at=run.queued_at) | Q(
        status=Run.Status.RETRYING, scheduled_for=run.scheduled_for, attempts=run.attempts
    )
    now = timezone.now()
    if not Run.objects.filter(seen, pk=run.pk).update(status=Run.Status.QUEUED, queued_at=now):
        return False  # it started, ended or was published again meanwhile
    logger.warning(
        "Run %s was %s since %s but its message is not in queue %r nor with any worker: publishing it again",
        run.pk, run.status, run.queued_at if run.status == Run.Status.QUEUED else run.scheduled_for, queue_of(run),
    )  # fmt: skip
    try:
        executor_for(run.job_type.kind).publish(run)
    except Exception:
        # The broker went away: published again by a later check, as nothing holds it.
        logger.warning("Could not publish run %s again", run.pk, exc_info=True)
        return False
    return True
