"""The dispatcher, run by beat's `jobsite.dispatch` every second: plans each
schedule's next tick ahead as a `scheduled` run, releases the runs whose time has
come (written `queued`, then published) and those of backfills that have room for more
(jobs/schedules/backfill.py), and sweeps the runs whose publish failed. Each
batch is claimed with locks that skip what another dispatcher holds, in its own
transaction, and published once that commits, so several dispatchers never plan or
release a tick twice; a tick due before beat's next dispatch gets a dispatch of
its own, at its moment. It also finds the runs past their deadline and the
schedule ticks that did not succeed in time (deadlines.py). Why and how: docs/architecture.md, "The dispatcher".
"""

import json
import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F, QuerySet, prefetch_related_objects
from django.utils import timezone

from jobs.core.claims import claim as _claim
from jobs.core.errors import ServiceError
from jobs.core.statements import insert_shared
from jobs.models import Backfill, JobType, Run, Schedule, latest_revision_id, republish_deadline
from jobs.runs.trigger import run_build, runs_publish
from jobs.schedules import deadlines
from jobs.workflows import steps as workflow_steps
from jobsite.celery import app

logger = logging.getLogger(__name__)

BATCH_SIZE = 1000
# A second dispatch sent for a big tick (_call_for_help), or for the next tick's moment
# (_dispatch_at_next_tick), is dropped if not taken by then, as beat's are.
HELP_EXPIRES_SECONDS = 10

# What differs between the runs a batch plans, with the rest the same for all:
# each tick's own, and each checked (job type, params) pair's.
TICK_FIELDS = ("id", "schedule", "schedule_tick", "scheduled_for", "deadline_at")
PAIR_FIELDS = ("job_type", "params", "job_type_revision")


def dispatch_due(now: datetime | None = None) -> dict[str, int]:
    """Release every due scheduled run, then move schedules past their tick on
    and plan the ticks coming within reach; then sweep unpublished runs."""
    now = now or timezone.now()
    # The tick's work first: its runs released and published before later
    # ticks are planned.
    released, published = _release_and_publish(now)
    while _advance_batch(now) is not None:
        pass
    planned = late = 0
    while (batch := _plan_batch(now)) is not None:
        planned += batch
        # Ticks planned just now that are due already: a schedule created or edited a
        # moment ago, one that missed ticks while nothing dispatched, or a tick so big
        # that planning it ran past its time. Released batch by batch, not once all
        # the other schedules are planned.
        late_released, late_published = _release_and_publish(now)
        late += late_released
        published += late_published
    backfilled = _release_backfills()
    published += _publish(backfilled)
    republished: list[Run] = []
    while batch := _republish_batch(timezone.now()):  # `now` may stand for a schedule clock ahead (tests)
        republished += batch
    late_runs, late_ticks = deadlines.deadlines_check(now)
    _dispatch_at_next_tick(timezone.now())
    return {
        "late_runs": late_runs,
        "late_ticks": late_ticks,
        "planned": planned,
        "released": released + late + len(backfilled),
        "published": published,
        "republished": runs_publish(republished),
    }


# --- Planning ------------------------------------------------------------------


