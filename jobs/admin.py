import json
from urllib.parse import urlsplit

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import models
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from . import notifications, services
from .forms import JSONField
from .graph_svg import workflow_svg
from .models import JobType, NotifyOn, NotifyStatus, Run, Schedule, Workflow, WorkflowStep
from .workflow_graph import StepSpec, steps_errors


class EmailListField(forms.Field):
    """Addresses typed as text, separated by commas or lines; checked by the
    model or the service, so the admin and the API say the same."""

    widget = forms.Textarea(attrs={"rows": 2, "cols": 80})

    def to_python(self, value):
        if isinstance(value, list):
            return value
        return notifications.split_emails(value or "")

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
        run, _ = services.run_create(trigger=Run.Trigger.ADMIN, requested_by=request.user, **trigger)
    except services.ServiceError as exc:
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


class JobTypeForm(forms.ModelForm):
    notify_emails = EmailListField(required=False, help_text="Comma-separated addresses.")
    webhook_secret = forms.CharField(
        required=False,
        max_length=200,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
    )

    class Meta:
        model = JobType
        fields = ["notify_emails", "webhook_secret"]  # the admin adds the rest from its fieldsets

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        has_secret = bool(self.instance.webhook_secret)
        self.fields["webhook_secret"].help_text = (
            "A secret is set; it is never shown. Type a new one to replace it, or leave this empty to keep it."
            if has_secret
            else f"Signs each webhook request (at least {notifications.MIN_SECRET_LENGTH} characters)."
        )

    def clean_webhook_secret(self):
        # The secret is never sent to the browser, so an empty field keeps it.
        return self.cleaned_data["webhook_secret"] or self.instance.webhook_secret


class RunnableAdmin(EnableRunMixin, admin.ModelAdmin):
    """What job types and workflows share: the Run… form, the run, test
    notification, enable and disable actions, and the notification settings."""

    form = JobTypeForm
    formfield_overrides = JSON_INPUT
    actions = ["run_now", "send_test_notification", "enable", "disable"]
    change_form_template = "admin/jobs/jobtype/change_form.html"
    notifications_fieldset = (
        "Notifications",
        {
            "fields": ["notify_on", "notify_emails", "webhook_url", "webhook_secret"],
            "description": "Who is told when a run ends. Check it with the action “Send a test notification”.",
        },
    )

    def get_fieldsets(self, request, obj=None):
        fieldsets = super().get_fieldsets(request, obj)
        if obj is None or self.has_change_permission(request, obj):
            return fieldsets
        # A view-only page shows every field's value: never the secret's.
        return [
            (
                name,
                {
                    **options,
                    "fields": [f if f != "webhook_secret" else "webhook_secret_set" for f in options["fields"]],
                },
            )
            for name, options in fieldsets
        ]

    def get_readonly_fields(self, request, obj=None):
        return [*super().get_readonly_fields(request, obj), "webhook_secret_set"]

    @admin.display(description="Webhook secret")
    def webhook_secret_set(self, job_type: JobType) -> str:
        return "set (never shown)" if job_type.webhook_secret else "not set"

    @admin.display(description="Notify", ordering="notify_on")
    def notify_display(self, job_type: JobType) -> str:
        if job_type.notify_on == NotifyOn.NEVER:
            return "never"
        told = [f"{len(job_type.notify_emails)} address{'es' if len(job_type.notify_emails) != 1 else ''}"]
        if job_type.webhook_url:
            # The URL may carry a token of its own: only its host is shown.
            told.append(f"webhook to {urlsplit(job_type.webhook_url).hostname}")
        return f"on {job_type.notify_on}: {', '.join(told)}"

    @admin.action(description="Send a test notification", permissions=["change"])
    def send_test_notification(self, request, queryset):
        for job_type in queryset:
            try:
                outcome = services.notification_send_test(job_type=job_type)
            except services.ServiceError as exc:
                self.message_user(request, str(exc), messages.WARNING)
                continue
            for channel, result in outcome.items():
                if result["status"] == "sent":
                    self.message_user(request, f"Test {channel} for {job_type.name} sent {result['detail']}.")
                else:
                    self.message_user(
                        request, f"Test {channel} for {job_type.name} failed: {result['error']}", messages.ERROR
                    )

    @admin.display(description="Run")
    def run_link(self, job_type: JobType) -> str:
        url = reverse(f"admin:{self.opts.app_label}_{self.opts.model_name}_run", args=[job_type.pk])
        return format_html('<a href="{}">Run…</a>', url)

    @admin.action(description="Run now with default params", permissions=["run"])
    def run_now(self, request, queryset):
        for job_type in queryset:
            run_and_report(self, request, job_type.name, job_type=job_type)

    def get_urls(self):
        run_view = self.admin_site.admin_view(self.run_view)
        name = f"{self.opts.app_label}_{self.opts.model_name}_run"
        return [path("<int:object_id>/run/", run_view, name=name), *super().get_urls()]

    def run_view(self, request, object_id):
        """A form to run one job type with params of the user's choosing."""
        if not self.has_run_permission(request):
            raise PermissionDenied
        job_type = get_object_or_404(self.get_queryset(request), pk=object_id)
        form = RunParamsForm(request.POST or None, initial={"params": job_type.default_params})
        if request.method == "POST" and form.is_valid():
            try:
                run, _ = services.run_create(
                    job_type=job_type,
                    params=form.cleaned_data["params"],
                    trigger=Run.Trigger.ADMIN,
                    requested_by=request.user,
                    run_at=form.cleaned_data["run_at"],
                    notify_emails=form.cleaned_data["notify_emails"],
                )
            except services.ServiceError as exc:
                for field, errors in exc.errors.items():
                    for error in errors:
                        form.add_error(field if field in form.fields else None, error)
            else:
                self.message_user(request, f"Run {run.pk} of {job_type.name} created.")
                return redirect("admin:jobs_run_change", run.pk)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": f"Run {job_type.name}",
            "job_type": job_type,
            "form": form,
            "schema": json.dumps(job_type.params_schema, indent=2),
        }
        return TemplateResponse(request, "admin/jobs/jobtype/run.html", context)


