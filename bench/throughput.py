#!/usr/bin/env python
"""Jobsite's overhead on top of Celery: N no-op jobs end to end, both ways.

In one invocation, on fresh databases of the same kind, with the same Redis
settings and the same worker (prefork, concurrency 2, queue `celery`):

- jobsite: N runs of a `task` job type (jobs.builtin.echo) through the trigger
  service (`run_create`, as the API calls it), tracked by the worker;
- celery: N plain `send_task` (what `apply_async` does) of the same task,
  the same result backend storing each result (as a task that is not a run,
  django-celery-results stores it unchanged).

Each side's N jobs run in --rounds rounds (default 2; N/R each, the last
taking the remainder), the sides alternating ABBA (round 1 celery then jobsite,
round 2 jobsite then celery, ...), each round in a process of its own with a
fresh database, Redis and worker: the speed of a shared machine drifts over
minutes, and with all of one side run after all of the other the drift, not
the code, decided the ratio.

Reports jobs per second end to end (first trigger to last result; each side's
jobs over its seconds in all its rounds), their ratio and the ratio of each
round pair (the spread), the database statements per run (trigger, start, and
end with its TaskResult; counted in-process with the code the web and worker
processes run) and, on PostgreSQL, the WAL flushes (fsyncs, what durable
commits wait for) per run, counted by the server over each round; the CPU
milliseconds per job of each process; the resident memory of the worker's pool
processes at job 1,000 and at the round's last job in the round where it grew
most (not measured in rounds under 2,000 jobs), and the peak of the whole
worker. Goals (issue 8): ratio >= 0.8 on PostgreSQL, pool memory within 10%
from job 1,000 to the last.

With --bulk, bulk triggers (issue 18) against the same plain Celery loop: N
runs through `runs_create_many` (the service behind POST
/api/v1/job-types/{name}/runs/bulk/, called in-process as the API calls it,
JOBS_BULK_MAX_RUNS runs per call, each call one transaction and its publish
pipelined JOBS_PUBLISH_BATCH_SIZE messages per Redis round trip). Goal: ratio
>= 1.0 on SQLite and PostgreSQL.

With --interleave BLOCK, both sides run in one stack instead (one database,
Redis and worker), in blocks of BLOCK jobs alternating ABBA, each block waited
for to its end (run_interleaved): the speed of this machine moves within
seconds too, and blocks seconds apart on one worker see the same machine. The
ratio per pair is then the blocks' median and range; no pool memory of a side's own.

With --logs, the cost of run logs (issue 16) instead: N runs of the no-op job
type against N of one whose task logs 10 lines at WARNING (bench.log10), each
captured and stored (jobs/runs/logs.py), in rounds as above; reports both
jobs/s, the wall time each line added to a job end to end, and, measured in
one process in the first round, what the worker spends per line (the logging
call through the capture, and its share of the run's one batched INSERT).

    .venv/bin/python bench/throughput.py --runs 10000          # SQLite, 2 rounds of 5,000 a side
    scripts/bench.sh bench/throughput.py --runs 10000          # SQLite, then PostgreSQL
    .venv/bin/python bench/throughput.py --runs 2000 --logs    # the cost of a logged line
    scripts/bench.sh bench/throughput.py --bulk --runs 10000   # bulk triggers against plain Celery
    DB=postgres scripts/bench.sh bench/throughput.py --bulk --runs 10000 --interleave 1000
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.stack import Stack, bench_environment, drop_database, scratch_database_url, tree_usage, workdir


def _wait_ready(app, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not (app.control.ping(timeout=0.5) or []):
        if time.monotonic() > deadline:
            raise RuntimeError("the worker did not answer")


CONTROL = ("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE SAVEPOINT")


def queries_per_run(mode: str) -> dict[str, float]:
    """The database statements of one run, by phase, made by the code the web
    and worker processes run: the trigger (its publish to Redis included), the
    start, and the end with its TaskResult row, stored by the configured result
    backend as Celery's worker stores it. BEGIN, COMMIT and savepoints are not
    counted."""
    from celery import states
    from celery.app.task import Context
    from django.conf import settings
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from jobs.models import JobType, Run
    from jobs.runs import tracking
    from jobs.runs.executors import NOTIFY_HEADER, PARENT_HEADER, RUN_HEADER
    from jobs.runs.trigger import run_create
    from jobs.worker import start_marks
    from jobsite.celery import app

    phases = {}
    per_trigger = 1  # runs triggered by the captured trigger
    if mode == "jobsite-bulk":
        from jobs.runs.trigger import runs_create_many

        per_trigger = settings.JOBS_BULK_MAX_RUNS
        job_type = JobType.objects.get(name="noop")
        with CaptureQueriesContext(connection) as phases["trigger"]:
            run = runs_create_many(job_type=job_type, params_list=[{}] * per_trigger, trigger=Run.Trigger.API)[0]
    mode = "jobsite" if mode.startswith("jobsite") else mode
    if mode == "jobsite":
        if per_trigger == 1:
            job_type = JobType.objects.get(name="noop")
            with CaptureQueriesContext(connection) as phases["trigger"]:
                run, _ = run_create(job_type=job_type, params={}, trigger=Run.Trigger.CLI)
        task_id, headers = str(run.pk), {RUN_HEADER: True, NOTIFY_HEADER: "never", PARENT_HEADER: ""}
        with CaptureQueriesContext(connection) as phases["start"]:
            # What the task_prerun signal handler does (jobs/worker/signals.py): the
            # run was written `queued` before its publish (the message says so).
            start = tracking.run_started(
                run_id=task_id, worker="bench", parent_id="", written_queued=True,
                defer=settings.JOBS_START_MARK_DELAY_SECONDS > 0,
            )  # fmt: skip
        if start.late:
            start_marks.marks.defer(task_id, start.late)  # written by the end (store_result) below
    else:
        task_id, headers = "plain-celery-task", {}
    request = Context(id=task_id, task="jobs.builtin.echo", hostname="bench", args=[], kwargs={}, **headers)
    with CaptureQueriesContext(connection) as phases["finish"]:
        app.backend.store_result(task_id, {}, states.SUCCESS, request=request)
        if mode == "jobsite":
            # What the task_success signal handler does after the backend (jobs/worker/signals.py).
            from jobs.worker.signals import on_task_success

            on_task_success(sender=type("Sender", (), {"request": request})(), result={})
    counts = {
        name: sum(not q["sql"].upper().startswith(CONTROL) for q in captured.captured_queries)
        for name, captured in phases.items()
    }
    if per_trigger > 1:  # a bulk trigger's statements, shared by its runs
        counts["trigger"] = round(counts["trigger"] / per_trigger, 3)
    counts["total"] = round(sum(counts.values()), 3)
    return counts


def wal_flushes() -> int | None:
    """How many times PostgreSQL has flushed its WAL to disk (an fsync each,
    what a durable commit waits for), in the whole (throwaway) cluster."""
    from django.db import connection

    if connection.vendor != "postgresql":
        return None
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute("SELECT wal_sync FROM pg_stat_wal")
        return cursor.fetchone()[0]


def database_server_pid() -> int | None:
    """The PostgreSQL server's main process (its backends are its children), or None on SQLite."""
    from django.db import connection

    if connection.vendor != "postgresql":
        return None
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        backend = cursor.fetchone()[0]
    with open(f"/proc/{backend}/status") as f:  # the server runs on this machine: its backend's parent
        return next(int(line.split()[1]) for line in f if line.startswith("PPid:"))


