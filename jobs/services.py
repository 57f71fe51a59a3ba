"""Operations on runs that touch several objects or the broker.

Every entry point (API, admin, commands, and later schedules and workflows)
triggers runs through `run_create`, so they all validate, record and publish
the same way.
"""

import contextlib
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.db.models import F
from django.urls import reverse
from django.utils import timezone

from jobsite.celery import app

from . import durability, notifications, workflows
from .executors import WAITS_HEADER, executor_for
from .models import JobType, NotifyOn, Run, Schedule
from .params import params_errors, params_with_defaults

logger = logging.getLogger(__name__)


class ServiceError(Exception):
    """A request that cannot be carried out; `errors` maps fields to messages."""

    def __init__(self, message: str | dict[str, list[str]]):
        self.errors = message if isinstance(message, dict) else {"detail": [message]}
        super().__init__(message if isinstance(message, str) else "; ".join(self.messages))

    @property
    def messages(self) -> list[str]:
        return [f"{field}: {msg}" if field != "detail" else msg for field, msgs in self.errors.items() for msg in msgs]


class InvalidInput(ServiceError):
    """Bad input from the caller (HTTP 400)."""


class Conflict(ServiceError):
    """The request clashes with the current state of an object (HTTP 409)."""


def run_build(
    *,
    job_type: JobType,
    params: dict[str, Any] | None = None,
    trigger: str,
    requested_by: AbstractBaseUser | None = None,
    idempotency_key: str | None = None,
    rerun_of: Run | None = None,
    run_at: datetime | None = None,
    schedule: Schedule | None = None,
    schedule_tick: datetime | None = None,
    notify_emails: list[str] | None = None,
) -> Run:
    """Validate a trigger and return its run, not yet saved.

    Every way of starting a run goes through here: the checks (enabled job
    type, params against the schema after defaults, run_at in the future) are
    the same for one run from the API and a thousand from the dispatcher.
    `notify_emails` are told about this run as well as the job type's own.
    """
    if not job_type.enabled:
        raise Conflict(f"Job type '{job_type.name}' is disabled: enable it before running it.")
    if job_type.kind == JobType.Kind.WORKFLOW and not job_type.steps.exists():
        raise Conflict(f"Workflow '{job_type.name}' has no steps: add at least one before running it.")
    if params is not None and not isinstance(params, dict):
        raise InvalidInput({"params": ["Params must be a JSON object."]})
    params = params_with_defaults(job_type.default_params, params)
    errors = {}
    params_problems = params_errors(job_type.params_schema, params)
    if params_problems:
        errors["params"] = params_problems
    email_problems = notifications.email_list_errors(notify_emails or [])
    if not email_problems and notify_emails and job_type.notify_on == NotifyOn.NEVER:
        email_problems = [
            f"Job type '{job_type.name}' never notifies (its notify_on is 'never'): "
            "set it to 'failure' or 'completion' first, or leave notify_emails out."
        ]
    if email_problems:
        errors["notify_emails"] = email_problems
    if errors:
        raise InvalidInput(errors)
    if run_at is not None and run_at <= timezone.now():
        raise InvalidInput(
            {"run_at": [f"{run_at.isoformat()} is in the past: give a future time, or leave run_at out to run now."]}
        )
    if requested_by is not None and not requested_by.is_authenticated:
        requested_by = None
    now = timezone.now()
    return Run(
        job_type=job_type,
        params=params,
        trigger=trigger,
        status=Run.Status.SCHEDULED if run_at else Run.Status.PENDING,
        scheduled_for=run_at,
        created_at=now,
        released_at=None if run_at else now,
        requested_by=requested_by,
        idempotency_key=idempotency_key or None,
        rerun_of=rerun_of,
        schedule=schedule,
        schedule_tick=schedule_tick,
        notify_emails=notifications.clean_emails(notify_emails or []),
    )


