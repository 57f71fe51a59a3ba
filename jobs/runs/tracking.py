"""The worker side of a run: its attempts start, end, retry, or are found lost.

Called by the worker's Celery signal handlers and result backend
(jobs/worker/). Each change is a conditional UPDATE on the run
(Run.mark_*), so that a redelivered or late message never moves a run
backwards.
"""

import contextlib
import functools
import json
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import DatabaseError, transaction
from django.db.models import F
from django.utils import timezone

from jobs import notifications
from jobs.core import statements
from jobs.core.backoff import backoff
from jobs.models import JobType, NotifyOn, Run
from jobs.runs import broker
from jobs.runs.executors import WAITS_HEADER, executor_for
from jobs.runs.trigger import run_failure_hook, runs_publish, workflow_advance

logger = logging.getLogger(__name__)

# Tracking, called by the worker's Celery signal handlers (jobs/worker/signals.py).
# A step run's end always advances its workflow run, even when the end was
# already recorded (a redelivered task): advancing is idempotent, and a worker
# that died between the two must not leave the workflow stuck.


def _parent_id(run_id: str, known: str | None):
    """The run's workflow run id: from its message when it says ("" for none), else looked up."""
    if known is not None:
        return known or None
    return Run.objects.filter(pk=run_id).values_list("parent_id", flat=True).first()


def _known(run_id) -> Run:
    """A run known by its id alone, for a transition: from_db computes none of the
    field defaults that Run(pk=...) computes, some forty, on every start and end."""
    return Run.from_db(None, ["id"], [run_id])


@dataclass
class LateStart:
    """A start not written when its task began (run_started's `defer`): the
    worker writes it if the task still runs a moment later (jobs/worker/start_marks.py),
    or with the run's end (run_succeeded), or before a failure is recorded."""

    run: Run  # as read just before its task ran (Run.read_for_start)
    worker: str
    at: datetime

    @property
    def attempt(self) -> int:
        """The number of the attempt it starts."""
        return self.run.attempts + 1

    def write(self) -> bool:
        """Write it now; whether it applied (not if the run changed since it was read)."""
        return self.run.mark_started_late(worker=self.worker, at=self.at)


@dataclass
class Start:
    """What the worker does with a run's task once received (jobs/worker/task_base.py acts on it)."""

    go: bool
    wait_for_slot: Run | None = None  # its job type is at max_concurrency: publish it again a little later
    late: LateStart | None = None  # it goes, its start not written yet


GO, SKIP = Start(go=True), Start(go=False)


