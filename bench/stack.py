"""Pieces the benchmarks share: a scratch database, a Redis, Celery processes,
and CPU and memory readings of process trees from /proc."""

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import urlparse, urlunparse

ROOT = Path(__file__).resolve().parent.parent
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def scratch_database_url(workdir: Path) -> str:
    """A new empty database: a database on the server in DATABASE_URL, else a SQLite file."""
    base = os.environ.get("DATABASE_URL", "")
    if not base.startswith("postgres"):
        return f"sqlite:///{workdir / 'bench.sqlite3'}"
    import psycopg

    name = f"bench_{uuid.uuid4().hex[:10]}"
    admin = urlparse(base)._replace(path="/postgres")
    with psycopg.connect(urlunparse(admin), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return urlunparse(urlparse(base)._replace(path=f"/{name}"))


def bench_environment(database_url: str, **extra: str) -> dict[str, str]:
    """The environment of a benchmark and the processes it starts: its scratch
    database, Jobsite's settings, quiet logs; set in this process too."""
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "SECRET_KEY": os.environ.get("SECRET_KEY", "bench-only"),
        "DJANGO_SETTINGS_MODULE": "jobsite.settings",
        "LOG_LEVEL": "WARNING",
        **extra,
    }
    os.environ.update(env)
    return env


def drop_database(url: str) -> None:
    if url.startswith("postgres"):
        import psycopg

        parsed = urlparse(url)
        name = parsed.path.lstrip("/")
        with psycopg.connect(urlunparse(parsed._replace(path="/postgres")), autocommit=True) as conn:
            try:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            except psycopg.errors.InsufficientPrivilege:
                # FORCE may not end an autovacuum worker (a superuser's
                # process) busy after a big delete; a plain DROP cancels it.
                conn.execute(f'DROP DATABASE IF EXISTS "{name}"')


WEB_SERVERS = ("gunicorn", "runserver")


def web_command(server: str, port: int, workers: int = 4) -> list[str]:
    """The web process: gunicorn as `make run` and docker/ serve, or runserver as `make dev` starts it."""
    if server == "gunicorn":
        return [sys.executable, "-m", "gunicorn", "jobsite.wsgi", "-b", f"127.0.0.1:{port}", "-w", str(workers),
                "--access-logfile", "-", "--log-level", "warning"]  # fmt: skip
    return [sys.executable, "manage.py", "runserver", "--noreload", f"127.0.0.1:{port}"]


class Stack:
    """Redis plus Celery processes for one benchmark run, stopped together."""

    def __init__(self, workdir: Path, env: dict[str, str]):
        self.workdir = workdir
        self.redis_port = free_port()
        self.env = {**env, "REDIS_URL": f"redis://127.0.0.1:{self.redis_port}/0", "PYTHONUNBUFFERED": "1"}
        os.environ["REDIS_URL"] = self.env["REDIS_URL"]
        self.processes: dict[str, subprocess.Popen] = {}
        redis_server = shutil.which("redis-server") or "redis-server"
        self.start(
            "redis",
            [redis_server, "--port", str(self.redis_port), "--bind", "127.0.0.1", "--save", "", "--dir", str(workdir)],
        )

    def start(self, name: str, command: list[str], env: dict[str, str] | None = None) -> subprocess.Popen:
        """Start a process logging to NAME.log; `env` replaces the stack's environment."""
        log = (self.workdir / f"{name}.log").open("w")
        self.processes[name] = subprocess.Popen(
            command, cwd=ROOT, env=env or self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        return self.processes[name]

    def celery(self, name: str, *args: str) -> subprocess.Popen:
        return self.start(name, [sys.executable, "-m", "celery", "-A", "jobsite", *args])

    def stop(self, *names: str) -> None:
        """Stop the named processes (all of them, Redis last, when none is named)."""
        processes = [self.processes[name] for name in names] if names else list(self.processes.values())
        for process in reversed(processes):
            if process.poll() is None:
                process.terminate()
        for process in processes:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, 9)


def _tree(pid: int) -> list[int]:
    pids, todo = [], [pid]
    while todo:
        current = todo.pop()
        pids.append(current)
        try:
            for task in os.listdir(f"/proc/{current}/task"):
                with open(f"/proc/{current}/task/{task}/children") as f:
                    todo.extend(int(child) for child in f.read().split())
        except OSError:
            pass
    return pids


def tree_usage(pid: int) -> tuple[float, int]:
    """CPU seconds used so far and resident bytes now, summed over a process tree."""
    cpu, rss = 0.0, 0
    for member in _tree(pid):
        try:
            with open(f"/proc/{member}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            cpu += (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
            with open(f"/proc/{member}/statm") as f:
                rss += int(f.read().split()[1]) * PAGE_SIZE
        except OSError:
            pass
    return cpu, rss


class Sampler:
    """Samples CPU and memory of named process trees once a second."""

    def __init__(self, processes: dict[str, subprocess.Popen]):
        self.processes = processes
        self.start = {name: tree_usage(p.pid)[0] for name, p in processes.items()}
        self.started_at = time.monotonic()
        self.peak = dict.fromkeys(processes, 0)

    def sample(self) -> None:
        for name, process in self.processes.items():
            self.peak[name] = max(self.peak[name], tree_usage(process.pid)[1])

    def report(self) -> dict[str, dict[str, float]]:
        wall = time.monotonic() - self.started_at
        return {
            name: {
                "cpu_percent": round(100 * (tree_usage(p.pid)[0] - self.start[name]) / wall, 1),
                "peak_mib": round(self.peak[name] / 2**20, 1),
            }
            for name, p in self.processes.items()
        }


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def workdir() -> Path:
    return Path(tempfile.mkdtemp(prefix="jobsite-bench-"))
