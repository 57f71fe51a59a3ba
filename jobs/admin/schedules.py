"""The admin pages of schedules."""

from django.contrib import admin
from django.urls import reverse
from django.utils.html import format_html

from jobs.admin.common import JSON_INPUT, EnableRunMixin, run_and_report
from jobs.models import Schedule


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
    readonly_fields = [*Schedule.STATE_FIELDS, "created_at", "updated_at"]
    actions = ["enable", "disable", "run_now"]
    formfield_overrides = JSON_INPUT
    fieldsets = [
        (None, {"fields": ["name", "job_type", "params", "enabled"]}),
        ("Timing", {"fields": ["cron", "timezone", "interval_seconds", "start_at", "end_at", "overlap"]}),
        ("Alerts", {"fields": ["must_succeed_within_seconds"]}),
        ("Backfill", {"fields": ["backfill_concurrency"]}),
        ("State", {"fields": list(Schedule.STATE_FIELDS)}),
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