class CpuUse:
    """CPU seconds of the run's processes, each a tree, from now until `stop`:
    the worker (main process and pool), the database server (PostgreSQL: every
    backend, autovacuum too; SQLite runs inside the others), Redis, and this
    process (the trigger, the publish, and the polling that counts the ended jobs)."""

    def __init__(self, pids: dict[str, int | None]):
        self.pids = {name: pid for name, pid in pids.items() if pid is not None}
        self.started = self._now()

    def _now(self) -> dict[str, float]:
        now = {name: tree_usage(pid)[0] for name, pid in self.pids.items() if name != "bench"}
        if "bench" in self.pids:  # this process: its threads' time, not its children's
            now["bench"] = time.process_time()
        return now

    def seconds(self) -> dict[str, float]:
        ended = self._now()
        return {name: round(ended[name] - self.started[name], 3) for name in self.pids}


# The smallest round whose pool memory growth is reported: from job 1,000 to
# at least job 2,000, not over the few hundred jobs after the first 1,000.
MEMORY_ROUND = 2000


def pool_memory(worker_pid: int) -> int:
    """Resident bytes of the worker's pool processes (its children), summed."""
    children = []
    for task in os.listdir(f"/proc/{worker_pid}/task"):
        with open(f"/proc/{worker_pid}/task/{task}/children") as f:
            children.extend(int(child) for child in f.read().split())
    return sum(tree_usage(child)[1] for child in children)


