"""Revisions of job types (their workflow steps included) and schedules: what
each one was, what changed from the one before, and restoring one.

django-simple-history records them (jobs/models.py, `DefinitionHistory`): a
row per save, whichever path made it, with its user and its source as the
change reason. Field diffs are its `diff_against`; a job type's steps are
kept whole on its revision and compared as one field.

Every read here masks credentials as the API does (jobs/core/redaction.py);
a revision never holds a webhook secret. A restore writes the definition as
it was through the API's serializer and the save service, so it is checked
like any save and is itself a new revision (source "restore").
"""

from collections.abc import Sequence
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import models
from simple_history.models import DeletedObject

from jobs import audit
from jobs.core.errors import InvalidInput
from jobs.core.redaction import mask_http, mask_url
from jobs.core.revision_source import RESTORE, revision_source
from jobs.definitions.serializers import JobTypeSerializer, ScheduleSerializer
from jobs.models import JobType, Schedule

# A job type's definition: the API's writable fields, without the webhook secret (never kept).
JOB_TYPE_FIELDS = [
    name
    for name in JobTypeSerializer.Meta.fields
    if name not in ("webhook_secret", *JobTypeSerializer.Meta.read_only_fields)
]
SCHEDULE_FIELDS = [
    name
    for name in ScheduleSerializer.Meta.fields
    if name not in ("id", "timing", "last_run", *ScheduleSerializer.Meta.read_only_fields)
]
# The foreign keys of a definition, shown by the name of what they point to.
_BY_NAME = ("on_failure", "job_type")


def _fields(record: models.Model) -> list[str]:
    return JOB_TYPE_FIELDS if issubclass(record.instance_type, JobType) else SCHEDULE_FIELDS


def _name_of(related: Any) -> str | None:
    if related is None:
        return None
    if isinstance(related, DeletedObject):
        return f"(deleted {related.model._meta.verbose_name} #{related.pk})"
    return related.name


def _related_name(record: models.Model, field: str) -> str | None:
    pk = getattr(record, f"{field}_id")
    if pk is None:
        return None
    model = record.instance_type._meta.get_field(field).related_model
    found = model.objects.filter(pk=pk).values_list("name", flat=True).first()
    return found if found is not None else _name_of(DeletedObject(model, pk))


def _mask(field: str, value: Any) -> Any:
    if field == "http" and value:
        return mask_http(value)
    if field == "webhook_url" and value:
        return mask_url(value, webhook=True)
    return value


def definition(record: models.Model, *, masked: bool = True) -> dict:
    """The definition a revision holds, in the API's shape (job types by
    name); credentials masked unless `masked` is False (for a restore only)."""
    data = {}
    for field in _fields(record):
        if field == "steps":
            value = record.steps
        elif field in _BY_NAME:
            value = _related_name(record, field)
        else:
            value = getattr(record, field)
        data[field] = _mask(field, value) if masked else value
    return data


def changes(record: models.Model, previous: models.Model | None) -> list[dict]:
    """What `record` changed from `previous` (the revision before it), field by
    field, masked: [{field, old, new}]. The first revision sets every field."""
    if previous is None:
        return [{"field": field, "old": None, "new": value} for field, value in definition(record).items()]
    fields = [field for field in _fields(record) if field != "steps"]
    delta = record.diff_against(previous, included_fields=fields, foreign_keys_are_objs=True)
    found = {
        change.field: (
            (_name_of(change.old), _name_of(change.new))
            if change.field in _BY_NAME
            else (_mask(change.field, change.old), _mask(change.field, change.new))
        )
        for change in delta.changes
    }
    if "steps" in _fields(record) and record.steps != previous.steps:
        found["steps"] = (previous.steps, record.steps)
    return [
        {"field": field, "old": found[field][0], "new": found[field][1]} for field in _fields(record) if field in found
    ]


def with_changes(records: Sequence[models.Model], older: models.Model | None) -> list[tuple[models.Model, list[dict]]]:
    """Each of `records` (newest first, consecutive) with its changes; `older`
    is the revision just before the last of them (None: that one is the first)."""
    following = [*records[1:], older]
    return [(record, changes(record, previous)) for record, previous in zip(records, following, strict=True)]


def revision_before(record: models.Model) -> models.Model | None:
    return (
        type(record)
        .objects.filter(id=record.id)
        .filter(
            models.Q(history_date__lt=record.history_date)
            | models.Q(history_date=record.history_date, history_id__lt=record.history_id)
        )
        .order_by("-history_date", "-history_id")
        .first()
    )


def _restore(serializer_class, obj: models.Model, record: models.Model, *, user: AbstractBaseUser):
    serializer = serializer_class(obj, data=definition(record, masked=False))
    if not serializer.is_valid():
        raise InvalidInput(
            {
                "detail": [f"Revision {record.history_id} cannot be restored as it was: {_summary(serializer.errors)}"],
                **serializer.errors,
            }
        )
    with revision_source(RESTORE, user=user):
        return audit.save_and_log(serializer, by=audit.Author(user, f"by restoring revision {record.history_id}"))


def _summary(errors: Any) -> str:
    if isinstance(errors, dict):
        return "; ".join(f"{field}: {_summary(value)}" for field, value in errors.items())
    if isinstance(errors, list):
        return " ".join(_summary(value) for value in errors if value)
    return str(errors)


def job_type_restore(*, job_type: JobType, record: models.Model, user: AbstractBaseUser) -> JobType:
    """Make `job_type` what revision `record` holds (its webhook secret stays),
    through the same checks as any save; InvalidInput naming what no longer
    holds (a step's job type deleted since, …), and then nothing is written."""
    return _restore(JobTypeSerializer, job_type, record, user=user)


def schedule_restore(*, schedule: Schedule, record: models.Model, user: AbstractBaseUser) -> Schedule:
    """As job_type_restore, for a schedule."""
    return _restore(ScheduleSerializer, schedule, record, user=user)
