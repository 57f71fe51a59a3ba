"""Fixtures: users, an API client, and the real parts (Redis, a Celery worker)."""

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import quote, urlparse

import httpx
import pytest
import redis
from django.conf import settings
from django.contrib.auth.models import Permission, User
from django_celery_beat.models import PeriodicTask
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from jobs.models import Run
from jobsite.celery import app

from .factories import JobTypeFactory
from .servers import Mailbox, WebhookReceiver

ROOT = Path(__file__).resolve().parent.parent


# --- Users and clients ------------------------------------------------------


def _user(username: str, *perms: str, **extra) -> User:
    user = User.objects.create_user(username=username, password="pw", **extra)
    for perm in perms:
        app_label, codename = perm.split(".")
        user.user_permissions.add(Permission.objects.get(content_type__app_label=app_label, codename=codename))
    return User.objects.get(pk=user.pk)  # fresh permission cache


@pytest.fixture
def admin_user(db) -> User:
    return _user("boss", is_staff=True, is_superuser=True)


@pytest.fixture
def operator(db) -> User:
    """Can see and run job types and cancel runs, but not define job types."""
    perms = ("jobs.view_jobtype", "jobs.view_run", "jobs.view_schedule", "jobs.run_jobtype", "jobs.cancel_run")
    return _user("operator", *perms)


@pytest.fixture
def viewer(db) -> User:
    return _user("viewer", "jobs.view_jobtype", "jobs.view_run", "jobs.view_schedule")


def _token_client(user: User | None) -> APIClient:
    client = APIClient()
    if user is not None:
        client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    return client


@pytest.fixture
def api(admin_user) -> APIClient:
    return _token_client(admin_user)


@pytest.fixture
def api_as():
    return _token_client


@pytest.fixture
def job_type(db):
    return JobTypeFactory()


# --- Real parts ---------------------------------------------------------------


def _log_tail(path: Path, lines: int = 60) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


class RedisServer:
    """The tests' own redis-server, on the port tests/settings.py chose; it can
    be stopped and started again on that port, like a broker going down."""

    def __init__(self, url: str):
        self.url = url
        self.port = urlparse(url).port
        self.binary = shutil.which("redis-server")
        if self.binary is None:
            pytest.exit("redis-server is not installed: run `make test`, or `apt-get install redis-server`", 2)
        self.workdir = Path(tempfile.mkdtemp(prefix="jobsite-redis-"))
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        if self.running:
            return
        self.process = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", self.workdir],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while True:
            try:
                redis.Redis.from_url(self.url, socket_connect_timeout=1).ping()
                return
            except redis.RedisError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    self.process.kill()
                    pytest.exit(f"redis-server did not start on port {self.port}", 2)
                time.sleep(0.1)

    def stop(self) -> None:
        if self.running:
            self.process.terminate()
            self.process.wait(10)
        self.process = None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None


@pytest.fixture(scope="session")
def redis_broker():
    server = RedisServer(settings.CELERY_BROKER_URL)
    server.start()
    yield server
    server.stop()
    shutil.rmtree(server.workdir, ignore_errors=True)


@pytest.fixture(scope="session")
def redis_server(redis_broker) -> str:
    """The URL of the tests' Redis (the broker of every process they start)."""
    return redis_broker.url


def _database_url() -> str:
    """The URL of the test database, for processes the tests start."""
    from django.db import connection

    db = connection.settings_dict
    if db["ENGINE"] == "django.db.backends.sqlite3":
        return f"sqlite:///{Path(db['NAME']).resolve()}"
    credentials = quote(db["USER"] or "") + (":" + quote(db["PASSWORD"]) if db["PASSWORD"] else "")
    return f"postgres://{credentials}@{db['HOST'] or 'localhost'}:{db['PORT'] or 5432}/{db['NAME']}"


