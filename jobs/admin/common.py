"""What the admin pages of job types, workflows and schedules share: the run form
and action, the enable and disable actions, the form fields for emails and JSON."""

from django import forms
from django.contrib import admin, messages
from django.db import models
from django.urls import reverse
from django.utils.html import format_html

from jobs.core import kinds
from jobs.core.errors import ServiceError
from jobs.core.forms import JSONField
from jobs.models import Run
from jobs.runs.trigger import run_create


class EmailListField(forms.Field):
    """Addresses typed as text, separated by commas or lines; checked by the
    model or the service, so the admin and the API say the same."""

    widget = forms.Textarea(attrs={"rows": 2, "cols": 80})

    def to_python(self, value):
        if isinstance(value, list):
            return value
        return kinds.split_emails(value or "")

    def prepare_value(self, value):
        return ", ".join(value) if isinstance(value, list) else value


# JSON typed in the admin's forms goes through Jobsite's field (nesting limited).
JSON_INPUT = {models.JSONField: {"form_class": JSONField}}


class RunParamsForm(forms.Form):
    params = JSONField(
        required=False,
        initial=dict,
        widget=forms.Textarea(attrs={"rows": 8, "cols": 80}),
        help_text="A JSON object, merged over the job type's default params.",
    )
    run_at = forms.DateTimeField(
        required=False,
        help_text="Leave empty to run now, or give a future time (YYYY-MM-DD HH:MM, in the site's time zone).",
    )
    notify_emails = EmailListField(
        required=False,
        label="Also notify",
        help_text="Addresses to tell about this run too (comma-separated), under the job type's notify_on.",
    )

    def clean_params(self):
        params = self.cleaned_data["params"]
        if params in (None, ""):
            return {}
        if not isinstance(params, dict):
            raise forms.ValidationError('Params must be a JSON object, e.g. {"count": 3}.')
        return params


def run_and_report(model_admin: admin.ModelAdmin, request, label: str, **trigger) -> None:
    """Trigger a run from an admin action and say how it went."""
    try:
        run, _ = run_create(trigger=Run.Trigger.ADMIN, requested_by=request.user, **trigger)
    except ServiceError as exc:
        model_admin.message_user(request, f"Could not run {label}: {exc}", messages.ERROR)
    else:
        url = reverse("admin:jobs_run_change", args=[run.pk])
        model_admin.message_user(request, format_html('Started run <a href="{}">{}</a> of {}.', url, run.pk, label))


class EnableRunMixin:
    """Enable/disable actions, and the `run` permission for run actions."""

    def has_run_permission(self, request) -> bool:
        return request.user.has_perm("jobs.run_jobtype")

    @admin.action(description="Enable", permissions=["change"])
    def enable(self, request, queryset):
        self._set_enabled(request, queryset, True)

    @admin.action(description="Disable", permissions=["change"])
    def disable(self, request, queryset):
        self._set_enabled(request, queryset, False)

    def _set_enabled(self, request, queryset, enabled: bool) -> None:
        # save() per object rather than update(): it keeps updated_at right and
        # lets the model react (a schedule counts its next fire from now). Each
        # change goes to the object's history, as the change form's would.
        for obj in queryset:
            if obj.enabled == enabled:
                continue
            obj.enabled = enabled
            obj.save()
            self.log_change(request, obj, [{"changed": {"fields": ["Enabled"]}}])
