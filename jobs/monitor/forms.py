import json
import re
from datetime import datetime, time, timedelta
from typing import Any

from django import forms
from django.contrib.auth import get_user_model
from django.utils import timezone

from jobs.core.forms import JSONField
from jobs.core.keyset import Cursor, Keyset
from jobs.models import JobType, Run, Schedule
from jobs.monitor.queries import AUDIT_PAGES, RUN_PAGES, search


class RunFilterForm(forms.Form):
    """The filters of the run history (GET)."""

    q = forms.CharField(required=False, max_length=100, label="Search", help_text="Run id (or its start) or job name")
    status = forms.ChoiceField(required=False, choices=[("", "any status"), *Run.Status.choices])
    job_type = forms.CharField(required=False, max_length=100, label="Job type")
    trigger = forms.ChoiceField(required=False, choices=[("", "any trigger"), *Run.Trigger.choices])
    schedule = forms.CharField(required=False, max_length=100, label="Schedule")
    created_from = forms.DateField(required=False, label="From", widget=forms.DateInput(attrs={"type": "date"}))
    created_to = forms.DateField(required=False, label="To", widget=forms.DateInput(attrs={"type": "date"}))
    after = forms.CharField(required=False, widget=forms.HiddenInput)
    before = forms.CharField(required=False, widget=forms.HiddenInput)

    def _clean_named(self, field: str, model, what: str):
        name = self.cleaned_data[field].strip()
        if not name:
            return None
        found = model.objects.filter(name=name).first()
        if found is None:
            raise forms.ValidationError(f"No {what} is named '{name}'.")
        return found

    def clean_job_type(self) -> JobType | None:
        return self._clean_named("job_type", JobType, "job type")

    def clean_schedule(self) -> Schedule | None:
        return self._clean_named("schedule", Schedule, "schedule")

    def clean_after(self) -> Cursor | None:
        return _clean_cursor(self, "after", RUN_PAGES, "runs")

    def clean_before(self) -> Cursor | None:
        return _clean_cursor(self, "before", RUN_PAGES, "runs")

    def clean(self) -> dict:
        data = super().clean()
        start, end = data.get("created_from"), data.get("created_to")
        if start and end and end < start:
            self.add_error("created_to", "Must be on or after the 'From' date.")
        return data

    def filter(self, queryset):
        """`queryset` narrowed by the valid filters (call after is_valid())."""
        data = self.cleaned_data
        if data.get("status"):
            queryset = queryset.filter(status=data["status"])
        if data.get("job_type"):
            queryset = queryset.filter(job_type=data["job_type"])
        if data.get("trigger"):
            queryset = queryset.filter(trigger=data["trigger"])
        if data.get("schedule"):
            queryset = queryset.filter(schedule=data["schedule"])
        if data.get("created_from"):
            queryset = queryset.filter(created_at__gte=_start_of(data["created_from"]))
        if data.get("created_to"):
            queryset = queryset.filter(created_at__lt=_start_of(data["created_to"] + timedelta(days=1)))
        if data.get("q", "").strip():
            queryset = queryset.filter(search(data["q"]))
        return queryset


def _clean_cursor(form: forms.Form, field: str, keyset: Keyset, what: str) -> Cursor | None:
    value = form.cleaned_data[field]
    if not value:
        return None
    try:
        return keyset.parse(value)
    except ValueError:
        raise forms.ValidationError(f"This page link is damaged: start again from the newest {what}.") from None


def _start_of(day) -> datetime:
    return timezone.make_aware(datetime.combine(day, time.min))


# --- Run now: a form generated from the job type's params schema ----------------

FIELD_PREFIX = "p_"


