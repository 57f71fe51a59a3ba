import django_filters
from django import forms
from django.db import models
from django_filters.widgets import BooleanWidget

from jobs.models import JobType, Run, Schedule


class RawBooleanWidget(BooleanWidget):
    """django-filter's yes/no select, passing the value on as it came, so that
    the field can refuse what is neither."""

    def value_from_datadict(self, data, files, name):
        return data.get(name)


class BooleanField(forms.Field):
    """true/false (or 1/0); empty means "not filtered". Anything else is a 400,
    not a filter quietly ignored."""

    widget = RawBooleanWidget

    def to_python(self, value):
        if value in (None, ""):
            return None
        choice = {"true": True, "1": True, "false": False, "0": False}.get(str(value).lower())
        if choice is None:
            # The value goes in params: django-filter %-formats the message.
            raise forms.ValidationError("%(value)r: use true or false.", params={"value": value})
        return choice


class BooleanFilter(django_filters.BooleanFilter):
    field_class = BooleanField


class FilterSet(django_filters.FilterSet):
    FILTER_DEFAULTS = {**django_filters.FilterSet.FILTER_DEFAULTS, models.BooleanField: {"filter_class": BooleanFilter}}


class JobTypeFilter(FilterSet):
    class Meta:
        model = JobType
        fields = ["kind", "enabled", "queue"]


class RunFilter(FilterSet):
    job_type = django_filters.CharFilter(method="by_name", help_text="Job type name.")
    schedule = django_filters.CharFilter(method="by_name", help_text="Schedule name.")
    created_after = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_before = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="lt")
    parent = django_filters.UUIDFilter(field_name="parent", help_text="A workflow run's id: its step runs.")

    class Meta:
        model = Run
        fields = ["status", "job_type", "trigger", "schedule", "parent", "created_after", "created_before"]

    def by_name(self, queryset, name: str, value: str):
        """Runs of the job type or schedule named `value`, filtered by its id: joined by
        name instead, PostgreSQL may walk every run newest first looking for those of a
        job type that has few, where by id it reads them from the (job_type, created_at) index."""
        model = Run._meta.get_field(name).related_model
        found = model.objects.filter(name=value).values_list("pk", flat=True).first()
        return queryset.none() if found is None else queryset.filter(**{f"{name}_id": found})


class ScheduleFilter(FilterSet):
    job_type = django_filters.CharFilter(field_name="job_type__name", help_text="Job type name.")

    class Meta:
        model = Schedule
        fields = ["job_type", "enabled"]
