"""celery-director's workflows.yml, read into Jobsite definitions: a `task` job
type per task (and per task and queue for a task given its own queue), a
`workflow` job type per entry, with its steps, queue, params schema and hooks,
its celery-director name and celery-director's calling convention for its
steps, and a schedule definition per `periodic` (`DirectorImport.schedules`,
created by jobs/importexport/job_files.py's `import_schedules`). The mapping,
key by key: docs/guide.md, "Importing celery-director workflows, exporting job
types". `definition_of` goes the other way, for the celery-director API
(jobs/director_api/).
"""

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from celery.schedules import crontab
from django.conf import settings

from jobs.core.params import check_schema
from jobs.core.yaml_lines import FileError, line_of
from jobs.models import JobType, Schedule, StepArgs
from jobs.workflows.graph import layers

WORKFLOW_KEYS = ("tasks", "queue", "periodic", "hooks", "schema")
GROUP_KEYS = ("type", "tasks")
QUEUE_KEYS = ("default", "customs")
HOOK_KEYS = ("success", "failure")
PERIODIC_KEYS = ("interval", "crontab", "schedule", "payload")
# The step that runs the success hook, last.
SUCCESS_STEP = "on-success"


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


@dataclass
class DirectorImport:
    job_types: list[dict] = field(default_factory=list)  # definitions, as export_job_types writes them
    # {name, job_type, params, enabled, and cron + timezone or interval_seconds}
    schedules: list[dict] = field(default_factory=list)
    lines: dict[str, int] = field(default_factory=dict)  # job type name → line it comes from
    schedule_lines: dict[str, int] = field(default_factory=dict)  # schedule name → line of its `periodic`


def read(document: Any, *, schemas_dir: Path) -> DirectorImport:
    """The job types, workflows and schedules a workflows.yml describes.
    FileError, with the line, for anything celery-director would not accept."""
    if not isinstance(document, dict) or not document:
        raise FileError(line_of(document), "a workflows.yml maps workflow names ('project.NAME') to workflows")
    reader = _Reader(schemas_dir)
    for key, workflow in document.items():
        reader.workflow(key, workflow, line_of(document, key))
    return reader.result


