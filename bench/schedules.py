#!/usr/bin/env python
"""How well do N every-minute schedules fire: Jobsite's dispatcher vs stock beat.

For each N, runs a real Redis, celery beat (django-celery-beat's
DatabaseScheduler) and workers for a few minutes twice, on a scratch database:

- jobsite: N Schedules with cron '* * * * *'; beat sends `jobsite.dispatch`
  every second and a dispatcher worker plans each tick's runs ahead and
  releases them at the tick; a worker runs them. Each tick's run is late by
  its time minus the tick's at three moments: released (`released_at`, the
  release's UPDATE, which writes the run `queued`), published (the dispatcher
  noted when it sent the run's message, Celery's `after_task_publish` signal,
  bench/tasks.py: what a user waiting for the run feels first) and started
  (`started_at`, on the worker).
- stock: N plain PeriodicTasks on crontab '* * * * *' whose task records when
  it ran (started); beat itself notes when it published each message
  (Celery's `after_task_publish` signal, bench/tasks.py), so that published
  compares the same moment both ways. Stock beat has no release.

Reports ticks expected vs fired (released, or published for stock beat),
missed, duplicates, lateness p50/p99/max at each moment, how many ticks were
not yet published or started when the window closed (45 s after the last
tick: starting them all is the workers' capacity, not the scheduler's), CPU
and peak memory of beat, the dispatcher and the worker, and how long a new
schedule takes to be picked up. The goal is on publish lateness. The database is a scratch SQLite file, or a
scratch database on the PostgreSQL server in DATABASE_URL.

    .venv/bin/python bench/schedules.py --schedules 1000 10000 --minutes 3
    scripts/with-postgres.sh .venv/bin/python bench/schedules.py
"""

import argparse
import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.stack import Sampler, Stack, bench_environment, drop_database, percentile, scratch_database_url, workdir


def run_one(count: int, mode: str, minutes: int) -> dict:
    work = workdir()
    database_url = scratch_database_url(work)
    env = bench_environment(database_url, JOBS_TASK_MODULES="bench.tasks")
    stack = Stack(work, env)
    try:
        return _measure(stack, work, count, mode, minutes)
    finally:
        stack.stop()
        drop_database(database_url)


def _measure(stack: Stack, work: Path, count: int, mode: str, minutes: int) -> dict:
    import django

    django.setup()
    import redis
    from django.conf import settings
    from django.core.management import call_command
    from django.utils import timezone
    from django_celery_beat.models import CrontabSchedule, IntervalSchedule, PeriodicTask

    from jobs.models import JobType, Run, Schedule

    call_command("migrate", verbosity=0)
    job_type = JobType.objects.create(name="noop", kind="task", task="jobs.builtin.echo")
    now = timezone.now()
    if mode == "jobsite":
        first = Schedule(cron="* * * * *", timezone="UTC").compute_next_run(now)
        Schedule.objects.bulk_create(
            [Schedule(name=f"bench-{i}", job_type=job_type, cron="* * * * *", next_run_at=first) for i in range(count)],
            batch_size=1000,
        )
    else:
        every_minute = CrontabSchedule.objects.create(minute="*", hour="*", timezone="UTC")
        PeriodicTask.objects.bulk_create(
            [
                PeriodicTask(
                    name=f"bench-{i}",
                    task="bench.record",
                    crontab=every_minute,
                    kwargs=json.dumps({"name": f"bench-{i}"}),
                )
                for i in range(count)
            ],
            batch_size=1000,
        )
        PeriodicTask.objects.filter(name__startswith="bench-").first().save()  # bump PeriodicTasks.last_update

    beat = [sys.executable, "-m", "celery", "-A", "jobsite", "beat", "-l", "warning", "--pidfile="]
    stack.start("beat", [*beat, "-s", str(work / "beat-schedule")], env={**stack.env, "BENCH_RECORD_PUBLISH": "name"})
    if mode == "jobsite":
        dispatcher = [sys.executable, "-m", "celery", "-A", "jobsite", "worker", "-l", "warning", "-Q", "jobsite"]
        stack.start(
            "dispatcher",
            [*dispatcher, "-c", "2", "-n", "dispatcher@%h"],
            env={**stack.env, "BENCH_RECORD_PUBLISH": "id"},
        )
    stack.celery("worker", "worker", "-l", "warning", "-Q", "celery", "-c", "2", "-n", "worker@%h", "--without-gossip")

    # The measured window starts at the first minute boundary 25 s or more away.
    start = (datetime.now(UTC) + timedelta(seconds=25)).replace(second=0, microsecond=0) + timedelta(minutes=1)
    ticks = [start + timedelta(minutes=k) for k in range(minutes)]
    end = ticks[-1] + timedelta(seconds=45)
    while datetime.now(UTC) < start:
        time.sleep(0.5)
    sampler = Sampler({name: p for name, p in stack.processes.items() if name != "redis"})
    probe_at = start + timedelta(seconds=30)
    probe_created = None
    while datetime.now(UTC) < end:
        sampler.sample()
        if probe_created is None and datetime.now(UTC) >= probe_at:
            probe_created = timezone.now()
            if mode == "jobsite":
                Schedule.objects.create(name="probe", job_type=job_type, interval_seconds=1)
            else:
                every_second, _ = IntervalSchedule.objects.get_or_create(every=1, period="seconds")
                PeriodicTask.objects.create(
                    name="probe", task="bench.record", interval=every_second, kwargs=json.dumps({"name": "probe"})
                )
        time.sleep(1)
    usage = sampler.report()
    time.sleep(1)  # the publishes noted last, pushed to Redis
    client = redis.Redis.from_url(settings.REDIS_URL)
    # Each message's key (a run's id, a stock entry's name) and when it was published, in order.
    publishes = [json.loads(raw) for raw in client.lrange("bench:published", 0, -1)]

    # (schedule, tick) -> lateness in seconds at each moment; a tick fired twice is counted.
    moments = ("released", "published", "started")
    late: dict[str, dict[tuple[str, datetime], float]] = {moment: {} for moment in moments}
    fires = duplicates = 0  # stock beat's publishes of measured ticks; Jobsite's second runs of a tick
    probe_first = None

    def seconds(at: datetime | None, tick: datetime) -> float | None:
        return None if at is None or at > end else (at - tick).total_seconds()

    if mode == "jobsite":
        planned: set[tuple[str, datetime]] = set()
        first_published: dict[str, datetime] = {}  # a run published again (the sweeper) counts its first
        for run_id, epoch in publishes:
            first_published.setdefault(run_id, datetime.fromtimestamp(epoch, UTC))
        rows = Run.objects.filter(schedule__isnull=False, released_at__isnull=False).values_list(
            "pk", "schedule__name", "schedule_tick", "released_at", "started_at"
        )
        for pk, name, tick, released, started in rows.iterator(chunk_size=10_000):
            at = (released, first_published.get(str(pk)), started)
            if name == "probe":
                probe_first = min(probe_first or at[0], at[0])
            elif tick in ticks:
                # A second run of a tick is a duplicate; a run released after the window, a
                # miss (counted once in `fired` only if released in time).
                duplicates += (name, tick) in planned
                planned.add((name, tick))
                for moment, when in zip(moments, at, strict=True):
                    if (lateness := seconds(when, tick)) is not None:
                        late[moment][name, tick] = lateness
    else:

        def tick_of(at: datetime) -> datetime | None:
            tick = max((t for t in ticks if t <= at), default=None)
            return tick if tick is not None and at < tick + timedelta(minutes=1) else None

        fired_at = [json.loads(raw) for raw in client.lrange("bench:fires", 0, -1)]
        for moment, notes in (("published", publishes), ("started", fired_at)):
            for name, epoch in notes:
                at = datetime.fromtimestamp(epoch, UTC)
                if name == "probe":
                    if moment == "started":
                        probe_first = min(probe_first or at, at)
                elif (tick := tick_of(at)) is not None and at <= end:
                    fires += moment == "published"
                    late[moment][name, tick] = (at - tick).total_seconds()
    fired = len(late["released"] if mode == "jobsite" else late["published"])
    expected = count * len(ticks)

    def spread(moment: str) -> str:
        values = list(late[moment].values())
        if mode == "stock" and moment == "released":
            return "—"
        return " / ".join(f"{percentile(values, q):.2f}" for q in (50, 99, 100)) if values else "none"

    return {
        "mode": mode,
        "schedules": count,
        "database": "postgresql" if os.environ["DATABASE_URL"].startswith("postgres") else "sqlite",
        "ticks_expected": expected,
        "fired": fired,
        "missed": expected - fired,
        "duplicates": duplicates if mode == "jobsite" else fires - fired,
        "lateness": {moment: spread(moment) for moment in moments},
        "not_published": fired - len(late["published"]) if mode == "jobsite" else 0,
        "not_started": fired - len(late["started"]),
        "edit_pickup_s": round((probe_first - probe_created).total_seconds(), 1) if probe_first else None,
        "usage": usage,
    }


