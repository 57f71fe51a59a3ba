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

With --start, each run's start as well, the two ways a worker records it,
alternating in blocks of 100 runs so that the machine's drift hits both alike:
written as its task starts (an UPDATE and its commit; JOBS_START_MARK_DELAY_SECONDS
= 0), and read as its task starts then written by the end's UPDATE (a SELECT;
jobs/worker/start_marks.py). The runs are `queued`, written so before their
publish, as a trigger writes them; the start and end are timed together.

With --prepared (PostgreSQL), each run's start and end (the start written with
the end) with the statements prepared once per connection and planned each
time (JOBS_DB_PREPARED_STATEMENTS), alternating in blocks of 100 runs. Both
ways also report the CPU of this connection's server process.

With --checks (PostgreSQL), each run's start and end between the connection's
checkups as the worker's task_prerun and task_postrun make them
(jobs/worker/connections.py), alternating in blocks of 100 runs: a health check
(SELECT 1) before each run's start read, and none when a task ended on the
connection under a second ago (the read is the check).

With --celery, a task's whole path through a pool process, as the worker runs
it around the task (its task_prerun, its result stored by the result backend,
task_success, task_postrun: Jobsite's signal handlers for both), alternating
in blocks of 100: a run published by its trigger (its headers; a read at its
start, its start written with its end), and plain Celery's task of the same name
(no run: its result stored by django-celery-results as it is).

    scripts/bench.sh bench/run_end.py --runs 2000                   # SQLite, then PostgreSQL
    DB=postgres scripts/bench.sh bench/run_end.py --runs 2000 --no-flush
    scripts/bench.sh bench/run_end.py --runs 2000 --start
    DB=postgres scripts/bench.sh bench/run_end.py --runs 2000 --prepared
    DB=postgres scripts/bench.sh bench/run_end.py --runs 2000 --checks
    scripts/bench.sh bench/run_end.py --runs 2000 --celery
"""

import argparse
import json
import sys
import time
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.stack import bench_environment, drop_database, scratch_database_url, tree_usage, workdir


def measure(runs: int, flush: bool = True, kind: str = "") -> dict:
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
    headers = {RUN_HEADER: True, NOTIFY_HEADER: "never", PARENT_HEADER: ""}
    if not flush and connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SET synchronous_commit TO OFF")

    def end(run_id: str) -> None:
        request = Context(id=run_id, task="jobs.builtin.echo", hostname="bench", args=[], kwargs={}, **headers)
        # Its connection checked at its start just now, as the worker's task_prerun does.
        setattr(request, CHECKED_ATTRIBUTE, time.monotonic())
        app.backend.store_result(run_id, {"n": 1}, states.SUCCESS, request=request)

    if kind:
        return start_and_end(job_type, runs, end, kind=kind)
    ids = [
        str(run.pk)
        for run in Run.objects.bulk_create(
            Run(job_type=job_type, status=Run.Status.RUNNING, attempts=1) for _ in range(runs + 1)
        )
    ]
    with CaptureQueriesContext(connection) as captured:
        end(ids.pop())
    wall, cpu, server = time.perf_counter(), time.process_time(), backend_cpu()
    for run_id in ids:
        end(run_id)
    wall, cpu, server = time.perf_counter() - wall, time.process_time() - cpu, backend_cpu() - server
    assert Run.objects.filter(status=Run.Status.SUCCEEDED).count() == runs + 1
    return {
        "database": connection.vendor,
        "runs": runs,
        "flush": flush,
        "wall_us_per_end": round(wall / runs * 1e6),
        "cpu_us_per_end": round(cpu / runs * 1e6),
        "server_cpu_us_per_end": round(server / runs * 1e6),
        "statements_per_end": len(captured.captured_queries),
        "statements": [q["sql"][:60] for q in captured.captured_queries],
    }


BLOCK = 100


def backend_cpu() -> float:
    """CPU seconds of this connection's PostgreSQL backend (the server runs on
    this machine), 0 on SQLite, whose work is this process's."""
    from django.db import connection

    if connection.vendor != "postgresql":
        return 0.0
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        pid = cursor.fetchone()[0]
    return tree_usage(pid)[0]  # a backend has no children: its own


