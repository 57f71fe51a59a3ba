#!/usr/bin/env python
"""Jobsite's overhead on top of Celery: N no-op jobs end to end, both ways.

In one invocation, on fresh databases of the same kind, with the same Redis
settings and the same worker (prefork, concurrency 2, queue `celery`):

- jobsite: N runs of a `task` job type (jobs.builtin.echo) through the trigger
  service (`run_create`, as the API calls it), tracked by the worker;
- celery: N plain `send_task` of the same task, django-celery-results storing
  each result (the same result backend Jobsite uses).

Reports jobs per second end to end (first trigger to last result), their ratio,
Jobsite's database queries per run (trigger and tracking, counted in-process
with the same code the web and worker processes run), and the worker's memory
at run 1,000 and at the end.

    .venv/bin/python bench/throughput.py --runs 10000          # SQLite
    scripts/bench.sh bench/throughput.py --runs 10000          # SQLite, then PostgreSQL
"""

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.stack import Stack, bench_environment, drop_database, scratch_database_url, tree_usage, workdir


def _wait_ready(app, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not (app.control.ping(timeout=0.5) or []):
        if time.monotonic() > deadline:
            raise RuntimeError("the worker did not answer")


CONTROL = ("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE SAVEPOINT")


def queries_per_run() -> dict[str, int]:
    """Jobsite's own queries for one run, by phase, with the code the web and
    worker processes run (the trigger's publish to Redis included). BEGIN,
    COMMIT and savepoints are not counted: `transactions` counts the COMMITs."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from jobs import services
    from jobs.models import JobType, Run

    job_type = JobType.objects.get(name="noop")
    phases = {}
    with CaptureQueriesContext(connection) as phases["trigger"]:
        run, _ = services.run_create(job_type=job_type, params={}, trigger=Run.Trigger.CLI)
    with CaptureQueriesContext(connection) as phases["start"]:
        services.run_started(run_id=str(run.pk), worker="bench", parent_id="")
    with CaptureQueriesContext(connection) as phases["finish"]:
        services.run_succeeded(run_id=str(run.pk), result={}, notify_on="never", parent_id="")
    counts = {
        name: sum(not q["sql"].upper().startswith(CONTROL) for q in captured.captured_queries)
        for name, captured in phases.items()
    }
    counts["transactions"] = sum(
        q["sql"].upper().startswith("COMMIT") for captured in phases.values() for q in captured.captured_queries
    )
    return counts


def run_one(mode: str, runs: int) -> dict:
    work = workdir()
    database_url = scratch_database_url(work)
    env = bench_environment(database_url)
    stack = Stack(work, env)
    try:
        import django

        django.setup()
        from django.core.management import call_command
        from django_celery_results.models import TaskResult

        from jobs import services
        from jobs.models import JobType, Run
        from jobsite.celery import app

        call_command("migrate", verbosity=0)
        job_type = JobType.objects.create(name="noop", kind="task", task="jobs.builtin.echo")
        worker = stack.celery("worker", "worker", "-l", "warning", "-Q", "celery", "-c", "2", "-P", "prefork")
        _wait_ready(app)

        if mode == "jobsite":

            def trigger(_):
                services.run_create(job_type=job_type, params={}, trigger=Run.Trigger.CLI)

            def done() -> int:
                return Run.objects.filter(status__in=Run.TERMINAL_STATUSES).count()
        else:

            def trigger(_):
                app.send_task("jobs.builtin.echo", kwargs={})

            def done() -> int:
                return TaskResult.objects.count()

        started = time.perf_counter()
        for i in range(runs):
            trigger(i)
        published = time.perf_counter() - started
        memory_at_1000 = None
        while (finished := done()) < runs:
            if memory_at_1000 is None and finished >= min(1000, runs):
                memory_at_1000 = tree_usage(worker.pid)[1]
            time.sleep(0.2)
        elapsed = time.perf_counter() - started
        memory_end = tree_usage(worker.pid)[1]
        failed = Run.objects.exclude(status=Run.Status.SUCCEEDED).count() if mode == "jobsite" else 0
        result = {
            "mode": mode,
            "database": "postgresql" if database_url.startswith("postgres") else "sqlite",
            "runs": runs,
            "seconds": round(elapsed, 2),
            "publish_seconds": round(published, 2),
            "jobs_per_second": round(runs / elapsed, 1),
            "failed": failed,
            "worker_mib_at_1000": round((memory_at_1000 or memory_end) / 2**20, 1),
            "worker_mib_at_end": round(memory_end / 2**20, 1),
        }
        if mode == "jobsite":
            result["queries_per_run"] = queries_per_run()
        return result
    finally:
        stack.stop()
        drop_database(database_url)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=10000)
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(args.one, args.runs)))
        return
    results = {}
    for mode in ("celery", "jobsite"):
        print(f"… {mode}: {args.runs:,} no-op jobs", file=sys.stderr, flush=True)
        done = subprocess.run(
            [sys.executable, __file__, "--one", mode, "--runs", str(args.runs)], capture_output=True, text=True
        )
        if done.returncode != 0:
            sys.exit(f"the {mode} run failed:\n{done.stderr[-3000:]}")
        results[mode] = json.loads(done.stdout.strip().splitlines()[-1])
    celery, jobsite = results["celery"], results["jobsite"]
    queries = jobsite["queries_per_run"]
    print("| database | runs | plain Celery jobs/s | Jobsite jobs/s | ratio | Jobsite queries per run "
          "(trigger + start + finish) | worker MiB at 1,000 → end (Celery / Jobsite) | failed |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---|---|---:|")
    print(
        f"| {jobsite['database']} | {args.runs:,} | {celery['jobs_per_second']} | {jobsite['jobs_per_second']} "
        f"| {jobsite['jobs_per_second'] / celery['jobs_per_second']:.2f} "
        f"| {queries['trigger']} + {queries['start']} + {queries['finish']} "
        f"= {queries['trigger'] + queries['start'] + queries['finish']} "
        f"| {celery['worker_mib_at_1000']} → {celery['worker_mib_at_end']} / "
        f"{jobsite['worker_mib_at_1000']} → {jobsite['worker_mib_at_end']} | {jobsite['failed']} |"
    )


if __name__ == "__main__":
    main()
