#!/usr/bin/env python
"""Trigger N runs over the API from C concurrent clients; is every accepted run
completed, once?

By default it starts `make dev`'s stack on a scratch database (a SQLite file,
or a new database on the PostgreSQL server in DATABASE_URL): Redis, the web
process (runserver like `make dev`, or gunicorn like `make run`), a worker, the dispatcher
worker and beat; then creates a user, a token and an echo job type, and
removes it all at the end. With --url and --token it loads a stack that is
already running instead (the token's user must be allowed to add job types
and run them), through a job type of its own, which it disables at the end.

Each client POSTs /api/v1/job-types/NAME/run/ with params {"seq": i}, one
request after another, until N requests have been sent. Then the run list is
read back over the API until every accepted run has ended (or --timeout):

- accepted: 201 answers; errors: anything else (by status or exception)
- completed: accepted runs that succeeded; failed: ended otherwise
- lost: accepted runs that are missing or had not ended by the deadline
- duplicated: extra runs for one request (same seq) plus runs a worker
  started more than once (attempts > 1)
- API latency p50/p99/max of the triggers, accept rate, and end-to-end
  throughput: completed runs per second from the first request to the last
  run's finished_at

    .venv/bin/python bench/load.py                               # 2,000 runs on SQLite
    .venv/bin/python bench/load.py --runs 10000
    scripts/with-postgres.sh .venv/bin/python bench/load.py --runs 10000
    .venv/bin/python bench/load.py --url http://127.0.0.1:8000 --token KEY --runs 500
"""

import argparse
import importlib.util
import json
import sys
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.stack import (
    WEB_SERVERS,
    Sampler,
    Stack,
    bench_environment,
    drop_database,
    free_port,
    percentile,
    scratch_database_url,
    web_command,
    workdir,
)


@dataclass
class Triggers:
    """What the clients saw, filled in by their threads."""

    latencies: list[float] = field(default_factory=list)
    accepted: dict[int, str] = field(default_factory=dict)  # seq -> run id
    errors: Counter = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)
    next_seq: int = 0

    def take(self, total: int) -> int | None:
        with self.lock:
            if self.next_seq >= total:
                return None
            self.next_seq += 1
            return self.next_seq - 1


def client_loop(base_url: str, token: str, job_type: str, total: int, triggers: Triggers) -> None:
    headers = {"Authorization": f"Token {token}"}
    with httpx.Client(base_url=base_url, headers=headers, timeout=120) as client:
        while (seq := triggers.take(total)) is not None:
            started = time.perf_counter()
            try:
                response = client.post(f"/api/v1/job-types/{job_type}/run/", json={"params": {"seq": seq}})
            except httpx.HTTPError as exc:
                with triggers.lock:
                    triggers.errors[type(exc).__name__] += 1
                continue
            elapsed = time.perf_counter() - started
            with triggers.lock:
                triggers.latencies.append(elapsed)
                if response.status_code == 201:
                    triggers.accepted[seq] = response.json()["id"]
                else:
                    triggers.errors[str(response.status_code)] += 1


class Api:
    def __init__(self, base_url: str, token: str):
        self.client = httpx.Client(base_url=base_url, headers={"Authorization": f"Token {token}"}, timeout=120)

    def count(self, job_type: str, status: str) -> int:
        # The run list keeps no count (it is paged by cursor): count the pages' rows.
        return len(self._walk({"job_type": job_type, "status": status}))

    def runs(self, job_type: str) -> list[dict]:
        return self._walk({"job_type": job_type})

    def _walk(self, params: dict) -> list[dict]:
        """Every run the list gives for `params`, following its `next` links."""
        found, url, query = [], "/api/v1/runs/", {**params, "page_size": 200}
        while url:
            response = self.client.get(url, params=query)
            response.raise_for_status()
            body = response.json()
            found += body["results"]
            url, query = body["next"], None  # the link keeps the filters
        return found


