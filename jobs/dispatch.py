"""The dispatcher: fires due schedules, releases due `scheduled` runs, and
publishes the runs whose publish failed (the sweeper).

celery beat (django-celery-beat's DatabaseScheduler) sends `jobsite.dispatch`
every second; whichever worker takes it claims what is due in batches, each in
its own transaction, and publishes the runs once committed. Claims are row
locks that skip rows another dispatcher holds (PostgreSQL) or whole-database
write transactions (SQLite, BEGIN IMMEDIATE), so several dispatchers at once —
two beats by mistake, many workers — never fire a tick twice; the unique
(schedule, schedule_tick) key on runs stands behind that.

The sweeper. A trigger commits its run `pending` and publishes it after
commit; when the broker is down the run stays `pending` (and a retry whose
publish failed stays `retrying`, marked for the sweeper), and the API still
answered 201. Every run carries `republish_after`: for a new `pending` run,
JOBS_PENDING_REPUBLISH_SECONDS after it became pending. The sweeper claims the
runs whose time has come (the same row locks as above), moves their
`republish_after` on by that much in the claiming transaction, and publishes
them once committed; so another dispatcher skips them, and a publish that
fails again is tried again later. The dispatcher runs only when beat's message
reached a worker, so while Redis is down nothing is swept, and right after it
is back every run waiting longer than the grace period goes out at once.

Residual risk, said plainly: a run whose first publish reached Redis but was
not yet recorded `queued` when the grace period ended (a publish or a web
process stalled that long, or killed between the two) is published twice.
The worker's start check (services.run_started) then runs it once: the second
message finds the run running or ended and is dropped. Only if the first
message's worker is also lost and that message is handed out again while the
second one runs would it run twice.
"""

import logging
from datetime import datetime

from django.db import IntegrityError, connection, transaction
from django.db.models import F
from django.utils import timezone

from . import workflows
from .models import JobType, Run, Schedule, republish_deadline
from .services import ServiceError, run_build, runs_publish

logger = logging.getLogger(__name__)

BATCH_SIZE = 1000


def _claim(queryset):
    """Lock the rows a batch claims, skipping those another dispatcher holds."""
    if connection.features.has_select_for_update_skip_locked:
        return queryset.select_for_update(skip_locked=True, of=("self",))
    return queryset  # SQLite: the IMMEDIATE transaction already excludes other writers


def dispatch_due(now: datetime | None = None) -> dict[str, int]:
    """Fire every due schedule and release every due scheduled run."""
    now = now or timezone.now()
    # Every batch is committed before any is published: how late a tick's runs
    # are recorded must not grow with the time it takes to publish the others.
    fired: list[Run] = []
    while (batch := _fire_schedule_batch(now)) is not None:
        fired += batch
    released: list[Run] = []
    while batch := _release_scheduled_batch(now):
        released += batch
    republished: list[Run] = []
    while batch := _republish_batch(now):
        republished += batch
    return {
        "fired": runs_publish(fired),
        "released": runs_publish(released),
        "republished": runs_publish(republished),
    }