class Progress(threading.Thread):
    """Polls how many jobs have ended, ten times a second (a hundred until the
    first has: `first_at`, when the first job ended), and samples the
    worker's memory: its pool processes at job 1,000 and at the last job, and
    the peak of the pool and of the whole worker (main process included)."""

    def __init__(self, done, worker_pid: int, runs: int):
        super().__init__(daemon=True)
        self.done, self.worker_pid, self.runs = done, worker_pid, runs
        self.memory_at_1000 = self.memory_at_end = self.memory_peak = self.tree_peak = 0
        self.first_at = self.finished_at = 0.0

    def run(self) -> None:
        from django import db

        try:
            while True:
                finished = self.done()
                memory = pool_memory(self.worker_pid)
                self.memory_peak = max(self.memory_peak, memory)
                self.tree_peak = max(self.tree_peak, tree_usage(self.worker_pid)[1])
                if not self.memory_at_1000 and finished >= min(1000, self.runs):
                    self.memory_at_1000 = memory
                if finished and not self.first_at:
                    self.first_at = time.perf_counter()
                if finished >= self.runs:
                    self.finished_at = time.perf_counter()
                    self.memory_at_end = memory
                    return
                time.sleep(0.1 if self.first_at else 0.01)
        finally:
            db.connections.close_all()


def line_cost(runs: int = 300, lines: int = 10) -> dict[str, float]:
    """What a run's logged lines cost the worker, in this process: `runs` runs
    of `lines` WARNING lines each, through the worker's handler into a capture
    written at the run's end (as the worker does). Reports the logging call
    alone (no run captured) and captured (in microseconds), the write of one
    run's batch (in milliseconds: the first batch's SELECT and its INSERT,
    committed), and all of it per line."""
    import logging

    from jobs.models import JobType, Run
    from jobs.runs import logs
    from jobs.worker.run_logs import RunLogHandler

    job_type = JobType.objects.get(name="noop")
    ids = [run.pk for run in Run.objects.bulk_create(Run(job_type=job_type, attempts=1) for _ in range(runs))]
    log = logging.getLogger("bench.lines")
    log.propagate = False
    log.addHandler(RunLogHandler(logging.WARNING))

    started = time.perf_counter()
    for _ in ids:
        for number in range(lines):
            log.warning("step %d of %d: %s", number + 1, lines, "done")
    bare = time.perf_counter() - started
    adding = writing = 0.0
    for run_id in ids:
        started = time.perf_counter()
        logs.begin(run_id)
        for number in range(lines):
            log.warning("step %d of %d: %s", number + 1, lines, "done")
        ended = time.perf_counter()
        logs.end()
        adding, writing = adding + ended - started, writing + time.perf_counter() - ended
    per_line = lambda seconds: round(seconds / (runs * lines) * 1e6, 1)  # noqa: E731
    return {
        "bare_us": per_line(bare),
        "captured_us": per_line(adding),
        "batch_ms": round(writing / runs * 1000, 2),
        "overhead_us": per_line(adding - bare + writing),
    }