def measure(base_url: str, token: str, *, runs: int, clients: int, timeout: float, sampler_of=None) -> dict:
    api = Api(base_url, token)
    job_type = f"load-{uuid.uuid4().hex[:8]}"
    created = api.client.post(
        "/api/v1/job-types/", json={"name": job_type, "kind": "task", "task": "jobs.builtin.echo"}
    )
    if created.status_code != 201:
        sys.exit(f"could not create job type {job_type}: {created.status_code} {created.text[:500]}")
    sampler = sampler_of() if sampler_of else None
    triggers = Triggers()
    threads = [
        threading.Thread(target=client_loop, args=(base_url, token, job_type, runs, triggers), daemon=True)
        for _ in range(clients)
    ]
    started_wall, started = time.time(), time.monotonic()
    for thread in threads:
        thread.start()
    while any(thread.is_alive() for thread in threads):
        if sampler:
            sampler.sample()
        time.sleep(0.5)
    accept_seconds = time.monotonic() - started
    print(f"… {len(triggers.accepted):,} accepted in {accept_seconds:.1f} s; waiting for them to end", file=sys.stderr)

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if sampler:
            sampler.sample()
        ended = sum(api.count(job_type, status) for status in ("succeeded", "failed", "cancelled"))
        if ended >= len(triggers.accepted):
            break
        time.sleep(1)
    usage = sampler.report() if sampler else {}
    rows = api.runs(job_type)
    api.client.delete(f"/api/v1/job-types/{job_type}/")  # it has runs: this disables it
    api.client.close()

    by_id = {row["id"]: row for row in rows}
    seqs = Counter(row["params"].get("seq") for row in rows)
    accepted_rows = [by_id.get(run_id) for run_id in triggers.accepted.values()]
    completed = [row for row in accepted_rows if row and row["status"] == "succeeded"]
    failed = [row for row in accepted_rows if row and row["status"] in ("failed", "cancelled")]
    finished = [datetime.fromisoformat(row["finished_at"]).timestamp() for row in completed if row["finished_at"]]
    end_to_end = (max(finished) - started_wall) if finished else float("nan")
    latencies_ms = [1000 * latency for latency in triggers.latencies]
    return {
        "requests": runs,
        "clients": clients,
        "accepted": len(triggers.accepted),
        "errors": dict(triggers.errors),
        "completed": len(completed),
        "failed": len(failed),
        "lost": len(triggers.accepted) - len(completed) - len(failed),
        "duplicated": sum(n - 1 for n in seqs.values() if n > 1) + sum(1 for row in rows if row["attempts"] > 1),
        "latency_p50_ms": round(percentile(latencies_ms, 50), 1),
        "latency_p99_ms": round(percentile(latencies_ms, 99), 1),
        "latency_max_ms": round(max(latencies_ms, default=float("nan")), 1),
        "accept_per_s": round(len(triggers.accepted) / accept_seconds, 1),
        "end_to_end_s": round(end_to_end, 1),
        "throughput_per_s": round(len(completed) / end_to_end, 1) if finished else 0.0,
        "usage": usage,
    }


def own_stack(args) -> dict:
    work = workdir()
    database_url = scratch_database_url(work)
    env = bench_environment(database_url, JOBS_RUN_RETENTION_DAYS="0")
    stack = Stack(work, env)
    try:
        import django

        django.setup()
        from django.contrib.auth.models import User
        from django.core.management import call_command
        from rest_framework.authtoken.models import Token

        call_command("migrate", verbosity=0)
        user = User.objects.create_superuser("load", password=uuid.uuid4().hex)
        token = Token.objects.create(user=user).key
        from django.db import connections

        connections.close_all()

        port = free_port()
        stack.start("web", web_command(args.web, port, args.web_workers))
        # As the Procfile starts it: task events as CELERY_WORKER_SEND_TASK_EVENTS says (on by default).
        stack.celery("worker", "worker", "-l", "warning", "-c", str(args.worker_concurrency), "-n", "worker@%h")
        stack.celery("dispatcher", "worker", "-l", "warning", "-Q", "jobsite", "-c", "2", "-n", "dispatcher@%h")
        stack.celery("beat", "beat", "-l", "warning", "--pidfile=", "-s", str(work / "beat-schedule"))
        base_url = f"http://127.0.0.1:{port}"
        _wait_until_ready(base_url, stack)
        result = measure(
            base_url,
            token,
            runs=args.runs,
            clients=args.clients,
            timeout=args.timeout,
            sampler_of=lambda: Sampler(dict(stack.processes)),
        )
        return {**result, "database": _database_name(database_url), "web": _web_name(args)}
    finally:
        stack.stop()
        drop_database(database_url)


