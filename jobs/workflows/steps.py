"""Workflow runs in the database: the step runs of a workflow run, and how
they advance. These functions only read and write rows; the services in
jobs/runs/trigger.py wrap them in transactions and talk to the broker.

A workflow run is the parent; each step gets a child run, created `waiting`
(or `succeeded`, reusing an earlier result) when the workflow run is created.
`advance` moves the waiting steps whose dependencies all succeeded to
`queued`, to be published once committed. It runs with the workflow run's row
locked (`SELECT ... FOR UPDATE` on PostgreSQL; on SQLite every write
transaction is `BEGIN IMMEDIATE` and so already serialised), and each step
moves with a conditional UPDATE from `waiting`: when parallel steps end at the
same moment, the one that sees the last of them succeed publishes the next
step, and only that one.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field

from django.db import router
from django.db.models import QuerySet
from django.utils import timezone

from jobs import notifications
from jobs.core import statements
from jobs.core.kinds import Kind, StepArgs
from jobs.core.limits import is_truncated_result
from jobs.core.params import params_with_defaults
from jobs.core.placeholders import PlaceholderError, resolve
from jobs.models import JobType, Run, WorkflowStep
from jobs.workflows.graph import StepSpec, topological_order

BROKEN = (Run.Status.FAILED, Run.Status.CANCELLED)
NOT_STARTED = (Run.Status.WAITING, Run.Status.PENDING, Run.Status.QUEUED)
# What `advance` reads of a step run, and what publishing it reads (jobs/runs/executors.py).
STEP_FIELDS = (
    "status", "step_name", "depends_on", "params", "result", "error", "created_at", "finished_at",
    "parent_id", "job_type",
)  # fmt: skip
# What `advance` reads of the workflow run: to advance it, end it (its notification,
# its failure hook) and publish its steps (its job type's queue and step_args).
WORKFLOW_RUN_FIELDS = (
    "status", "params", "trigger", "error", "parent_id", "notify_status", "job_type__name", "job_type__kind",
    "job_type__queue", "job_type__step_args", "job_type__notify_on", "job_type__on_failure",
)  # fmt: skip


# --- Definitions --------------------------------------------------------------


def step_specs(workflow: JobType) -> list[StepSpec]:
    return [
        StepSpec(name=step.name, job_type=step.job_type, params=step.params, depends_on=step.depends_on)
        for step in workflow.steps.select_related("job_type")
    ]


@dataclass
class StepChanges:
    """What replace_steps did, for the admin's history of the workflow."""

    added: list[WorkflowStep] = field(default_factory=list)
    changed: list[tuple[WorkflowStep, list[str]]] = field(default_factory=list)
    deleted: list[WorkflowStep] = field(default_factory=list)


def replace_steps(*, workflow: JobType, steps: Sequence[StepSpec]) -> StepChanges:
    """Make the workflow's steps exactly `steps` (already checked with
    workflows.graph.steps_errors). A step that keeps its name (or, edited in
    the admin, its row) keeps its row, and so the link from its past runs."""
    changes = StepChanges()
    stored = list(workflow.steps.all())
    by_pk = {step.pk: step for step in stored}
    claimed = {spec.pk for spec in steps if spec.pk in by_pk}
    by_name = {step.name: step for step in stored if step.pk not in claimed}
    rows = [
        by_pk[spec.pk] if spec.pk in claimed else by_name.pop(spec.name, None) or WorkflowStep(workflow=workflow)
        for spec in steps
    ]
    kept = {step.pk for step in rows if step.pk is not None}
    # Deleted first, so that a name they free can be taken in the same edit.
    changes.deleted = [step for step in stored if step.pk not in kept]
    if changes.deleted:
        WorkflowStep.objects.filter(pk__in=[step.pk for step in changes.deleted]).delete()
    for position, (spec, step) in enumerate(zip(steps, rows, strict=True)):
        values = {
            "name": spec.name,
            "job_type_id": spec.job_type.pk,
            "params": spec.params,
            "depends_on": list(spec.depends_on),
        }
        changed = [key.removesuffix("_id") for key, value in values.items() if getattr(step, key) != value]
        if step.pk is None:
            changes.added.append(step)
        elif changed:
            changes.changed.append((step, changed))
        if step.pk is None or changed or step.position != position:
            for key, value in {**values, "position": position}.items():
                setattr(step, key, value)
            step.save()
    return changes


