"""Job types and workflows as data: written out by `export_job_types`, read
back by `import_job_types` and, from celery-director files, `import_workflows`.

Reading goes through the definitions' serializers (the API's own), so a file is held to the same rules
as the API and the admin, and it is all-or-nothing: one bad definition and
nothing is written. A definition equal to what is stored is left alone, so
importing the same file twice changes nothing. Each change is recorded in the
admin's log under the importing user (jobs/audit.py).

Credentials are written masked, as the API shows them (`********`,
jobs/core/redaction.py). Importing a mask back keeps the stored value it
stands for; a job type that does not exist yet has none, so the import
refuses it, saying where, until the file holds the real value.
"""

import json
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction
from rest_framework.exceptions import ValidationError

from jobs import audit
from jobs.core.revision_source import IMPORT, revision_source
from jobs.core.yaml_lines import FileError, line_of
from jobs.definitions.serializers import JobTypeSerializer, ScheduleSerializer, with_stored_credentials
from jobs.models import JobType, Schedule

LEFT_OUT = ("created_at", "updated_at")
# A schedule's state, not its definition: what an import does not set.
SCHEDULE_LEFT_OUT = (
    "id",
    "timing",
    "next_run_at",
    "last_run",
    "skipped_ticks",
    "last_skipped_at",
    "last_skip_reason",
    *LEFT_OUT,
)


def _plain(data: Any) -> Any:
    """JSON-shaped copy (plain dicts and lists), for comparing and dumping."""
    return json.loads(json.dumps(data))


def definition(job_type: JobType) -> dict:
    """One job type as the API shows it, without timestamps, and without the
    empty `steps` of a job type that is not a workflow."""
    data = _plain(JobTypeSerializer(job_type).data)
    for key in LEFT_OUT:
        data.pop(key, None)
    if job_type.kind != JobType.Kind.WORKFLOW:
        data.pop("steps", None)
    return data


def schedule_definition(schedule: Schedule) -> dict:
    """One schedule as the API shows it, without its state."""
    data = _plain(ScheduleSerializer(schedule).data)
    for key in SCHEDULE_LEFT_OUT:
        data.pop(key, None)
    return data


def export_definitions() -> dict:
    """Every job type, workflows last (their steps name the others), then every schedule."""
    job_types = JobType.objects.select_related("on_failure").prefetch_related("steps__job_type")
    ordered = sorted(job_types, key=lambda job_type: (job_type.kind == JobType.Kind.WORKFLOW, job_type.name))
    schedules = Schedule.objects.select_related("job_type").order_by("name")
    return {
        "job_types": [definition(job_type) for job_type in ordered],
        "schedules": [schedule_definition(schedule) for schedule in schedules],
    }


@dataclass
class ImportSummary:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)

    what: str = "Job types"

    def __str__(self) -> str:
        parts = [
            f"{what} {len(names)}" + (f" ({', '.join(names)})" if names and what != "unchanged" else "")
            for what, names in (("created", self.created), ("updated", self.updated), ("unchanged", self.unchanged))
        ]
        return f"{self.what}: " + "; ".join(parts) + "."


def import_definitions(entries: list[dict], *, by: audit.Author, lines: dict[str, int] | None = None) -> ImportSummary:
    """Create or update job types from definitions (the export's shape; keys
    left out keep their stored value), recording each change as made `by`.
    `lines` gives, by name, where each one comes from in the file when the
    entries carry no lines of their own. FileError on the first definition
    that breaks a rule; nothing is written then."""
    summary = ImportSummary()
    lines = lines or {}
    for entry in entries:
        _check_keys(entry, lines)
    with transaction.atomic(), revision_source(IMPORT, user=by.user):
        # Workflows after the job types their steps name; failure hooks, which
        # may name any job type, once all exist.
        for entry in sorted(entries, key=lambda e: e.get("kind") == JobType.Kind.WORKFLOW):
            name = entry.get("name")
            line = line_of(entry) or lines.get(name)
            instance = JobType.objects.filter(name=name).first() if isinstance(name, str) else None
            data = {key: value for key, value in entry.items() if key != "on_failure"}
            if instance is not None and _matches(instance, data):
                continue
            serializer = JobTypeSerializer(instance, data=data)
            if not serializer.is_valid():
                raise FileError(line, f"job type '{name}': {'; '.join(_messages(serializer.errors))}")
            audit.save_and_log(serializer, by=by)
            (summary.updated if instance else summary.created).append(name)
        for entry in entries:
            if "on_failure" not in entry:
                continue
            instance = JobType.objects.get(name=entry["name"])
            if _matches(instance, {"on_failure": entry["on_failure"]}):
                continue
            serializer = JobTypeSerializer(instance, data={"on_failure": entry["on_failure"]}, partial=True)
            if not serializer.is_valid():
                line = line_of(entry, "on_failure") or lines.get(entry["name"])
                raise FileError(line, f"job type '{entry['name']}': {'; '.join(_messages(serializer.errors))}")
            if entry["name"] in summary.created:
                serializer.save()  # part of its creation, which is recorded already
            else:
                audit.save_and_log(serializer, by=by)
            if entry["name"] not in summary.created + summary.updated:
                summary.updated.append(entry["name"])
        summary.unchanged = [e["name"] for e in entries if e["name"] not in summary.created + summary.updated]
    return summary