def run_create(*, idempotency_key: str | None = None, reuse_steps_of: Run | None = None, **trigger) -> tuple[Run, bool]:
    """Validate, record the run, and publish it once committed (or leave it
    `scheduled` for the dispatcher when it has a `run_at`). Takes run_build's
    arguments.

    Returns the run and whether it was created: with an `idempotency_key`
    already used for this job type, the first run comes back instead.

    A workflow run is created with one child run per step, in the same
    transaction; `reuse_steps_of` (a workflow run) makes the steps that
    succeeded there reuse their results (see workflows.create_step_runs).
    """
    run = run_build(idempotency_key=idempotency_key, **trigger)
    if idempotency_key:
        existing = Run.objects.filter(job_type=run.job_type, idempotency_key=idempotency_key).first()
        if existing:
            return existing, False
    # One INSERT needs no transaction of its own (BEGIN and COMMIT are two more
    # round trips): only a workflow run's steps, written with it, or a caller's
    # transaction (a savepoint, so that a duplicate key does not break it) need one.
    atomic = run.job_type.kind == JobType.Kind.WORKFLOW or transaction.get_connection().in_atomic_block
    try:
        with transaction.atomic() if atomic else contextlib.nullcontext():
            run.save(force_insert=True)
            if run.job_type.kind == JobType.Kind.WORKFLOW:
                workflows.create_step_runs(parent=run, reuse_from=reuse_steps_of)
            if run.status == Run.Status.PENDING:
                transaction.on_commit(lambda: runs_publish([run]))
    except IntegrityError:
        if idempotency_key:  # Another request with the same key won the race.
            return Run.objects.get(job_type=run.job_type, idempotency_key=idempotency_key), False
        raise
    return run, True


def runs_publish(runs: list[Run], *, countdown: float | None = None) -> int:
    """Hand runs to the broker and mark those handed over `queued`.

    A run the broker did not take keeps its status (`pending`) and is published
    again later, so it is never lost. Returns how many were published.
    """
    published = []
    try:
        # One producer (one pooled connection) for the whole batch.
        with app.producer_or_acquire() as producer:
            for run in runs:
                executor_for(run.job_type.kind).publish(run, countdown=countdown, producer=producer)
                published.append(run.pk)
    except Exception:
        # The broker is down: the rest would fail the same way, slowly.
        logger.warning("Could not publish %d run(s); they stay pending until the broker answers",
                       len(runs) - len(published), exc_info=True)  # fmt: skip
    if published:
        now = timezone.now()
        with durability.progress_commit():  # lost in a database crash: published again by the sweeper
            Run.objects.filter(pk__in=published, status=Run.Status.PENDING).update(
                status=Run.Status.QUEUED, queued_at=now
            )
        for run in runs[: len(published)]:
            if run.status == Run.Status.PENDING:
                run.status, run.queued_at = Run.Status.QUEUED, now
    return len(published)


def run_cancel(*, run: Run, cancelled_by: AbstractBaseUser | None = None) -> Run:
    """Cancel a run that has not finished, recording who asked (`cancelled_by`)
    and when. A workflow run's unfinished steps are cancelled with it, by the
    same user; a step's cancel fails its workflow run."""
    if cancelled_by is not None and not cancelled_by.is_authenticated:
        cancelled_by = None
    previous = run.status
    notify = notifications.wants_notification(notifications.notify_on_for(run), Run.Status.CANCELLED)
    if not run.mark_cancelled(cancelled_by=cancelled_by, notify=notify):
        run.refresh_from_db(fields=["status"])
        raise Conflict(f"Run {run.pk} is already {run.status}: only runs that have not finished can be cancelled.")
    if notify:
        notifications.notify_later(run.pk)
    if previous != Run.Status.WAITING:
        # Revoked even when it looked `scheduled`: the dispatcher may have
        # published it since it was read.
        executor_for(run.job_type.kind).stop(run)
    if run.job_type.kind == JobType.Kind.WORKFLOW:
        for step_run in run.children.filter(status__in=Run.NOT_TERMINAL).select_related("job_type"):
            with contextlib.suppress(Conflict):  # it ended meanwhile
                run_cancel(run=step_run, cancelled_by=cancelled_by)
    if run.parent_id:
        workflow_advance(parent_id=run.parent_id)
    return run


def run_rerun(*, run: Run, requested_by: AbstractBaseUser | None = None, from_failed: bool = False) -> Run:
    """Run the same job type again with the same params. `from_failed` (workflow
    runs only) reuses the results of the steps that succeeded."""
    if from_failed and run.job_type.kind != JobType.Kind.WORKFLOW:
        raise InvalidInput({"from_failed": ["Only a workflow run can be rerun from its failed steps."]})
    if not run.is_terminal:
        raise Conflict(f"Run {run.pk} is still {run.status}: wait for it to finish or cancel it first.")
    if from_failed and run.status == Run.Status.SUCCEEDED:
        raise Conflict(
            f"Run {run.pk} succeeded, so no step failed: rerun it without from_failed to run every step again."
        )
    new_run, _ = run_create(
        job_type=run.job_type,
        params=run.params,
        trigger=Run.Trigger.RERUN,
        requested_by=requested_by,
        rerun_of=run,
        reuse_steps_of=run if from_failed else None,
    )
    return new_run