def _plan_batch(now: datetime) -> int | None:
    """Claim up to BATCH_SIZE schedules whose next tick is within the planning
    horizon and not planned yet, and create each tick's run, `scheduled`, in
    one INSERT: no Run built for each, only its tick's values prepared
    (jobs/core/statements.py, insert_shared).

    Returns how many runs were planned, or None when no schedule needed it.
    """
    horizon = now + timedelta(seconds=settings.JOBS_SCHEDULE_PLAN_AHEAD_SECONDS)
    with transaction.atomic():
        due = Schedule.objects.filter(enabled=True, planned=False, next_run_at__lte=horizon).order_by("next_run_at")
        rows = list(_claim(due).values_list("pk", "job_type_id", "params", "next_run_at")[:BATCH_SIZE])
        if not rows:
            return None
        job_types = JobType.objects.in_bulk({job_type_id for _, job_type_id, _, _ in rows})
        # Each job type's latest revision read once, in this transaction: as a subquery
        # in each row, Django built and compiled it tick by tick (a third of planning's CPU).
        revisions = {job_type_id: latest_revision_id(job_type_id) for job_type_id in job_types}
        checked: dict[tuple, Run | ServiceError] = {}
        pairs: dict[tuple, int] = {}  # each checked pair's place in `templates`
        templates, ticks, skipped, workflow_runs = [], [], [], []
        for schedule_id, job_type_id, params, tick in rows:
            # Schedules share job types and often params: each pair is checked once.
            key = (job_type_id, json.dumps(params, sort_keys=True))
            if key not in checked:
                try:
                    job_type = job_types[job_type_id]
                    checked[key] = run_build(job_type=job_type, params=params, trigger=Run.Trigger.SCHEDULE)
                except ServiceError as exc:
                    checked[key] = exc
            template = checked[key]
            if isinstance(template, ServiceError):
                skipped.append((schedule_id, tick, str(template)))
                continue
            if key not in pairs:
                template.job_type_revision_id = revisions[job_type_id]
                pairs[key] = len(templates)
                templates.append(template)
            # TICK_FIELDS, then the tick's pair; its id made as the model makes it.
            run_id = Run._meta.pk.get_default()
            ticks.append((run_id, schedule_id, tick, tick, template.job_type.deadline_for(tick), pairs[key]))
            if template.job_type.kind == JobType.Kind.WORKFLOW:
                workflow_runs.append(run_id)
        # The tick is decided: planned, or skipped with its reason recorded.
        Schedule.objects.filter(pk__in=[row[0] for row in rows]).update(planned=True)
        _record_skips(skipped)
        # A tick that has a run already (planned again after an edit raced its
        # release, or cancelled) keeps it: the unique key drops the new one.
        insert_shared(
            Run(trigger=Run.Trigger.SCHEDULE, status=Run.Status.SCHEDULED, created_at=now),
            groups=templates,
            group_fields=PAIR_FIELDS,
            row_fields=TICK_FIELDS,
            rows=ticks,
            using=Run.objects.db,
        )
        if workflow_runs:
            # Those the unique key did not drop get their step runs.
            for run in Run.objects.filter(pk__in=workflow_runs):
                run.job_type = job_types[run.job_type_id]
                workflow_steps.create_step_runs(parent=run)
        return len(ticks)


def _advance_batch(now: datetime) -> int | None:
    """Claim up to BATCH_SIZE planned schedules whose tick is past and move
    their next_run_at on to the next tick after now (so ticks missed while
    nothing dispatched fire once). Their runs are the release's business."""
    with transaction.atomic():
        past = Schedule.objects.filter(enabled=True, planned=True, next_run_at__lte=now).order_by("next_run_at")
        timing = ("cron", "timezone", "interval_seconds", "start_at", "end_at", "created_at", "next_run_at")
        rows = list(_claim(past).values_list("pk", *timing)[:BATCH_SIZE])
        if not rows:
            return None
        # Schedules on the same cron and tick share their next one: computed once,
        # without a Schedule loaded for each.
        nexts: dict[tuple, datetime | None] = {}
        by_next: dict[datetime | None, list[int]] = {}
        for pk, *values in rows:
            fields = dict(zip(timing, values, strict=True))
            if fields["cron"]:
                fields["created_at"] = None  # a cron's ticks do not count from it, an interval's do
            key = tuple(fields.values())
            if key not in nexts:
                schedule = Schedule(**fields)
                nexts[key] = schedule.compute_next_run(max(now, schedule.next_run_at))
            by_next.setdefault(nexts[key], []).append(pk)
        # One UPDATE per distinct next tick: schedules on the same cron share it.
        for following, pks in by_next.items():
            Schedule.objects.filter(pk__in=pks).update(next_run_at=following, planned=False)
        return len(rows)


def _record_skips(skipped: list[tuple[int, datetime, str]]) -> None:
    for schedule_id, tick, reason in skipped:
        Schedule.objects.filter(pk=schedule_id).update(
            skipped_ticks=F("skipped_ticks") + 1, last_skipped_at=tick, last_skip_reason=reason[:300]
        )


# --- Release -------------------------------------------------------------------


def _release_and_publish(now: datetime) -> tuple[int, int]:
    """Release every due scheduled run, a batch at a time, each batch
    published as soon as its release commits: what a user waits for is the
    message in Redis. Another dispatcher that takes a dispatch meanwhile (the
    one a full batch sends at once, _call_for_help, or beat's next; on the
    dispatcher worker's other process, another machine's) claims the batches
    this one has not reached, so they publish side by side.
    How many were released and published."""
    released = published = 0
    job_types: dict[int, JobType] = {}
    while (batch := _release_batch(now)) is not None:
        if len(batch) == BATCH_SIZE and not released:
            _call_for_help()  # more may be due than this process publishes in a moment
        released += len(batch)
        published += _publish_runs(batch, job_types)
    return released, published


