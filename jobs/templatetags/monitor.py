from datetime import datetime, timedelta

from django import template
from django.utils import timezone

from jobs.monitor.charts import format_seconds

register = template.Library()


@register.filter
def seconds(value: timedelta | None) -> str:
    """A duration for people: "850 ms", "12.5 s", "3.2 min"."""
    return "—" if value is None else format_seconds(value.total_seconds())


@register.filter
def since(value: datetime | None) -> str:
    """How long ago: "running for" a started run, for example."""
    return "—" if value is None else format_seconds(max((timezone.now() - value).total_seconds(), 0))


@register.filter
def until(value: datetime | None) -> str:
    """How long until a time to come: "in 3.2 min", or "due now" once it has come."""
    if value is None:
        return "—"
    seconds = (value - timezone.now()).total_seconds()
    return f"in {format_seconds(seconds)}" if seconds > 0 else "due now"


@register.filter
def may_see_flower(user) -> bool:
    from jobs.monitor.flower import may_see_flower as allowed

    return allowed(user)
