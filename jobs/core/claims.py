"""How a batch of rows is claimed so that two processes (dispatchers, scrapes) never take the same one."""

from django.db import connection
from django.db.models import QuerySet


def claim(queryset: QuerySet) -> QuerySet:
    """Lock the rows a batch claims, skipping those another process holds.
    Use inside the transaction that then changes them."""
    if connection.features.has_select_for_update_skip_locked:
        return queryset.select_for_update(skip_locked=True, of=("self",))
    return queryset  # SQLite: the IMMEDIATE transaction already excludes other writers
