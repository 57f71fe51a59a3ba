#!/usr/bin/env python
"""Jobsite beside celery-director 0.10: the same workflows, triggered over each one's API.

Director is installed from the package index into a virtualenv of its own
(`.run/bench-director-venv`, made on first use and reused; a benchmark
dependency, not Jobsite's). In one invocation, one after the other, each gets
the same Redis server (Director on other database numbers), a fresh database
of the same kind, a web process (gunicorn, 2 processes: `director webserver`
is gunicorn) and a worker (prefork, concurrency 2), and runs:

- a one-task workflow, triggered one at a time (warm-up first): trigger to
  the task's start, to the workflow marked done, and the API's answer;
- a three-task chain (each task reads the one before's result: Director's
  `args[0]`, a `{{ steps.NAME.result.step }}` placeholder in Jobsite), one
  at a time: trigger to the last task's end, the step hop (one task's end to
  the next one's start, p50 and p99 over both hops of every chain), and
  trigger to the workflow marked done;
- N one-task workflows triggered by a few client threads at once:
  triggers accepted per second, and workflows done per second from the
  first trigger to the last workflow marked done, with the CPU the web and
  worker processes used per workflow.

Both sides' tasks note, in Redis, when their body started and ended
(time.time()); the trigger time is taken by the client before it sends the
request, so each figure is what a caller sees. Jobsite's workflow is done at
its run's `finished_at`; Director's when its `end` task (which marks the
workflow a success) has run. Jobsite is called with an API token, Director
with its default configuration (no authentication).

    .venv/bin/python bench/peers.py                             # SQLite
    scripts/bench.sh bench/peers.py --runs 100 --throughput 1000  # SQLite, then PostgreSQL
"""

import argparse
import itertools
import json
import os
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.stack import (
    ROOT,
    Stack,
    bench_environment,
    drop_database,
    free_port,
    percentile,
    scratch_database_url,
    tree_usage,
    web_command,
    workdir,
)
from bench.tasks import PEERS_STEPS as STEPS

DIRECTOR_VERSION = "0.10.0"
DIRECTOR_VENV = ROOT / ".run" / "bench-director-venv"
# Lists in the Jobsite broker's Redis database: bench.tasks.PEERS_STEPS holds
# [tag, step, started, ended] per task; DIRECTOR_DONE [workflow id, time] per
# Director workflow whose `end` task ran.
DIRECTOR_DONE = "bench:peers:director-done"
ONE, CHAIN, MANY = "one", "chain", "many"  # the many-at-once workflow is the one-task one under another name

DIRECTOR_WORKFLOWS = """\
# bench/peers.py: a one-task workflow (twice: one at a time, then many at once) and a chain of three.
peers.ONE:
  tasks:
    - PEERS_FIRST
peers.MANY:
  tasks:
    - PEERS_FIRST
peers.CHAIN:
  tasks:
    - PEERS_FIRST
    - PEERS_SECOND
    - PEERS_THIRD
"""

DIRECTOR_TASKS = '''\
"""bench/peers.py's steps for Director: what Jobsite's bench.peer_step does."""

import json
import os
import time

import redis
from celery.signals import task_postrun
from director import task

_redis = redis.Redis.from_url(os.environ["BENCH_PEERS_REDIS_URL"])


def _step(number, args, kwargs):
    started = time.time()
    before = args[0] if args else None  # the previous task's result (None after Director's start task)
    result = {"step": number} if before is None else {"step": number, "after": before["step"]}
    _redis.rpush(STEPS, json.dumps([kwargs["payload"]["tag"], number, started, time.time()]))
    return result


@task(name="PEERS_FIRST")
def first(*args, **kwargs):
    return _step(1, args, kwargs)


@task(name="PEERS_SECOND")
def second(*args, **kwargs):
    return _step(2, args, kwargs)


@task(name="PEERS_THIRD")
def third(*args, **kwargs):
    return _step(3, args, kwargs)


@task_postrun.connect
def workflow_done(task=None, args=None, **_):
    # Director's own `end` task marks the workflow a success: note when it has.
    if task.name == "director.tasks.workflows.end":
        _redis.rpush(DONE, json.dumps([str(args[0]), time.time()]))
'''


