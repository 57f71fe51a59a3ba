#!/usr/bin/env python
"""Latency of single runs: Jobsite over the API vs plain Celery, one at a time.

- jobsite: POST /api/v1/job-types/noop/run/ (token auth, against the web
  process: gunicorn as `make run` and docker/ serve, or `--web runserver` as
  `make dev` starts it), then the run's `started_at` and `finished_at` from the database;
- celery: `send_task` of a task that returns the time it started, result read
  from django-celery-results.

Both against the same Redis, database and worker (prefork, concurrency 2), in
the same invocation, alternating so that a busy machine slows both alike.
Reports trigger-to-start and trigger-to-finish p50/p99, the ratio of the
p50s of trigger-to-start to Celery's publish-to-start (goal: at most 1.5),
and how long the API took to answer the trigger. Trigger-to-start is also
split at the run's `created_at`, stamped by the trigger service (run_build)
once the API has authenticated the caller, read the job type and parsed the
body: before it, the HTTP request and Django; after it, what Jobsite adds to
a publish (the INSERT and its commit, the publish, the worker's start mark),
with its own ratio to Celery's publish-to-start.

    .venv/bin/python bench/latency.py --runs 200
    scripts/bench.sh bench/latency.py --runs 200
"""

import argparse
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.stack import (
    WEB_SERVERS,
    Stack,
    bench_environment,
    drop_database,
    free_port,
    percentile,
    scratch_database_url,
    web_command,
    workdir,
)


def wait_for(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.002)
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--web", choices=WEB_SERVERS, default="gunicorn", help="the web server (default gunicorn)")
    args = parser.parse_args()
    work = workdir()
    database_url = scratch_database_url(work)
    port = free_port()
    env = bench_environment(database_url, JOBS_TASK_MODULES="bench.tasks")
    stack = Stack(work, env)
    try:
        import django

        django.setup()
        import httpx
        from django.contrib.auth.models import User
        from django.core.management import call_command
        from rest_framework.authtoken.models import Token

        from jobs.models import JobType, Run
        from jobsite.celery import app

        call_command("migrate", verbosity=0)
        JobType.objects.create(name="noop", kind="task", task="jobs.builtin.echo")
        token = Token.objects.create(user=User.objects.create_superuser("bench", password="bench-only-password")).key
        stack.celery("worker", "worker", "-l", "warning", "-Q", "celery", "-c", "2", "-P", "prefork")
        stack.start("web", web_command(args.web, port, workers=2))
        client = httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Token {token}"})
        wait_for(lambda: app.control.ping(timeout=0.5), 60, "the worker")

        def web_up():
            try:
                return client.get("/healthz").status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(web_up, 60, "the web process")

        jobsite_start, jobsite_finish, jobsite_answer, celery_start, celery_finish = [], [], [], [], []
        jobsite_request, jobsite_service = [], []
        for i in range(args.runs + 10):
            measured = i >= 10  # the first few warm up connections and caches
            t0 = time.time()
            response = client.post("/api/v1/job-types/noop/run/", json={"params": {}})
            answered = time.time() - t0
            response.raise_for_status()
            run_id = response.json()["id"]
            run = wait_for(
                lambda run_id=run_id: Run.objects.filter(pk=run_id, finished_at__isnull=False).first(), 30, "a run"
            )
            if measured:
                jobsite_request.append(run.created_at.timestamp() - t0)
                jobsite_service.append((run.started_at - run.created_at).total_seconds())
                jobsite_start.append(run.started_at.timestamp() - t0)
                jobsite_finish.append(run.finished_at.timestamp() - t0)
                jobsite_answer.append(answered)
            t0 = time.time()
            result = app.send_task("bench.started_at")
            started = result.get(timeout=30, interval=0.002)
            if measured:
                celery_start.append(started - t0)
                celery_finish.append(time.time() - t0)
        database = "postgresql" if database_url.startswith("postgres") else "sqlite"
        ms = lambda values, q: f"{1000 * percentile(values, q):.1f}"  # noqa: E731
        print(
            "| database | web | runs | Jobsite trigger→start p50 / p99 (ms) | Celery publish→start p50 / p99 (ms) "
            "| ratio of p50s | of which the API before the trigger service, p50 (ms) "
            "| trigger service→start p50 / p99 (ms) | ratio of p50s, from the trigger service "
            "| Jobsite trigger→finish p50 / p99 (ms) | Celery publish→result p50 / p99 (ms) "
            "| API answer p50 / p99 (ms) |"
        )
        print("|---|---|---:|---|---|---:|---:|---|---:|---|---|---|")
        print(
            f"| {database} | {args.web} | {args.runs} | {ms(jobsite_start, 50)} / {ms(jobsite_start, 99)} "
            f"| {ms(celery_start, 50)} / {ms(celery_start, 99)} "
            f"| {percentile(jobsite_start, 50) / percentile(celery_start, 50):.2f} "
            f"| {ms(jobsite_request, 50)} "
            f"| {ms(jobsite_service, 50)} / {ms(jobsite_service, 99)} "
            f"| {percentile(jobsite_service, 50) / percentile(celery_start, 50):.2f} "
            f"| {ms(jobsite_finish, 50)} / {ms(jobsite_finish, 99)} "
            f"| {ms(celery_finish, 50)} / {ms(celery_finish, 99)} "
            f"| {ms(jobsite_answer, 50)} / {ms(jobsite_answer, 99)} |"
        )
        print(f"(measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC)", file=sys.stderr)
    finally:
        stack.stop()
        drop_database(database_url)


if __name__ == "__main__":
    main()