def workflow_advance(*, parent_id) -> None:
    """Publish the steps of a workflow run that became ready, or end the
    workflow run; called when it starts and whenever one of its steps ends.
    Safe to call any number of times, from any number of processes at once."""
    with transaction.atomic():
        outcome = workflows.advance(parent_id=parent_id)
        if outcome.ended is not None and outcome.ended.notify_status:
            notifications.notify_later(outcome.ended.pk)

        def after_commit():
            for step_run in outcome.revoke:
                executor_for(step_run.job_type.kind).stop(step_run)
            runs_publish(outcome.ready)
            if outcome.failed is not None:
                run_failure_hook(run=outcome.failed)

        transaction.on_commit(after_commit)


def run_failure_hook(*, run: Run) -> Run | None:
    """Start the failure hook of a run's job type, if it has one. Step runs
    leave it to their workflow run, and hook runs never start another hook."""
    hook = run.job_type.on_failure
    if hook is None or run.parent_id or run.trigger == Run.Trigger.HOOK:
        return None
    params = {"run_id": str(run.pk), "job_type": run.job_type.name, "error": run.error, "params": run.params}
    try:
        hook_run, _ = run_create(job_type=hook, params=params, trigger=Run.Trigger.HOOK)
    except ServiceError as exc:
        logger.warning("Could not start failure hook %s for run %s: %s", hook.name, run.pk, exc)
        return None
    return hook_run


# Tracking, called by the worker's Celery signal handlers (jobs/signals.py).
# A step run's end always advances its workflow run, even when the end was
# already recorded (a redelivered task): advancing is idempotent, and a worker
# that died between the two must not leave the workflow stuck.


def _parent_id(run_id: str, known: str | None):
    """The run's workflow run id: from its message when it says ("" for none), else looked up."""
    if known is not None:
        return known or None
    return Run.objects.filter(pk=run_id).values_list("parent_id", flat=True).first()


@dataclass
class Start:
    """What the worker does with a run's task once received (jobs/runtask.py acts on it)."""

    go: bool
    wait_for_slot: Run | None = None  # its job type is at max_concurrency: publish it again a little later


GO, SKIP = Start(go=True), Start(go=False)


