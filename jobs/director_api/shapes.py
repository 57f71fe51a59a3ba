"""Runs in celery-director's JSON shapes: a workflow, and a task of it."""

from datetime import datetime
from typing import Any

from jobs.importexport.director import SUCCESS_STEP, task_key
from jobs.models import Run

# celery-director's five statuses; a step still waiting for the ones before it is `pending` there too.
STATUS = {
    Run.Status.SCHEDULED: "pending",
    Run.Status.WAITING: "pending",
    Run.Status.PENDING: "pending",
    Run.Status.QUEUED: "pending",
    Run.Status.RUNNING: "progress",
    Run.Status.RETRYING: "progress",
    Run.Status.SUCCEEDED: "success",
    Run.Status.FAILED: "error",
    Run.Status.CANCELLED: "canceled",
}


def split_name(director_name: str) -> tuple[str, str]:
    project, name = director_name.split(".", 1)
    return project, name


def _updated(run: Run) -> datetime:
    """When the run last changed (celery-director's `updated`): its latest moment recorded."""
    moments = (run.created_at, run.released_at, run.queued_at, run.started_at, run.finished_at, run.cancelled_at)
    return max(moment for moment in moments if moment is not None)


def _common(run: Run) -> dict[str, Any]:
    return {"id": str(run.pk), "created": run.created_at.isoformat(), "updated": _updated(run).isoformat()}


def workflow(run: Run, *, with_payload: bool = True) -> dict[str, Any]:
    """A workflow run as celery-director shows a workflow (its job type has a director_name)."""
    project, name = split_name(run.job_type.director_name)
    data = {
        **_common(run),
        "name": name,
        "project": project,
        "fullname": run.job_type.director_name,
        "status": STATUS[run.status],
        "periodic": run.trigger == Run.Trigger.SCHEDULE,
    }
    if run.comment:
        data["comment"] = run.comment
    if with_payload:
        data["payload"] = run.params
    return data


def _result(run: Run) -> Any:
    """A task's `result`: what it returned, or for a failed one, celery-director's
    {"exception": its message, "traceback": ...}."""
    if run.status == Run.Status.SUCCEEDED:
        return run.result
    if run.status != Run.Status.FAILED:
        return None
    exception = run.error
    if run.traceback and ": " in exception:
        # A task's exception is recorded as "ZeroDivisionError: division by zero"
        # (jobs/worker/signals.py); celery-director keeps only the message.
        exception = exception.split(": ", 1)[1]
    return {"exception": exception, "traceback": run.traceback}


def tasks(step_runs: list[Run], failure_hook: Run | None) -> list[dict[str, Any]]:
    """A workflow run's step runs (in topological order) and its failure hook's run, as celery-director's tasks."""
    ids = {step.step_name: str(step.pk) for step in step_runs}
    listed = [
        _task(step, previous=[ids[need] for need in step.depends_on], is_hook=step.step_name == SUCCESS_STEP)
        for step in step_runs
    ]
    if failure_hook is not None:
        listed.append(_task(failure_hook, previous=[], is_hook=True))
    return listed


def _task(run: Run, *, previous: list[str], is_hook: bool) -> dict[str, Any]:
    return {
        **_common(run),
        "key": task_key(run.job_type),
        "status": STATUS[run.status],
        "task": str(run.pk),
        "previous": previous,
        "result": _result(run),
        "is_hook": is_hook,
    }