def table(results: list[dict]) -> str:
    lines = [
        "| mode | db | schedules | ticks expected | fired | missed | duplicates "
        "| released late p50 / p99 / max (s) | published late p50 / p99 / max (s) "
        "| started late p50 / p99 / max (s) | not published / not started at the end "
        "| new schedule picked up (s) | beat CPU % / peak MiB | dispatcher CPU % / peak MiB "
        "| worker CPU % / peak MiB |",
        "|---|---|---:|---:|---:|---:|---:|---|---|---|---|---:|---|---|---|",
    ]
    for r in results:
        usage = {name: f"{u['cpu_percent']} / {u['peak_mib']}" for name, u in r["usage"].items()}
        late = r["lateness"]
        lines.append(
            f"| {r['mode']} | {r['database']} | {r['schedules']:,} | {r['ticks_expected']:,} | {r['fired']:,} "
            f"| {r['missed']:,} | {r['duplicates']:,} | {late['released']} | {late['published']} | {late['started']} "
            f"| {r['not_published']:,} / {r['not_started']:,} | {r['edit_pickup_s']} "
            f"| {usage.get('beat', '—')} | {usage.get('dispatcher', '—')} | {usage.get('worker', '—')} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--schedules", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--minutes", type=int, default=3, help="measured minutes (ticks) per run")
    parser.add_argument("--mode", choices=["jobsite", "stock", "both"], default="both")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--one", nargs=2, metavar=("COUNT", "MODE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:  # a child run: one size, one mode, in a fresh process
        print(json.dumps(run_one(int(args.one[0]), args.one[1], args.minutes)))
        return
    modes = ["jobsite", "stock"] if args.mode == "both" else [args.mode]
    results = []
    for count in args.schedules:
        for mode in modes:
            print(f"… {mode}, {count:,} schedules, {args.minutes} min", file=sys.stderr, flush=True)
            done = subprocess.run(
                [sys.executable, __file__, "--one", str(count), mode, "--minutes", str(args.minutes)],
                capture_output=True,
                text=True,
            )
            if done.returncode != 0:
                sys.exit(f"the {mode} run with {count} schedules failed:\n{done.stderr[-3000:]}")
            results.append(json.loads(done.stdout.strip().splitlines()[-1]))
            print(table(results[-1:]).splitlines()[-1], file=sys.stderr, flush=True)
    print(table(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
