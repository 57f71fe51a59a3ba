"""Do the monitoring pages and the API's lists stay as fast with 1,000,000 runs as with 1,000?

    make bench-monitor                              # SQLite, then a throwaway PostgreSQL
    .venv/bin/python bench/monitor_scale.py         # one database: DATABASE_URL, else a scratch SQLite file

For each size it makes a database of its own and bulk-loads that many runs
(one every 30 seconds back from now, 20 job types, 10% failed, 1% cancelled,
and the same 30 active runs at every size; a tenth of them fired by
schedules, half of those by one and the rest by 999 others, and one in 1,000
a workflow run with three step runs, so
`schedule` and `parent` are NULL on most rows), analyzes it, then requests each
page with Django's test client, logged in, and reports the median of --repeat
requests. The requests alternate between the sizes (a router points the ORM at
one database or the other), so a busy machine slows both sides alike: the
ratio is what matters. The goal: every page and API list at the largest size
within 1.5x its time at the smallest.

It never touches your data: its databases are scratch SQLite files under /tmp,
or jobsite_bench_<pid>_<size> on DATABASE_URL's server (which needs CREATEDB),
dropped at the end. There is no broker either (REDIS_URL points
at a closed loopback port), so the pages say "broker unreachable" at once and
the times are those of the database and the templates; the API's run list
(first page, the page reached by following `next` three times, a job type with
a twentieth of the runs, and one with none)
and its schedule list are timed the same way, as JSON. Asking workers adds
MONITOR_INSPECT_TIMEOUT (1 s) to the dashboard and workers page at any size.
With --explain it prints the plans of the pages' main queries at each size.
"""

import argparse
import json
import os
import random
import shutil
import socket
import statistics
import sys
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

JOB_TYPES = 20
SCHEDULES = 1000
WORKFLOW_EVERY = 1000  # one run in this many is a workflow run, with STEPS step runs
STEPS = ("extract", "transform", "load")
ACTIVE_RUNS = 30
SPACING = timedelta(seconds=30)
GOAL_RATIO = 1.5


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def configure(scratch: Path) -> None:
    """Settings for a bench process: its own database, no broker, quiet logs."""
    os.environ.setdefault("SECRET_KEY", "bench-only-not-a-secret")
    os.environ["DJANGO_SETTINGS_MODULE"] = "jobsite.settings"
    os.environ["ALLOWED_HOSTS"] = "testserver"
    os.environ["REDIS_URL"] = f"redis://127.0.0.1:{free_port()}/0"
    os.environ["LOG_LEVEL"] = "ERROR"
    if not os.environ.get("DATABASE_URL"):
        os.environ["SQLITE_PATH"] = str(scratch / "bench.sqlite3")
    import django

    django.setup()


# --- Filling --------------------------------------------------------------------

COLUMNS = [
    "id",
    "job_type_id",
    "status",
    "params",
    "trigger",
    "created_at",
    "queued_at",
    "started_at",
    "finished_at",
    "attempts",
    "earlier_attempts",
    "worker",
    "result",
    "error",
    "traceback",
    "schedule_id",
    "parent_id",
    "step_name",
    "depends_on",
    "notify_emails",
    "notify_status",
    "notify_attempts",
    "notify_outcome",
    "comment",
]


