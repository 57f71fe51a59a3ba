"""The web side of a run: validate a trigger, record the run, publish it;
cancel, rerun, advance a workflow run, start a failure hook.

Every entry point (API, admin, pages, commands, schedules, workflows) triggers
runs through `run_create`, so they all validate, record and publish the same
way; `runs_create_many` (bulk triggers: the API's runs/bulk/, `run_job
--params-file`) does it for many runs of one job type at once, with the same
checks. The worker side (a run's start and end) is in jobs/runs/tracking.py.
"""

import contextlib
import logging
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, router, transaction
from django.db.models import F, prefetch_related_objects
from django.utils import timezone

from jobs import notifications
from jobs.core import durability, kinds, statements
from jobs.core.errors import Conflict, InvalidInput, ServiceError
from jobs.core.params import params_with_defaults
from jobs.models import (
    JobType,
    NotifyOn,
    Run,
    Schedule,
    StepArgs,
    TriggerUrl,
    latest_revision_id,
    republish_deadline,
)
from jobs.runs.executors import QUEUED_HEADER, Publisher, executor_for, queue_of
from jobs.workflows import steps as workflow_steps
from jobsite.celery import app

logger = logging.getLogger(__name__)


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
    comment: str = "",
    trigger_url: TriggerUrl | None = None,
) -> Run:
    """Validate a trigger and return its run, not yet saved.

    Every way of starting a run goes through here: the checks (enabled job
    type, params against the schema after defaults, run_at in the future) are
    the same for one run from the API and a thousand from the dispatcher.
    `notify_emails` are told about this run as well as the job type's own;
    `comment` is a note kept with it; `trigger_url` the trigger URL it came through.
    """
    if not job_type.enabled:
        raise Conflict(f"Job type '{job_type.name}' is disabled: enable it before running it.")
    if job_type.kind == JobType.Kind.WORKFLOW and not job_type.steps.exists():
        raise Conflict(f"Workflow '{job_type.name}' has no steps: add at least one before running it.")
    if params is not None and not isinstance(params, dict):
        raise InvalidInput({"params": ["Params must be a JSON object."]})
    params = params_with_defaults(job_type.default_params, params)
    errors = {}
    params_problems = job_type.run_params_errors(params)
    if params_problems:
        errors["params"] = params_problems
    email_problems = kinds.email_list_errors(notify_emails or [])
    if not email_problems and notify_emails and job_type.notify_on == NotifyOn.NEVER:
        email_problems = [
            f"Job type '{job_type.name}' never notifies (its notify_on is 'never'): "
            "set it to 'failure' or 'completion' first, or leave notify_emails out."
        ]
    if email_problems:
        errors["notify_emails"] = email_problems
    comment_limit = Run._meta.get_field("comment").max_length
    if not isinstance(comment, str) or len(comment) > comment_limit:
        errors["comment"] = [f"Give a comment of at most {comment_limit} characters."]
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
        deadline_at=job_type.deadline_for(run_at or now),
        requested_by=requested_by,
        idempotency_key=idempotency_key or None,
        rerun_of=rerun_of,
        schedule=schedule,
        schedule_tick=schedule_tick,
        notify_emails=kinds.clean_emails(notify_emails or []),
        comment=comment,
        trigger_url=trigger_url,
    )


