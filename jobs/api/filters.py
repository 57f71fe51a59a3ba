import django_filters

from jobs.models import JobType, Run, Schedule


class JobTypeFilter(django_filters.FilterSet):
    class Meta:
        model = JobType
        fields = ["kind", "enabled", "queue"]


class RunFilter(django_filters.FilterSet):
    job_type = django_filters.CharFilter(field_name="job_type__name", help_text="Job type name.")
    schedule = django_filters.CharFilter(field_name="schedule__name", help_text="Schedule name.")
    created_after = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_before = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="lt")
    parent = django_filters.UUIDFilter(field_name="parent", help_text="A workflow run's id: its step runs.")

    class Meta:
        model = Run
        fields = ["status", "job_type", "trigger", "schedule", "parent", "created_after", "created_before"]


class ScheduleFilter(django_filters.FilterSet):
    job_type = django_filters.CharFilter(field_name="job_type__name", help_text="Job type name.")

    class Meta:
        model = Schedule
        fields = ["job_type", "enabled"]
