"""A workflow's steps as a graph: the rules a definition must follow, and the
orders derived from it. Pure functions, shared by the API, the admin and the
import commands so that all of them accept and refuse the same definitions."""

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from graphlib import CycleError, TopologicalSorter
from typing import Any

from django.conf import settings

from jobs.core.kinds import Kind, StepArgs
from jobs.core.placeholders import PlaceholderError, references

SLUG = re.compile(r"[-a-zA-Z0-9_]+")
# The keyword arguments celery-director's calling convention gives a task step itself.
DIRECTOR_KWARGS = ("payload", "workflow_id")


@dataclass
class StepSpec:
    """One step as given, before it is saved. `job_type` is None when the name
    given (`job_type_name`) matches no job type."""

    name: Any
    job_type: Any  # a JobType, or None
    params: Any = field(default_factory=dict)
    depends_on: Any = field(default_factory=list)
    job_type_name: str = ""
    pk: int | None = None  # the stored step it edits (the admin's inline form), whatever its new name


def steps_errors(steps: Sequence[StepSpec], *, params_schema: Any, step_args: str = StepArgs.PARAMS) -> list[str]:
    """Every rule the steps break, each message naming the step and the fix; [] when valid.
    `step_args`: the workflow's calling convention (JobType.step_args)."""
    if not steps:
        return ["A workflow needs at least one step."]
    limit = settings.JOBS_MAX_WORKFLOW_STEPS
    if len(steps) > limit:
        # Checked first: every later check walks the steps.
        return [
            f"A workflow has at most {limit} steps, not {len(steps)}: "
            "make it shorter, or ask an administrator to raise JOBS_MAX_WORKFLOW_STEPS."
        ]
    errors = _shape_errors(steps)
    if errors:
        return errors
    if step_args == StepArgs.DIRECTOR:
        errors = _director_errors(steps)
        if errors:
            return errors
    deps = {step.name: list(dict.fromkeys(step.depends_on)) for step in steps}
    for name, needs in deps.items():
        for need in needs:
            if need == name:
                errors.append(f"Step '{name}' depends on itself.")
            elif need not in deps:
                errors.append(f"Step '{name}' depends on '{need}', which is not a step of this workflow.")
    if errors:
        return errors
    cycle = find_cycle(deps)
    if cycle:
        return [f"The steps form a cycle: {' → '.join(cycle)} (each waits for the next). Remove one of these."]
    return _placeholder_errors(steps, deps, params_schema)


def _shape_errors(steps: Sequence[StepSpec]) -> list[str]:
    errors, seen = [], set()
    for number, step in enumerate(steps, 1):
        if not isinstance(step.name, str) or not SLUG.fullmatch(step.name):
            errors.append(
                f"Step {number}: name {step.name!r} must be a slug (letters, numbers, hyphens or underscores)."
            )
            label = f"Step {number}"
        else:
            if step.name in seen:
                errors.append(f"Step name '{step.name}' is used twice: names must be unique in a workflow.")
            seen.add(step.name)
            label = f"Step '{step.name}'"
        if step.job_type is None:
            errors.append(f"{label}: there is no job type named '{step.job_type_name}'.")
        elif step.job_type.kind == Kind.WORKFLOW:
            errors.append(
                f"{label}: '{step.job_type.name}' is a workflow; a step runs a task, http or command job type."
            )
        if not isinstance(step.params, dict):
            errors.append(f"{label}: params must be a JSON object.")
        if not isinstance(step.depends_on, list) or not all(isinstance(d, str) for d in step.depends_on):
            errors.append(f"{label}: depends_on must be a list of step names.")
    return errors


def _director_errors(steps: Sequence[StepSpec]) -> list[str]:
    errors = []
    for step in steps:
        if step.job_type.kind != Kind.TASK:
            continue
        for key in DIRECTOR_KWARGS:
            if key in step.params:
                errors.append(
                    f"Step '{step.name}': params '{key}' is what celery-director's calling convention "
                    f"(step_args 'director') passes by itself: remove it from the step's params."
                )
    return errors


def _placeholder_errors(steps: Sequence[StepSpec], deps: dict[str, list[str]], params_schema: Any) -> list[str]:
    properties = params_schema.get("properties") if isinstance(params_schema, dict) else None
    known_params = set(properties) if isinstance(properties, dict) else None
    errors = []
    for step in steps:
        before = upstream(deps, step.name)
        for ref in references(step.params):
            if isinstance(ref, PlaceholderError):
                errors.append(f"Step '{step.name}': {ref}")
            elif ref.step is None:
                if ref.path and known_params is not None and ref.path[0] not in known_params:
                    listed = ", ".join(sorted(known_params)) or "none"
                    errors.append(
                        f"Step '{step.name}': {ref.text} names param '{ref.path[0]}', which the workflow's "
                        f"params_schema does not list (it lists: {listed})."
                    )
            elif ref.step not in deps:
                errors.append(
                    f"Step '{step.name}': {ref.text} refers to step '{ref.step}', which is not a step of this workflow."
                )
            elif ref.step not in before:
                errors.append(
                    f"Step '{step.name}': {ref.text} refers to step '{ref.step}', which is not upstream of "
                    f"'{step.name}': add '{ref.step}' to its depends_on (or to a step it depends on)."
                )
    return errors


def find_cycle(deps: dict[str, list[str]]) -> list[str] | None:
    """A cycle as a closed path of step names, each waiting for the next
    (["a", "b", "a"]), starting from the step listed first; or None."""
    try:
        # graphlib walks the graph with a stack of its own, not with recursion,
        # so a long chain of steps is no deeper for it than a short one.
        TopologicalSorter(deps).prepare()
    except CycleError as exc:
        # graphlib lists each step before the one that waits for it.
        cycle = list(reversed(exc.args[1][1:]))
        position = {name: index for index, name in enumerate(deps)}
        first = min(range(len(cycle)), key=lambda index: position.get(cycle[index], len(position)))
        cycle = cycle[first:] + cycle[:first]
        return [*cycle, cycle[0]]
    return None


def upstream(deps: dict[str, list[str]], name: str) -> set[str]:
    """The steps `name` waits for, directly or through others."""
    seen: set[str] = set()
    stack = list(deps.get(name, ()))
    while stack:
        need = stack.pop()
        if need not in seen:
            seen.add(need)
            stack.extend(deps.get(need, ()))
    return seen


def topological_order(deps: dict[str, list[str]]) -> list[str]:
    """Step names so that each comes after the steps it depends on; ties keep
    the order of `deps`. Names in a cycle (never saved) come last."""
    order: list[str] = []
    placed: set[str] = set()
    remaining = list(deps)
    while remaining:
        ready = [name for name in remaining if all(need in placed or need not in deps for need in deps[name])]
        if not ready:
            return order + remaining
        for name in ready:
            order.append(name)
            placed.add(name)
        remaining = [name for name in remaining if name not in placed]
    return order


def layers(deps: dict[str, list[str]]) -> list[list[str]]:
    """Steps by depth: the first layer depends on nothing, each later one on earlier ones."""
    depth: dict[str, int] = {}
    for name in topological_order(deps):
        depth[name] = 1 + max((depth.get(need, -1) for need in deps[name] if need in deps), default=-1)
    result: list[list[str]] = [[] for _ in range(max(depth.values(), default=-1) + 1)]
    for name, level in depth.items():
        result[level].append(name)
    return result
