#!/usr/bin/env python
"""How well do N every-minute schedules fire: Jobsite's dispatcher vs stock beat.

For each N, runs a real Redis, celery beat (django-celery-beat's
DatabaseScheduler) and workers for a few minutes twice, on a scratch database:

- jobsite: N Schedules with cron '* * * * *'; beat sends `jobsite.dispatch`
  every second and a dispatcher worker plans each tick's runs ahead and
  releases them at the tick; a worker runs them. Lateness is the run's
  `released_at` (taken just before the UPDATE that makes it `pending`, whose
  transaction commits right after) minus tick time.
- stock: N plain PeriodicTasks on crontab '* * * * *' whose task records when
  it ran; lateness is that time minus tick time (an upper bound on how late
  beat sent it).

Reports ticks expected vs fired, missed, duplicates, lateness p50/p99/max, CPU
and peak memory of beat, the dispatcher and the worker, and how long a new
schedule takes to be picked up. The database is a scratch SQLite file, or a
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

    stack.celery("beat", "beat", "-l", "warning", "--pidfile=", "-s", str(work / "beat-schedule"))
    if mode == "jobsite":
        stack.celery("dispatcher", "worker", "-l", "warning", "-Q", "jobsite", "-c", "2", "-n", "dispatcher@%h")
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

    fires: list[tuple[str, datetime, float]] = []  # (schedule, tick, lateness)
    probe_first = None
    if mode == "jobsite":
        rows = Run.objects.filter(schedule__isnull=False, released_at__isnull=False).values_list(
            "schedule__name", "schedule_tick", "released_at"
        )
        for name, tick, released in rows.iterator():
            if name == "probe":
                probe_first = min(probe_first or released, released)
            elif tick in ticks:
                fires.append((name, tick, (released - tick).total_seconds()))
    else:
        client = redis.Redis.from_url(settings.REDIS_URL)
        for raw in client.lrange("bench:fires", 0, -1):
            name, ran = json.loads(raw)
            ran_at = datetime.fromtimestamp(ran, UTC)
            if name == "probe":
                probe_first = min(probe_first or ran_at, ran_at)
                continue
            tick = max((t for t in ticks if t <= ran_at), default=None)
            if tick is not None and ran_at < tick + timedelta(minutes=1):
                fires.append((name, tick, (ran_at - tick).total_seconds()))
    distinct = {(name, tick) for name, tick, _ in fires}
    lateness = [late for _, _, late in fires]
    expected = count * len(ticks)
    return {
        "mode": mode,
        "schedules": count,
        "database": "postgresql" if os.environ["DATABASE_URL"].startswith("postgres") else "sqlite",
        "ticks_expected": expected,
        "fired": len(distinct),
        "missed": expected - len(distinct),
        "duplicates": len(fires) - len(distinct),
        "lateness_p50_s": round(percentile(lateness, 50), 2),
        "lateness_p99_s": round(percentile(lateness, 99), 2),
        "lateness_max_s": round(max(lateness, default=float("nan")), 2),
        "edit_pickup_s": round((probe_first - probe_created).total_seconds(), 1) if probe_first else None,
        "usage": usage,
    }


def table(results: list[dict]) -> str:
    lines = [
        "| mode | db | schedules | ticks expected | fired | missed | duplicates | lateness p50 / p99 / max (s) "
        "| new schedule picked up (s) | beat CPU % / peak MiB | dispatcher CPU % / peak MiB "
        "| worker CPU % / peak MiB |",
        "|---|---|---:|---:|---:|---:|---:|---|---:|---|---|---|",
    ]
    for r in results:
        usage = {name: f"{u['cpu_percent']} / {u['peak_mib']}" for name, u in r["usage"].items()}
        lines.append(
            f"| {r['mode']} | {r['database']} | {r['schedules']:,} | {r['ticks_expected']:,} | {r['fired']:,} "
            f"| {r['missed']:,} | {r['duplicates']:,} "
            f"| {r['lateness_p50_s']} / {r['lateness_p99_s']} / {r['lateness_max_s']} | {r['edit_pickup_s']} "
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
