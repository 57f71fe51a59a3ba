#!/usr/bin/env python
"""What a run's success costs the worker, in one process: N runs, each ended
as the worker ends it (its result stored by the configured result backend,
Jobsite's RunResultBackend, with the run's end), timed in a loop.

Reports, per end, the wall time (round trips and the commit's flush included)
and this process's CPU time (Django building, compiling and reading its
statements), and the statements of one end (BEGIN and COMMIT included: each
is a round trip). No worker, no Redis: the end alone (issue 18). With
--no-flush (PostgreSQL), this session's commits do not wait for the disk, which
leaves the round trips and the CPU, without the flush's ups and downs.

    scripts/bench.sh bench/run_end.py --runs 2000                   # SQLite, then PostgreSQL
    DB=postgres scripts/bench.sh bench/run_end.py --runs 2000 --no-flush
"""

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.stack import bench_environment, drop_database, scratch_database_url, workdir


def measure(runs: int, flush: bool = True) -> dict:
    import django

    django.setup()
    from celery import states
    from celery.app.task import Context
    from django.core.management import call_command
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from jobs.models import JobType, Run
    from jobs.runs.executors import NOTIFY_HEADER, PARENT_HEADER, RUN_HEADER
    from jobs.worker.connections import CHECKED_ATTRIBUTE
    from jobsite.celery import app

    call_command("migrate", verbosity=0)
    job_type = JobType.objects.create(name="noop", kind="task", task="jobs.builtin.echo")
    ids = [
        str(run.pk)
        for run in Run.objects.bulk_create(
            Run(job_type=job_type, status=Run.Status.RUNNING, attempts=1) for _ in range(runs + 1)
        )
    ]
    headers = {RUN_HEADER: True, NOTIFY_HEADER: "never", PARENT_HEADER: ""}
    if not flush and connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SET synchronous_commit TO OFF")

    def end(run_id: str) -> None:
        request = Context(id=run_id, task="jobs.builtin.echo", hostname="bench", args=[], kwargs={}, **headers)
        # Its connection checked at its start just now, as the worker's task_prerun does.
        setattr(request, CHECKED_ATTRIBUTE, time.monotonic())
        app.backend.store_result(run_id, {"n": 1}, states.SUCCESS, request=request)

    with CaptureQueriesContext(connection) as captured:
        end(ids.pop())
    wall, cpu = time.perf_counter(), time.process_time()
    for run_id in ids:
        end(run_id)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    assert Run.objects.filter(status=Run.Status.SUCCEEDED).count() == runs + 1
    return {
        "database": connection.vendor,
        "runs": runs,
        "flush": flush,
        "wall_us_per_end": round(wall / runs * 1e6),
        "cpu_us_per_end": round(cpu / runs * 1e6),
        "statements_per_end": len(captured.captured_queries),
        "statements": [q["sql"][:60] for q in captured.captured_queries],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--no-flush", action="store_true", help="commits do not wait for the disk (PostgreSQL)")
    args = parser.parse_args()
    database_url = scratch_database_url(workdir())
    bench_environment(database_url)
    try:
        print(json.dumps(measure(args.runs, flush=not args.no_flush), indent=2))
    finally:
        from django import db

        db.connections.close_all()
        drop_database(database_url)


if __name__ == "__main__":
    main()