@admin.register(JobType)
class JobTypeAdmin(RunnableAdmin):
    """Job types that run one thing; workflows have their own page."""

    list_display = ["name", "kind", "target", "queue", "enabled", "notify_display", "run_link", "updated_at"]
    list_filter = ["kind", "enabled", "queue", "notify_on"]
    search_fields = ["name", "description", "task"]
    readonly_fields = ["created_at", "updated_at"]
    fieldsets = [
        (None, {"fields": ["name", "description", "kind", "enabled"]}),
        ("What to run", {"fields": ["task", "http", "command"], "description": "Fill the one that matches the kind."}),
        ("Params", {"fields": ["params_schema", "default_params"]}),
        (
            "Execution",
            {
                "fields": [
                    "queue",
                    "priority",
                    "timeout_seconds",
                    "max_retries",
                    "retry_backoff_seconds",
                    "max_concurrency",
                    "on_failure",
                ]
            },
        ),
        RunnableAdmin.notifications_fieldset,
        ("History", {"fields": ["created_at", "updated_at"]}),
    ]

    def get_queryset(self, request):
        return super().get_queryset(request).exclude(kind=JobType.Kind.WORKFLOW)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        # Links to a job type (from a run, a step) reach workflows here too.
        if str(object_id).isdigit() and Workflow.objects.filter(pk=object_id).exists():
            return redirect("admin:jobs_workflow_change", object_id)
        return super().change_view(request, object_id, form_url, extra_context)

    def formfield_for_choice_field(self, db_field, request, **kwargs):
        if db_field.name == "kind":
            kwargs["choices"] = [c for c in JobType.Kind.choices if c[0] != JobType.Kind.WORKFLOW]
        return super().formfield_for_choice_field(db_field, request, **kwargs)


# --- Workflows ------------------------------------------------------------------


class StepNamesField(forms.CharField):
    """A list of step names, typed comma-separated."""

    def prepare_value(self, value):
        return ", ".join(value) if isinstance(value, list) else value

    def to_python(self, value):
        return [name.strip() for name in (value or "").split(",") if name.strip()]


class WorkflowStepForm(forms.ModelForm):
    depends_on = StepNamesField(required=False, help_text="Names of the steps it waits for, comma-separated.")

    class Meta:
        model = WorkflowStep
        fields = ["name", "job_type", "params", "depends_on"]
        widgets = {"params": forms.Textarea(attrs={"rows": 3, "cols": 50})}

    def clean_params(self):
        params = self.cleaned_data["params"]
        return {} if params in (None, "") else params