def _celery(
    log: Path, *args: str, broker_url: str | None = None, env: dict | None = None, prefix: tuple[str, ...] = ()
) -> subprocess.Popen:
    """Start `celery -A jobsite ARGS` on the test database and the tests' Redis
    (or `broker_url`), with `env` added to the environment, through `prefix`
    (a command that runs the command after it) if given."""
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", "DATABASE_URL": _database_url(), **(env or {})}
    if broker_url:
        env["REDIS_URL"] = broker_url
    return subprocess.Popen(
        [*prefix, sys.executable, "-m", "celery", "-A", "jobsite", *args],
        cwd=ROOT,
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _stop(process: subprocess.Popen, grace: float = 20) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, 9)
            process.wait()


class Worker:
    """A real `celery worker` process on the tests' Redis and test database."""

    def __init__(
        self,
        log: Path,
        concurrency: int = 2,
        extra_args: tuple[str, ...] = (),
        broker_url: str | None = None,
        env: dict | None = None,
        prefix: tuple[str, ...] = (),
    ):
        """`broker_url`: another broker than the tests' own. The caller then tells
        by itself when the worker is ready: this process's Celery app (and its
        connection pools) stays on the tests' broker. `env`: settings of this
        worker only (e.g. a short CELERY_VISIBILITY_TIMEOUT). `prefix`: a command
        to start it through (AS_ORDINARY_USER)."""
        self.name = f"test-{uuid.uuid4().hex[:8]}@%h"
        self.log = log
        self.process = _celery(
            log, "worker", "-l", "info", "-P", "prefork", "-c", str(concurrency), "-n", self.name,
            "--without-gossip", "--without-mingle", *extra_args, broker_url=broker_url, env=env, prefix=prefix,
        )  # fmt: skip
        self.hostname = None
        if broker_url:
            return
        try:
            self._wait_until_ready()
        except BaseException:  # also Ctrl-C: never leave a worker behind
            self.stop()
            raise

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + 60
        prefix = self.name.split("@")[0] + "@"
        while self.hostname is None:
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"Celery worker did not start:\n{_log_tail(self.log)}")
            replies = app.control.ping(timeout=0.5) or []
            self.hostname = next((name for reply in replies for name in reply if name.startswith(prefix)), None)

    def stop(self) -> None:
        _stop(self.process)

    def kill(self) -> None:
        """SIGKILL the worker and its pool processes at once, as when its machine or container dies."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def pool_pids(self) -> list[int]:
        """The pids of its pool processes (Linux)."""
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children").read_text()
        return [int(pid) for pid in children.split()]


class Beat:
    """A real `celery beat` with django-celery-beat's DatabaseScheduler."""

    def __init__(self, log: Path):
        self.log = log
        self.process = _celery(log, "beat", "-l", "info", "--pidfile=", "-s", str(log.with_suffix(".schedule")))
        deadline = time.monotonic() + 30
        # Ready once the scheduler has written its entries to the database.
        while not PeriodicTask.objects.filter(task="jobsite.dispatch").exists():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"celery beat did not start:\n{_log_tail(log)}")
            time.sleep(0.2)

    def stop(self) -> None:
        _stop(self.process, grace=10)


@pytest.fixture(scope="session")
def celery_worker(redis_server, django_db_setup, django_db_blocker, tmp_path_factory):
    worker = Worker(tmp_path_factory.mktemp("worker") / "worker.log")
    yield worker
    worker.stop()


def _still_alive(worker: Worker) -> None:
    if worker.process.poll() is not None:
        pytest.fail(f"The Celery worker died:\n{_log_tail(worker.log)}")


@pytest.fixture
def start_beat(celery_worker, transactional_db, tmp_path):
    """Start celery beats for this test (several, to test two beats by mistake)."""
    beats = []

    def start() -> Beat:
        beats.append(Beat(tmp_path / f"beat-{len(beats)}.log"))
        return beats[-1]

    yield start
    for beat in beats:
        beat.stop()


@pytest.fixture
def worker(celery_worker, transactional_db):
    """The session's worker, for a test whose data it must see (committed)."""
    yield celery_worker
    _still_alive(celery_worker)


