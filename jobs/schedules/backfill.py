"""Backfill: the runs of a schedule's past ticks in [start, end).

`backfill_create` records a Backfill and, in the same transaction, one run per
tick that has none yet (trigger `backfill`, `schedule_tick` = the tick, status
`waiting`); the unique key on (schedule, schedule_tick) keeps a tick to one run
however many backfills or dispatchers ask for it. The dispatcher
(jobs/schedules/dispatcher.py, `_release_backfills`) releases them oldest tick
first, never more active at once than the backfill's `concurrency`.
`backfill_cancel` stops the release and cancels the runs not started yet.
Docs: docs/guide.md, "Backfill".
"""

import contextlib
import math
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import Count
from django.utils import timezone

from jobs.core.cron import next_cron_fire
from jobs.core.errors import Conflict, InvalidInput
from jobs.models import Backfill, JobType, Run, Schedule, latest_revision_id
from jobs.runs.trigger import run_build, run_cancel
from jobs.workflows import steps as workflow_steps

# Counting a cron's ticks stops here: a range far above the limit is refused
# without walking every minute of it.
COUNT_LIMIT_FACTOR = 2
_next_cron_fire = next_cron_fire.__wrapped__  # uncached: a backfill's ticks would push out the dispatcher's


def backfill_ticks(schedule: Schedule, start: datetime, end: datetime, limit: int) -> tuple[list[datetime], int]:
    """The schedule's ticks in [start, end) (within its own start_at/end_at), and
    how many there are; only the first `limit` + 1 are listed. For a cron, the
    count stops at COUNT_LIMIT_FACTOR · limit."""
    if schedule.start_at and start < schedule.start_at:
        start = schedule.start_at
    if schedule.end_at and end > schedule.end_at:
        end = schedule.end_at + timedelta(microseconds=1)  # end_at is the last moment it may fire
    if end <= start:
        return [], 0
    if schedule.cron:
        ticks: list[datetime] = []
        count, tick = 0, start - timedelta(microseconds=1)
        while count < COUNT_LIMIT_FACTOR * limit:
            tick = _next_cron_fire(schedule.cron, schedule.timezone, tick)
            if tick >= end:
                break
            count += 1
            if len(ticks) <= limit:
                ticks.append(tick)
        return ticks, count
    # An interval fires at anchor + k · interval, k of any sign for a backfill.
    anchor, step = schedule.start_at or schedule.created_at, timedelta(seconds=schedule.interval_seconds)
    first = math.ceil((start - anchor) / step)
    last = math.ceil((end - anchor) / step)  # exclusive
    count = max(0, last - first)
    return [anchor + k * step for k in range(first, first + min(count, limit + 1))], count


def backfill_concurrency(*, schedule: Schedule, requested: int | None = None) -> int:
    """How many runs of a backfill may be active at once: the request's, else the
    schedule's backfill_concurrency, else JOBS_BACKFILL_CONCURRENCY; never more
    than the job type's max_concurrency (its workers would hold the rest back)."""
    concurrency = requested or schedule.backfill_concurrency
    limit = schedule.job_type.max_concurrency
    if concurrency is None:
        concurrency = limit or settings.JOBS_BACKFILL_CONCURRENCY
    return min(concurrency, limit) if limit else concurrency