@contextmanager
def bench_stack(task: str):
    """A fresh database (migrated, with the job type `noop` of `task`), Redis and
    worker (prefork, 2 processes, queue `celery`), all gone at the end:
    (stack, worker process, job type, database URL)."""
    work = workdir()
    database_url = scratch_database_url(work)
    env = bench_environment(database_url, JOBS_TASK_MODULES="bench.tasks")
    stack = Stack(work, env)
    try:
        import django

        django.setup()
        from django.core.management import call_command

        from jobs.models import JobType
        from jobsite.celery import app

        call_command("migrate", verbosity=0)
        job_type = JobType.objects.create(name="noop", kind="task", task=task)
        worker = stack.celery("worker", "worker", "-l", "warning", "-Q", "celery", "-c", "2", "-P", "prefork")
        _wait_ready(app)
        yield stack, worker, job_type, database_url
    finally:
        stack.stop()
        drop_database(database_url)


def trigger(mode: str, job_type, count: int) -> None:
    """Start `count` jobs of one side: bulk triggers (JOBS_BULK_MAX_RUNS a call, as many
    as one API request takes), single triggers (as the API calls the service), or
    plain Celery's send_task."""
    from django.conf import settings

    from jobs.models import Run
    from jobs.runs.trigger import run_create, runs_create_many
    from jobsite.celery import app

    if mode == "jobsite-bulk":
        size = settings.JOBS_BULK_MAX_RUNS
        for start in range(0, count, size):
            params_list = [{}] * min(size, count - start)
            runs_create_many(job_type=job_type, params_list=params_list, trigger=Run.Trigger.API)
    elif mode.startswith("jobsite"):
        for _ in range(count):
            run_create(job_type=job_type, params={}, trigger=Run.Trigger.CLI)
    else:
        for _ in range(count):
            app.send_task("jobs.builtin.echo", kwargs={})


def side_figures(mode: str, database_url: str, runs: int, seconds: float, published: float,
                 cpu_seconds: dict, flushes: int | None, flushes_before: int | None) -> dict:  # fmt: skip
    """A side's figures that a round and an --interleave block report alike."""
    return {
        "mode": mode,
        "database": "postgresql" if database_url.startswith("postgres") else "sqlite",
        "runs": runs,
        "seconds": round(seconds, 3),
        "publish_seconds": round(published, 3),
        "jobs_per_second": round(runs / seconds, 1),
        "wal_flushes": None if flushes is None else flushes - flushes_before,
        "cpu_seconds": cpu_seconds,
    }


def run_one(mode: str, runs: int) -> dict:
    task = "bench.log10" if mode == "jobsite-logs" else "jobs.builtin.echo"
    with bench_stack(task) as (stack, worker, job_type, database_url):
        from django_celery_results.models import TaskResult

        from jobs.models import Run

        if mode.startswith("jobsite"):

            def done() -> int:
                return Run.objects.filter(status__in=Run.TERMINAL_STATUSES).count()
        else:

            def done() -> int:
                return TaskResult.objects.count()

        flushes_before = wal_flushes()
        pids = {"worker": worker.pid, "database": database_server_pid(), "redis": stack.processes["redis"].pid}
        cpu = CpuUse({**pids, "bench": os.getpid()})
        progress = Progress(done, worker.pid, runs)
        started = time.perf_counter()
        progress.start()
        trigger(mode, job_type, runs)
        published = time.perf_counter() - started
        progress.join()
        elapsed = progress.finished_at - started
        cpu_seconds = cpu.seconds()
        time.sleep(1)  # backends report their WAL statistics about once a second
        flushes = wal_flushes()
        failed = Run.objects.exclude(status=Run.Status.SUCCEEDED).count() if mode.startswith("jobsite") else 0
        mib = lambda size: round(size / 2**20, 1)  # noqa: E731
        result = {
            **side_figures(mode, database_url, runs, elapsed, published, cpu_seconds, flushes, flushes_before),
            "first_done_seconds": round(progress.first_at - started, 3),
            "failed": failed,
            "pool_mib_at_1000": mib(progress.memory_at_1000),
            "pool_mib_at_end": mib(progress.memory_at_end),
            "pool_mib_peak": mib(progress.memory_peak),
            "worker_mib_peak": mib(progress.tree_peak),
            "memory_growth_percent": round(100 * (progress.memory_at_end / progress.memory_at_1000 - 1), 1),
        }
        if mode == "jobsite-logs":
            from jobs.models import RunLogLine

            result["log_lines"] = RunLogLine.objects.count()
            result["line_cost"] = line_cost()
        # Counted with the worker stopped: a live worker may have started the
        # counted run already, and the count would be of a start that finds it
        # running (an UPDATE that applies to nothing, then a read) and of an end
        # that finds it ended (no RunToCount INSERT).
        stack.stop("worker")
        result["queries_per_run"] = queries_per_run(mode)
        return result