def ensure_director(venv: Path) -> Path:
    """The `director` command of a virtualenv holding celery-director DIRECTOR_VERSION, installed if missing."""
    stamp = venv / f".celery-director-{DIRECTOR_VERSION}"
    if not stamp.exists():
        print(f"Installing celery-director {DIRECTOR_VERSION} into {venv} (once)", file=sys.stderr, flush=True)
        steps = [
            [sys.executable, "-m", "venv", str(venv)],
            [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
             f"celery-director=={DIRECTOR_VERSION}"],
        ]  # fmt: skip
        for command in steps:
            if subprocess.run(command).returncode != 0:
                sys.exit(
                    f"error: could not install celery-director {DIRECTOR_VERSION} into {venv} ({' '.join(command[2:4])}"
                    " failed, see above); run again once the package index answers"
                )
        stamp.touch()
    return venv / "bin" / "director"


def wait_for(condition: Callable, timeout: float, what: str, interval: float = 0.005):
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)
    return value


@dataclass
class Peer:
    """One system under test, as the benchmark drives it."""

    name: str
    url: str
    headers: dict[str, str]
    web: str  # process names in the Stack
    worker: str
    trigger: Callable[[str, str], tuple[str, dict]]  # (workflow, tag) -> (path, JSON body)
    wait_done: Callable[[str, float], float]  # (run id, timeout) -> when it was marked done
    done_since: Callable[[str, float], list[float]]  # (workflow, epoch) -> done times of runs triggered since
    outcomes: Callable[[], dict[str, int]]  # workflow statuses -> count
    success: str  # the status of a workflow that succeeded
    is_up: Callable[[], bool]


@dataclass
class Figures:
    answer: list[float] = field(default_factory=list)
    start: list[float] = field(default_factory=list)
    last_end: list[float] = field(default_factory=list)
    done: list[float] = field(default_factory=list)
    gaps: list[float] = field(default_factory=list)


def steps_of(records, tag: str, steps: int, timeout: float) -> list[list]:
    """The next `steps` step records, which must be this workflow's (runs go one at a time)."""
    found = []
    for _ in range(steps):
        popped = records.blpop(STEPS, timeout=timeout)
        if popped is None:
            raise RuntimeError(f"no step of workflow {tag} ran within {timeout:.0f} s")
        record = json.loads(popped[1])
        if record[0] != tag:
            raise RuntimeError(f"expected a step of {tag}, got {record}")
        found.append(record)
    return sorted(found, key=lambda record: record[1])


def one_at_a_time(peer: Peer, client, records, workflow: str, steps: int, runs: int, warmup: int) -> Figures:
    figures = Figures()
    for i in range(warmup + runs):
        tag = f"{peer.name}-{workflow}-{i}"
        timeout = 120 if i == 0 else 30  # the first one waits for the worker to come up
        path, body = peer.trigger(workflow, tag)
        t0 = time.time()
        response = client.post(path, json=body)
        answered = time.time()
        if response.status_code != 201:
            raise RuntimeError(f"{peer.name}: {path} answered {response.status_code}: {response.text[:500]}")
        records_of_run = steps_of(records, tag, steps, timeout)
        done = peer.wait_done(str(response.json()["id"]), timeout)
        if i < warmup:
            continue
        figures.answer.append(answered - t0)
        figures.start.append(records_of_run[0][2] - t0)
        figures.last_end.append(records_of_run[-1][3] - t0)
        figures.done.append(done - t0)
        figures.gaps += [later[2] - earlier[3] for earlier, later in itertools.pairwise(records_of_run)]
    return figures


def many_at_once(peer: Peer, stack: Stack, records, total: int, clients: int, timeout: float) -> dict:
    """`total` one-task workflows triggered by `clients` threads; waits for all to be done."""
    import httpx

    records.delete(STEPS)
    counter, lock = itertools.count(), threading.Lock()
    statuses: list[int] = []

    def client_loop() -> None:
        with httpx.Client(base_url=peer.url, headers=peer.headers, timeout=60) as client:
            while True:
                with lock:
                    i = next(counter)
                if i >= total:
                    return
                path, body = peer.trigger(MANY, f"{peer.name}-{MANY}-{i}")
                try:
                    status = client.post(path, json=body).status_code
                except httpx.HTTPError:
                    status = 0
                with lock:
                    statuses.append(status)

    processes = [stack.processes[peer.web].pid, stack.processes[peer.worker].pid]
    cpu_before = sum(tree_usage(pid)[0] for pid in processes)
    threads = [threading.Thread(target=client_loop) for _ in range(clients)]
    first = time.time()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    answered = time.time() - first
    accepted = statuses.count(201)
    done = wait_for(
        lambda: (times := peer.done_since(MANY, first)) and len(times) >= accepted and times,
        timeout,
        f"{accepted} {peer.name} workflows",
        interval=0.25,
    )
    cpu = sum(tree_usage(pid)[0] for pid in processes) - cpu_before
    return {
        "workflows": total,
        "accepted": accepted,
        "accepted/s": accepted / answered,
        "done/s": len(done) / (max(done) - first),
        "cpu ms": 1000 * cpu / max(1, len(done)),
        "ran": records.llen(STEPS),
    }


