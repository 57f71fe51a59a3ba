"""The counts behind GET /metrics: runs that ended since the last scrape
(RunToCount, written in the transaction that ended each) folded into RunTally.

Each end costs the worker one INSERT into an append-only table: no row that
other runs' ends write too, so no lock waits or deadlocks between workers.
The scrape (jobs/monitor/metrics.py) folds what has accumulated, so its cost
follows the runs ended since the scrape before, not the size of the run
table; at most FOLD_MAX at a time (a first scrape after a long pause leaves
the rest to the next ones). Two scrapes at once fold disjoint rows
(PostgreSQL: SKIP LOCKED; SQLite serialises writers).
"""

from collections import Counter
from datetime import datetime

from django.db import router, transaction
from django.utils.dateparse import parse_datetime

from jobs.core.claims import claim
from jobs.core.tallies import DURATION_BUCKETS, LATENESS_BUCKETS, QUEUE_WAIT_BUCKETS, SUM, bucket_key
from jobs.models import Run, RunTally, RunToCount

FOLD_BATCH = 2000
FOLD_MAX = 100_000
RUN_FIELDS = (
    "pk",
    "job_type_id",
    "status",
    "created_at",
    "released_at",
    "started_at",
    "finished_at",
    "schedule_tick",
    "earlier_attempts",
    "notify_outcome",
)


def _seconds(end: datetime | None, start: datetime | None) -> float | None:
    if end is None or start is None:
        return None
    return max((end - start).total_seconds(), 0.0)  # the clocks of two machines may disagree


def _first_start(run: dict) -> datetime | None:
    earlier = run["earlier_attempts"]
    if earlier and earlier[0].get("started_at"):
        return parse_datetime(earlier[0]["started_at"])
    return run["started_at"]


def run_amounts(run: dict, event: str) -> Counter:
    """What one run adds to RunTally, {(job type id, metric, key): amount}, for
    its end or for its failed notification. `run`: RUN_FIELDS of the run."""
    job_type, amounts = run["job_type_id"], Counter()
    if event == RunToCount.Event.NOTIFY_FAILED:
        outcome = run["notify_outcome"] or {}
        failed = [name for name, got in outcome.items() if isinstance(got, dict) and got.get("status") == "failed"]
        for channel in failed or ["none"]:  # none: there was nobody to notify
            amounts[job_type, RunTally.Metric.NOTIFY_FAILED, channel] += 1
        return amounts
    amounts[job_type, RunTally.Metric.RUNS, run["status"]] += 1
    observed = (
        (RunTally.Metric.DURATION, _seconds(run["finished_at"], run["started_at"]), DURATION_BUCKETS),
        (
            RunTally.Metric.QUEUE_WAIT,
            _seconds(_first_start(run), run["released_at"] or run["created_at"]),
            QUEUE_WAIT_BUCKETS,
        ),
        (RunTally.Metric.LATENESS, _seconds(run["released_at"], run["schedule_tick"]), LATENESS_BUCKETS),
    )
    for metric, seconds, bounds in observed:
        if seconds is not None:
            amounts[job_type, metric, bucket_key(seconds, bounds)] += 1
            amounts[job_type, metric, SUM] += seconds
    return amounts


def tallies_fold() -> int:
    """Count the runs recorded in RunToCount into RunTally; how many rows were folded."""
    folded, database = 0, router.db_for_write(RunToCount)
    while folded < FOLD_MAX:
        with transaction.atomic(using=database):
            rows = list(claim(RunToCount.objects.order_by("pk")).values_list("pk", "run_id", "event")[:FOLD_BATCH])
            if not rows:
                break
            ids = {run_id for _, run_id, _ in rows}
            runs = {run["pk"]: run for run in Run.objects.filter(pk__in=ids).values(*RUN_FIELDS)}
            amounts = Counter()
            for _, run_id, event in rows:
                if run_id in runs:  # else purged meanwhile: nothing to count
                    amounts.update(run_amounts(runs[run_id], event))
            RunTally.add(amounts)
            RunToCount.objects.filter(pk__in=[pk for pk, _, _ in rows]).delete()
        folded += len(rows)
        if len(rows) < FOLD_BATCH:
            break
    return folded