def _json_choice(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def _schema_field(prop: dict, *, required: bool, default: Any) -> forms.Field | None:
    """A form field for one simple property of a params schema, or None to leave it to the JSON box."""
    if not isinstance(prop, dict):
        return None
    common = {
        "required": required,
        "label": prop.get("title"),
        "help_text": prop.get("description", ""),
        "initial": default,
    }
    if "enum" in prop and isinstance(prop["enum"], list) and prop["enum"]:
        choices = [(_json_choice(v), str(v)) for v in prop["enum"]]
        if not required:
            choices.insert(0, ("", "—"))
        common["initial"] = _json_choice(default) if default is not None else None
        return forms.TypedChoiceField(choices=choices, coerce=json.loads, empty_value=None, **common)
    kind = prop.get("type")
    bounds = {"min_value": prop.get("minimum"), "max_value": prop.get("maximum")}
    if kind == "string":
        return forms.CharField(max_length=prop.get("maxLength"), empty_value=None, strip=False, **common)
    if kind == "integer":
        return forms.IntegerField(**bounds, **common)
    if kind == "number":
        return forms.FloatField(**bounds, **common)
    if kind == "boolean":
        choices = [("", "—"), ("true", "true"), ("false", "false")]
        common["initial"] = {True: "true", False: "false"}.get(default)
        return forms.TypedChoiceField(choices=choices, coerce=lambda v: v == "true", empty_value=None, **common)
    return None


class RunNowForm(forms.Form):
    """Params for a run: a field per simple schema property, and JSON for the rest.

    A field left empty is left out, so the job type's default params apply.
    The service checks the result against the schema; its messages come back
    on the field they name.
    """

    extra = JSONField(
        required=False,
        initial=dict,
        label="Params (JSON)",
        widget=forms.Textarea(attrs={"rows": 4, "spellcheck": "false"}),
        help_text="A JSON object, merged under the fields above and over the job type's default params.",
    )

    def __init__(self, *args, job_type: JobType, **kwargs):
        super().__init__(*args, **kwargs)
        schema = job_type.params_schema if isinstance(job_type.params_schema, dict) else {}
        properties = schema.get("properties") if isinstance(schema.get("properties"), dict) else {}
        required = set(schema.get("required") or [])
        defaults = job_type.default_params if isinstance(job_type.default_params, dict) else {}
        self.param_names: list[str] = []
        fields = {}
        # Required params first, in the schema's `required` order (a list keeps
        # its order; PostgreSQL's jsonb does not keep the order of object keys).
        names = [name for name in schema.get("required") or [] if name in properties]
        names += [name for name in properties if name not in names]
        for name in names:
            prop = properties[name]
            field = _schema_field(prop, required=name in required and name not in defaults, default=defaults.get(name))
            if field is not None:
                field.label = field.label or name
                fields[FIELD_PREFIX + name] = field
                self.param_names.append(name)
        # Schema fields first, the JSON box last.
        self.fields = {**fields, "extra": self.fields["extra"]}
        if self.param_names:
            self.fields["extra"].label = "Other params (JSON)"
        else:
            self.fields["extra"].initial = defaults or {}

    def clean_extra(self) -> dict:
        value = self.cleaned_data["extra"]
        if value in (None, ""):
            return {}
        if not isinstance(value, dict):
            raise forms.ValidationError('Must be a JSON object, e.g. {"count": 3}.')
        return value

    def params(self) -> dict:
        params = dict(self.cleaned_data["extra"])
        for name in self.param_names:
            value = self.cleaned_data.get(FIELD_PREFIX + name)
            if value is not None:
                params[name] = value
        return params

    def add_param_errors(self, messages: list[str]) -> None:
        """Put each "name: problem" message from the service on its field."""
        for message in messages:
            name, sep, problem = message.partition(": ")
            missing = re.fullmatch(r"'(.+)' is a required property", message)
            if sep and name in self.param_names:
                self.add_error(FIELD_PREFIX + name, problem)
            elif missing and missing[1] in self.param_names:
                self.add_error(FIELD_PREFIX + missing[1], "This param is required.")
            else:
                self.add_error(None, message)


class AuditFilterForm(forms.Form):
    """The filters of the audit log (GET)."""

    WHAT = {"jobtype": "Job types", "workflow": "Workflows", "schedule": "Schedules"}

    what = forms.ChoiceField(required=False, choices=[("", "everything"), *WHAT.items()], label="What")
    name = forms.CharField(required=False, max_length=200, label="Name", help_text="A job type's or schedule's name")
    user = forms.CharField(required=False, max_length=150, label="User")
    after = forms.CharField(required=False, widget=forms.HiddenInput)
    before = forms.CharField(required=False, widget=forms.HiddenInput)

    def clean_user(self):
        username = self.cleaned_data["user"].strip()
        if not username:
            return None
        User = get_user_model()
        user = User.objects.filter(**{User.USERNAME_FIELD: username}).first()
        if user is None:
            raise forms.ValidationError(f"No user is named '{username}'.")
        return user

    def clean_after(self) -> Cursor | None:
        return _clean_cursor(self, "after", AUDIT_PAGES, "entries")

    def clean_before(self) -> Cursor | None:
        return _clean_cursor(self, "before", AUDIT_PAGES, "entries")

    def filter(self, queryset):
        """`queryset` (log entries) narrowed by the valid filters (call after is_valid())."""
        data = self.cleaned_data
        if data.get("what"):
            queryset = queryset.filter(content_type__model=data["what"])
        if data.get("name", "").strip():
            queryset = queryset.filter(object_repr=data["name"].strip())
        if data.get("user"):
            queryset = queryset.filter(user=data["user"])
        return queryset
