"""Bounded, indexed reads of the run table for the monitoring pages.

The run table grows without end, so nothing here counts or sorts all of it:
counts stop at COUNT_CAP, lists read one index range with a LIMIT, and the
history pages by keyset ((created_at, id) of the last row seen, jobs/core/keyset.py),
not by OFFSET.
"""

import re
import uuid
from collections.abc import Iterable
from datetime import datetime

from django.contrib.admin.models import LogEntry
from django.db.models import Q, QuerySet

from jobs.core.keyset import Keyset
from jobs.models import JobType, Run, Schedule

COUNT_CAP = 10_000
# The run history's pages: keyset on (created_at, id) of the row a page ends on (jobs/core/keyset.py).
RUN_PAGES = Keyset(Run, "created_at")
# The audit log's: newest first by (action_time, id), the order of the admin's History.
AUDIT_PAGES = Keyset(LogEntry, "action_time")
NEWEST_FIRST = RUN_PAGES.newest_first


def runs() -> QuerySet:
    """Runs with their job types. Fetched with a second query rather than a
    join: with a join, SQLite may plan "every job type, then sort all their
    runs" instead of reading the newest runs from the created_at index."""
    return Run.objects.prefetch_related("job_type")


def capped_count(queryset: QuerySet, cap: int = COUNT_CAP) -> int:
    """COUNT(*) over at most cap + 1 rows: a result above `cap` means "more than cap"."""
    return queryset.order_by()[: cap + 1].count()


def count_in_statuses(statuses: Iterable[str], cap: int = COUNT_CAP) -> int:
    """Runs in any of `statuses`, counted one status at a time: with `status IN (...)`
    a planner that only knows the average rows per status may read the whole table."""
    return min(sum(capped_count(Run.objects.filter(status=status), cap) for status in statuses), cap + 1)


def status_counts_since(since: datetime) -> list[dict]:
    """Runs created since `since`, per status, each counted on the (status, created_at) index."""
    counts = []
    for status in Run.Status:
        n = capped_count(Run.objects.filter(status=status, created_at__gte=since))
        counts.append({"status": status.value, "count": min(n, COUNT_CAP), "capped": n > COUNT_CAP})
    return counts


def newest_in_statuses(statuses: Iterable[str], limit: int, queryset: QuerySet | None = None) -> list[Run]:
    """The newest `limit` runs in any of `statuses`.

    One query per status, each a LIMIT over the (status, created_at) index: a
    single `status IN (...) ORDER BY created_at` would sort every matching row.
    """
    queryset = runs() if queryset is None else queryset
    found = [run for status in statuses for run in queryset.filter(status=status).order_by(*NEWEST_FIRST)[:limit]]
    found.sort(key=lambda run: (run.created_at, run.id), reverse=True)
    return found[:limit]


def search(text: str) -> Q:
    """Runs whose id starts with `text` (hex digits, dashes allowed) or whose job type's name contains it."""
    text = text.strip()
    # Job types are few compared with runs; their ids become an indexed IN list.
    job_type_ids = list(JobType.objects.filter(name__icontains=text).values_list("pk", flat=True)[:100])
    condition = Q(job_type_id__in=job_type_ids)
    digits = text.replace("-", "").lower()
    if re.fullmatch(r"[0-9a-f]{1,32}", digits):
        # An id prefix is a range of the primary key, so it uses its index.
        low, high = uuid.UUID(digits.ljust(32, "0")), uuid.UUID(digits.ljust(32, "f"))
        condition |= Q(id__gte=low, id__lte=high)
    return condition


# --- Schedules ------------------------------------------------------------------


def upcoming_scheduled_runs(limit: int) -> list[Run]:
    """The next `limit` runs waiting for their `scheduled_for`, soonest first,
    read from the (status, scheduled_for) index: runs for later, and the runs
    the dispatcher planned for schedules' next ticks (with their schedule)."""
    waiting = runs().prefetch_related("schedule").filter(status=Run.Status.SCHEDULED)
    return list(waiting.order_by("scheduled_for")[:limit])


def upcoming_fires(limit: int) -> list[Schedule]:
    """The next `limit` schedule fires, soonest first, read from the partial
    `schedule_due` index (next_run_at of enabled schedules)."""
    due = Schedule.objects.filter(enabled=True, next_run_at__isnull=False).select_related("job_type")
    return list(due.order_by("next_run_at")[:limit])


def schedules() -> QuerySet:
    """Every schedule by name, with its job type and last run (Schedule.objects.with_last_run)."""
    return Schedule.objects.with_last_run().select_related("job_type").order_by("name")