def run_started(
    *,
    run_id: str,
    worker: str,
    parent_id: str | None = None,
    parent_running: bool = False,
    redelivered: bool = False,
    can_hold: bool = True,
    written_queued: bool = False,
    defer: bool = False,
) -> Start:
    """A task of this run is about to execute: start an attempt, or say why not.

    The usual case (a job type without max_concurrency, the run queued) is one
    UPDATE.
    Otherwise the run is read, and:
    - ended already (cancelled, or a late duplicate message): skip the task;
    - `running` and the message was handed out again (`redelivered`): the
      worker that ran it was lost (killed, its process died). That attempt is
      recorded as lost; the run starts again if its job type's max_retries
      allows another attempt, and otherwise fails with "Worker lost";
    - `running` and the message is not a redelivery: a second message for the
      same run (the sweeper may publish a run twice, see jobs/schedules/dispatcher.py)
      while the first runs it: skip;
    - at max_concurrency: wait `queued`, without counting an attempt.
    `can_hold`: whether the task can be held back at all (it is a RunTask).
    A workflow's step marks its workflow run running, unless its message says
    the workflow run was running already (`parent_running`): one UPDATE less
    for every step but the first ones.
    `written_queued`: it was written `queued` durably before its publish, by its
    trigger, the dispatcher's release or its workflow's advance (the message's
    QUEUED_HEADER), so the start commits without waiting for the disk: a database
    crash that loses it leaves the run `queued`, which only the lost-message check
    publishes again, and not while Redis holds the message for the worker running it.
    Any other run's start is durable: it may be `pending` under it, which the sweeper
    would publish again, and a second worker would run it.
    `defer`: the worker can write the start later (a LateStart, jobs/worker/start_marks.py).
    A run written `queued` whose job type has no max_concurrency, and that is not
    one of the first steps of its workflow run, is then only read
    (a SELECT: no write, no commit, and on SQLite no take of the write lock), and
    its start is written with its end, one UPDATE, unless the task still runs a
    moment later (JOBS_START_MARK_DELAY_SECONDS) or fails. Until then the run shows
    `queued` while its task runs. Why it is safe: docs/architecture.md, "The hot path".
    """
    if starts_with_read(
        parent_id=parent_id,
        parent_running=parent_running,
        can_hold=can_hold,
        written_queued=written_queued,
        defer=defer,
    ):
        at = timezone.now()
        run = Run.read_for_start(run_id)
        # `pending` (its publish may have failed after all): the sweeper may publish it again.
        if run is not None and run.status == Run.Status.QUEUED and run.job_type.max_concurrency is None:
            return Start(go=True, late=LateStart(run, worker, at))
    started = _known(run_id).mark_started(worker=worker, unlimited_only=can_hold, durable=not written_queued)
    if started:
        if not parent_running:
            _workflow_started(run_id, parent_id)
        return GO
    run = Run.objects.select_related("job_type", "parent__job_type").filter(pk=run_id).first()
    if run is None or run.is_terminal:
        return SKIP
    if run.status == Run.Status.RUNNING:
        start = _restart_lost(run, worker=worker, redelivered=redelivered)
    elif run.status in Run.STARTABLE:
        start = _start_in_slot(run, worker=worker) if can_hold else Start(go=run.mark_started(worker=worker))
    else:  # `scheduled` or `waiting`: published early by mistake; the dispatcher or workflow publishes it in time
        start = SKIP
    if start.go and not parent_running:
        _workflow_started(run_id, parent_id)
    return start if can_hold else GO


def starts_with_read(
    *, parent_id: str | None, parent_running: bool, can_hold: bool, written_queued: bool, defer: bool
) -> bool:
    """Whether run_started's first statement is a read (Run.read_for_start, which
    is sent again on a new connection if its connection turned out dropped), not
    a write. Not for a workflow's first steps: they start their workflow run,
    whose `running` mark would show before any step does."""
    return defer and written_queued and can_hold and (parent_running or parent_id == "")


def _workflow_started(run_id: str, parent_id: str | None) -> None:
    parent_id = _parent_id(run_id, parent_id)
    if parent_id:
        _known(parent_id).mark_running()


def _lost_error(run: Run) -> str:
    return f"Worker lost: the process running attempt {run.attempts} on {run.worker or 'its worker'} died or was killed"


def _restart_lost(run: Run, *, worker: str, redelivered: bool) -> Start:
    if not redelivered:
        logger.warning("Run %s is already running on %s: not running it twice for a second message", run.pk, run.worker)
        return SKIP
    lost = _lost_error(run)
    if run.attempts <= run.job_type.max_retries:
        return Start(go=run.mark_restarted(worker=worker, lost_error=lost))
    run_lost(run=run, error=lost)  # no attempts left: it fails
    return SKIP


def _start_in_slot(run: Run, *, worker: str) -> Start:
    """Start the run if its job type has a free max_concurrency slot.

    The slots are the job type's `running` runs, counted with the job type's
    row locked (PostgreSQL; SQLite's IMMEDIATE transaction serialises writers),
    so workers starting runs at the same moment see each other's starts. A
    worker that dies keeps its runs `running`, and so their slots, only until
    they are run again or the stuck check (jobs/runs/stuck.py) fails them.
    """
    with transaction.atomic():
        limit = (
            JobType.objects.select_for_update()
            .filter(pk=run.job_type_id)
            .values_list("max_concurrency", flat=True)
            .first()
        )
        # `+ 0` keeps the planner off the job type's index, which would read every
        # run the job type ever had; the status index reads the running runs only.
        running = Run.objects.alias(of_job_type=F("job_type_id") + 0).filter(
            status=Run.Status.RUNNING, of_job_type=run.job_type_id
        )
        if limit is not None and running.count() >= limit:
            return Start(go=False, wait_for_slot=run)
        return Start(go=run.mark_started(worker=worker))