class WorkflowStepFormSet(forms.BaseInlineFormSet):
    def clean(self):
        """The workflow's rules (jobs/workflow_graph.py), checked on all steps at once as in the API."""
        if any(self.errors):
            return
        steps = [
            StepSpec(
                name=form.cleaned_data["name"],
                job_type=form.cleaned_data["job_type"],
                params=form.cleaned_data["params"],
                depends_on=form.cleaned_data["depends_on"],
            )
            for form in self.forms
            if form.cleaned_data and not form.cleaned_data.get("DELETE")
        ]
        errors = steps_errors(steps, params_schema=self.instance.params_schema)
        if errors:
            raise ValidationError(errors)
        super().clean()

    def save(self, commit=True):
        # Steps are listed in the order of the form.
        saved = super().save(commit=commit)
        kept = [f.instance for f in self.forms if f.instance.pk and f not in self.deleted_forms]
        for position, step in enumerate(kept):
            if step.position != position:
                WorkflowStep.objects.filter(pk=step.pk).update(position=position)
        return saved


class JobTypePermissions:
    """Workflows and their steps are job types: the job type permissions apply
    (they have no permissions of their own)."""

    def has_view_permission(self, request, obj=None):
        return request.user.has_perm("jobs.view_jobtype") or request.user.has_perm("jobs.change_jobtype")

    def has_change_permission(self, request, obj=None):
        return request.user.has_perm("jobs.change_jobtype")


class WorkflowStepInline(JobTypePermissions, admin.TabularInline):
    model = WorkflowStep
    fk_name = "workflow"
    form = WorkflowStepForm
    formset = WorkflowStepFormSet
    formfield_overrides = JSON_INPUT
    extra = 1
    min_num = 0

    # A step is part of its workflow: adding or removing one changes the workflow.
    def has_add_permission(self, request, obj=None):
        return request.user.has_perm("jobs.change_jobtype")

    def has_delete_permission(self, request, obj=None):
        return request.user.has_perm("jobs.change_jobtype")

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "job_type":
            kwargs["queryset"] = JobType.objects.exclude(kind=JobType.Kind.WORKFLOW)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)


class WorkflowForm(JobTypeForm):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.instance.kind = JobType.Kind.WORKFLOW  # so that clean() checks it as one


@admin.register(Workflow)
class WorkflowAdmin(JobTypePermissions, RunnableAdmin):
    """Job types of kind workflow: their steps inline, their graph drawn."""

    form = WorkflowForm
    inlines = [WorkflowStepInline]
    list_display = ["name", "description", "queue", "enabled", "run_link", "updated_at"]
    list_filter = ["enabled", "queue"]
    search_fields = ["name", "description", "steps__name"]
    readonly_fields = ["graph", "created_at", "updated_at"]
    fieldsets = [
        (None, {"fields": ["name", "description", "enabled"]}),
        ("Params", {"fields": ["params_schema", "default_params"]}),
        (
            "Execution",
            {
                "fields": ["queue", "on_failure"],
                "description": "Steps whose job type names no queue go to the workflow's queue.",
            },
        ),
        ("Steps", {"fields": ["graph"]}),
        RunnableAdmin.notifications_fieldset,
        ("History", {"fields": ["created_at", "updated_at"]}),
    ]

    @admin.display(description="Graph")
    def graph(self, workflow: Workflow) -> str:
        if workflow.pk is None:
            return "Save the workflow to see its graph."
        steps = [(s.name, s.job_type.name, s.depends_on) for s in workflow.steps.select_related("job_type")]
        return workflow_svg(steps) if steps else "No steps yet."

    def has_add_permission(self, request):
        return request.user.has_perm("jobs.add_jobtype")

    def has_delete_permission(self, request, obj=None):
        return request.user.has_perm("jobs.delete_jobtype")


class StepRunInline(admin.TabularInline):
    """A workflow run's step runs, on its page."""

    model = Run
    fk_name = "parent"
    verbose_name = "step"
    verbose_name_plural = "Steps"
    fields = ["step_name", "job_type", "status", "started_at", "finished_at", "attempts", "error"]
    readonly_fields = fields
    ordering = ["created_at"]
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request, obj=None) -> bool:
        return False


RUN_NOTIFY_INTERNALS = ["notify_outcome", "notify_locked_until"]