@pytest.fixture
def start_worker(redis_server, transactional_db, tmp_path):
    """Start workers of this test's own (`start_worker(concurrency, queue, env, prefix)`);
    they are stopped, or killed if still running, at the end."""
    workers = []

    def start(concurrency: int, queue: str, env: dict | None = None, prefix: tuple[str, ...] = ()) -> Worker:
        log = tmp_path / f"worker-{len(workers)}.log"
        workers.append(Worker(log, concurrency=concurrency, extra_args=("-Q", queue), env=env, prefix=prefix))
        return workers[-1]

    yield start
    for started in workers:
        if started.process.poll() is None:
            started.kill()


# Workers are meant to run as an ordinary user. When the tests run as root, a
# worker started through this is root without its capabilities, which is what
# sets root apart from an ordinary user when reading other processes' /proc files.
AS_ORDINARY_USER = ("setpriv", "--bounding-set=-all", "--inh-caps=-all") if os.geteuid() == 0 else ()


def wait_for_ping(worker: Worker, timeout: float = 60) -> None:
    """Until the worker answers a ping again (after the broker came back)."""
    deadline = time.monotonic() + timeout
    while not any(worker.hostname in reply for reply in app.control.ping(timeout=0.5) or []):
        if time.monotonic() > deadline:
            pytest.fail(f"The Celery worker did not come back:\n{_log_tail(worker.log)}")


def answered_once_back(call, timeout: float = 60):
    """call(), again until it gets through: this process's own pooled broker
    connections died with Redis, and the first calls through them fail."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return call()
        except redis.exceptions.ConnectionError:
            assert time.monotonic() < deadline, "the broker did not come back"
            time.sleep(0.5)


@pytest.fixture
def broker_outage(redis_broker, celery_worker, transactional_db):
    """The tests' Redis, to stop and start again; running, and answered by the
    session's worker, again when the test ends (later tests need it)."""
    yield redis_broker
    redis_broker.start()
    wait_for_ping(celery_worker)


# Workflow tests send their steps to a queue of their own, served by a worker
# with four processes, so parallel steps really run in parallel.
WORKFLOW_QUEUE = "workflow-tests"


@pytest.fixture(scope="session")
def celery_workflow_worker(redis_server, django_db_setup, django_db_blocker, tmp_path_factory):
    log = tmp_path_factory.mktemp("workflow-worker") / "worker.log"
    worker = Worker(log, concurrency=4, extra_args=("-Q", WORKFLOW_QUEUE))
    yield worker
    worker.stop()


@pytest.fixture
def workflow_worker(celery_workflow_worker, transactional_db):
    """A worker with concurrency 4 on WORKFLOW_QUEUE, for a test whose data it must see."""
    yield celery_workflow_worker
    _still_alive(celery_workflow_worker)


@pytest.fixture(scope="session")
def smtp_server():
    """The tests' SMTP server, on the port EMAIL_URL names (tests/settings.py)."""
    server = Mailbox(settings.EMAIL_PORT)
    yield server
    server.stop()


@pytest.fixture
def mailbox(smtp_server):
    """The SMTP server, running and empty; whatever a test did to it, it runs again after."""
    smtp_server.start()
    smtp_server.clear()
    yield smtp_server
    smtp_server.start()


@pytest.fixture
def webhook():
    receiver = WebhookReceiver()
    yield receiver
    receiver.close()


def _poll(run: Run, field: str, statuses, timeout: float) -> Run:
    deadline = time.monotonic() + timeout
    while True:
        run.refresh_from_db()
        if getattr(run, field) in statuses:
            return run
        if time.monotonic() > deadline:
            raise AssertionError(
                f"Run {run.pk}'s {field} is {getattr(run, field)!r} after {timeout} s, expected {statuses}"
            )
        time.sleep(0.1)


def wait_until(condition, timeout: float, message: str):
    """Poll `condition` until it returns something true, and return that."""
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(message)
        time.sleep(0.2)
    return result