def run_interleaved(modes: tuple[str, str], runs: int, block: int) -> dict[str, list[dict]]:
    """--interleave: both sides in one stack (one database, Redis and worker),
    their jobs in blocks of `block`, alternating ABBA, each block waited for to
    the end before the next. The machine's speed moves within seconds here, and
    by a third between processes started minutes apart: blocks seconds long,
    one after the other on the same worker, see the same machine. Each block is
    one of its side's entries (a "round" to `combined`); a warm-up block of each
    side (the worker's first tasks, its connections) is not counted. Every job,
    a run's or a plain task's, ends with one TaskResult: their count says when
    a block is done."""
    with bench_stack("jobs.builtin.echo") as (stack, worker, job_type, database_url):
        from django_celery_results.models import TaskResult

        from jobs.models import Run

        def one_block(mode: str, count: int) -> dict:
            # The block's TaskResults counted by id past the last before it: an index
            # range, not the whole table, so that polling costs the same in every block.
            last = TaskResult.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
            flushes_before = wal_flushes()
            cpu = CpuUse({**pids, "bench": os.getpid()})
            started = time.perf_counter()
            trigger(mode, job_type, count)
            published = time.perf_counter() - started
            while TaskResult.objects.filter(pk__gt=last).count() < count:
                time.sleep(0.02)
            seconds = time.perf_counter() - started
            cpu_seconds = cpu.seconds()
            if flushes_before is not None:
                time.sleep(1)  # backends report their WAL statistics about once a second
            flushes = wal_flushes()
            return {
                **side_figures(mode, database_url, count, seconds, published, cpu_seconds, flushes, flushes_before),
                "failed": 0,
                "pool_mib_at_1000": 0,
                "pool_mib_at_end": 0,
                "pool_mib_peak": round(pool_memory(worker.pid) / 2**20, 1),
                "worker_mib_peak": round(tree_usage(worker.pid)[1] / 2**20, 1),
                "memory_growth_percent": None,
            }

        pids = {"worker": worker.pid, "database": database_server_pid(), "redis": stack.processes["redis"].pid}
        for mode in modes:  # warm-up, not counted
            one_block(mode, min(block, 200))
        blocks: dict[str, list[dict]] = {mode: [] for mode in modes}
        sizes = round_sizes(runs, max(1, runs // block))
        for number, size in enumerate(sizes):
            for mode in modes if number % 2 == 0 else reversed(modes):
                blocks[mode].append(one_block(mode, size))
        failed = Run.objects.exclude(status=Run.Status.SUCCEEDED).count()
        stack.stop("worker")
        for mode in modes:
            blocks[mode][0]["queries_per_run"] = queries_per_run(mode)
            blocks[mode][-1]["failed"] = failed if mode.startswith("jobsite") else 0
        return blocks


def round_sizes(runs: int, rounds: int) -> list[int]:
    """N jobs in R rounds of N/R each, the last taking the remainder."""
    size = runs // rounds
    return [size] * (rounds - 1) + [runs - size * (rounds - 1)]


def run_round(mode: str, runs: int) -> dict:
    """One round of one side: `run_one` in a process of its own (its own Django, database and stack)."""
    done = subprocess.run(
        [sys.executable, __file__, "--one", mode, "--runs", str(runs)], capture_output=True, text=True
    )
    if done.returncode != 0:
        sys.exit(f"the {mode} run failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def combined(rounds: list[dict], blocks: bool = False) -> dict:
    """One side's figures over its rounds. Rates are its total jobs over its total
    seconds (not a mean of the rounds' rates), and so are the CPU and WAL flushes
    per run. Memory is the worst round's (the largest growth from job 1,000 to
    the round's last, each round a fresh worker), none where a round has fewer
    than MEMORY_ROUND jobs. The statements per run are the first round's (they do
    not depend on the round), and so is the logs' in-process line cost, a
    measurement of its own that the rounds are not for. `blocks`: the rounds are
    --interleave's blocks, on one worker that runs both sides (no memory of a side's own)."""
    first, runs = rounds[0], sum(result["runs"] for result in rounds)
    seconds = sum(result["seconds"] for result in rounds)
    memory_measured = not blocks and min(result["runs"] for result in rounds) >= MEMORY_ROUND
    worst = max(rounds, key=lambda result: abs(result["memory_growth_percent"])) if memory_measured else first
    side = {
        "mode": first["mode"],
        "database": first["database"],
        "runs": runs,
        "rounds": len(rounds),
        "round_size": first["runs"],
        "blocks": blocks,
        "seconds": round(seconds, 2),
        "publish_seconds": round(sum(result["publish_seconds"] for result in rounds), 2),
        # Trigger to the first job's end, the rounds' median (--interleave's blocks: not measured).
        "first_done_ms": (
            round(statistics.median(result["first_done_seconds"] for result in rounds) * 1000)
            if all("first_done_seconds" in result for result in rounds)
            else None
        ),
        "jobs_per_second": round(runs / seconds, 1),
        "failed": sum(result["failed"] for result in rounds),
        "pool_mib_at_1000": worst["pool_mib_at_1000"] if memory_measured else None,
        "pool_mib_at_end": worst["pool_mib_at_end"] if memory_measured else None,
        "memory_growth_percent": worst["memory_growth_percent"] if memory_measured else None,
        "pool_mib_peak": max(result["pool_mib_peak"] for result in rounds),
        "worker_mib_peak": max(result["worker_mib_peak"] for result in rounds),
        "wal_flushes_per_run": (
            None if first["wal_flushes"] is None else round(sum(result["wal_flushes"] for result in rounds) / runs, 2)
        ),
        "cpu_ms_per_run": {
            name: round(sum(result["cpu_seconds"][name] for result in rounds) * 1000 / runs, 2)
            for name in first["cpu_seconds"]
        },
        "queries_per_run": first["queries_per_run"],
        "per_round": rounds,
    }
    if "log_lines" in first:
        side["log_lines"] = sum(result["log_lines"] for result in rounds)
        side["line_cost"] = first["line_cost"]
    return side


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=10000)
    parser.add_argument(
        "--rounds", type=int, default=2, help="split each side's jobs into this many rounds, alternating ABBA"
    )
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--logs", action="store_true", help="the cost of run logs: no-op jobs against 10-line ones")
    parser.add_argument("--bulk", action="store_true", help="bulk triggers against plain Celery's send_task loop")
    parser.add_argument(
        "--interleave",
        type=int,
        metavar="BLOCK",
        help="both sides in one stack, in blocks of BLOCK jobs alternating ABBA (not with --logs)",
    )
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(args.one, args.runs)))
        return
    if not 1 <= args.rounds <= args.runs:
        parser.error(f"--rounds {args.rounds}: must be from 1 to --runs ({args.runs})")
    modes = ("jobsite", "jobsite-logs") if args.logs else ("celery", "jobsite-bulk" if args.bulk else "jobsite")
    if args.interleave:
        if args.logs or not 1 <= args.interleave <= args.runs:
            parser.error("--interleave BLOCK: from 1 to --runs, and not with --logs")
        blocks = run_interleaved(modes, args.runs, args.interleave)
        report({mode: combined(blocks[mode], blocks=True) for mode in modes}, args)
        return
    rounds: dict[str, list[dict]] = {mode: [] for mode in modes}
    sizes = round_sizes(args.runs, args.rounds)
    for number, size in enumerate(sizes):
        # ABBA: the side that runs second in one round runs first in the next, so
        # that a drift of the machine's speed over minutes hits both sides alike.
        for mode in modes if number % 2 == 0 else reversed(modes):
            print(f"… round {number + 1} of {len(sizes)}: {mode}, {size:,} jobs", file=sys.stderr, flush=True)
            rounds[mode].append(run_round(mode, size))
            print(f"  {rounds[mode][-1]['jobs_per_second']} jobs/s", file=sys.stderr, flush=True)
    report({mode: combined(rounds[mode]) for mode in modes}, args)