@admin.register(Run)
class RunAdmin(admin.ModelAdmin):
    list_display = [
        "short_id",
        "job_type",
        "status",
        "trigger",
        "requested_by",
        "created_at",
        "duration_display",
        "attempts",
        "worker",
        "notification_display",
    ]
    list_filter = ["status", "trigger", "notify_status", "job_type", "schedule", "created_at"]
    inlines = [StepRunInline]
    search_fields = ["=id", "job_type__name"]
    list_select_related = ["job_type", "requested_by"]
    date_hierarchy = "created_at"
    actions = ["cancel", "rerun"]
    show_full_result_count = False  # no COUNT(*) over the whole run table
    exclude = RUN_NOTIFY_INTERNALS  # shown as "Notification", in words
    readonly_fields = [f.name for f in Run._meta.fields if f.name not in RUN_NOTIFY_INTERNALS] + [
        "duration_display",
        "notification_display",
    ]

    @admin.display(description="Notification", ordering="notify_status")
    def notification_display(self, run: Run) -> str:
        if not run.notify_status:
            return "—"
        outcome = run.notify_outcome or {}
        parts = [
            f"{channel} {o['status']}" + (f" ({o['error']})" if o.get("error") and o["status"] != "sent" else "")
            for channel, o in outcome.items()
            if isinstance(o, dict)
        ]
        if "error" in outcome:
            parts.append(outcome["error"])
        if run.notify_status == NotifyStatus.PENDING and run.notify_locked_until:
            parts.append(f"next attempt {run.notify_locked_until:%Y-%m-%d %H:%M:%S}")
        return f"{run.notify_status}" + (f": {'; '.join(parts)}" if parts else "")

    @admin.display(description="Run", ordering="created_at")
    def short_id(self, run: Run) -> str:
        return str(run.pk)[:8]

    @admin.display(description="Duration")
    def duration_display(self, run: Run) -> str:
        return f"{run.duration.total_seconds():.1f} s" if run.duration else "—"

    def has_add_permission(self, request) -> bool:
        return False  # runs are created by running a job type

    def has_change_permission(self, request, obj=None) -> bool:
        return False  # a run is a record: it changes only by cancel/rerun

    def has_cancel_permission(self, request) -> bool:
        return request.user.has_perm("jobs.cancel_run")

    def has_rerun_permission(self, request) -> bool:
        return request.user.has_perm("jobs.run_jobtype")

    @admin.action(description="Cancel selected runs", permissions=["cancel"])
    def cancel(self, request, queryset):
        for run in queryset.select_related("job_type"):
            try:
                services.run_cancel(run=run, cancelled_by=request.user)
            except services.ServiceError as exc:
                self.message_user(request, str(exc), messages.WARNING)
            else:
                self.message_user(request, f"Run {run.pk} cancelled.")

    @admin.action(description="Rerun selected runs", permissions=["rerun"])
    def rerun(self, request, queryset):
        for run in queryset.select_related("job_type"):
            try:
                new_run = services.run_rerun(run=run, requested_by=request.user)
            except services.ServiceError as exc:
                self.message_user(request, str(exc), messages.WARNING)
            else:
                url = reverse("admin:jobs_run_change", args=[new_run.pk])
                self.message_user(request, format_html('Run {} rerun as <a href="{}">{}</a>.', run.pk, url, new_run.pk))


@admin.register(Schedule)
class ScheduleAdmin(EnableRunMixin, admin.ModelAdmin):
    list_display = [
        "name",
        "job_type",
        "timing_display",
        "enabled",
        "next_run_at",
        "last_run_display",
        "overlap",
        "skipped_ticks",
    ]
    list_filter = ["enabled", "overlap", "job_type"]
    search_fields = ["name", "job_type__name"]
    list_select_related = ["job_type"]
    readonly_fields = [
        "next_run_at",
        "skipped_ticks",
        "last_skipped_at",
        "last_skip_reason",
        "created_at",
        "updated_at",
    ]
    actions = ["enable", "disable", "run_now"]
    formfield_overrides = JSON_INPUT
    fieldsets = [
        (None, {"fields": ["name", "job_type", "params", "enabled"]}),
        ("Timing", {"fields": ["cron", "timezone", "interval_seconds", "start_at", "end_at", "overlap"]}),
        ("State", {"fields": ["next_run_at", "skipped_ticks", "last_skipped_at", "last_skip_reason"]}),
        ("History", {"fields": ["created_at", "updated_at"]}),
    ]

    def get_queryset(self, request):
        return super().get_queryset(request).with_last_run()

    @admin.display(description="Timing")
    def timing_display(self, schedule: Schedule) -> str:
        return schedule.timing_display

    @admin.display(description="Last run")
    def last_run_display(self, schedule: Schedule) -> str:
        if not schedule.last_run_id:
            return "—"
        url = reverse("admin:jobs_run_change", args=[schedule.last_run_id])
        return format_html('<a href="{}">{}</a>', url, schedule.last_run_status)

    @admin.action(description="Run now with the schedule's params", permissions=["run"])
    def run_now(self, request, queryset):
        for schedule in queryset.select_related("job_type"):
            run_and_report(
                self, request, schedule.name, job_type=schedule.job_type, params=schedule.params, schedule=schedule
            )