def _wait_until_ready(base_url: str, stack: Stack) -> None:
    """Until /healthz answers with both workers online."""
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        for name, process in stack.processes.items():
            if process.poll() is not None:
                log = (stack.workdir / f"{name}.log").read_text(errors="replace")[-3000:]
                sys.exit(f"{name} exited with {process.returncode}:\n{log}")
        try:
            body = httpx.get(f"{base_url}/healthz", timeout=5).json()
            if body["workers"]["count"] >= 2:
                return
        except (httpx.HTTPError, ValueError, KeyError):
            pass
        time.sleep(0.5)
    sys.exit(f"the stack was not ready after 90 s (logs in {stack.workdir})")


def _database_name(url: str) -> str:
    return "postgresql" if url.startswith("postgres") else "sqlite"


def _web_name(args) -> str:
    return f"gunicorn -w {args.web_workers}" if args.web == "gunicorn" else "runserver"


def table(results: list[dict]) -> str:
    lines = [
        "| db | web | clients | requests | accepted | errors | completed | failed | lost | duplicated "
        "| API latency p50 / p99 / max (ms) | accepted/s | end to end (s) | completed/s "
        "| web CPU % | worker CPU % |",
        "|---|---|---:|---:|---:|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        errors = ", ".join(f"{k}: {v}" for k, v in r["errors"].items()) or "0"
        usage = r.get("usage", {})
        lines.append(
            f"| {r.get('database', '—')} | {r.get('web', '—')} | {r['clients']} | {r['requests']:,} "
            f"| {r['accepted']:,} | {errors} | {r['completed']:,} | {r['failed']:,} | {r['lost']:,} "
            f"| {r['duplicated']:,} | {r['latency_p50_ms']} / {r['latency_p99_ms']} / {r['latency_max_ms']} "
            f"| {r['accept_per_s']} | {r['end_to_end_s']} | {r['throughput_per_s']} "
            f"| {usage.get('web', {}).get('cpu_percent', '—')} | {usage.get('worker', {}).get('cpu_percent', '—')} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=2000, help="requests to send (default 2,000)")
    parser.add_argument("--clients", type=int, default=20, help="concurrent clients (default 20)")
    parser.add_argument("--timeout", type=float, default=900, help="seconds to wait for the runs to end")
    parser.add_argument("--url", help="load this running stack instead of starting one")
    parser.add_argument("--token", help="with --url: an API token")
    parser.add_argument("--web", choices=WEB_SERVERS, default="runserver")
    parser.add_argument("--web-workers", type=int, default=4, help="gunicorn worker processes (default 4)")
    parser.add_argument("--worker-concurrency", type=int, default=2, help="job worker processes (make run's 2)")
    parser.add_argument("--json", type=Path, help="also write the result here")
    args = parser.parse_args()
    if args.runs < 1 or args.clients < 1:
        parser.error("--runs and --clients must be at least 1")
    if args.url:
        if not args.token:
            parser.error("--url needs --token (an API token of a user who may add and run job types)")
        result = measure(args.url.rstrip("/"), args.token, runs=args.runs, clients=args.clients, timeout=args.timeout)
    else:
        if args.web == "gunicorn" and importlib.util.find_spec("gunicorn") is None:
            parser.error("gunicorn is not installed here: .venv/bin/pip install -r requirements/prod.txt")
        result = own_stack(args)
    print(table([result]))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    if result["lost"] or result["duplicated"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
