"""Operations on runs that touch several objects or the broker.

Every entry point (API, admin, commands, and later schedules and workflows)
triggers runs through `run_create`, so they all validate, record and publish
the same way.
"""

import contextlib
import logging
from datetime import timedelta
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.utils import timezone

from . import workflows
from .executors import executor_for
from .models import JobType, Run
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


def run_create(
    *,
    job_type: JobType,
    params: dict[str, Any] | None = None,
    trigger: str,
    requested_by: AbstractBaseUser | None = None,
    idempotency_key: str | None = None,
    rerun_of: Run | None = None,
    reuse_steps_of: Run | None = None,
) -> tuple[Run, bool]:
    """Validate params, record a pending run, and publish it once committed.

    Returns the run and whether it was created: with an `idempotency_key`
    already used for this job type, the first run comes back instead.

    A workflow run is created with one child run per step, in the same
    transaction; `reuse_steps_of` (a workflow run) makes the steps that
    succeeded there reuse their results (see workflows.create_step_runs).
    """
    if not job_type.enabled:
        raise Conflict(f"Job type '{job_type.name}' is disabled: enable it before running it.")
    is_workflow = job_type.kind == JobType.Kind.WORKFLOW
    if is_workflow and not job_type.steps.exists():
        raise Conflict(f"Workflow '{job_type.name}' has no steps: add at least one before running it.")
    if params is not None and not isinstance(params, dict):
        raise InvalidInput({"params": ["Params must be a JSON object."]})
    params = params_with_defaults(job_type.default_params, params)
    errors = params_errors(job_type.params_schema, params)
    if errors:
        raise InvalidInput({"params": errors})
    if idempotency_key:
        existing = Run.objects.filter(job_type=job_type, idempotency_key=idempotency_key).first()
        if existing:
            return existing, False
    if requested_by is not None and not requested_by.is_authenticated:
        requested_by = None
    try:
        with transaction.atomic():
            run = Run.objects.create(
                job_type=job_type,
                params=params,
                trigger=trigger,
                requested_by=requested_by,
                idempotency_key=idempotency_key or None,
                rerun_of=rerun_of,
            )
            if is_workflow:
                workflows.create_step_runs(parent=run, reuse_from=reuse_steps_of)
            transaction.on_commit(lambda: run_publish(run=run))
    except IntegrityError:
        if idempotency_key:  # Another request with the same key won the race.
            return Run.objects.get(job_type=job_type, idempotency_key=idempotency_key), False
        raise
    return run, True


def run_publish(*, run: Run, countdown: float | None = None) -> bool:
    """Hand a run to the broker. When the broker is down the run keeps its
    status (`pending`) and is published again later, so it is never lost."""
    try:
        executor_for(run.job_type.kind).publish(run, countdown=countdown)
    except Exception:
        logger.warning(
            "Could not publish run %s; it stays %s until the broker answers", run.pk, run.status, exc_info=True
        )
        return False
    run.mark_queued()
    return True


def run_cancel(*, run: Run) -> Run:
    """Cancel a run that has not finished. A workflow run's unfinished steps are
    cancelled with it; a step's cancel fails its workflow run."""
    previous = run.status
    if not run.mark_cancelled():
        run.refresh_from_db(fields=["status"])
        raise Conflict(f"Run {run.pk} is already {run.status}: only runs that have not finished can be cancelled.")
    if previous not in Run.UNPUBLISHED:
        executor_for(run.job_type.kind).stop(run)
    if run.job_type.kind == JobType.Kind.WORKFLOW:
        for step_run in run.children.filter(status__in=Run.NOT_TERMINAL).select_related("job_type"):
            with contextlib.suppress(Conflict):  # it ended meanwhile
                run_cancel(run=step_run)
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

        def after_commit():
            for step_run in outcome.revoke:
                executor_for(step_run.job_type.kind).stop(step_run)
            for step_run in outcome.ready:
                run_publish(run=step_run)
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


def _parent_id(run_id: str):
    return Run.objects.filter(pk=run_id).values_list("parent_id", flat=True).first()


def run_started(*, run_id: str, worker: str) -> None:
    Run(pk=run_id).mark_started(worker=worker)
    parent_id = _parent_id(run_id)
    if parent_id:
        Run(pk=parent_id).mark_running()


def run_succeeded(*, run_id: str, result: Any) -> None:
    Run(pk=run_id).mark_succeeded(result=result)
    parent_id = _parent_id(run_id)
    if parent_id:
        workflow_advance(parent_id=parent_id)


def run_failed(*, run_id: str, error: str, traceback: str = "") -> None:
    """Retry the run if its job type allows another attempt, else fail it."""
    run = Run.objects.select_related("job_type").filter(pk=run_id).first()
    if run is None:
        return
    if not run.is_terminal:
        job_type = run.job_type
        if run.status == Run.Status.RUNNING and run.attempts <= job_type.max_retries:
            delay = job_type.retry_delay(run.attempts)
            if run.mark_retrying(error=error, traceback=traceback, retry_at=timezone.now() + timedelta(seconds=delay)):
                run_publish(run=run, countdown=delay)
                return
        if run.mark_failed(error=error, traceback=traceback) and not run.parent_id:
            run_failure_hook(run=run)
    if run.parent_id:
        workflow_advance(parent_id=run.parent_id)