def backfill_create(
    *,
    schedule: Schedule,
    start: datetime,
    end: datetime,
    concurrency: int | None = None,
    requested_by: AbstractBaseUser | None = None,
) -> Backfill:
    """Record a backfill of the schedule's ticks in [start, end) and create the
    run of each tick that has none, `waiting` for the dispatcher to release it.

    Raises InvalidInput for a range that is empty, in the future or holds more
    than JOBS_BACKFILL_MAX_TICKS ticks; run_build's errors (a disabled job type,
    params that no longer match its schema) as they are.
    """
    now = timezone.now()
    if end <= start:
        raise InvalidInput({"end": ["Must be after start."]})
    if end > now:
        problem = (
            f"{end.isoformat()} is in the future: a backfill runs past ticks, the schedule fires the coming ones "
            "itself. Give an end up to now."
        )
        raise InvalidInput({"end": [problem]})
    maximum = settings.JOBS_BACKFILL_MAX_TICKS
    ticks, count = backfill_ticks(schedule, start, end, maximum)
    if count > maximum:
        counted = f"{count}" if count < COUNT_LIMIT_FACTOR * maximum else f"at least {count}"
        problem = (
            f"[{start.isoformat()}, {end.isoformat()}) holds {counted} ticks of schedule '{schedule.name}', "
            f"more than the {maximum} JOBS_BACKFILL_MAX_TICKS allows: backfill a shorter range at a time."
        )
        raise InvalidInput({"end": [problem]})
    if not ticks:
        problem = (
            f"No tick of schedule '{schedule.name}' ({schedule.timing_display}) falls in "
            f"[{start.isoformat()}, {end.isoformat()}): give a wider range."
        )
        raise InvalidInput({"start": [problem]})
    if requested_by is not None and not requested_by.is_authenticated:
        requested_by = None
    template = run_build(job_type=schedule.job_type, params=schedule.params, trigger=Run.Trigger.BACKFILL)
    with transaction.atomic():
        # Two backfills of one schedule at once: the second waits for the first,
        # then finds its runs (the unique key would drop them anyway).
        list(Schedule.objects.select_for_update().filter(pk=schedule.pk).values_list("pk", flat=True))
        backfill = Backfill.objects.create(
            schedule=schedule,
            start=start,
            end=end,
            concurrency=backfill_concurrency(schedule=schedule, requested=concurrency),
            requested_by=requested_by,
            created_at=now,
        )
        existing = Run.objects.filter(schedule=schedule, schedule_tick__gte=ticks[0], schedule_tick__lte=ticks[-1])
        taken = set(existing.values_list("schedule_tick", flat=True))
        revision_id = latest_revision_id(template.job_type.pk)  # once, not a subquery per tick
        runs = [
            Run(
                job_type=template.job_type,
                params=template.params,
                trigger=Run.Trigger.BACKFILL,
                status=Run.Status.WAITING,
                schedule=schedule,
                schedule_tick=tick,
                backfill=backfill,
                requested_by=requested_by,
                created_at=now,
                republish_after=None,  # not the sweeper's until released
                # The definition it will run, as a trigger records it; its deadline is set at its release.
                job_type_revision_id=revision_id,
            )
            for tick in ticks
            if tick not in taken
        ]
        Run.objects.bulk_create(runs, ignore_conflicts=True)
        created = Run.objects.filter(backfill=backfill)
        if template.job_type.kind == JobType.Kind.WORKFLOW:
            for run in created.select_related("job_type"):
                workflow_steps.create_step_runs(parent=run)
        backfill.total = created.count()
        backfill.skipped = len(ticks) - backfill.total
        backfill.save(update_fields=["total", "skipped"])
    return backfill


def backfill_cancel(*, backfill: Backfill, cancelled_by: AbstractBaseUser | None = None) -> int:
    """Stop releasing the backfill's runs and cancel those not started yet (the
    waiting ones, and those released but not running); runs already running go
    on. Returns how many runs were cancelled."""
    if cancelled_by is not None and not cancelled_by.is_authenticated:
        cancelled_by = None
    with transaction.atomic():
        if not backfill.mark_cancelled(cancelled_by=cancelled_by):
            raise Conflict(f"Backfill {backfill.pk} was cancelled already.")
        now = timezone.now()
        waiting = list(Run.objects.filter(backfill=backfill, status=Run.Status.WAITING).values_list("pk", flat=True))
        ended = {"status": Run.Status.CANCELLED, "cancelled_by": cancelled_by, "cancelled_at": now, "finished_at": now}
        # Never published, so nothing to revoke; a waiting workflow run's steps wait with it.
        Run.objects.filter(parent_id__in=waiting, status__in=Run.NOT_TERMINAL).update(**ended)
        cancelled = Run.objects.filter(pk__in=waiting, status=Run.Status.WAITING).update(**ended)
    released = Run.objects.filter(backfill=backfill, status__in=[Run.Status.PENDING, Run.Status.QUEUED])
    for run in released.select_related("job_type"):
        with contextlib.suppress(Conflict):  # it ended meanwhile
            run_cancel(run=run, cancelled_by=cancelled_by)
            cancelled += 1
    return cancelled


def backfills_progress(backfills: list[Backfill]) -> None:
    """Set `progress` on each backfill: its runs' count per status, plus `done`
    (those ended) and `active`. One query, on the runs' backfill index."""
    counts: dict[int, dict[str, int]] = {backfill.pk: {} for backfill in backfills}
    rows = (
        Run.objects.filter(backfill__in=[b.pk for b in backfills])
        .values_list("backfill_id", "status")
        .annotate(n=Count("pk"))
        .order_by()
    )
    for backfill_id, status, n in rows:
        counts[backfill_id][status] = n
    for backfill in backfills:
        by_status = counts[backfill.pk]
        backfill.progress = {
            "done": sum(by_status.get(s, 0) for s in Run.TERMINAL_STATUSES),
            "active": sum(by_status.get(s, 0) for s in Run.ACTIVE_STATUSES),
            "waiting": by_status.get(Run.Status.WAITING, 0),
            "succeeded": by_status.get(Run.Status.SUCCEEDED, 0),
            "failed": by_status.get(Run.Status.FAILED, 0),
            "cancelled": by_status.get(Run.Status.CANCELLED, 0),
        }