# --- Runs -----------------------------------------------------------------------


def create_step_runs(*, parent: Run, reuse_from: Run | None = None) -> None:
    """One child run per step of the workflow, in the caller's transaction.

    With `reuse_from` (a rerun from the failed steps), a step that succeeded in
    that run, with the same job type and with every step it depends on reused
    too, is created `succeeded` with a copy of its result and `rerun_of` set to
    the original; it is not executed again.
    """
    steps = list(parent.job_type.steps.select_related("job_type"))
    deps = {step.name: list(step.depends_on) for step in steps}
    by_name = {step.name: step for step in steps}
    originals = {child.step_name: child for child in reuse_from.children.all()} if reuse_from else {}
    reused: set[str] = set()
    runs = []
    for name in topological_order(deps):
        step = by_name[name]
        common = {
            "job_type": step.job_type,
            "parent": parent,
            "step": step,
            "step_name": name,
            "depends_on": deps[name],
            "trigger": Run.Trigger.WORKFLOW,
            "requested_by_id": parent.requested_by_id,
        }
        original = originals.get(name)
        if (
            original is not None
            and original.status == Run.Status.SUCCEEDED
            and original.job_type_id == step.job_type_id
            and all(need in reused for need in deps[name])
        ):
            reused.add(name)
            runs.append(
                Run(
                    **common,
                    status=Run.Status.SUCCEEDED,
                    params=original.params,
                    result=original.result,
                    rerun_of=original,
                    started_at=original.started_at,
                    finished_at=original.finished_at,
                )
            )
        else:
            runs.append(Run(**common, status=Run.Status.WAITING, params=step.params))
    Run.objects.bulk_create(runs)


def step_runs(parent: Run) -> list[Run]:
    """The step runs of a workflow run, in topological order."""
    children = list(parent.children.select_related("job_type").order_by("created_at", "step_name"))
    by_name = {child.step_name: child for child in children}
    return [by_name[name] for name in topological_order({c.step_name: c.depends_on for c in children})]


@dataclass
class Advance:
    """What a call to `advance` changed, for the caller to act on once committed."""

    ready: list[Run] = field(default_factory=list)  # now `queued`: publish them
    revoke: list[Run] = field(default_factory=list)  # cancelled after they may have reached the broker
    failed: Run | None = None  # the workflow run, if it just failed
    ended: Run | None = None  # the workflow run, if it just ended (to notify)


def advance(*, parent_id) -> Advance:
    """Bring a workflow run up to date with its steps. Call inside a transaction."""
    outcome = Advance()
    using = router.db_for_write(Run)
    inputs = {"pk": (parent_id, Run._meta.pk)}
    # The workflow run locked, then its steps read in a statement of its own, so
    # that it sees what a step that ended just before committed; on PostgreSQL
    # both in one round trip. Each compiled once per process (statements.select).
    [locked, steps] = statements.read(
        [
            statements.select(("advance", "workflow run"), _locked_workflow_run, inputs, using=using),
            statements.select(("advance", "steps"), _steps_of, inputs, using=using),
        ],
        using=using,
    )
    parent = next(iter(locked), None)
    if parent is None or parent.is_terminal:
        return outcome
    children = sorted(steps, key=lambda child: (child.created_at, child.step_name))
    for child in children:
        child.parent = parent  # publishing reads the workflow's queue
    if _fail_if_broken(parent, children, outcome):
        return outcome
    if all(child.status == Run.Status.SUCCEEDED for child in children):
        results = {child.step_name: child.result for child in children}
        if parent.mark_succeeded(result=results, notify=_notify(parent, Run.Status.SUCCEEDED)):
            outcome.ended = parent
        return outcome
    statuses = {child.step_name: child.status for child in children}
    results = {child.step_name: child.result for child in children if child.status == Run.Status.SUCCEEDED}
    # Ready steps are written `queued` by the UPDATE that makes them ready, all at one
    # moment: their publish sends them with QUEUED_HEADER (their start need not wait
    # for the disk) and needs no `queued` UPDATE after it, a write less per hop. A
    # publish that fails puts them back to `pending` for the sweeper (one UPDATE, on
    # that moment: runs_publish); a process that dies between this transaction's
    # commit and the publish leaves them to the lost-message check (jobs/runs/lost.py).
    now = timezone.now()
    for child in children:
        if child.status != Run.Status.WAITING:
            continue
        if not all(statuses.get(need) == Run.Status.SUCCEEDED for need in child.depends_on):
            continue
        params, error = _dispatch_params(child, parent, results)
        if error:
            child.mark_failed(error=error)
        elif child.mark_ready(params=params, at=now):
            outcome.ready.append(child)
    if _fail_if_broken(parent, children, outcome):
        outcome.ready = [run for run in outcome.ready if run.status == Run.Status.QUEUED]
    return outcome