class _Reader:
    def __init__(self, schemas_dir: Path):
        self.schemas_dir = schemas_dir
        self.result = DirectorImport()
        self.owner: dict[str, str] = {}  # job type name → what it was made from, to catch clashes

    def _claim(self, name: str, source: str, line: int | None) -> None:
        if not name:
            raise FileError(line, f"'{source}' gives an empty name: use letters or digits in it")
        if self.owner.setdefault(name, source) != source:
            raise FileError(
                line, f"'{source}' and '{self.owner[name]}' would both become job type '{name}': rename one"
            )
        self.result.lines.setdefault(name, line)

    def task_job_type(self, task: Any, queue: str, line: int | None) -> str:
        if not isinstance(task, str) or not task:
            raise FileError(line, f"a task is a task name or a group, not {task!r}")
        name = slug(task) + (f"-on-{slug(queue)}" if queue else "")
        self._claim(name, f"{task} on {queue}" if queue else task, line)
        entry = {"name": name, "kind": JobType.Kind.TASK, "task": task}
        if queue:
            entry["queue"] = queue
        if entry not in self.result.job_types:
            self.result.job_types.append(entry)
        return name

    def workflow(self, key: Any, workflow: Any, line: int | None) -> None:
        if not isinstance(key, str) or "." not in key:
            raise FileError(line, f"workflow name {key!r}: celery-director names workflows 'project.NAME'")
        if not isinstance(workflow, dict):
            raise FileError(line, f"{key}: give a mapping with at least 'tasks'")
        _known_keys(workflow, WORKFLOW_KEYS, f"{key}", "celery-director workflows use")
        name = slug(key)
        self._claim(name, key, line)
        default_queue, customs = self._queues(key, workflow)
        steps: list[dict] = []
        previous: list[str] = []
        tasks = workflow.get("tasks")
        if not isinstance(tasks, list) or not tasks:
            raise FileError(line_of(workflow, "tasks"), f"{key}: 'tasks' must be a list of at least one task")
        for index, item in enumerate(tasks):
            item_line = line_of(tasks, index)
            names = [item] if not isinstance(item, dict) else self._group(key, item, item_line)
            added = [self._step(steps, task, customs, previous, line_of(tasks, index)) for task in names]
            previous = added
        entry: dict[str, Any] = {
            "name": name,
            "description": f"Imported from celery-director workflow {key}.",
            "kind": JobType.Kind.WORKFLOW,
            "director_name": key,
            "step_args": StepArgs.DIRECTOR,
            "params_schema": self._schema(key, workflow),
            "queue": default_queue,
        }
        hooks = workflow.get("hooks")
        on_failure = None
        if hooks is not None:
            if not isinstance(hooks, dict):
                raise FileError(line_of(workflow, "hooks"), f"{key}: hooks must be a mapping of success and failure")
            _known_keys(hooks, HOOK_KEYS, f"{key}: hooks", "hooks are")
            if "success" in hooks:
                job_type = self.task_job_type(
                    hooks["success"], customs.get(hooks["success"], ""), line_of(hooks, "success")
                )
                sinks = {s["name"] for s in steps} - {need for s in steps for need in s["depends_on"]}
                ordered_sinks = [s["name"] for s in steps if s["name"] in sinks]
                steps.append({"name": SUCCESS_STEP, "job_type": job_type, "params": {}, "depends_on": ordered_sinks})
            if "failure" in hooks:
                # The hook runs on its own, not as a step: it needs the workflow's queue itself.
                on_failure = self.task_job_type(hooks["failure"], default_queue, line_of(hooks, "failure"))
        entry["steps"] = steps
        entry["on_failure"] = on_failure
        self.result.job_types.append(entry)
        if "periodic" in workflow:
            schedule = self._schedule(key, name, workflow["periodic"], line_of(workflow, "periodic"))
            self.result.schedules.append(schedule)
            self.result.schedule_lines[schedule["name"]] = line_of(workflow, "periodic")

    def _queues(self, key: str, workflow: dict) -> tuple[str, dict[str, str]]:
        queue = workflow.get("queue", "")
        line = line_of(workflow, "queue")
        if isinstance(queue, str):
            return queue, {}
        if not isinstance(queue, dict):
            raise FileError(line, f"{key}: queue is a queue name, or a mapping with 'default' and 'customs'")
        _known_keys(queue, QUEUE_KEYS, f"{key}: queue", "a queue mapping has")
        default, customs = queue.get("default", ""), queue.get("customs", {})
        if not isinstance(default, str):
            raise FileError(line_of(queue, "default"), f"{key}: queue default must be a queue name")
        if not isinstance(customs, dict) or not all(isinstance(v, str) and v for v in customs.values()):
            raise FileError(line_of(queue, "customs"), f"{key}: queue customs maps task names to queue names")
        return default, {task: q for task, q in customs.items() if q != default}

    def _group(self, key: str, item: dict, line: int | None) -> list:
        if len(item) != 1:
            raise FileError(line, f"{key}: a group is one name holding 'type: group' and 'tasks'")
        group_name, group = next(iter(item.items()))
        if not isinstance(group, dict):
            raise FileError(line, f"{key}: group {group_name} needs 'type: group' and 'tasks'")
        _known_keys(group, GROUP_KEYS, f"{key}: group {group_name}", "a group has")
        if group.get("type") != "group":
            raise FileError(
                line_of(group, "type") if "type" in group else line,
                f"{key}: {group_name} needs 'type: group' (the only type there is)",
            )
        tasks = group.get("tasks")
        if not isinstance(tasks, list) or not tasks or not all(isinstance(t, str) for t in tasks):
            raise FileError(line_of(group, "tasks"), f"{key}: group {group_name} needs a list of task names in 'tasks'")
        return tasks

    def _step(self, steps: list[dict], task: Any, customs: dict, previous: list[str], line: int | None) -> str:
        job_type = self.task_job_type(task, customs.get(task, "") if isinstance(task, str) else "", line)
        base = slug(task)
        name, number = base, 1
        while any(step["name"] == name for step in steps) or name == SUCCESS_STEP:
            number += 1
            name = f"{base}-{number}"
        steps.append({"name": name, "job_type": job_type, "params": {}, "depends_on": list(previous)})
        return name

    def _schema(self, key: str, workflow: dict) -> dict:
        if "schema" not in workflow:
            return {}
        schema_name = workflow["schema"]
        line = line_of(workflow, "schema")
        path = self.schemas_dir / f"{schema_name}.json"
        if not isinstance(schema_name, str) or not path.is_file():
            raise FileError(
                line, f"{key}: schema '{schema_name}' is not a file at {path}: put it there or pass --schemas"
            )
        try:
            schema = json.loads(path.read_text())
        except ValueError as exc:
            raise FileError(line, f"{key}: schema {path} is not valid JSON: {exc}") from None
        problem = check_schema(schema)
        if problem:
            raise FileError(line, f"{key}: schema {path}: {problem}")
        return schema

    def _schedule(self, key: str, name: str, periodic: Any, line: int | None) -> dict:
        if not isinstance(periodic, dict):
            raise FileError(
                line, f"{key}: periodic is a mapping with 'interval' or 'crontab', and an optional 'payload'"
            )
        _known_keys(periodic, PERIODIC_KEYS, f"{key}: periodic", "periodic has")
        given = [k for k in ("interval", "crontab", "schedule") if k in periodic]
        if len(given) != 1:
            raise FileError(line, f"{key}: periodic needs exactly one of 'interval' (seconds) or 'crontab'")
        value = periodic[given[0]]
        value_line = line_of(periodic, given[0])
        payload = periodic.get("payload", {})
        if not isinstance(payload, dict):
            raise FileError(line_of(periodic, "payload"), f"{key}: periodic payload must be a mapping")
        schedule = {"name": f"{name}-periodic", "job_type": name, "params": dict(payload), "enabled": True}
        # `schedule` is director's older key: seconds, or a crontab string.
        if given[0] == "interval" or (given[0] == "schedule" and not isinstance(value, str)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 1 or value != int(value):
                raise FileError(value_line, f"{key}: periodic interval must be a whole number of seconds, at least 1")
            return {**schedule, "interval_seconds": int(value)}
        if not isinstance(value, str) or len(value.split()) != 5:
            raise FileError(value_line, f"{key}: crontab must be 5 fields, e.g. '0 */3 * * *', not {value!r}")
        fields = zip(("minute", "hour", "day_of_month", "month_of_year", "day_of_week"), value.split(), strict=True)
        for field_name, field_value in fields:
            try:
                crontab(**{field_name: field_value})
            except ValueError as exc:
                raise FileError(value_line, f"{key}: crontab {value!r}: {field_name} '{field_value}': {exc}") from None
        return {**schedule, "cron": value, "timezone": settings.CELERY_TIMEZONE}


def _known_keys(mapping: dict, known: tuple[str, ...], where: str, what: str) -> None:
    for key in mapping:
        if key not in known:
            raise FileError(line_of(mapping, key), f"{where}: unknown key '{key}'; {what} {', '.join(known)}")


# --- The other way: a workflow as celery-director defines it ----------------------


def task_key(job_type: JobType) -> str:
    """What celery-director calls the task a step runs: its Celery task name
    (for a step that is no task, its job type's name)."""
    return job_type.task if job_type.kind == JobType.Kind.TASK else job_type.name


def definition_of(workflow: JobType, schedule: Schedule | None = None) -> dict:
    """A workflow as a workflows.yml entry says it, as it is now: `tasks`
    (steps at the same depth make a group, `GROUP_<position>`, since groups
    keep no name here), `queue`, `hooks`, `periodic` (from `schedule`) and
    `schema` (the params schema itself, as celery-director's API shows it).
    Its steps and failure hook should be prefetched with their job types."""
    steps = list(workflow.steps.all())
    chain = {step.name: step for step in steps if step.name != SUCCESS_STEP}
    tasks: list[Any] = []
    for position, layer in enumerate(layers({name: step.depends_on for name, step in chain.items()}), 1):
        keys = [task_key(chain[name].job_type) for name in layer]
        tasks.append(keys[0] if len(keys) == 1 else {f"GROUP_{position}": {"type": "group", "tasks": keys}})
    definition: dict[str, Any] = {"tasks": tasks}
    customs = {
        task_key(step.job_type): step.job_type.queue
        for step in steps
        if step.job_type.queue and step.job_type.queue != workflow.queue
    }
    if customs:
        definition["queue"] = {**({"default": workflow.queue} if workflow.queue else {}), "customs": customs}
    elif workflow.queue:
        definition["queue"] = workflow.queue
    hooks = {}
    success = next((step for step in steps if step.name == SUCCESS_STEP), None)
    if success is not None:
        hooks["success"] = task_key(success.job_type)
    if workflow.on_failure is not None:
        hooks["failure"] = task_key(workflow.on_failure)
    if hooks:
        definition["hooks"] = hooks
    if schedule is not None:
        timing = {"crontab": schedule.cron} if schedule.cron else {"interval": schedule.interval_seconds}
        definition["periodic"] = {**timing, **({"payload": schedule.params} if schedule.params else {})}
    if workflow.params_schema:
        definition["schema"] = workflow.params_schema
    return definition