def run_create(*, idempotency_key: str | None = None, reuse_steps_of: Run | None = None, **trigger) -> tuple[Run, bool]:
    """Validate, record the run, and publish it once committed (or leave it
    `scheduled` for the dispatcher when it has a `run_at`). Takes run_build's
    arguments.

    Returns the run and whether it was created: with an `idempotency_key`
    already used for this job type, the first run comes back instead.

    A workflow run is created with one child run per step, in the same
    transaction; `reuse_steps_of` (a workflow run) makes the steps that
    succeeded there reuse their results (see workflow_steps.create_step_runs).
    """
    run = run_build(idempotency_key=idempotency_key, **trigger)
    if run.status == Run.Status.PENDING and run.job_type.kind != JobType.Kind.WORKFLOW:
        # Written `queued` by its INSERT, published once committed: the trigger needs
        # no `queued` UPDATE. Until the broker has its message it is not, for a moment;
        # a publish that fails puts it back to `pending` for the sweeper (runs_publish),
        # and a process that dies before publishing leaves it to the lost-message
        # check (jobs/runs/lost.py), which publishes the queued runs Redis lacks.
        run.status, run.queued_at = Run.Status.QUEUED, run.created_at
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
            run.save_new()  # with the job type's latest revision, read by the INSERT itself
            if run.job_type.kind == JobType.Kind.WORKFLOW:
                workflow_steps.create_step_runs(parent=run, reuse_from=reuse_steps_of)
            if run.status in (Run.Status.PENDING, Run.Status.QUEUED):
                transaction.on_commit(lambda: runs_publish([run]))
    except IntegrityError:
        if idempotency_key:  # Another request with the same key won the race.
            return Run.objects.get(job_type=run.job_type, idempotency_key=idempotency_key), False
        raise
    return run, True


def runs_create_many(
    *,
    job_type: JobType,
    params_list: list,
    trigger: str,
    requested_by: AbstractBaseUser | None = None,
    run_at: datetime | None = None,
    notify_emails: list[str] | None = None,
    comment: str = "",
) -> list[Run]:
    """Validate one run per item of `params_list` (each as `run_build` checks
    one run), record them all in one transaction, and publish them once
    committed (or leave them `scheduled` with a `run_at`). The other
    arguments apply to every run. Returns the runs, in the order given.

    All or nothing: if any item is bad, InvalidInput names each bad item by
    its index (`{"params": {"3": [...]}}`) and nothing is written; a disabled
    job type is a Conflict. The caller bounds the list (the API takes
    JOBS_BULK_MAX_RUNS); the runs are inserted and published
    JOBS_BULK_MAX_RUNS at a time, so that no statement grows without end.

    For `task`, `http` and `command` job types the queries do not grow with
    the number of runs (up to JOBS_BULK_MAX_RUNS; SQLite splits an INSERT
    further, at 999 variables). A workflow run also needs its step runs,
    created with it, and its first steps published: a few queries per run.
    """
    if not isinstance(params_list, list) or not params_list:
        raise InvalidInput({"params": ['Give a non-empty list of params objects, e.g. [{"x": 1}, {"x": 2}].']})
    if job_type.kind == JobType.Kind.WORKFLOW:
        prefetch_related_objects([job_type], "steps")  # run_build's check that it has steps, read once
    runs, bad_items, shared = [], {}, {}
    for index, params in enumerate(params_list):
        try:
            if not isinstance(params, dict):
                raise InvalidInput({"params": ["Params must be a JSON object."]})
            runs.append(
                run_build(
                    job_type=job_type,
                    params=params,
                    trigger=trigger,
                    requested_by=requested_by,
                    run_at=run_at,
                    notify_emails=notify_emails,
                    comment=comment,
                )
            )
        except InvalidInput as exc:
            for field, messages in exc.errors.items():
                if field == "params":
                    bad_items[str(index)] = messages
                else:  # an option given for every run: the same message for each item
                    shared.setdefault(field, messages)
    if bad_items or shared:
        raise InvalidInput({**shared, **({"params": bad_items} if bad_items else {})})
    chunk = settings.JOBS_BULK_MAX_RUNS
    republish_after = republish_deadline()  # from now: checking a long list took a while
    # Written `queued`, as run_create writes one run (its publish needs no UPDATE
    # after it); those whose message the broker does not take go back to `pending`.
    queued = run_at is None and job_type.kind != JobType.Kind.WORKFLOW
    for run in runs:
        run.republish_after = republish_after
        if queued:
            run.status, run.queued_at = Run.Status.QUEUED, run.created_at
    # The INSERTs are compiled before the transaction: on SQLite it holds the
    # database's one write lock from its BEGIN, and preparing a thousand rows'
    # forty fields took most of it, while every worker waited to start or end a run.
    using = router.db_for_write(Run)
    revision_id = latest_revision_id(job_type.pk)
    inserts = _inserts(runs, revision_id, chunk, using)
    with transaction.atomic():
        # Read again in the transaction that writes the runs: the job type's
        # latest revision at their INSERT. An edit in between (seldom) compiles them again.
        if (latest := latest_revision_id(job_type.pk)) != revision_id:
            inserts = _inserts(runs, latest, chunk, using)
        for insert in inserts:
            statements.execute(insert, using=using)
        for run in runs:  # saved, as bulk_create leaves them
            run._state.adding, run._state.db = False, using
        if job_type.kind == JobType.Kind.WORKFLOW:
            for run in runs:
                workflow_steps.create_step_runs(parent=run)
        if run_at is None:
            transaction.on_commit(lambda: _publish_in_chunks(runs, chunk))
    return runs


