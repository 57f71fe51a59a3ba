"""How the dispatcher claims a batch of rows so that several dispatchers never take the same one."""

from django.db import connection
from django.db.models import QuerySet


def claim(queryset: QuerySet) -> QuerySet:
    """Lock the rows a batch claims, skipping those another dispatcher holds.
    Use inside the transaction that then changes them."""
    if connection.features.has_select_for_update_skip_locked:
        return queryset.select_for_update(skip_locked=True, of=("self",))
    return queryset  # SQLite: the IMMEDIATE transaction already excludes other writers
