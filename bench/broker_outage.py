#!/usr/bin/env python
"""What a Redis outage costs: how long a trigger over the API takes with Redis up,
refusing connections (stopped) and hanging (accepting connections, never
answering); how long after Redis is back every run triggered meanwhile has
succeeded; and how many ran more than once (the answer must be 0).

Runs a real Redis, a worker, a dispatcher worker and beat on a scratch
database (bench/stack.py) with Jobsite's default settings, unless the
environment overrides them (e.g. JOBS_PENDING_REPUBLISH_SECONDS). Triggers go
through the API, in this process (Django's test client), one after another.

    .venv/bin/python bench/broker_outage.py --runs 100 --hung 5
    scripts/bench.sh bench/broker_outage.py
"""

import argparse
import os
import socket
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.stack import Stack, bench_environment, drop_database, percentile, scratch_database_url, workdir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=100, help="runs triggered with Redis up, and again with it stopped")
    parser.add_argument("--hung", type=int, default=5, help="runs triggered while Redis hangs")
    args = parser.parse_args()
    work = workdir()
    database_url = scratch_database_url(work)
    env = bench_environment(database_url, JOBS_TASK_MODULES="bench.tasks", LOG_LEVEL="ERROR")
    stack = Stack(work, env)
    try:
        print(table(measure(stack, work, args.runs, args.hung)))
    finally:
        stack.stop()
        drop_database(database_url)


def measure(stack: Stack, work: Path, count: int, hung: int) -> dict:
    import django

    django.setup()
    import redis
    from django.conf import settings
    from django.contrib.auth.models import User
    from django.core.management import call_command
    from django.test import Client
    from rest_framework.authtoken.models import Token

    from jobs.models import JobType, Run

    call_command("migrate", verbosity=0)
    JobType.objects.create(name="counted", kind="task", task="bench.count")
    user = User.objects.create_superuser("bench", password="unused-password")
    client = Client(HTTP_HOST="localhost", HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    stack.celery("beat", "beat", "-l", "error", "--pidfile=", "-s", str(work / "beat-schedule"))
    stack.celery("dispatcher", "worker", "-l", "error", "-Q", "jobsite", "-c", "1", "-n", "dispatcher@%h")
    stack.celery("worker", "worker", "-l", "error", "-Q", "celery", "-c", "2", "-n", "worker@%h")
    redis_command = stack.processes["redis"].args

    def trigger(n: int) -> tuple[str, float]:
        started = time.monotonic()
        response = client.post("/api/v1/job-types/counted/run/", {"params": {}}, content_type="application/json")
        assert response.status_code == 201, response.content
        return response.json()["id"], time.monotonic() - started

    def wait_all_succeeded(ids: list[str], timeout: float) -> float:
        started = time.monotonic()
        while Run.objects.filter(pk__in=ids, status="succeeded").count() < len(ids):
            if time.monotonic() - started > timeout:
                raise SystemExit(f"not all {len(ids)} runs succeeded within {timeout} s")
            time.sleep(0.2)
        return time.monotonic() - started

    up = [trigger(n) for n in range(count)]
    wait_all_succeeded([run_id for run_id, _ in up], 120)

    outage_started = time.monotonic()
    stack.processes["redis"].terminate()
    stack.processes["redis"].wait()
    refused = [trigger(n) for n in range(count)]
    with socket.socket() as listener:  # Redis hangs: connections are accepted, nothing answers
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", stack.redis_port))
        listener.listen(1024)
        hanging = [trigger(n) for n in range(hung)]
    outage = time.monotonic() - outage_started
    stack.start("redis", redis_command)
    ids = [run_id for run_id, _ in refused + hanging]
    assert Run.objects.filter(pk__in=ids, status="pending").count() == len(ids)
    recovery = wait_all_succeeded(ids, 300)
    counts = redis.Redis.from_url(settings.REDIS_URL)
    executions = [int(counts.get(f"bench:count:{run_id}") or 0) for run_id in ids]

    def latency(samples: list[tuple[str, float]]) -> str:
        took = [seconds for _, seconds in samples]
        return f"{percentile(took, 50):.3f} / {percentile(took, 99):.3f} / {max(took):.3f}"

    return {
        "database": "postgresql" if os.environ["DATABASE_URL"].startswith("postgres") else "sqlite",
        "up": latency(up),
        "refused": latency(refused),
        "hung": latency(hanging),
        "outage_s": round(outage, 1),
        "runs": len(ids),
        "recovery_s": round(recovery, 1),
        "lost": sum(1 for n in executions if n == 0),
        "ran_twice": sum(1 for n in executions if n > 1),
        "grace_s": settings.JOBS_PENDING_REPUBLISH_SECONDS,
    }


def table(r: dict) -> str:
    return "\n".join(
        [
            "| db | trigger, Redis up: p50 / p99 / max (s) | Redis stopped | Redis hanging | outage (s) "
            "| runs triggered in it | all succeeded after Redis was back (s) | lost | ran twice | sweeper grace (s) |",
            "|---|---|---|---|---:|---:|---:|---:|---:|---:|",
            f"| {r['database']} | {r['up']} | {r['refused']} | {r['hung']} | {r['outage_s']} | {r['runs']} "
            f"| {r['recovery_s']} | {r['lost']} | {r['ran_twice']} | {r['grace_s']} |",
        ]
    )


if __name__ == "__main__":
    main()