def report(results: dict[str, dict], args) -> None:
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    if args.logs:
        print(logs_table(results["jobsite"], results["jobsite-logs"]))
    elif args.bulk:
        print(bulk_table(results["celery"], results["jobsite-bulk"]))
    else:
        print(table(results["celery"], results["jobsite"]))


def rounds_cell(result: dict) -> str:
    """How a side's jobs were split: "2 (5,000 each)", "3 (3,333 each, the last 3,334)",
    "20 blocks of 500, interleaved in one stack"."""
    sizes = [each["runs"] for each in result["per_round"]]
    last = f", the last {sizes[-1]:,}" if sizes[-1] != sizes[0] else ""
    if result.get("blocks"):
        return f"{len(sizes)} blocks of {sizes[0]:,}{last}, interleaved in one stack"
    return f"{len(sizes)} ({sizes[0]:,} each{last})"


def round_ratios(plain: dict, ours: dict) -> str:
    """Our jobs/s over plain's in each round pair ("1.02, 0.97"): the spread the total's
    ratio hides; for more than four pairs, their median and range ("median 1.02, 0.91 to 1.10")."""
    rate = lambda each: each["runs"] / each["seconds"]  # noqa: E731
    ratios = [rate(b) / rate(a) for a, b in zip(plain["per_round"], ours["per_round"], strict=True)]
    if len(ratios) > 4:
        return f"median {statistics.median(ratios):.2f}, {min(ratios):.2f} to {max(ratios):.2f}"
    return ", ".join(f"{ratio:.2f}" for ratio in ratios)