def run_rows(n: int, job_type_ids: list[int], now, schedule_ids: list[int], workflow_id: int):
    for row in plain_rows(n, job_type_ids, now):
        i = row["params"]["n"]
        if i % WORKFLOW_EVERY == WORKFLOW_EVERY // 2 and row["status"] in ("succeeded", "failed"):
            row["job_type_id"], row["trigger"] = workflow_id, "api"
            yield row
            yield from step_rows(row, job_type_ids)
            continue
        if row["trigger"] == "schedule":
            # Half to the first schedule (the one the history is filtered by,
            # so that its page lists 50 runs at every size), the rest spread.
            k = i // 10
            row["schedule_id"] = schedule_ids[0] if k % 2 == 0 else schedule_ids[1 + k // 2 % (len(schedule_ids) - 1)]
        yield row


def step_rows(parent: dict, job_type_ids: list[int]):
    start = parent["started_at"]
    for number, name in enumerate(STEPS):
        yield {
            **parent,
            "id": uuid.uuid4(),
            "job_type_id": job_type_ids[number],
            "status": "succeeded",
            "trigger": "workflow",
            "started_at": start + timedelta(seconds=number),
            "finished_at": start + timedelta(seconds=number + 1),
            "parent_id": parent["id"],
            "step_name": name,
            "depends_on": list(STEPS[:number][-1:]),
            "result": {"ok": True},
            "error": "",
            "traceback": "",
        }


def plain_rows(n: int, job_type_ids: list[int], now):
    rng = random.Random(n)
    active = ["queued", "running", "retrying"]
    for i in range(n):
        created = now - SPACING * i - timedelta(microseconds=rng.randrange(1_000_000))
        if i < ACTIVE_RUNS:
            status = active[i % 3]
        elif i % 10 == 7:
            status = "failed"
        elif i % 97 == 3:
            status = "cancelled"
        else:
            status = "succeeded"
        terminal = i >= ACTIVE_RUNS
        started = created + timedelta(seconds=1) if status != "queued" else None
        finished = started + timedelta(seconds=rng.uniform(0.1, 30)) if terminal else None
        yield {
            "id": uuid.uuid4(),
            "job_type_id": job_type_ids[i % len(job_type_ids)],
            "status": status,
            "params": {"n": i},
            "trigger": "schedule" if i % 10 == 0 else "api",
            "created_at": created,
            "queued_at": created + timedelta(milliseconds=5),
            "started_at": started,
            "finished_at": finished,
            "attempts": 0 if started is None else 1,
            "earlier_attempts": [],
            "worker": "" if started is None else f"celery@bench-{i % 4}",
            "result": {"ok": True, "n": i} if status == "succeeded" else None,
            "error": "RuntimeError: boom" if status == "failed" else "",
            "traceback": "Traceback (most recent call last):\n  ...\nRuntimeError: boom" if status == "failed" else "",
            "schedule_id": None,
            "parent_id": None,
            "step_name": "",
            "depends_on": [],
            "notify_emails": [],
            "notify_status": "",
            "notify_attempts": 0,
            "notify_outcome": {},
            "comment": "",
        }


def fill(alias: str, n: int, job_type_ids: list[int], schedule_ids: list[int], workflow_id: int) -> float:
    """Load n generated runs (and the step runs of the workflow runs among them)
    into database `alias`; returns the seconds it took."""
    from django.db import connections, transaction
    from django.utils import timezone

    from jobs.models import Run

    connection = connections[alias]
    started = time.perf_counter()
    fields = [Run._meta.get_field(name.removesuffix("_id")) for name in COLUMNS]
    tallies = Tallies()
    rows = map(tallies.count, run_rows(n, job_type_ids, timezone.now(), schedule_ids, workflow_id))
    with transaction.atomic(using=alias), connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # COPY: the fast way to load a million rows into PostgreSQL.
            with cursor.cursor.copy(f"COPY jobs_run ({', '.join(COLUMNS)}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(
                        [json.dumps(row[c]) if c in JSON_COLUMNS and row[c] is not None else row[c] for c in COLUMNS]
                    )
        else:
            sql = f"INSERT INTO jobs_run ({', '.join(COLUMNS)}) VALUES ({', '.join(['%s'] * len(COLUMNS))})"
            batch = []
            for row in rows:
                batch.append(
                    [field.get_db_prep_save(row[c], connection) for field, c in zip(fields, COLUMNS, strict=True)]
                )
                if len(batch) == 20_000:
                    cursor.executemany(sql, batch)
                    batch = []
            if batch:
                cursor.executemany(sql, batch)
        tallies.save(alias)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE jobs_run" if connection.vendor == "postgresql" else "ANALYZE")
    return time.perf_counter() - started


class Tallies:
    """The counts /metrics reads (RunTally), as the runs loaded here would have
    left them had they ended one by one: per job type, the runs by status and
    the buckets of the three histograms (a schedule's run taken as released
    when queued)."""

    def __init__(self):
        from collections import Counter

        self.values = Counter()

    def count(self, row: dict) -> dict:
        from jobs.core.tallies import DURATION_BUCKETS, LATENESS_BUCKETS, QUEUE_WAIT_BUCKETS, SUM, bucket_key

        if row["finished_at"] is None:
            return row
        job_type = row["job_type_id"]
        self.values["runs", job_type, row["status"]] += 1

        def observe(metric, seconds, bounds):
            self.values[metric, job_type, bucket_key(seconds, bounds)] += 1
            self.values[metric, job_type, SUM] += seconds

        if row["started_at"]:
            observe("duration", (row["finished_at"] - row["started_at"]).total_seconds(), DURATION_BUCKETS)
            observe("queue_wait", (row["started_at"] - row["created_at"]).total_seconds(), QUEUE_WAIT_BUCKETS)
        if row["trigger"] == "schedule":
            observe("lateness", (row["queued_at"] - row["created_at"]).total_seconds(), LATENESS_BUCKETS)
        return row

    def save(self, alias: str) -> None:
        from jobs.models import RunTally

        RunTally.objects.using(alias).bulk_create(
            RunTally(metric=metric, job_type_id=job_type, key=key, value=value)
            for (metric, job_type, key), value in self.values.items()
        )


JSON_COLUMNS = ("params", "earlier_attempts", "result", "depends_on", "notify_emails", "notify_outcome")


# --- One database per size, and a router to pick one ---------------------------------


class Router:
    """Sends every query to the database of the size being measured."""

    alias = "default"

    def db_for_read(self, model, **hints):
        return self.alias

    db_for_write = db_for_read

    def allow_relation(self, obj1, obj2, **hints):
        return True

    def allow_migrate(self, db, app_label, **hints):
        return True


ROUTER = Router()


def add_databases(sizes: list[int]) -> dict[int, str]:
    """A database alias per size, configured like the default one (before any connection opens)."""
    from django.conf import settings
    from django.db import router

    aliases = {}
    default = settings.DATABASES["default"]
    for size in sizes:
        alias = f"runs_{size}"
        test_name = (
            f"jobsite_bench_{os.getpid()}_{size}"
            if "postgresql" in default["ENGINE"]
            else str(Path(default["NAME"]).with_name(f"bench_{size}.sqlite3"))
        )
        settings.DATABASES[alias] = {**default, "TEST": {**default.get("TEST", {}), "NAME": test_name}}
        aliases[size] = alias
    router.routers = [ROUTER]
    return aliases


def create_database(alias: str) -> str:
    from django.db import connections

    ROUTER.alias = alias
    return connections[alias].creation.create_test_db(verbosity=0, autoclobber=True, serialize=False)


# --- Measuring --------------------------------------------------------------------


def follow_next(client, url: str, times: int) -> str:
    """The API page reached from `url` by following its `next` link `times` times (as a path)."""
    from urllib.parse import urlsplit

    for _ in range(times):
        response = client.get(url)
        assert response.status_code == 200, (url, response.status_code)
        link = urlsplit(response.json()["next"])
        url = f"{link.path}?{link.query}"
    return url


def page_urls(client, sample_run_id, job_type_name: str, schedule_name: str, workflow_run_id) -> dict[str, str]:
    import re

    first = client.get("/monitor/runs/").content.decode()
    older = re.search(r'href="([^"]+)" rel="next"', first)
    return {
        "dashboard": "/monitor/",
        "dashboard, live part": "/monitor/live/",
        "runs": "/monitor/runs/",
        "runs, status=failed": "/monitor/runs/?status=failed",
        "runs, job_type": f"/monitor/runs/?job_type={job_type_name}",
        "runs, 2nd page": "/monitor/runs/" + older[1].replace("&amp;", "&"),
        "run detail": f"/monitor/runs/{sample_run_id}/",
        "job type": f"/monitor/job-types/{job_type_name}/",
        "runs, schedule": f"/monitor/runs/?schedule={schedule_name}",
        "schedules": "/monitor/schedules/",
        "schedules, page 10": "/monitor/schedules/?page=10",
        "workflow run": f"/monitor/runs/{workflow_run_id}/",
        "API runs": "/api/v1/runs/",
        "API runs, 4th page": follow_next(client, "/api/v1/runs/", 3),
        "API runs, job_type": f"/api/v1/runs/?job_type={job_type_name}",
        "API runs, idle job_type": "/api/v1/runs/?job_type=idle",
        "API schedules": "/api/v1/schedules/",
        "metrics": "/metrics",
    }


def explain(alias: str) -> list[tuple[str, str]]:
    """Plans of the queries behind the pages, as the database chose them."""
    from django.db import connections
    from django.utils import timezone

    from jobs.api.views import RunViewSet
    from jobs.models import Run
    from jobs.monitor.queries import COUNT_CAP, NEWEST_FIRST

    connection = connections[alias]
    runs = Run.objects.using(alias)
    newest = runs.order_by(*NEWEST_FIRST).values_list("created_at", "id").first()
    since = timezone.now() - timedelta(hours=24)
    a_parent = runs.filter(trigger="workflow").values_list("parent_id", flat=True).first()
    api_runs = RunViewSet(action="list").get_queryset().using(alias)
    queries = {
        "24h count of one status": runs.filter(status="succeeded", created_at__gte=since).order_by()[: COUNT_CAP + 1],
        "count of one active status": runs.filter(status="running").order_by()[: COUNT_CAP + 1],
        "newest runs of one status": runs.filter(status="running").order_by(*NEWEST_FIRST)[:50],
        "runs, first page": runs.order_by(*NEWEST_FIRST)[:51],
        "runs, status filter": runs.filter(status="failed").order_by(*NEWEST_FIRST)[:51],
        "runs, job type filter": runs.filter(job_type_id=1).order_by(*NEWEST_FIRST)[:51],
        "runs, older page": runs.filter(created_at__lte=newest[0])
        .exclude(created_at=newest[0], id__gte=newest[1])
        .order_by(*NEWEST_FIRST)[:51],
        "runs, schedule filter": runs.filter(schedule_id=7).order_by(*NEWEST_FIRST)[:51],
        "runs, busy schedule and status": runs.filter(schedule_id=1, status="failed").order_by(*NEWEST_FIRST)[:51],
        "a workflow run's steps": runs.filter(parent_id=a_parent).order_by("created_at", "step_name"),
        "API runs, first page": api_runs.order_by(*NEWEST_FIRST)[:51],
        "API runs, job type filter": api_runs.filter(job_type__name="job-07").order_by(*NEWEST_FIRST)[:51],
    }
    plans = []
    for name, queryset in queries.items():
        sql, params = queryset.query.sql_with_params()
        prefix = "EXPLAIN " if connection.vendor == "postgresql" else "EXPLAIN QUERY PLAN "
        with connection.cursor() as cursor:
            cursor.execute(prefix + sql, params)
            lines = [str(row[-1]) for row in cursor.fetchall()]
        plans.append((name, "\n      ".join(lines)))
    return plans


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000,1000000", help="run counts, comma-separated (default: %(default)s)")
    parser.add_argument("--repeat", type=int, default=15, help="requests per page and size; the median counts")
    parser.add_argument("--explain", action="store_true", help="print the query plans at each size")
    args = parser.parse_args()
    sizes = sorted({int(size) for size in args.sizes.split(",")})
    if len(sizes) < 2:
        parser.error("--sizes needs at least two sizes to compare")

    scratch = Path(tempfile.mkdtemp(prefix="jobsite-bench-"))
    created = []
    try:
        configure(scratch)
        from django.contrib.auth.models import User
        from django.db import connections
        from django.test import Client
        from django.utils import timezone

        from jobs.models import JobType, Run, Schedule

        aliases = add_databases(sizes)
        vendor = connections["default"].vendor
        print(f"Database: {vendor}; sizes {', '.join(f'{size:,}' for size in sizes)}; {args.repeat} requests per page")
        clients, urls = {}, {}
        for size, alias in aliases.items():
            created.append((alias, create_database(alias)))
            job_types = [
                JobType.objects.create(name=f"job-{i:02d}", kind="task", task="jobs.builtin.echo")
                for i in range(JOB_TYPES)
            ]
            workflow = JobType.objects.create(name="etl", kind=JobType.Kind.WORKFLOW)
            JobType.objects.create(name="idle", kind="task", task="jobs.builtin.echo")  # no runs at all
            schedules = Schedule.objects.bulk_create(
                Schedule(
                    name=f"schedule-{i:04d}",
                    job_type=job_types[i % JOB_TYPES],
                    interval_seconds=60 + i,
                    next_run_at=timezone.now() + timedelta(seconds=60 + i),
                )
                for i in range(SCHEDULES)
            )
            seconds = fill(alias, size, [jt.pk for jt in job_types], [s.pk for s in schedules], workflow.pk)
            print(f"{size:,} runs loaded in {seconds:.1f} s")
            client = Client()
            client.force_login(User.objects.create_superuser("bench", password="bench-only-not-a-secret"))
            sample = Run.objects.filter(created_at__lte=Run.objects.order_by("-created_at")[size // 2].created_at)
            sample = sample.order_by("-created_at", "-id").first()
            workflow_runs = Run.objects.filter(job_type=workflow).order_by("-created_at")
            workflow_run = workflow_runs[(workflow_runs.count() - 1) // 2]
            clients[size] = client
            urls[size] = page_urls(client, sample.pk, job_types[7].name, schedules[0].name, workflow_run.pk)
            if args.explain:
                for name, plan in explain(alias):
                    print(f"  plan, {name}:\n      {plan}")

        times = {size: {name: [] for name in urls[size]} for size in sizes}
        for round_ in range(args.repeat + 2):  # the first two rounds warm up
            for name in urls[sizes[0]]:
                for size in sizes:
                    ROUTER.alias = aliases[size]
                    started = time.perf_counter()
                    response = clients[size].get(urls[size][name])
                    elapsed = time.perf_counter() - started
                    assert response.status_code == 200, (size, name, response.status_code)
                    if round_ >= 2:
                        times[size][name].append(elapsed)
    finally:
        for alias, old_name in created:
            connections[alias].creation.destroy_test_db(old_name, verbosity=0)
        shutil.rmtree(scratch, ignore_errors=True)

    small, large = sizes[0], sizes[-1]
    print(f"\n{vendor}: median ms per page (min in brackets); goal: {large:,} runs within {GOAL_RATIO}x of {small:,}\n")
    print(f"| page | {' | '.join(f'{size:,} runs' for size in sizes)} | ratio |")
    print(f"|---|{'---:|' * len(sizes)}---:|")
    worst = 0.0
    for name in times[small]:
        medians = {size: statistics.median(times[size][name]) for size in sizes}
        ratio = medians[large] / medians[small]
        worst = max(worst, ratio)
        cells = " | ".join(f"{medians[size] * 1000:.1f} ({min(times[size][name]) * 1000:.1f})" for size in sizes)
        print(f"| {name} | {cells} | {ratio:.2f}{'' if ratio <= GOAL_RATIO else ' over'} |")
    print(f"\nWorst ratio: {worst:.2f}, {'within' if worst <= GOAL_RATIO else 'OVER'} the {GOAL_RATIO}x goal")
    return 0


if __name__ == "__main__":
    sys.exit(main())