def _inserts(runs: list[Run], revision_id: int | None, size: int, using: str) -> list[statements.Statement]:
    for run in runs:
        run.job_type_revision_id = revision_id
    return statements.insert_rows(Run, runs, using=using, batch_size=size)


def _publish_in_chunks(runs: list[Run], size: int) -> None:
    # One `queued` UPDATE per chunk, whose ids are its parameters; and once the
    # broker refused one chunk, the rest wait for the sweeper as well.
    for start in range(0, len(runs), size):
        chunk = runs[start : start + size]
        if runs_publish(chunk) < len(chunk):
            _back_to_pending(runs[start + size :])
            return


def runs_publish(runs: list[Run], *, countdown: float | None = None) -> int:
    """Hand runs to the broker and mark those handed over `queued`. Most are
    written `queued` already, by the statement that made them ready (a trigger's
    INSERT, the dispatcher's release, a workflow's advance): those need no UPDATE
    here, and those of them the broker did not take go back to `pending`. The
    `pending` ones are the sweeper's, and workflow runs (no message of their own).

    Many runs go to Redis in chunks of up to JOBS_PUBLISH_BATCH_SIZE messages,
    one round trip each (kombu's publish batch); the first chunks are smaller
    (_chunks). A run the broker did not take, or may not have
    taken (a batch that failed on the way), keeps its status (`pending`) and is
    published again later by the sweeper, so it is never lost; a message sent
    twice runs once (the worker's start is conditional). Returns how many were published.
    """
    published: list = []
    size = settings.JOBS_PUBLISH_BATCH_SIZE
    try:
        # One producer (one pooled connection) for the whole lot; its batch's
        # max_size is only a ceiling: each chunk is flushed here, to know it was taken.
        with (
            app.producer_or_acquire() as producer,
            producer.batch(max_size=2 * size) if len(runs) > 1 else contextlib.nullcontext() as batch,
        ):
            publisher = Publisher(producer, retry=None if batch is None else False)
            # Each run's queue found once, and each queue declared once here, not
            # checked again for each message (Executor._send).
            queues = [
                "" if run.job_type.kind == JobType.Kind.WORKFLOW else queue_of(run, publisher.default_queue)
                for run in runs
            ]
            for queue in set(queues) - {""}:
                producer.maybe_declare(app.amqp.queues[queue])
            for start, end in _chunks(len(runs), size):
                chunk = runs[start:end]
                for run, queue in zip(chunk, queues[start:end], strict=True):
                    if run.job_type.kind == JobType.Kind.WORKFLOW:
                        # No Celery task of its own: publishing it starts its first steps.
                        workflow_advance(parent_id=run.pk)
                    else:
                        # `queued` here: written so, durably, by the statement that made it ready.
                        headers = {QUEUED_HEADER: True} if run.status == Run.Status.QUEUED else None
                        executor = executor_for(run.job_type.kind)
                        executor.publish(run, countdown=countdown, publisher=publisher, queue=queue, headers=headers)
                if batch is not None:
                    batch.flush()  # the chunk in one round trip; raises if Redis may not have taken it
                published += [run.pk for run in chunk]
    except Exception:
        # The broker is down: the rest would fail the same way, slowly.
        logger.warning("Could not publish %d run(s); they stay pending until the broker answers",
                       len(runs) - len(published), exc_info=True)  # fmt: skip
    marks = [run.pk for run in runs[: len(published)] if run.status != Run.Status.QUEUED]
    if marks:
        now = timezone.now()
        # Lost in a database crash: `pending` again, and published again by the sweeper.
        pending = Run.objects.filter(pk__in=marks, status=Run.Status.PENDING)
        durability.progress_update(pending, status=Run.Status.QUEUED, queued_at=now)
        for run in runs[: len(published)]:
            if run.status == Run.Status.PENDING:
                run.status, run.queued_at = Run.Status.QUEUED, now
    _back_to_pending(runs[len(published) :])
    return len(published)