def _locked_workflow_run(pk) -> QuerySet:
    # No ORDER BY, no LIMIT: one row by its key. Only what advancing, publishing its
    # steps (its job type's queue) and ending it read; the rest is read if asked for.
    return (
        Run.objects.select_for_update(of=("self",))
        .select_related("job_type")
        .only(*WORKFLOW_RUN_FIELDS)
        .filter(pk=pk)
        .order_by()
    )


def _steps_of(pk) -> QuerySet:
    # Only the columns advancing and publishing read: the others (a step's traceback,
    # earlier attempts, notification record...) cost a workflow's every hop for nothing.
    return Run.objects.select_related("job_type").only(*STEP_FIELDS).filter(parent_id=pk).order_by()


def _fail_if_broken(parent: Run, children: list[Run], outcome: Advance) -> bool:
    """A failed (or cancelled) step fails the workflow run and cancels the steps
    that have not started; steps already running finish on their own."""
    broken = [child for child in children if child.status in BROKEN]
    if not broken:
        return False
    first = min(broken, key=lambda child: (child.finished_at or timezone.now(), child.step_name))
    what = "failed" if first.status == Run.Status.FAILED else "was cancelled"
    error = f"Step '{first.step_name}' {what}" + (f": {first.error}" if first.error else ".")
    if parent.mark_failed(error=error, notify=_notify(parent, Run.Status.FAILED)):
        outcome.failed = outcome.ended = parent
    for child in children:
        previous = child.status
        if previous in NOT_STARTED and child.mark_cancelled() and previous != Run.Status.WAITING:
            outcome.revoke.append(child)
    return True


def _notify(parent: Run, status: str) -> bool:
    # The workflow run is told about once, for the whole workflow; its steps never are.
    return notifications.wants_notification(notifications.notify_on_for(parent), status)


def _dispatch_params(child: Run, parent: Run, results: dict) -> tuple[dict | None, str | None]:
    """The step's params with placeholders resolved and its job type's defaults
    applied (and, called celery-director's way, its `payload` and `workflow_id`),
    checked against that job type's schema; or the error that fails it."""
    job_type = child.job_type
    if not job_type.enabled:
        return None, f"Job type '{job_type.name}' is disabled: enable it, then rerun the workflow."
    try:
        params = resolve(child.params, params=parent.params, results=results)
    except PlaceholderError as exc:
        return None, f"Params of step '{child.step_name}': {exc}"
    params = params_with_defaults(job_type.default_params, params)
    if called_director_way(child, parent):
        for need in child.depends_on:
            if is_truncated_result(results.get(need)):
                return None, (
                    f"The result of '{need}' was {results[need]['size']} bytes, more than JOBS_RESULT_MAX_BYTES, "
                    f"so only a preview of it was kept, and step '{child.step_name}' cannot be given it"
                )
        params = {**params, "payload": parent.params, "workflow_id": str(parent.pk)}
    errors = job_type.run_params_errors(params)
    if errors:
        return None, (
            f"Params of step '{child.step_name}' do not match job type '{job_type.name}' once resolved: "
            + "; ".join(errors)
        )
    return params, None


# --- celery-director's calling convention --------------------------------------


def called_director_way(step_run: Run, parent: Run) -> bool:
    """Whether the step's task is called as celery-director calls tasks (the workflow's step_args)."""
    return parent.job_type.step_args == StepArgs.DIRECTOR and step_run.job_type.kind == Kind.TASK


def director_args(step_run: Run) -> list:
    """The positional arguments celery-director gives a task: the result of the
    step it depends on; the list of their results (in `depends_on` order) when
    it depends on several, as after a group; None when it depends on none."""
    if not step_run.depends_on:
        return [None]
    found = dict(
        Run.objects.filter(parent_id=step_run.parent_id, step_name__in=step_run.depends_on).values_list(
            "step_name", "result"
        )
    )
    results = [found.get(name) for name in step_run.depends_on]
    return results if len(results) == 1 else [results]