def wait_for_run(run: Run, *statuses: str, timeout: float = 30) -> Run:
    """Poll the database until the run reaches one of `statuses` (default: any terminal one)."""
    return _poll(run, "status", statuses or Run.TERMINAL_STATUSES, timeout)


def wait_for_notification(run: Run, *statuses: str, timeout: float = 30) -> Run:
    """Poll until the run's notification is sent or failed (or one of `statuses`)."""
    return _poll(run, "notify_status", statuses or ("sent", "failed"), timeout)


# --- A web process of its own -------------------------------------------------------


class WebServer:
    """`manage.py runserver` in a process of its own, on the test database and `broker_url`.

    A process of its own because this one's Celery app keeps pooled
    connections to the tests' broker, where the session's worker answers.
    """

    def __init__(self, broker_url: str, log):
        self.url = f"http://127.0.0.1:{free_port()}"
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "tests.settings",
            "DATABASE_URL": _database_url(),
            "REDIS_URL": broker_url,
        }
        command = [sys.executable, "manage.py", "runserver", "--noreload", self.url.removeprefix("http://")]
        self.process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"{self.url}/accounts/login/", timeout=1)
                return
            except httpx.HTTPError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"runserver did not start:\n{_log_tail(log)}") from None
                time.sleep(0.2)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


@pytest.fixture
def web_on_own_broker(redis_server, transactional_db, tmp_path):
    """A web process whose broker is another database of the tests' Redis, where no worker listens yet."""
    broker_url = redis_server.rsplit("/", 1)[0] + "/7"
    server = WebServer(broker_url, tmp_path / "web.log")
    server.broker_url = broker_url
    yield server
    server.stop()


# --- Flower ------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# Flower's options that follow Jobsite's settings (enable_events), as the Procfile names them.
FLOWER_CONF = "jobsite/flowerconfig.py"


class Flower:
    """A real `celery flower` on loopback, with basic auth, against the tests' Redis,
    started as the Procfile starts it. `env`: settings of this Flower only (e.g.
    CELERY_WORKER_SEND_TASK_EVENTS, or REDIS_URL for another broker)."""

    def __init__(self, log, env: dict | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/flower"
        self.basic_auth = f"flower:{secrets.token_urlsafe(16)}"
        self.log = log
        command = [sys.executable, "-m", "celery", "-A", "jobsite", "flower", f"--conf={FLOWER_CONF}"]
        command += ["--address=127.0.0.1", f"--port={self.port}", "--url_prefix=flower"]
        command += [f"--basic_auth={self.basic_auth}"]
        # Flower asks the workers for their stats with a 1 s timeout by default: on a
        # busy 2-core machine a worker can take longer, and the page then has none.
        command += ["--inspect_timeout=5000"]
        # On the test database, as Flower runs on Jobsite's: it reads task results there.
        environment = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", "DATABASE_URL": _database_url()}
        environment["CELERY_BROKER_POOL_LIMIT"] = "0"  # as the Procfile runs it (jobsite/settings.py says why)
        environment.update(env or {})
        self.process = subprocess.Popen(
            command, cwd=ROOT, env=environment, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            self._wait_until_ready()
        except BaseException:
            self.stop()
            raise

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + 60
        user, password = self.basic_auth.split(":", 1)
        while True:
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"Flower did not start:\n{_log_tail(self.log)}")
            try:
                if httpx.get(f"{self.url}/healthcheck", auth=(user, password), timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@pytest.fixture(scope="session")
def flower_server(redis_server, django_db_setup, django_db_blocker, tmp_path_factory):
    flower = Flower(tmp_path_factory.mktemp("flower") / "flower.log")
    yield flower
    flower.stop()


@pytest.fixture
def flower(flower_server, settings):
    """Flower, with the web process's settings pointing at it."""
    settings.FLOWER_URL = flower_server.url
    settings.FLOWER_BASIC_AUTH = flower_server.basic_auth
    return flower_server