def start_and_end(job_type, runs: int, end, kind: str) -> dict:
    """Each run's start and end, two ways alternating by block. `kind`: "start"
    (the start written as the task starts, or with the end), "prepared" (the
    statements prepared once per connection, or planned each time), "checks"
    (a health check before each start read, or none after a task ended under a
    second ago), "celery" (a run's task or plain Celery's, signals included)."""
    from celery import states
    from django.conf import settings
    from django.db import connection
    from django.test.utils import CaptureQueriesContext
    from django.utils import timezone

    from jobs.models import Run
    from jobs.runs import tracking
    from jobs.runs.executors import NOTIFY_HEADER, PARENT_HEADER, QUEUED_HEADER, RUN_HEADER
    from jobs.worker import connections, signals, start_marks
    from jobsite.celery import app

    app.loader.import_default_modules()  # the tasks a worker registers as it starts
    task = app.tasks["jobs.builtin.echo"]

    def through_signals(task_id: str, headers: dict) -> None:
        """As Celery's tracer runs a task in a pool process, but for the task's body."""
        request = {"task": task.name, "hostname": "bench", "args": [], "kwargs": {}, "delivery_info": {}}
        task.push_request(id=task_id, is_eager=False, **request, **headers)
        try:
            signals.on_task_prerun(task_id, task)
            task.backend.store_result(task_id, {"n": 1}, states.SUCCESS, request=task.request)
            signals.on_task_success(task, {"n": 1})
            signals.on_task_postrun(task)
        finally:
            task.pop_request()

    def start_and_end_of(run_id: str, on: bool) -> None:
        if kind == "celery":
            # A run's message: what its trigger publishes (jobs/runs/executors.py), or none of it.
            run_headers = {RUN_HEADER: True, NOTIFY_HEADER: "never", PARENT_HEADER: "", QUEUED_HEADER: True}
            through_signals(run_id, run_headers if on else {})
            return
        late = on if kind == "start" else True
        settings.JOBS_DB_PREPARED_STATEMENTS = on if kind == "prepared" else True
        request = SimpleNamespace(is_eager=False)
        if kind == "checks":
            connections.checkup(request, reads_first=on)  # as task_prerun
        started = tracking.run_started(run_id=run_id, worker="bench", parent_id="", written_queued=True, defer=late)
        if started.late:
            start_marks.marks.defer(run_id, started.late)  # taken by the end (store_result)
        end(run_id)
        if kind == "checks":
            connections.task_ended(request)  # as task_postrun

    ways = {
        "start": {"written as the task starts": False, "written with the end": True},
        "prepared": {"planned each time": False, "prepared": True},
        "checks": {"checked before each start": False, "unchecked after a task ended under a second ago": True},
        "celery": {"plain Celery's task": False, "a Jobsite run's task": True},
    }[kind]
    now = timezone.now()
    ids = {
        way: [
            str(run.pk)
            for run in Run.objects.bulk_create(
                Run(job_type=job_type, status=Run.Status.QUEUED, queued_at=now) for _ in range(runs + 1)
            )
        ]
        for way in ways
    }
    figures = {}
    for way, on in ways.items():
        with CaptureQueriesContext(connection) as captured:
            start_and_end_of(ids[way].pop(), on)
        figures[way] = {
            "wall": 0.0, "cpu": 0.0, "server": 0.0, "statements": [q["sql"][:60] for q in captured.captured_queries]
        }  # fmt: skip
    for block in range(0, runs, BLOCK):
        for way, on in ways.items():
            wall, cpu, server = time.perf_counter(), time.process_time(), backend_cpu()
            for run_id in ids[way][block : block + BLOCK]:
                start_and_end_of(run_id, on)
            figures[way]["wall"] += time.perf_counter() - wall
            figures[way]["cpu"] += time.process_time() - cpu
            figures[way]["server"] += backend_cpu() - server
    ended = Run.objects.filter(status=Run.Status.SUCCEEDED, attempts=1).count()
    assert ended == (runs + 1 if kind == "celery" else 2 * (runs + 1)), ended  # plain Celery's tasks end no run
    return {
        "database": connection.vendor,
        "runs": runs,
        **{
            way: {
                "wall_us_per_run": round(figure["wall"] / runs * 1e6),
                "cpu_us_per_run": round(figure["cpu"] / runs * 1e6),
                "server_cpu_us_per_run": round(figure["server"] / runs * 1e6),
                "statements_per_run": len(figure["statements"]),
                "statements": figure["statements"],
            }
            for way, figure in figures.items()
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--no-flush", action="store_true", help="commits do not wait for the disk (PostgreSQL)")
    parser.add_argument("--start", action="store_true", help="each run's start too, written at once or with its end")
    parser.add_argument(
        "--prepared", action="store_true", help="each run's start and end, statements prepared or planned each time"
    )
    parser.add_argument(
        "--checks", action="store_true", help="each run's start and end, its connection checked first or trusted"
    )
    parser.add_argument(
        "--celery", action="store_true", help="a run's task or plain Celery's through a pool process, signals included"
    )
    args = parser.parse_args()
    database_url = scratch_database_url(workdir())
    bench_environment(database_url)
    try:
        kind = next((kind for kind in ("start", "prepared", "checks", "celery") if getattr(args, kind)), "")
        figures = measure(args.runs, flush=not args.no_flush, kind=kind)
        print(json.dumps(figures, indent=2))
    finally:
        from django import db

        db.connections.close_all()
        drop_database(database_url)


if __name__ == "__main__":
    main()