def run_wait_for_slot(*, run: Run, waits: int) -> None:
    """Publish again, a little later, a run whose job type had no free slot
    (`waits`: how many times it has waited so far). It stays `queued`."""
    # After `waits` waits, this is wait number `waits + 1`.
    delay = backoff(settings.JOBS_CONCURRENCY_WAIT_SECONDS, waits + 1, settings.JOBS_CONCURRENCY_WAIT_MAX_SECONDS)
    # Spread out, so the runs that waited together do not all come back at once.
    delay *= random.uniform(0.75, 1.25)  # noqa: S311 (not for security)
    executor_for(run.job_type.kind).publish(run, countdown=delay, headers={WAITS_HEADER: waits + 1})


def run_succeeded(
    *,
    run_id: str,
    result: Any,
    notify_on: str | None = None,
    parent_id: str | None = None,
    record: Callable[[], statements.Statement] | None = None,
    late_start: LateStart | None = None,
) -> str | None:
    """Record the run's success with its result; or, if the result cannot be
    stored (result_error), fail the run and return why.

    `notify_on` and `parent_id`: what the run's message says (so that the
    usual run, that notifies nobody and has no workflow, costs no query); None
    if unknown, then looked up. `record`: the statement of a write committed in
    the same transaction as the run's success (the TaskResult row,
    jobs/worker/result_backend.py), so that the run's end costs one commit, and on
    PostgreSQL one round trip (Run._end); its notification comes after that
    commit. A workflow step's end advances its workflow run in that same
    transaction: a step hop costs one commit, not two, and no worker can die
    between a step's end and its workflow's advance. `late_start`: the run's start,
    not written yet: written by the end's UPDATE (Run.mark_succeeded's `started`)."""
    if notify_on is None:
        run = Run.objects.select_related("job_type").filter(pk=run_id).first()
        notify_on = notifications.notify_on_for(run) if run else NotifyOn.NEVER
    notify = notifications.wants_notification(notify_on, Run.Status.SUCCEEDED)
    parent_id = _parent_id(run_id, parent_id)
    try:
        # Built before any transaction opens: on SQLite a transaction holds the
        # database's one write lock from its BEGIN, which every other worker and
        # trigger waits for (Run._end builds its own statements first as well).
        also = record() if record else None
        # The run's end and `also` are a transaction of their own (Run._end); only
        # inside a caller's transaction do they need a savepoint, so that a result
        # that cannot be stored leaves that transaction usable.
        with (
            transaction.atomic()
            if parent_id or (also and transaction.get_connection().in_atomic_block)
            else contextlib.nullcontext()
        ):
            if late_start:
                started = (late_start.worker, late_start.at)
                ended = late_start.run.mark_succeeded(result=result, notify=notify, also=also, started=started)
            else:
                ended = _known(run_id).mark_succeeded(result=result, notify=notify, also=also)
            if parent_id:
                workflow_advance(parent_id=parent_id)  # its next steps are published once committed
    except (TypeError, ValueError, DatabaseError):
        # Nothing was stored. The result is checked on its own only now, so
        # that one JSON can say costs nothing more.
        problem = result_error(result)
        if problem is None:
            raise
        run_result_unstorable(run_id=run_id, error=problem, late_start=late_start)
        return problem
    if ended and notify:
        notifications.notify_later(run_id)
    return None


def result_error(result: Any) -> str | None:
    """Why a task's return value cannot be a run's result, or None: the run
    stores JSON (datetimes, decimals and UUIDs as text; no NaN, which
    PostgreSQL refuses)."""
    try:
        json.dumps(result, cls=DjangoJSONEncoder, allow_nan=False)
    except (TypeError, ValueError) as exc:  # ValueError: a circular reference, NaN or infinity
        return result_error_message(exc)
    return None


def result_error_message(exc: Exception) -> str:
    return (
        f"result is not JSON-serialisable: {exc}. Return JSON data (dicts, lists, strings, numbers, "
        "booleans, None); pass anything else by reference (a URL, a path, an id)"
    )


