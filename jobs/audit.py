"""Who changed which definition (job types, workflows, schedules), and how.

The admin records its own changes as LogEntry rows, shown on each object's
History page. Changes through the API and the import commands are written
here into the same table, with a message naming the fields that changed and
where the change came from, so that the History page and the audit log page
(/monitor/audit/) show every change in one place.
"""

from dataclasses import dataclass

from django.contrib.admin.models import ADDITION, CHANGE, DELETION, LogEntry
from django.contrib.auth.models import AbstractBaseUser
from django.contrib.contenttypes.models import ContentType
from django.db import models, transaction
from django.utils.text import get_text_list

from jobs.models import JobType, Schedule, Secret, Workflow

API = "through the API"
# What the audit log lists, as the admin logs it: workflows under their own
# (proxy) model, as the admin's Workflows page records them.
AUDITED_MODELS = (JobType, Workflow, Schedule, Secret)


@dataclass(frozen=True)
class Author:
    """Who made a change, and through what (`via`, e.g. "through the API")."""

    user: AbstractBaseUser
    via: str


def content_type_for(obj: models.Model) -> ContentType:
    """The content type the admin's History page of `obj` reads."""
    model = Workflow if isinstance(obj, JobType) and obj.kind == JobType.Kind.WORKFLOW else type(obj)
    return ContentType.objects.get_for_model(model, for_concrete_model=False)


def audited_content_types() -> list[ContentType]:
    return list(ContentType.objects.get_for_models(*AUDITED_MODELS, for_concrete_models=False).values())


def snapshot(obj: models.Model) -> dict:
    """The values a user sets on `obj` (a workflow's steps included), to compare before and after a change."""
    values = {
        field.name: field.value_from_object(obj)
        for field in type(obj)._meta.concrete_fields
        if field.editable and not field.primary_key
    }
    if isinstance(obj, JobType) and obj.pk is not None:
        values["steps"] = list(
            obj.steps.order_by("position", "id").values_list("name", "job_type_id", "params", "depends_on")
        )
    return values


def changed_fields(before: dict, after: dict) -> list[str]:
    return [name for name, value in after.items() if before.get(name) != value]


def _log(obj: models.Model, *, by: Author, action: int, message: str, object_id=None) -> LogEntry:
    return LogEntry.objects.create(
        user_id=by.user.pk,
        content_type=content_type_for(obj),
        object_id=str(object_id if object_id is not None else obj.pk),
        object_repr=str(obj)[:200],
        action_flag=action,
        change_message=message,
    )


def log_addition(obj: models.Model, *, by: Author) -> LogEntry:
    return _log(obj, by=by, action=ADDITION, message=f"Added {by.via}.")


def log_change(obj: models.Model, *, before: dict, by: Author, note: str = "") -> LogEntry | None:
    """Record the fields of `obj` that differ from `before` (a `snapshot`); nothing when none did."""
    fields = changed_fields(before, snapshot(obj))
    if not fields:
        return None
    return _log(obj, by=by, action=CHANGE, message=f"Changed {get_text_list(fields, 'and')} {by.via}{note}.")


def log_fields_changed(obj: models.Model, *, fields: list[str], by: Author) -> LogEntry:
    """Record a change of `fields`, named only: for what a snapshot does not hold (a secret's value)."""
    return _log(obj, by=by, action=CHANGE, message=f"Changed {get_text_list(fields, 'and')} {by.via}.")


def log_deletion(obj: models.Model, *, by: Author) -> LogEntry:
    """Call before deleting `obj`, in the same transaction."""
    return _log(obj, by=by, action=DELETION, message=f"Deleted {by.via}.")


def save_and_log(serializer, *, by: Author) -> models.Model:
    """Save a valid DRF serializer (a create or an update) and record the
    change it made, both in one transaction."""
    before = snapshot(serializer.instance) if serializer.instance is not None else None
    with transaction.atomic():
        saved = serializer.save()
        if before is None:
            log_addition(saved, by=by)
        else:
            log_change(saved, before=before, by=by)
    return saved


def log_note(obj: models.Model, *, by: Author, message: str) -> LogEntry:
    """Record a change to `obj` that is not one of its fields (e.g. a trigger URL
    of a job type added or revoked), in the caller's transaction."""
    return _log(obj, by=by, action=CHANGE, message=message)