def _fire_schedule_batch(now: datetime) -> list[Run] | None:
    """Claim up to BATCH_SIZE due schedules, create their runs and move them on.

    Returns the runs created (to publish after commit), or None when nothing
    was due.
    """
    with transaction.atomic():
        due = Schedule.objects.filter(enabled=True, next_run_at__lte=now).select_related("job_type")
        schedules = list(_claim(due.order_by("next_run_at"))[:BATCH_SIZE])
        if not schedules:
            return None
        busy = _schedules_with_active_runs([s.pk for s in schedules if s.overlap == Schedule.Overlap.SKIP])
        runs, skipped = [], []
        for schedule in schedules:
            tick = schedule.next_run_at
            # Ticks missed while nothing dispatched (the stack was down) are
            # fired once, as this one, not once each.
            schedule.next_run_at = schedule.compute_next_run(max(now, tick))
            if schedule.pk in busy:
                skipped.append((schedule, tick, "the previous run was still active (overlap: skip)"))
                continue
            try:
                runs.append(
                    run_build(
                        job_type=schedule.job_type,
                        params=schedule.params,
                        trigger=Run.Trigger.SCHEDULE,
                        schedule=schedule,
                        schedule_tick=tick,
                    )
                )
            except ServiceError as exc:
                skipped.append((schedule, tick, str(exc)))
        _save_next_runs(schedules)
        for schedule, tick, reason in skipped:
            Schedule.objects.filter(pk=schedule.pk).update(
                skipped_ticks=F("skipped_ticks") + 1, last_skipped_at=tick, last_skip_reason=reason[:300]
            )
        inserted = _insert(runs)
        for run in inserted:
            if run.job_type.kind == JobType.Kind.WORKFLOW:
                workflows.create_step_runs(parent=run)
        return inserted


def _save_next_runs(schedules: list[Schedule]) -> None:
    """One UPDATE per distinct next fire: schedules on the same cron share it."""
    by_next: dict[datetime | None, list[int]] = {}
    for schedule in schedules:
        by_next.setdefault(schedule.next_run_at, []).append(schedule.pk)
    for next_run_at, pks in by_next.items():
        Schedule.objects.filter(pk__in=pks).update(next_run_at=next_run_at)


def _schedules_with_active_runs(schedule_ids: list[int]) -> set[int]:
    if not schedule_ids:
        return set()
    active = Run.objects.filter(schedule_id__in=schedule_ids, status__in=Run.NOT_TERMINAL)
    return set(active.values_list("schedule_id", flat=True).distinct())


def _insert(runs: list[Run]) -> list[Run]:
    """Insert the runs; one whose (schedule, tick) exists already is dropped."""
    try:
        with transaction.atomic():
            Run.objects.bulk_create(runs)
        return runs
    except IntegrityError:
        pass
    inserted = []
    for run in runs:
        try:
            with transaction.atomic():
                run.save(force_insert=True)
            inserted.append(run)
        except IntegrityError:
            logger.warning("Schedule %s tick %s already fired; not firing it again", run.schedule_id, run.schedule_tick)
    return inserted


def _release_scheduled_batch(now: datetime) -> list[Run]:
    """Claim up to BATCH_SIZE `scheduled` runs whose time has come and make them `pending`."""
    with transaction.atomic():
        due = Run.objects.filter(status=Run.Status.SCHEDULED, scheduled_for__lte=now).select_related("job_type")
        runs = list(_claim(due.order_by("scheduled_for"))[:BATCH_SIZE])
        if runs:
            Run.objects.filter(pk__in=[r.pk for r in runs], status=Run.Status.SCHEDULED).update(
                status=Run.Status.PENDING, republish_after=republish_deadline()
            )
            for run in runs:
                run.status = Run.Status.PENDING
        return runs


def _republish_batch(now: datetime) -> list[Run]:
    """Claim up to BATCH_SIZE runs the broker never got whose `republish_after`
    has come: `pending` ones, and `retrying` ones whose retry was not published
    (those have `republish_after` set; the others have none). They become
    `pending`, and are not claimed again before another grace period."""
    due = Run.objects.filter(status__in=[Run.Status.PENDING, Run.Status.RETRYING], republish_after__lte=now)
    if not due.exists():  # the usual answer, without a write transaction
        return []
    with transaction.atomic():
        runs = list(_claim(due.select_related("job_type", "parent__job_type").order_by("republish_after"))[:BATCH_SIZE])
        if runs:
            Run.objects.filter(pk__in=[r.pk for r in runs]).update(
                status=Run.Status.PENDING, republish_after=republish_deadline()
            )
            for run in runs:
                run.status = Run.Status.PENDING
    if runs:
        logger.warning("Publishing %d run(s) again that the broker did not get", len(runs))
    return runs