# --- Jobsite ------------------------------------------------------------------


def jobsite_peer(stack: Stack, port: int) -> Peer:
    import httpx
    from django.contrib.auth.models import User
    from django.core.management import call_command
    from django.db.models import Count
    from rest_framework.authtoken.models import Token

    from jobs.models import Run

    call_command("migrate", verbosity=0)
    token = Token.objects.create(user=User.objects.create_superuser("bench", password="bench-only-password")).key
    stack.celery("jobsite-worker", "worker", "-l", "warning", "-Q", "celery", "-c", "2", "-P", "prefork")
    stack.start("jobsite-web", web_command("gunicorn", port, workers=2))
    url, headers = f"http://127.0.0.1:{port}", {"Authorization": f"Token {token}"}

    def is_up() -> bool:
        try:
            return httpx.get(f"{url}/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    wait_for(is_up, 60, "Jobsite's web process", interval=0.2)
    step = lambda name, number, **more: {  # noqa: E731
        "name": name,
        "job_type": "peers-step",
        "params": {"tag": "{{ params.tag }}", "step": number, **more},
    }
    definitions = [
        {"name": "peers-step", "kind": "task", "task": "bench.peer_step"},
        *({"name": f"peers-{name}", "kind": "workflow", "steps": [step("one", 1)]} for name in (ONE, MANY)),
        {
            "name": f"peers-{CHAIN}",
            "kind": "workflow",
            "steps": [
                step("one", 1),
                {**step("two", 2, after="{{ steps.one.result.step }}"), "depends_on": ["one"]},
                {**step("three", 3, after="{{ steps.two.result.step }}"), "depends_on": ["two"]},
            ],
        },
    ]
    for definition in definitions:
        httpx.post(f"{url}/api/v1/job-types/", json=definition, headers=headers).raise_for_status()

    def wait_done(run_id: str, timeout: float) -> float:
        ended = Run.objects.filter(pk=run_id, finished_at__isnull=False)
        finished = wait_for(
            lambda: ended.values_list("finished_at", flat=True).first(),
            timeout,
            f"Jobsite run {run_id}",
        )
        return finished.timestamp()

    def done_since(workflow: str, since: float) -> list[float]:
        from datetime import UTC, datetime

        ended = Run.objects.filter(
            job_type__name=f"peers-{workflow}",
            created_at__gte=datetime.fromtimestamp(since, UTC),
            finished_at__isnull=False,
        )
        return [finished.timestamp() for finished in ended.values_list("finished_at", flat=True)]

    def outcomes() -> dict[str, int]:
        workflows = Run.objects.filter(parent=None, job_type__kind="workflow")
        return dict(workflows.values_list("status").annotate(n=Count("pk")).values_list("status", "n"))

    return Peer(
        name="jobsite",
        url=url,
        headers=headers,
        web="jobsite-web",
        worker="jobsite-worker",
        trigger=lambda workflow, tag: (f"/api/v1/job-types/peers-{workflow}/run/", {"params": {"tag": tag}}),
        wait_done=wait_done,
        done_since=done_since,
        outcomes=outcomes,
        success="succeeded",
        is_up=is_up,
    )


# --- Director -----------------------------------------------------------------


def director_peer(stack: Stack, port: int, director: Path, home: Path, database_url: str, records) -> Peer:
    import httpx

    (home / "tasks").mkdir(parents=True)
    # SQLAlchemy names PostgreSQL `postgresql`; a SQLite URL is the same for both.
    uri = database_url.replace("postgres://", "postgresql://", 1)
    redis_base = f"redis://127.0.0.1:{stack.redis_port}"
    (home / ".env").write_text(
        f'DIRECTOR_DATABASE_URI="{uri}"\n'
        f'DIRECTOR_BROKER_URI="{redis_base}/2"\n'
        f'DIRECTOR_RESULT_BACKEND_URI="{redis_base}/3"\n'
    )
    (home / "workflows.yml").write_text(DIRECTOR_WORKFLOWS)
    (home / "tasks" / "peers_steps.py").write_text(
        DIRECTOR_TASKS.replace("(STEPS,", f"({STEPS!r},").replace("(DONE,", f"({DIRECTOR_DONE!r},")
    )
    env = {
        "PATH": f"{director.parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "HOME": os.environ.get("HOME", str(home)),
        "LANG": os.environ.get("LANG", "C.UTF-8"),
        "DIRECTOR_HOME": str(home),
        "BENCH_PEERS_REDIS_URL": stack.env["REDIS_URL"],
        "PYTHONUNBUFFERED": "1",
    }
    migrated = subprocess.run([str(director), "db", "upgrade"], env=env, capture_output=True, text=True)
    if migrated.returncode != 0:
        raise RuntimeError(f"director db upgrade failed:\n{migrated.stderr[-3000:]}")
    worker = [str(director), "celery", "worker", "-l", "warning", "-c", "2", "-P", "prefork"]
    stack.start("director-worker", worker, env)
    stack.start(
        "director-web",
        [str(director), "webserver", "-b", f"127.0.0.1:{port}", "-w", "2", "--access-logfile", "-",
         "--log-level", "warning"],
        env,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"

    def is_up() -> bool:
        try:
            return httpx.get(f"{url}/api/definitions", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    wait_for(is_up, 60, "Director's web process", interval=0.2)

    def wait_done(run_id: str, timeout: float) -> float:
        popped = records.blpop(DIRECTOR_DONE, timeout=timeout)
        if popped is None:
            raise RuntimeError(f"Director workflow {run_id} was not done within {timeout:.0f} s")
        workflow_id, when = json.loads(popped[1])
        if workflow_id != run_id:
            raise RuntimeError(f"expected Director workflow {run_id} to end, got {workflow_id}")
        return when

    def done_since(workflow: str, since: float) -> list[float]:
        # Only the many-at-once phase asks, after emptying the list.
        return [json.loads(item)[1] for item in records.lrange(DIRECTOR_DONE, 0, -1)]

    def outcomes() -> dict[str, int]:
        query = "SELECT CAST(status AS VARCHAR), COUNT(*) FROM workflows GROUP BY status"
        if uri.startswith("sqlite"):
            with sqlite3.connect(uri.removeprefix("sqlite:///")) as conn:
                return dict(conn.execute(query).fetchall())
        import psycopg

        with psycopg.connect(database_url) as conn:
            return dict(conn.execute(query).fetchall())

    return Peer(
        name="director",
        url=url,
        headers={},
        web="director-web",
        worker="director-worker",
        trigger=lambda workflow, tag: (
            "/api/workflows",
            {"project": "peers", "name": workflow.upper(), "payload": {"tag": tag}},
        ),
        wait_done=wait_done,
        done_since=done_since,
        outcomes=outcomes,
        success="success",
        is_up=is_up,
    )


# --- The run ------------------------------------------------------------------


def measure(peer: Peer, stack: Stack, records, args) -> dict:
    import httpx

    load_before = os.getloadavg()[0]
    records.delete(STEPS, DIRECTOR_DONE)
    with httpx.Client(base_url=peer.url, headers=peer.headers, timeout=60) as client:
        print(f"{peer.name}: one-task workflow, one at a time", file=sys.stderr, flush=True)
        one = one_at_a_time(peer, client, records, ONE, 1, args.runs, warmup=10)
        print(f"{peer.name}: three-task chain, one at a time", file=sys.stderr, flush=True)
        chain = one_at_a_time(peer, client, records, CHAIN, 3, args.runs, warmup=3)
    records.delete(DIRECTOR_DONE)
    print(f"{peer.name}: {args.throughput} one-task workflows, {args.clients} clients", file=sys.stderr, flush=True)
    many = many_at_once(peer, stack, records, args.throughput, args.clients, args.timeout)
    outcomes = peer.outcomes()
    triggered = 10 + 3 + 2 * args.runs + args.throughput
    # Refused triggers count too: a caller's workflow that did not run.
    return {"one": one, "chain": chain, "many": many, "outcomes": outcomes,
            "not succeeded": triggered - outcomes.get(peer.success, 0),
            "load": f"{load_before:.1f} → {os.getloadavg()[0]:.1f}"}  # fmt: skip


def ms(values: list[float], q: float) -> float:
    return 1000 * percentile(values, q)


def row(database: str, name: str, result: dict) -> list[str]:
    one, chain, many = result["one"], result["chain"], result["many"]
    pair = lambda values: f"{ms(values, 50):.1f} / {ms(values, 99):.1f}"  # noqa: E731
    return [
        database,
        name,
        pair(one.start),
        pair(one.done),
        f"{ms(one.answer, 50):.1f}",
        pair(chain.last_end),
        pair(chain.gaps),
        pair(chain.done),
        f"{many['workflows']:,}",
        f"{many['accepted/s']:.1f}",
        f"{many['done/s']:.1f}",
        f"{many['cpu ms']:.1f}",
        str(result["not succeeded"]),
        result["load"],
    ]


def ratio_row(database: str, jobsite: dict, director: dict) -> list[str]:
    def pair(field_of) -> str:
        a, b = field_of(jobsite), field_of(director)
        return f"{ms(a, 50) / ms(b, 50):.2f} / {ms(a, 99) / ms(b, 99):.2f}"

    def p50(field_of) -> str:
        return f"{ms(field_of(jobsite), 50) / ms(field_of(director), 50):.2f}"

    def many(key: str) -> str:
        return f"{jobsite['many'][key] / director['many'][key]:.2f}"

    return [
        database,
        "ratio, Jobsite / Director",
        pair(lambda r: r["one"].start),
        pair(lambda r: r["one"].done),
        p50(lambda r: r["one"].answer),
        pair(lambda r: r["chain"].last_end),
        pair(lambda r: r["chain"].gaps),
        pair(lambda r: r["chain"].done),
        "",
        many("accepted/s"),
        many("done/s"),
        many("cpu ms"),
        "",
        "",
    ]


HEADER = [
    "database",
    "system",
    "one task: trigger→start p50 / p99 (ms)",
    "one task: trigger→workflow done p50 / p99 (ms)",
    "one task: API answer p50 (ms)",
    "3-task chain: trigger→last task done p50 / p99 (ms)",
    "chain: step hop (task end→next task start) p50 / p99 (ms)",
    "chain: trigger→workflow done p50 / p99 (ms)",
    "many at once: workflows",
    "triggers accepted/s",
    "workflows done/s",
    "CPU ms per workflow (web + worker)",
    "not succeeded",
    "load average (1 min), start → end",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=100, help="workflows and chains timed one at a time (100)")
    parser.add_argument("--throughput", type=int, default=1000, help="workflows triggered at once (1,000)")
    parser.add_argument("--clients", type=int, default=4, help="client threads triggering them (4)")
    parser.add_argument("--timeout", type=float, default=900, help="seconds to wait for them to be done (900)")
    parser.add_argument("--director-venv", type=Path, default=DIRECTOR_VENV, help=f"(default {DIRECTOR_VENV})")
    args = parser.parse_args()
    director = ensure_director(args.director_venv)

    work = workdir()
    (work / "jobsite").mkdir()
    jobsite_url = scratch_database_url(work / "jobsite")
    director_url = scratch_database_url(work)  # SQLite: work/bench.sqlite3, Jobsite's is in work/jobsite/
    env = bench_environment(jobsite_url, JOBS_TASK_MODULES="bench.tasks")
    stack = Stack(work, env)
    try:
        import django

        django.setup()
        import redis

        records = redis.Redis.from_url(stack.env["REDIS_URL"])
        results = {}
        jobsite = jobsite_peer(stack, free_port())
        results["jobsite"] = measure(jobsite, stack, records, args)
        stack.stop("jobsite-web", "jobsite-worker")
        peer = director_peer(stack, free_port(), director, work / "director", director_url, records)
        results["director"] = measure(peer, stack, records, args)
        stack.stop("director-web", "director-worker")

        database = "postgresql" if jobsite_url.startswith("postgres") else "sqlite"
        print(f"| {' | '.join(HEADER)} |")
        print("|---|---|---|---|---:|---|---|---|---:|---:|---:|---:|---:|---|")
        for name, result in results.items():
            print(f"| {' | '.join(row(database, name, result))} |")
        print(f"| {' | '.join(ratio_row(database, results['jobsite'], results['director']))} |")
        for name, result in results.items():
            print(f"{name}: workflow statuses {result['outcomes']}", file=sys.stderr)
    finally:
        stack.stop()
        drop_database(jobsite_url)
        drop_database(director_url)
        print(f"logs in {work}", file=sys.stderr)


if __name__ == "__main__":
    main()
