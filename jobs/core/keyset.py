"""Keyset pagination, newest first, over an ordering pair: a time and a unique
id, such as (created_at, id) of runs or (action_time, id) of log entries.

A page is one query with LIMIT size + 1 (the extra row says whether there is
another page): no COUNT, no OFFSET, so page 1,000 costs what page 1 does. A
cursor is the pair of the row a page ends on; `after` a cursor leads to older
rows, `before` one to newer rows. Used by the run history and the audit log
(jobs/monitor/) and the API's run list (jobs/api/pagination.py); see
docs/guide.md#the-api.
"""

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.core.exceptions import ValidationError
from django.db.models import Model, QuerySet


@dataclass(frozen=True)
class Cursor:
    """The ordering pair of the row a page starts or ends on."""

    time: datetime
    id: Any

    def __str__(self) -> str:
        key = self.id.hex if isinstance(self.id, uuid.UUID) else str(self.id)
        return f"{self.time.isoformat()}_{key}"


@dataclass
class Page:
    rows: list
    newer: Cursor | None  # pass as `before` for the previous (newer) page
    older: Cursor | None  # pass as `after` for the next (older) page


class Keyset:
    """Pages of `model`'s rows newest first by (`time_field`, `id_field`); the
    id must be unique, and the time should lead an index for pages to read one
    index range."""

    def __init__(self, model: type[Model], time_field: str, id_field: str = "id"):
        self.model = model
        self.time_field = time_field
        self.id_field = id_field
        self.newest_first = (f"-{time_field}", f"-{id_field}")

    def cursor(self, row: Model) -> Cursor:
        return Cursor(getattr(row, self.time_field), getattr(row, self.id_field))

    def parse(self, value: str) -> Cursor:
        """From `str(cursor)`; ValueError when it is not one of this keyset's."""
        time_text, _, key = value.rpartition("_")
        parsed = datetime.fromisoformat(time_text)
        if parsed.tzinfo is None:
            raise ValueError("a cursor's time has a time zone")
        try:
            # In UTC here, so that a time the database could not hold fails now, not in the query.
            parsed = parsed.astimezone(UTC)
            field = self.model._meta.get_field(self.id_field)
            row_id = field.to_python(key)
            field.run_validators(row_id)  # an integer id within the column's range
        except (OverflowError, ValidationError):
            raise ValueError(f"not a cursor: {value!r}") from None
        if row_id in (None, ""):
            raise ValueError(f"not a cursor: {value!r}")
        return Cursor(parsed, row_id)

    def page(self, queryset: QuerySet, *, size: int, after: Cursor | None = None, before: Cursor | None = None) -> Page:
        """Rows of `queryset` newest first, `size` of them, older than `after` or newer than `before`.

        The condition is written as `time <= t AND NOT (time = t AND id >= i)`
        so the database starts the index scan at t instead of filtering from the top.
        """
        time, key = self.time_field, self.id_field
        if before is not None:
            rows = list(
                queryset.filter(**{f"{time}__gte": before.time})
                .exclude(**{time: before.time, f"{key}__lte": before.id})
                .order_by(time, key)[: size + 1]
            )
            if len(rows) <= size:  # back at the top: show a full first page
                return self.page(queryset, size=size)
            rows = rows[:size][::-1]
            return Page(rows, self.cursor(rows[0]), self.cursor(rows[-1]))
        if after is not None:
            queryset = queryset.filter(**{f"{time}__lte": after.time}).exclude(
                **{time: after.time, f"{key}__gte": after.id}
            )
        rows = list(queryset.order_by(*self.newest_first)[: size + 1])
        has_older = len(rows) > size
        rows = rows[:size]
        return Page(
            rows,
            self.cursor(rows[0]) if after is not None and rows else None,
            self.cursor(rows[-1]) if has_older else None,
        )