# The first chunk a publish sends: the chunks after it double up to
# JOBS_PUBLISH_BATCH_SIZE, so that the workers have the first messages while the
# rest are built (a message takes tens of µs: 500 held the first back by 25 ms or
# more), for four round trips more on a thousand runs.
FIRST_CHUNK = 32


def _chunks(count: int, size: int) -> Iterator[tuple[int, int]]:
    """The (start, end) of each chunk of `count` messages: FIRST_CHUNK, then twice the one before, up to `size`."""
    start, step = 0, min(FIRST_CHUNK, size)
    while start < count:
        yield start, min(start + step, count)
        start += step
        step = min(2 * step, size)


def _back_to_pending(runs: list[Run]) -> None:
    """Those of `runs` written `queued` (by their trigger's INSERT, the
    dispatcher's release, a workflow's advance) whose message the broker did
    not take are `pending` again, the sweeper's; but not one that started after
    all (a publish that failed on the way) or was marked since (the lost-message
    check's publish): its `queued_at` is no longer the one that statement wrote.
    One UPDATE for those a trigger wrote (`queued_at` is each one's creation),
    and one per moment the others were written at (one release, one advance)."""
    written_queued = [run for run in runs if run.status == Run.Status.QUEUED]
    by_moment: dict[datetime | None, list] = {}
    for run in written_queued:
        by_moment.setdefault(None if run.queued_at == run.created_at else run.queued_at, []).append(run.pk)
    for moment, ids in by_moment.items():
        queued_at = F("created_at") if moment is None else moment
        Run.objects.filter(pk__in=ids, status=Run.Status.QUEUED, queued_at=queued_at).update(
            status=Run.Status.PENDING, queued_at=None
        )
    for run in written_queued:
        run.status, run.queued_at = Run.Status.PENDING, None


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
    Safe to call any number of times, from any number of processes at once.
    Within a caller's transaction (a step's end, jobs/runs/tracking.py), no
    savepoint of its own: a failure rolls back the caller's anyway."""
    with transaction.atomic(savepoint=False):
        outcome = workflow_steps.advance(parent_id=parent_id)
        if outcome.ended is not None and outcome.ended.notify_status:
            notifications.notify_later(outcome.ended.pk)

        def after_commit():
            for step_run in outcome.revoke:
                executor_for(step_run.job_type.kind).stop(step_run)
            runs_publish(outcome.ready)
            if outcome.failed is not None:
                run_failure_hook(run=outcome.failed)

        transaction.on_commit(after_commit)


def failure_hook_key(run: Run) -> str:
    """The idempotency key of the failure hook's run for `run`: one hook run per failed run."""
    return f"failure-hook-of-{run.pk}"


def run_failure_hook(*, run: Run) -> Run | None:
    """Start the failure hook of a run's job type, if it has one. Step runs
    leave it to their workflow run, and hook runs never start another hook.
    A workflow whose steps are called celery-director's way gives its hook
    `payload` and `workflow_id` too, as celery-director does."""
    hook = run.job_type.on_failure
    if hook is None or run.parent_id or run.trigger == Run.Trigger.HOOK:
        return None
    params = {"run_id": str(run.pk), "job_type": run.job_type.name, "error": run.error, "params": run.params}
    if run.job_type.step_args == StepArgs.DIRECTOR:
        params.update(payload=run.params, workflow_id=str(run.pk))
    try:
        hook_run, _ = run_create(
            job_type=hook, params=params, trigger=Run.Trigger.HOOK, idempotency_key=failure_hook_key(run)
        )
    except ServiceError as exc:
        logger.warning("Could not start failure hook %s for run %s: %s", hook.name, run.pk, exc)
        return None
    return hook_run
