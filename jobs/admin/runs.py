"""The admin pages of runs: read-only records, with cancel and rerun actions."""

from django.contrib import admin, messages
from django.urls import reverse
from django.utils.html import format_html

from jobs.core.errors import ServiceError
from jobs.models import Run
from jobs.runs.trigger import run_cancel, run_rerun


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
        outcome = run.notification
        if outcome is None:
            return "—"
        parts = [
            f"{channel} {o['status']}" + (f" ({o['error']})" if o.get("error") and o["status"] != "sent" else "")
            for channel, o in outcome.items()
            if isinstance(o, dict)
        ]
        if "error" in outcome:
            parts.append(outcome["error"])
        if outcome["next_attempt_at"]:
            parts.append(f"next attempt {outcome['next_attempt_at']:%Y-%m-%d %H:%M:%S}")
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
                run_cancel(run=run, cancelled_by=request.user)
            except ServiceError as exc:
                self.message_user(request, str(exc), messages.WARNING)
            else:
                self.message_user(request, f"Run {run.pk} cancelled.")

    @admin.action(description="Rerun selected runs", permissions=["rerun"])
    def rerun(self, request, queryset):
        for run in queryset.select_related("job_type"):
            try:
                new_run = run_rerun(run=run, requested_by=request.user)
            except ServiceError as exc:
                self.message_user(request, str(exc), messages.WARNING)
            else:
                url = reverse("admin:jobs_run_change", args=[new_run.pk])
                self.message_user(request, format_html('Run {} rerun as <a href="{}">{}</a>.', run.pk, url, new_run.pk))
