"""The admin pages of job types and workflows (a workflow's steps inline)."""

import json

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from jobs import notifications
from jobs.admin.common import JSON_INPUT, EmailListField, EnableRunMixin, RunParamsForm, run_and_report
from jobs.core import kinds
from jobs.core.errors import ServiceError
from jobs.core.redaction import MaskError, mask_http, mask_url, redact_url, unmask_http, unmask_url
from jobs.definitions.job_types import job_type_delete, job_type_save
from jobs.models import JobType, NotifyOn, Run, Workflow, WorkflowStep
from jobs.runs.trigger import run_create
from jobs.workflows.graph import StepSpec, steps_errors
from jobs.workflows.steps import StepChanges
from jobs.workflows.svg import workflow_svg


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
        # Credentials are not sent to the browser: the form shows them masked,
        # and a mask that comes back keeps the stored value (clean_http, clean_webhook_url).
        self.initial["http"] = mask_http(self.instance.http)
        self.initial["webhook_url"] = mask_url(self.instance.webhook_url, webhook=True)
        # The secret's field starts empty (and so is "changed" only when one is typed).
        self.initial["webhook_secret"] = ""
        has_secret = bool(self.instance.webhook_secret)
        self.fields["webhook_secret"].help_text = (
            "A secret is set; it is never shown. Type a new one to replace it, or leave this empty to keep it."
            if has_secret
            else f"Signs each webhook request (at least {kinds.MIN_SECRET_LENGTH} characters)."
        )

    def clean_webhook_secret(self):
        # The secret is never sent to the browser, so an empty field keeps it.
        return self.cleaned_data["webhook_secret"] or self.instance.webhook_secret

    def clean_http(self):
        try:
            return unmask_http(self.cleaned_data["http"], self.instance.http)
        except MaskError as exc:
            raise ValidationError(exc.messages) from None

    def clean_webhook_url(self):
        try:
            return unmask_url(self.cleaned_data["webhook_url"], self.instance.webhook_url, webhook=True)
        except MaskError as exc:
            raise ValidationError(exc.messages) from None


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

    # Saved and deleted through the job type services, as in the API and the importers.

    def save_model(self, request, obj, form, change):
        job_type_save(job_type=obj)

    def get_deleted_objects(self, objs, request):
        # A job type with runs is disabled instead (job_type_delete): its runs keep it.
        with_runs = [obj for obj in objs if obj.runs.exists()]
        deleted, counts, perms_needed, protected = super().get_deleted_objects(
            [obj for obj in objs if obj not in with_runs], request
        )
        kept = [f"{obj}: it has runs, so it will be disabled instead of deleted" for obj in with_runs]
        return [*deleted, *kept], counts, perms_needed, protected

    def log_deletions(self, request, queryset):
        super().log_deletions(request, [obj for obj in queryset if not obj.runs.exists()])

    def delete_model(self, request, obj):
        if not job_type_delete(job_type=obj):
            self.log_change(request, obj, "Disabled: asked to delete it, but it has runs.")
            self.message_user(request, f"{obj} has runs, so it was disabled instead of deleted.", messages.WARNING)

    def delete_queryset(self, request, queryset):
        for obj in queryset:
            self.delete_model(request, obj)

    def response_delete(self, request, obj_display, obj_id):
        if self.model.objects.filter(pk=obj_id).exists():  # disabled, not deleted
            return redirect(f"admin:{self.opts.app_label}_{self.opts.model_name}_change", obj_id)
        return super().response_delete(request, obj_display, obj_id)

    # What a view-only page shows instead of a field's stored value.
    VIEW_ONLY_FIELDS = {
        "webhook_secret": "webhook_secret_set",
        "http": "http_masked",
        "webhook_url": "webhook_url_masked",
    }

    def get_fieldsets(self, request, obj=None):
        fieldsets = super().get_fieldsets(request, obj)
        if obj is None or self.has_change_permission(request, obj):
            return fieldsets
        # A view-only page shows every field's value: never the secret's, nor credentials.
        return [
            (name, {**options, "fields": [self.VIEW_ONLY_FIELDS.get(f, f) for f in options["fields"]]})
            for name, options in fieldsets
        ]

    def get_readonly_fields(self, request, obj=None):
        return [*super().get_readonly_fields(request, obj), *self.VIEW_ONLY_FIELDS.values()]

    @admin.display(description="Webhook secret")
    def webhook_secret_set(self, job_type: JobType) -> str:
        return "set (never shown)" if job_type.webhook_secret else "not set"

    @admin.display(description="Http")
    def http_masked(self, job_type: JobType) -> str | None:
        return json.dumps(mask_http(job_type.http), ensure_ascii=False) if job_type.http else None

    @admin.display(description="Webhook url")
    def webhook_url_masked(self, job_type: JobType) -> str | None:
        return mask_url(job_type.webhook_url, webhook=True) or None

    @admin.display(description="Notify", ordering="notify_on")
    def notify_display(self, job_type: JobType) -> str:
        if job_type.notify_on == NotifyOn.NEVER:
            return "never"
        told = [f"{len(job_type.notify_emails)} address{'es' if len(job_type.notify_emails) != 1 else ''}"]
        if job_type.webhook_url:
            told.append(f"webhook to {redact_url(job_type.webhook_url)}")
        return f"on {job_type.notify_on}: {', '.join(told)}"

    @admin.action(description="Send a test notification", permissions=["change"])
    def send_test_notification(self, request, queryset):
        for job_type in queryset:
            try:
                outcome = notifications.notification_send_test(job_type=job_type)
            except ServiceError as exc:
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
                run, _ = run_create(
                    job_type=job_type,
                    params=form.cleaned_data["params"],
                    trigger=Run.Trigger.ADMIN,
                    requested_by=request.user,
                    run_at=form.cleaned_data["run_at"],
                    notify_emails=form.cleaned_data["notify_emails"],
                )
            except ServiceError as exc:
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
        ("Execution", {"fields": [*JobType.EXECUTION_FIELDS, "on_failure"]}),
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
    """The steps of a workflow, checked as one graph like the API's, and saved
    with the workflow by the job type save service (WorkflowAdmin.save_related)."""

    def step_specs(self) -> list[StepSpec]:
        """The steps as typed, in the order of the form, without the deleted ones."""
        return [
            StepSpec(
                name=form.cleaned_data["name"],
                job_type=form.cleaned_data["job_type"],
                params=form.cleaned_data["params"],
                depends_on=form.cleaned_data["depends_on"],
                pk=form.instance.pk,
            )
            for form in self.forms
            if form.cleaned_data and not form.cleaned_data.get("DELETE")
        ]

    def clean(self):
        """The workflow's rules (jobs/workflows/graph.py), checked on all steps at once as in the API."""
        if any(self.errors):
            return
        errors = steps_errors(
            self.step_specs(), params_schema=self.instance.params_schema, step_args=self.instance.step_args
        )
        if errors:
            raise ValidationError(errors)
        super().clean()

    def record(self, changes: StepChanges) -> None:
        """What the save did, where the admin's history message looks for it (as formset.save() leaves it)."""
        self.new_objects = changes.added
        self.changed_objects = changes.changed
        self.deleted_objects = changes.deleted


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
        (
            "celery-director",
            {
                "fields": ["step_args", "director_name"],
                "description": "How its task steps are called, and the name celery-director's API "
                "(/director/api/) knows it by. import_workflows sets both.",
            },
        ),
        RunnableAdmin.notifications_fieldset,
        ("History", {"fields": ["created_at", "updated_at"]}),
    ]

    def save_model(self, request, obj, form, change):
        pass  # with its steps, in save_related

    def save_related(self, request, form, formsets, change):
        steps = next((formset for formset in formsets if isinstance(formset, WorkflowStepFormSet)), None)
        if steps is None:  # the steps were not on the form: they stay as they are
            job_type_save(job_type=form.instance)
            return
        steps.record(job_type_save(job_type=form.instance, steps=steps.step_specs()))

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