def logs_table(plain: dict, logged: dict) -> str:
    per_job = lambda result: 1000 / result["jobs_per_second"]  # noqa: E731  (ms of wall time, 2 pool processes)
    added_us = (per_job(logged) - per_job(plain)) / 10 * 1000
    cost = logged["line_cost"]
    return "\n".join(
        [
            "| database | runs | rounds | Jobsite jobs/s, no-op | Jobsite jobs/s, 10 log lines "
            "| ratio per round pair (10 lines / no-op) | lines stored "
            "| wall µs added per line, end to end | worker µs per logging call, bare → captured "
            "| worker ms per run's batch write (10 lines) | worker µs added per line, all told | failed |",
            "|---|---:|---|---:|---:|---|---:|---:|---|---:|---:|---:|",
            f"| {logged['database']} | {logged['runs']:,} | {rounds_cell(logged)} | {plain['jobs_per_second']} "
            f"| {logged['jobs_per_second']} | {round_ratios(plain, logged)} "
            f"| {logged['log_lines']:,} | {added_us:.0f} | {cost['bare_us']} → {cost['captured_us']} "
            f"| {cost['batch_ms']} | {cost['overhead_us']} | {plain['failed'] + logged['failed']} |",
        ]
    )


CPU_PARTS = {"worker": "worker", "database": "database", "redis": "Redis", "bench": "trigger and polling"}


def cpu_cell(celery: dict, jobsite: dict) -> str:
    """CPU ms per job of each process, Celery / Jobsite, and their sums."""
    plain, ours = celery["cpu_ms_per_run"], jobsite["cpu_ms_per_run"]
    parts = [f"{label} {plain[name]:.2f} / {ours[name]:.2f}" for name, label in CPU_PARTS.items() if name in ours]
    return "; ".join([*parts, f"**all {sum(plain.values()):.2f} / {sum(ours.values()):.2f}**"])


def first_done_cell(celery: dict, jobsite: dict) -> str:
    if celery["first_done_ms"] is None or jobsite["first_done_ms"] is None:
        return "—"
    return f"{celery['first_done_ms']} / {jobsite['first_done_ms']}"