def run_result_unstorable(*, run_id: str, error: str, late_start: LateStart | None = None) -> None:
    """A task ended but its return value cannot be stored: the run fails at
    once, without retries (the task did its work; running it again would
    only repeat it and return the same), and its workflow fails with it.
    `late_start`: the run's start, not written yet: written first, so that the
    failed attempt is counted."""
    if late_start:
        late_start.write()
    run = Run.objects.select_related("job_type", "parent__job_type").filter(pk=run_id).first()
    if run is None:
        return
    if _end_failed(run, error=error):
        logger.warning("Run %s failed: its %s", run_id, error)
    _advance_parent(run)


def run_failed(*, run_id: str, error: str, traceback: str = "") -> None:
    """Retry the run if its job type allows another attempt, else fail it."""
    run = Run.objects.select_related("job_type", "parent__job_type").filter(pk=run_id).first()
    if run is None:
        return
    if not run.is_terminal:
        retries_left = run.status == Run.Status.RUNNING and run.attempts <= run.job_type.max_retries
        if retries_left and _retry(run, error=error, traceback=traceback):
            return
        _end_failed(run, error=error, traceback=traceback)
    _advance_parent(run)


def _retry(run: Run, *, error: str, traceback: str = "", before_publish: Callable[[], Any] | None = None) -> bool:
    """End the run's attempt as failed and publish its next one after the
    backoff, if the run is still on the attempt `run` has read. Whether it did."""
    delay = run.job_type.retry_delay(run.attempts)
    retry_at = timezone.now() + timedelta(seconds=delay)
    if not run.mark_retrying(error=error, traceback=traceback, retry_at=retry_at):
        return False
    if before_publish:
        before_publish()
    if not runs_publish([run], countdown=delay):
        # The broker did not take the retry: the sweeper publishes it once it is due.
        Run.objects.filter(pk=run.pk, status=Run.Status.RETRYING).update(republish_after=retry_at)
    return True


def run_process_ended(*, run_id: str) -> None:
    """The pool process running this run's task ended, and Celery will not hand
    the task out again: it took the end for a revoke. Jobsite's cancel marks a
    run cancelled before it revokes it, so a run still `running` here lost its
    process (see jobs/worker/signals.py): retry it, or fail it, like any failed attempt."""
    run = Run.objects.filter(pk=run_id, status=Run.Status.RUNNING).only("attempts", "worker").first()
    if run is not None:
        run_failed(run_id=run_id, error=_lost_error(run))


def run_lost(*, run: Run, error: str) -> str | None:
    """A `running` run whose worker is gone (jobs/runs/stuck.py): its attempt
    failed, and like any failed attempt it is retried while its job type's
    max_retries allows, else the run fails. Nothing happens if it started
    another attempt since `run` was read. What became of it: `retrying`,
    `failed`, or None."""
    max_retries = run.job_type.max_retries
    if run.attempts <= max_retries:
        # Redis still holds the lost attempt's message for the dead worker and
        # would hand it out again after CELERY_VISIBILITY_TIMEOUT, perhaps while
        # the retry runs; dropped before the retry is published.
        forget = functools.partial(broker.forget_delivered, str(run.pk))
        return Run.Status.RETRYING if _retry(run, error=error, before_publish=forget) else None
    error = f"{error}; no attempts left (max_retries {max_retries})"
    if not _end_failed(run, error=error, attempt=run.attempts):
        return None
    _advance_parent(run)
    return Run.Status.FAILED


def _end_failed(run: Run, *, error: str, traceback: str = "", attempt: int | None = None) -> bool:
    """Fail the run for good: notify, and start its failure hook."""
    notify = notifications.wants_notification(notifications.notify_on_for(run), Run.Status.FAILED)
    if not run.mark_failed(error=error, traceback=traceback, notify=notify, attempt=attempt):
        return False
    if notify:
        notifications.notify_later(run.pk)
    if not run.parent_id:
        run_failure_hook(run=run)
    return True


def _advance_parent(run: Run) -> None:
    if run.parent_id:
        workflow_advance(parent_id=run.parent_id)
