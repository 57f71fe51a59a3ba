#!/usr/bin/env python
"""How long does each batch of `purge_runs` hold its transaction, on a big run table?

Loads N runs into a scratch database (a SQLite file, or a new database on the
PostgreSQL server in DATABASE_URL): half of them old and finished, each with
its TaskResult row, the rest recent; then purges the old ones and reports the
time per batch (p50 / p99 / max: how long other writers may wait behind one)
and in all.

    .venv/bin/python bench/purge.py --runs 200000
    scripts/with-postgres.sh .venv/bin/python bench/purge.py --runs 200000
"""

import argparse
import os
import sys
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.stack import drop_database, percentile, scratch_database_url, workdir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=200_000)
    parser.add_argument("--batch-size", type=int, default=1000)
    args = parser.parse_args()
    database_url = scratch_database_url(workdir())
    os.environ.update(
        DATABASE_URL=database_url,
        SECRET_KEY=os.environ.get("SECRET_KEY", "bench-only"),
        DJANGO_SETTINGS_MODULE="jobsite.settings",
        LOG_LEVEL="WARNING",
    )
    try:
        print(measure(args.runs, args.batch_size, database_url))
    finally:
        drop_database(database_url)


def measure(count: int, batch_size: int, database_url: str) -> str:
    import django

    django.setup()
    from django.core.management import call_command
    from django.utils import timezone
    from django_celery_results.models import TaskResult

    from jobs.models import JobType, Run
    from jobs.runs.retention import runs_purge

    call_command("migrate", verbosity=0)
    echo = JobType.objects.create(name="echo", kind="task", task="jobs.builtin.echo")
    now = timezone.now()
    for start in range(0, count, 10_000):
        runs = []
        for i in range(start, min(start + 10_000, count)):
            age = timedelta(days=100 if i % 2 else 10, seconds=i)
            runs.append(
                Run(job_type=echo, trigger="api", status="succeeded", created_at=now - age, finished_at=now - age)
            )
        Run.objects.bulk_create(runs, batch_size=1000)
        old = [run for run in runs if run.created_at < now - timedelta(days=90)]
        TaskResult.objects.bulk_create([TaskResult(task_id=str(run.pk), status="SUCCESS") for run in old], 1000)

    batches, last = [], [time.perf_counter()]

    def progress(summary):
        batches.append(time.perf_counter() - last[0])
        last[0] = time.perf_counter()

    started = time.perf_counter()
    summary = runs_purge(older_than_days=90, batch_size=batch_size, progress=progress)
    total = time.perf_counter() - started
    ms = [1000 * b for b in batches]
    database = "postgresql" if database_url.startswith("postgres") else "sqlite"
    return (
        "| db | runs | deleted | batch size | batches | per batch p50 / p99 / max (ms) | total (s) |\n"
        "|---|---:|---:|---:|---:|---|---:|\n"
        f"| {database} | {count:,} | {summary.runs:,} | {batch_size:,} | {summary.batches:,} "
        f"| {percentile(ms, 50):.0f} / {percentile(ms, 99):.0f} / {max(ms):.0f} | {total:.1f} |"
    )


if __name__ == "__main__":
    main()