def bulk_table(celery: dict, bulk: dict) -> str:
    queries, plain = bulk["queries_per_run"], celery["queries_per_run"]
    trigger_rate = lambda result: round(result["runs"] / result["publish_seconds"])  # noqa: E731
    return "\n".join(
        [
            "| database | runs | rounds | plain Celery jobs/s | Jobsite bulk jobs/s | ratio | ratio per round pair "
            "| Jobsite bulk queries per run (trigger + start + finish) | plain Celery queries per task "
            "| triggered per second (Celery / Jobsite bulk) | first job ended after, ms (Celery / Jobsite bulk) "
            "| CPU ms per job (Celery / Jobsite bulk) | failed |",
            "|---|---:|---|---:|---:|---:|---|---|---:|---|---|---|---:|",
            f"| {bulk['database']} | {bulk['runs']:,} | {rounds_cell(bulk)} | {celery['jobs_per_second']} "
            f"| {bulk['jobs_per_second']} | {bulk['jobs_per_second'] / celery['jobs_per_second']:.2f} "
            f"| {round_ratios(celery, bulk)} "
            f"| {queries['trigger']} + {queries['start']} + {queries['finish']} = {queries['total']} "
            f"| {plain['total']} | {trigger_rate(celery):,} / {trigger_rate(bulk):,} | {first_done_cell(celery, bulk)} "
            f"| {cpu_cell(celery, bulk)} "
            f"| {bulk['failed']} |",
        ]
    )


def pool_cell(result: dict) -> str:
    if result["memory_growth_percent"] is None:
        return "—"
    return f"{result['pool_mib_at_1000']} → {result['pool_mib_at_end']}"


def growth_cell(result: dict) -> str:
    """The worst round's growth; a dash and why where the rounds are too short to say
    (a cell that starts with the dash is not judged by scripts/bench_report.py)."""
    if result.get("blocks"):
        return "— (interleaved blocks: one worker runs both sides)"
    if result["memory_growth_percent"] is None:
        return f"— (rounds of {result['round_size']:,} jobs: under {MEMORY_ROUND:,}, too few after job 1,000)"
    return str(result["memory_growth_percent"])


def table(celery: dict, jobsite: dict) -> str:
    queries, plain = jobsite["queries_per_run"], celery["queries_per_run"]
    flushes = (
        f"{celery['wal_flushes_per_run']} / {jobsite['wal_flushes_per_run']}"
        if jobsite["wal_flushes_per_run"] is not None
        else "—"
    )
    return "\n".join(
        [
            "| database | runs | rounds | plain Celery jobs/s | Jobsite jobs/s | ratio | ratio per round pair "
            "| Jobsite queries per run (trigger + start + finish) | plain Celery queries per task "
            "| WAL flushes per run (Celery / Jobsite) | Jobsite publish (s) | pool MiB at 1,000 → end, Celery "
            "| pool MiB at 1,000 → end, Jobsite | Jobsite pool growth % | worker peak MiB (Celery / Jobsite) "
            "| CPU ms per job (Celery / Jobsite) | failed |",
            "|---|---:|---|---:|---:|---:|---|---|---:|---|---:|---|---|---|---|---|---:|",
            f"| {jobsite['database']} | {jobsite['runs']:,} | {rounds_cell(jobsite)} | {celery['jobs_per_second']} "
            f"| {jobsite['jobs_per_second']} | {jobsite['jobs_per_second'] / celery['jobs_per_second']:.2f} "
            f"| {round_ratios(celery, jobsite)} "
            f"| {queries['trigger']} + {queries['start']} + {queries['finish']} = {queries['total']} "
            f"| {plain['total']} | {flushes} | {jobsite['publish_seconds']} | {pool_cell(celery)} "
            f"| {pool_cell(jobsite)} | {growth_cell(jobsite)} "
            f"| {celery['worker_mib_peak']} / {jobsite['worker_mib_peak']} | {cpu_cell(celery, jobsite)} "
            f"| {jobsite['failed']} |",
        ]
    )


if __name__ == "__main__":
    main()