def run_started(
    *, run_id: str, worker: str, parent_id: str | None = None, redelivered: bool = False, can_hold: bool = True
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
      same run (the sweeper may publish a run twice, see jobs/dispatch.py)
      while the first runs it: skip;
    - at max_concurrency: wait `queued`, without counting an attempt.
    `can_hold`: whether the task can be held back at all (it is a RunTask).
    """
    # A plain UPDATE, durable: the non-durable commit (jobs/durability.py) costs
    # three more round trips before the task runs, more than the disk flush here.
    started = Run(pk=run_id).mark_started(worker=worker, unlimited_only=can_hold)
    if started:
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
    if start.go:
        _workflow_started(run_id, parent_id)
    return start if can_hold else GO


def _workflow_started(run_id: str, parent_id: str | None) -> None:
    parent_id = _parent_id(run_id, parent_id)
    if parent_id:
        Run(pk=parent_id).mark_running()


def _lost_error(run: Run) -> str:
    return f"Worker lost: the process running attempt {run.attempts} on {run.worker or 'its worker'} died or was killed"


def _restart_lost(run: Run, *, worker: str, redelivered: bool) -> Start:
    if not redelivered:
        logger.warning("Run %s is already running on %s: not running it twice for a second message", run.pk, run.worker)
        return SKIP
    lost = _lost_error(run)
    if run.attempts <= run.job_type.max_retries:
        return Start(go=run.mark_restarted(worker=worker, lost_error=lost))
    run_lost(run=run, error=f"{lost}; no attempts left (max_retries {run.job_type.max_retries})")
    return SKIP


def _start_in_slot(run: Run, *, worker: str) -> Start:
    """Start the run if its job type has a free max_concurrency slot.

    The slots are the job type's `running` runs, counted with the job type's
    row locked (PostgreSQL; SQLite's IMMEDIATE transaction serialises writers),
    so workers starting runs at the same moment see each other's starts. A
    worker that dies keeps its runs `running`, and so their slots, only until
    they are run again or the stuck check (jobs/stuck.py) fails them.
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
    delay = min(settings.JOBS_CONCURRENCY_WAIT_SECONDS * 2**waits, settings.JOBS_CONCURRENCY_WAIT_MAX_SECONDS)
    # Spread out, so the runs that waited together do not all come back at once.
    delay *= random.uniform(0.75, 1.25)  # noqa: S311 (not for security)
    executor_for(run.job_type.kind).publish(run, countdown=delay, headers={WAITS_HEADER: waits + 1})


def run_succeeded(
    *,
    run_id: str,
    result: Any,
    notify_on: str | None = None,
    parent_id: str | None = None,
    record: Callable[[], Any] | None = None,
) -> None:
    """`notify_on` and `parent_id`: what the run's message says (so that the
    usual run, that notifies nobody and has no workflow, costs no query); None
    if unknown, then looked up. `record`: a write committed in the same
    transaction as the run's success (the TaskResult row, jobs/results_backend.py), so
    that the run's end costs one commit; its notification and its workflow's
    advance come after that commit."""
    if notify_on is None:
        run = Run.objects.select_related("job_type").filter(pk=run_id).first()
        notify_on = notifications.notify_on_for(run) if run else NotifyOn.NEVER
    notify = notifications.wants_notification(notify_on, Run.Status.SUCCEEDED)
    with transaction.atomic() if record else contextlib.nullcontext():
        ended = Run(pk=run_id).mark_succeeded(result=result, notify=notify)
        if record:
            record()
    if ended and notify:
        notifications.notify_later(run_id)
    parent_id = _parent_id(run_id, parent_id)
    if parent_id:
        workflow_advance(parent_id=parent_id)


def run_failed(*, run_id: str, error: str, traceback: str = "") -> None:
    """Retry the run if its job type allows another attempt, else fail it."""
    run = Run.objects.select_related("job_type", "parent__job_type").filter(pk=run_id).first()
    if run is None:
        return
    if not run.is_terminal:
        job_type = run.job_type
        if run.status == Run.Status.RUNNING and run.attempts <= job_type.max_retries:
            delay = job_type.retry_delay(run.attempts)
            retry_at = timezone.now() + timedelta(seconds=delay)
            if run.mark_retrying(error=error, traceback=traceback, retry_at=retry_at):
                if not runs_publish([run], countdown=delay):
                    # The broker did not take the retry: the sweeper publishes it once it is due.
                    Run.objects.filter(pk=run.pk, status=Run.Status.RETRYING).update(republish_after=retry_at)
                return
        _end_failed(run, error=error, traceback=traceback)
    _advance_parent(run)


def run_process_ended(*, run_id: str) -> None:
    """The pool process running this run's task ended, and Celery will not hand
    the task out again: it took the end for a revoke. Jobsite's cancel marks a
    run cancelled before it revokes it, so a run still `running` here lost its
    process (see jobs/signals.py): retry it, or fail it, like any failed attempt."""
    run = Run.objects.filter(pk=run_id, status=Run.Status.RUNNING).only("attempts", "worker").first()
    if run is not None:
        run_failed(run_id=run_id, error=_lost_error(run))


def run_lost(*, run: Run, error: str) -> bool:
    """Fail a `running` run whose worker is gone (jobs/stuck.py), unless it
    started another attempt since `run` was read. Whether it was failed."""
    failed = _end_failed(run, error=error, attempt=run.attempts)
    if failed:
        _advance_parent(run)
    return failed


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


# Notifications' tools for users.


def notification_send_test(*, job_type: JobType) -> dict[str, dict]:
    """Send a sample notification to the job type's recipients and webhook now,
    whatever its notify_on; what each channel did."""
    if not job_type.notify_emails and not job_type.webhook_url:
        raise Conflict(
            f"Job type '{job_type.name}' has no notify_emails and no webhook_url: there is nobody to send to."
        )
    now = timezone.now()
    sample = Run(
        job_type=job_type,
        status=Run.Status.SUCCEEDED,
        params=job_type.default_params,
        trigger=Run.Trigger.ADMIN,
        created_at=now - timedelta(seconds=3),
        started_at=now - timedelta(seconds=2),
        finished_at=now,
        attempts=1,
        result={"sample": True, "message": "A run's result appears here."},
    )
    url = settings.SITE_URL + reverse("admin:jobs_jobtype_change", args=[job_type.pk])
    return notifications.deliver(notifications.Notification(run=sample, url=url, test=True), {})