def _call_for_help() -> None:
    """Send one more dispatch now, for another dispatcher process to release and
    publish the batches this one has not reached, side by side with it, rather
    than from beat's next dispatch, up to a second later. Each dispatch that finds
    a full batch sends at most one, so a big tick draws in every dispatcher process
    and no more messages than its batches. Never in the way: a broker that does not
    take it at once leaves the work to this process and beat's next dispatch."""
    _send_dispatch("a second dispatch for a big tick", expires=HELP_EXPIRES_SECONDS)


def _dispatch_at_next_tick(now: datetime) -> None:
    """Send a dispatch for the moment the next planned run is due, if that comes
    before beat's next dispatch: beat's come once an interval at moments of its
    own, so a tick would be released up to an interval after it (half of one on
    average). The worker holds the message until then (its eta). One query on
    the (status, scheduled_for) index; a broker that does not take the message
    leaves the tick to beat's next dispatch."""
    ahead = now + timedelta(seconds=settings.JOBS_DISPATCH_INTERVAL_SECONDS)
    coming = Run.objects.filter(status=Run.Status.SCHEDULED, scheduled_for__gt=now, scheduled_for__lte=ahead)
    tick = coming.order_by("scheduled_for").values_list("scheduled_for", flat=True).first()
    if tick is not None:
        _send_dispatch("a dispatch for the next tick", eta=tick, expires=tick + timedelta(seconds=HELP_EXPIRES_SECONDS))


def _send_dispatch(what: str, **options) -> None:
    """Send one more `jobsite.dispatch` (send_task's `options`), once: the dispatch
    that sends it goes on without it if the broker does not take it at once."""
    try:
        app.send_task("jobsite.dispatch", retry=False, **options)
    except Exception:
        logger.warning("Could not send %s", what, exc_info=True)


# What publishing a released run reads of it (runs_publish, the executors): a
# thousand full rows, each with its own copy of its job type, cost more to load
# than to publish. The release's claim reads those it does not write itself.
PUBLISH_FIELDS = ("id", "job_type_id", "parent_id", "params", "status", "created_at", "queued_at")
CLAIMED_FIELDS = ("job_type_id", "parent_id", "params", "created_at")


def _release_batch(now: datetime) -> list[Run] | None:
    """Claim up to BATCH_SIZE `scheduled` runs whose time has come and release
    them in one UPDATE (`_release`), but for the ticks of `overlap: skip`
    schedules whose previous run is still active: those are skipped.

    Returns the runs released (to publish after commit) as publishing reads
    them, made from what the claim read and the release wrote rather than
    loaded again; or None when nothing was due.
    """
    with transaction.atomic():
        due = Run.objects.filter(status=Run.Status.SCHEDULED, scheduled_for__lte=now).order_by("scheduled_for")
        columns = ("pk", "schedule_id", "schedule_tick", "schedule__overlap", "job_type__kind", *CLAIMED_FIELDS)
        rows = list(_claim(due).values_list(*columns)[:BATCH_SIZE])
        if not rows:
            return None
        may_skip = {sid for _, sid, tick, overlap, *_ in rows if tick is not None and overlap == Schedule.Overlap.SKIP}
        busy = _schedules_with_active_runs(may_skip)
        skipped = [(pk, sid, tick) for pk, sid, tick, *_ in rows if sid in busy and tick is not None]
        if skipped:
            Run.objects.filter(pk__in=[pk for pk, _, _ in skipped]).delete()
            reason = "the previous run was still active (overlap: skip)"
            _record_skips([(sid, tick, reason) for _, sid, tick in skipped])
        skipped_ids = {pk for pk, _, _ in skipped}
        released = [(pk, kind, claimed) for pk, _, _, _, kind, *claimed in rows if pk not in skipped_ids]
        at = timezone.now()
        _release(Run.objects.filter(status=Run.Status.SCHEDULED), [(pk, kind) for pk, kind, _ in released], at)
        return [_released_run(pk, kind, claimed, at) for pk, kind, claimed in released]


# The publish fields in the model's order, as Model.from_db takes them.
_PUBLISH_ATTNAMES = [field.attname for field in Run._meta.concrete_fields if field.attname in PUBLISH_FIELDS]


def _released_run(pk, kind: str, claimed: list, now: datetime) -> Run:
    """A run released at `now`, as its publish reads it (PUBLISH_FIELDS): its
    CLAIMED_FIELDS as claimed, its status and queued_at as `_release` wrote them."""
    status = _release_status(kind)
    values = {
        "id": pk,
        **dict(zip(CLAIMED_FIELDS, claimed, strict=True)),
        "status": status,
        "queued_at": now if status == Run.Status.QUEUED else None,
    }
    return Run.from_db(Run.objects.db, _PUBLISH_ATTNAMES, [values[name] for name in _PUBLISH_ATTNAMES])


