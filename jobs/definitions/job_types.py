"""Writing job types: one save service (its fields and a workflow's steps, in
one transaction) and one delete service, for the API, the admin and both file
importers, so that all of them check, write and refuse the same way.

The rules themselves are the model's (`JobType.clean`, jobs/core/kinds.py) and
the workflow graph's (jobs/workflows/graph.py).
"""

from collections.abc import Sequence

from django.core.exceptions import ValidationError
from django.db import models, transaction

from jobs import audit
from jobs.core.errors import Conflict, InvalidInput
from jobs.models import JOB_TYPE_HISTORY, JobType
from jobs.workflows.graph import StepSpec, steps_errors
from jobs.workflows.steps import StepChanges, replace_steps, step_specs


def clean_errors(obj: models.Model) -> dict[str, list[str]]:
    """What `obj.clean()` refuses, by field; {} when nothing."""
    try:
        obj.clean()
    except ValidationError as exc:
        return exc.message_dict
    return {}


def job_type_errors(job_type: JobType, *, steps: Sequence[StepSpec] | None = None) -> dict[str, list[str]]:
    """Every rule that `job_type` (as it would be saved) and its `steps` break,
    by field; {} when none. `steps` None: a workflow keeps its stored steps."""
    errors = clean_errors(job_type)
    if job_type.kind != JobType.Kind.WORKFLOW:
        if steps:
            errors["steps"] = [f"Only for kind 'workflow': leave it empty for kind '{job_type.kind}'."]
        return errors
    if steps is None:
        steps = step_specs(job_type) if job_type.pk is not None else []
    step_problems = steps_errors(steps, params_schema=job_type.params_schema, step_args=job_type.step_args)
    if step_problems:
        errors["steps"] = step_problems
    return errors


def job_type_save(*, job_type: JobType, steps: Sequence[StepSpec] | None = None) -> StepChanges:
    """Check and save `job_type` and, for a workflow, make its steps `steps`
    (None: keep them), in one transaction. A job type that is not a workflow
    has no steps. InvalidInput, with messages by field, when a rule is broken;
    then nothing is written. What happened to the steps."""
    errors = job_type_errors(job_type, steps=steps)
    if errors:
        raise InvalidInput(errors)
    adding = job_type._state.adding
    with transaction.atomic():
        # Its revision is recorded once its steps are written, so that it holds them.
        job_type.skip_history_when_saving = True
        try:
            job_type.save()
        finally:
            del job_type.skip_history_when_saving
        if job_type.kind != JobType.Kind.WORKFLOW:  # it may have been one
            changes = StepChanges() if adding else replace_steps(workflow=job_type, steps=[])
        elif steps is None:
            changes = StepChanges()
        else:
            changes = replace_steps(workflow=job_type, steps=steps)
        JOB_TYPE_HISTORY.create_historical_record(job_type, "+" if adding else "~")
    return changes


def job_type_delete(*, job_type: JobType, by: audit.Author | None = None) -> bool:
    """Delete a job type, or disable it when it has runs (they keep their
    history). Conflict naming what uses it (a workflow step, a failure hook,
    a schedule) when it has no runs but something refers to it. Recorded in
    the audit log as made `by` (the admin records its own). Whether it was
    deleted (False: disabled)."""
    has_runs = job_type.runs.exists()
    if not has_runs:
        uses = job_type.usages()
        if uses:
            raise Conflict(
                f"Job type '{job_type.name}' is {' and '.join(uses)}: remove it from there before deleting it."
            )
        with transaction.atomic():
            if by is not None:
                audit.log_deletion(job_type, by=by)
            job_type.delete()
        return True
    before = audit.snapshot(job_type)
    with transaction.atomic():
        job_type.enabled = False
        job_type.save(update_fields=["enabled", "updated_at"])
        if by is not None:
            audit.log_change(job_type, before=before, by=by, note=" (asked to delete it, but it has runs)")
    return False