def _check_keys(entry: Any, lines: dict[str, int]) -> None:
    if not isinstance(entry, dict):
        raise FileError(line_of(entry), "each job type is a mapping of its fields (name, kind, ...)")
    fields = [name for name, f in JobTypeSerializer().fields.items() if not f.read_only]
    step_fields = list(JobTypeSerializer().fields["steps"].child.fields)
    where = f"job type '{entry.get('name')}'"
    for key in entry:
        if key not in fields:
            raise FileError(
                line_of(entry, key) or lines.get(entry.get("name")),
                f"{where}: unknown key '{key}'; job types have {', '.join(fields)}",
            )
    steps = entry.get("steps")
    for index, step in enumerate(steps if isinstance(steps, list) else []):
        unknown = [key for key in step if key not in step_fields] if isinstance(step, dict) else []
        if unknown:
            raise FileError(
                line_of(step, unknown[0]) or line_of(steps, index),
                f"{where}: step {step.get('name')!r}: unknown key '{unknown[0]}'; steps have {', '.join(step_fields)}",
            )


def _matches(job_type: JobType, data: dict) -> bool:
    # Compared with the credentials themselves: two different tokens mask alike.
    stored = {**definition(job_type), "http": job_type.http, "webhook_url": job_type.webhook_url}
    try:
        data = with_stored_credentials(data, job_type)
    except ValidationError:
        return False  # the serializer says why
    return all(_plain(stored.get(key)) == _plain(value) for key, value in data.items())


def _messages(errors: Any, where: str = "") -> list[str]:
    """DRF's nested errors as flat 'field: message' lines."""
    if isinstance(errors, dict):
        return [m for key, value in errors.items() for m in _messages(value, f"{where}.{key}" if where else key)]
    if isinstance(errors, list):
        if all(isinstance(item, str) for item in errors):
            return [f"{where}: {item}" if where else str(item) for item in errors]
        return [m for i, item in enumerate(errors) if item for m in _messages(item, f"{where}[{i}]")]
    return [f"{where}: {errors}" if where else str(errors)]


def import_schedules(entries: list[dict], *, by: audit.Author, lines: dict[str, int] | None = None) -> ImportSummary:
    """Create or update schedules from definitions in the schedules API's shape
    ({name, job_type, params, enabled, cron + timezone or interval_seconds, ...}),
    through the schedules API's serializer, recording each change as made `by`.
    A definition equal to what is stored is left alone. FileError on the first
    that breaks a rule; call it inside the same transaction as the job types'
    import so that nothing is written then."""
    summary = ImportSummary(what="Schedules")
    lines = lines or {}
    writable = [name for name, f in ScheduleSerializer().fields.items() if not f.read_only]
    with transaction.atomic(), revision_source(IMPORT, user=by.user):
        for entry in entries:
            if not isinstance(entry, dict):
                raise FileError(line_of(entry), "each schedule is a mapping of its fields (name, job_type, ...)")
            name = entry.get("name")
            line = line_of(entry) or lines.get(name)
            unknown = [key for key in entry if key not in writable]
            if unknown:
                raise FileError(
                    line_of(entry, unknown[0]) or line,
                    f"schedule '{name}': unknown key '{unknown[0]}'; schedules have {', '.join(writable)}",
                )
            instance = Schedule.objects.filter(name=name).first() if isinstance(name, str) else None
            if instance is not None and all(
                _plain(schedule_definition(instance).get(key)) == _plain(value) for key, value in entry.items()
            ):
                summary.unchanged.append(name)
                continue
            serializer = ScheduleSerializer(instance, data=entry, partial=instance is not None)
            if not serializer.is_valid():
                raise FileError(line, f"schedule '{name}': {'; '.join(_messages(serializer.errors))}")
            audit.save_and_log(serializer, by=by)
            (summary.updated if instance else summary.created).append(name)
    return summary