def _release_status(kind: str) -> str:
    """The status a run of this kind is released in (see _release)."""
    return Run.Status.PENDING if kind == JobType.Kind.WORKFLOW else Run.Status.QUEUED


def _release(runs: QuerySet, released: list[tuple], now: datetime, **changes) -> None:
    """Release the runs (id, job type kind) of `runs` given, at `now`: written `queued` by
    the UPDATE that releases them, so that their publish sends them with QUEUED_HEADER
    (the worker's start need not wait for the disk) and needs no `queued` UPDATE after
    it. Until the broker has a run's message it is not queued, for a moment: a publish
    that fails puts it back to `pending` for the sweeper (runs_publish matches the
    `queued_at` written here), and a dispatcher that dies between this commit and its
    publish leaves its batch to the lost-message check (jobs/runs/lost.py). A workflow
    run has no message, so no lost check looks for it: it is released `pending`, and
    marked `queued` once its first steps are published; the sweeper covers it meanwhile."""
    by_status: dict[str, list] = {}
    for pk, kind in released:
        by_status.setdefault(_release_status(kind), []).append(pk)
    for status, ids in by_status.items():
        runs.filter(pk__in=ids).update(
            status=status,
            released_at=now,
            queued_at=now if status == Run.Status.QUEUED else None,
            republish_after=republish_deadline(),
            **changes,
        )


def _release_backfills() -> list:
    """Release the waiting runs of each backfill, oldest tick first, as many as
    its `concurrency` leaves room for beside its active runs; a backfill with
    none left waiting is done. The ids released (to publish after commit)."""
    releasing = Backfill.objects.filter(released_all_at__isnull=True, cancelled_at__isnull=True)
    if not releasing.exists():  # the usual answer, without a write transaction
        return []
    released: list = []
    with transaction.atomic():
        # Locked, so that two dispatchers do not both fill the same free slots.
        for backfill in _claim(releasing.order_by("created_at").only("pk", "concurrency"))[:BATCH_SIZE]:
            runs = Run.objects.filter(backfill=backfill)
            free = backfill.concurrency - runs.filter(status__in=Run.ACTIVE_STATUSES).count()
            if free <= 0:
                continue
            waiting = runs.filter(status=Run.Status.WAITING).order_by("schedule_tick")
            # A backfill's runs share its schedule's job type, and their deadline
            # counts from their release: a past tick is not late for being past.
            rows = list(waiting.values_list("pk", "job_type__kind", "job_type__deadline_seconds")[:free])
            if not rows:
                backfill.mark_released_all()
                continue
            now, deadline_seconds = timezone.now(), rows[0][2]
            deadline_at = now + timedelta(seconds=deadline_seconds) if deadline_seconds else None
            _release(runs.filter(status=Run.Status.WAITING), [row[:2] for row in rows], now, deadline_at=deadline_at)
            released += [pk for pk, _, _ in rows]
    return released


def _schedules_with_active_runs(schedule_ids: set[int]) -> set[int]:
    if not schedule_ids:
        return set()
    active = Run.objects.filter(schedule_id__in=schedule_ids, status__in=Run.ACTIVE_STATUSES)
    return set(active.values_list("schedule_id", flat=True).distinct())


def _publish(run_ids: list) -> int:
    """Publish released runs (a backfill's), loaded a batch at a time; how many the broker took."""
    published = 0
    job_types: dict[int, JobType] = {}
    for start in range(0, len(run_ids), BATCH_SIZE):
        runs = list(Run.objects.filter(pk__in=run_ids[start : start + BATCH_SIZE]).only(*PUBLISH_FIELDS))
        published += _publish_runs(runs, job_types)
    return published


def _publish_runs(runs: list[Run], job_types: dict[int, JobType]) -> int:
    """Publish released runs, each with its job type, read once for all batches
    (kept in `job_types`); how many the broker took."""
    job_types |= JobType.objects.in_bulk({run.job_type_id for run in runs} - job_types.keys())
    for run in runs:
        run.job_type = job_types[run.job_type_id]
    # Released runs are top-level (schedule ticks, backfills); a step among them would
    # publish on its workflow's queue, read here for all at once rather than one by one.
    prefetch_related_objects([run for run in runs if run.parent_id], "parent__job_type")
    return runs_publish(runs)


# --- Sweeper -------------------------------------------------------------------


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
