"""Celery tasks for the tests only, registered on the workers the tests start
(tests/settings.py adds this module to CELERY_IMPORTS)."""

import contextlib
import os
import time
from typing import Any

import redis
from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings

CALLS_KEY = "jobsite-tests:calls:{}"


def calls(run_id) -> int:
    """How many times a task of `count_calls` or `slow_count` ran for this run id."""
    return int(_redis().get(CALLS_KEY.format(run_id)) or 0)


@shared_task(bind=True, name="tests.count_calls")
def count_calls(self, **params: Any) -> dict[str, Any]:
    """Count each execution of this run's task in Redis, then return the params."""
    _redis().incr(CALLS_KEY.format(self.request.id))
    return params


PID_KEY = "jobsite-tests:pid:{}"
PROBE_KEY = "jobsite-tests:probe:{}"


def _redis() -> redis.Redis:
    return redis.Redis.from_url(settings.CELERY_BROKER_URL)


@shared_task(bind=True, name="tests.slow_count")
def slow_count(self, seconds: float = 0, first_attempt_only: bool = False, **params: Any) -> dict[str, Any]:
    """Count this execution (see `calls`) and note the pool process running it,
    then sleep (with `first_attempt_only`, only in the run's first attempt)."""
    executions = _redis().incr(CALLS_KEY.format(self.request.id))
    _redis().set(PID_KEY.format(self.request.id), os.getpid())
    # The first execution, not the run's `attempts`: a short task's start is
    # written with its end, so the run's row may not count this attempt yet.
    if not first_attempt_only or executions == 1:
        time.sleep(float(seconds))
    return params


def pid_of(run_id) -> int | None:
    """The pool process that last started this run's task."""
    pid = _redis().get(PID_KEY.format(run_id))
    return int(pid) if pid else None


@shared_task(name="tests.stubborn_sleep")
def stubborn_sleep(seconds: float = 60) -> None:
    """Sleep, and go on sleeping when the soft time limit says stop."""
    deadline = time.monotonic() + float(seconds)
    while time.monotonic() < deadline:
        with contextlib.suppress(SoftTimeLimitExceeded):
            time.sleep(max(deadline - time.monotonic(), 0))


@shared_task(name="tests.concurrency_probe")
def concurrency_probe(probe: str, seconds: float = 0.5) -> int:
    """Sleep while counting, in Redis, how many of `probe`'s tasks execute at
    once; every execution records the count it saw on starting."""
    client = _redis()
    key = PROBE_KEY.format(probe)
    now_running = client.incr(f"{key}:now")
    client.rpush(f"{key}:seen", now_running)
    try:
        time.sleep(float(seconds))
    finally:
        client.decr(f"{key}:now")
    return now_running


def concurrency_seen(probe: str) -> list[int]:
    """How many of `probe`'s tasks were executing as each one started."""
    return [int(n) for n in _redis().lrange(f"{PROBE_KEY.format(probe)}:seen", 0, -1)]


@shared_task(name="tests.sleep_echo")
def sleep_echo(seconds: float = 0, **params: Any) -> dict[str, Any]:
    """Sleep, then return the other params."""
    time.sleep(float(seconds))
    return params


# celery-director style tasks: they read the workflow's payload from kwargs.


@shared_task(name="EXTRACT")
def extract(*args: Any, **kwargs: Any) -> list[int]:
    return list(range(kwargs["payload"]["rows"]))


@shared_task(name="TRANSFORM_SUM")
def transform_sum(*args: Any, **kwargs: Any) -> int:
    return sum(range(kwargs["payload"]["rows"]))


@shared_task(name="TRANSFORM_COUNT")
def transform_count(*args: Any, **kwargs: Any) -> int:
    return kwargs["payload"]["rows"]


@shared_task(name="LOAD")
def load(*args: Any, **kwargs: Any) -> str:
    return f"loaded {kwargs['payload']['rows']} rows"


@shared_task(name="NOTIFY_SUCCESS")
def notify_success(*args: Any, **kwargs: Any) -> str:
    return "all good"


@shared_task(name="NOTIFY_FAILURE")
def notify_failure(*args: Any, **kwargs: Any) -> dict[str, Any]:
    return {"failed_run": kwargs["run_id"], "error": kwargs["error"]}


@shared_task(bind=True, name="tests.fail_once")
def fail_once(self) -> str:
    """Fail on this run's first execution, succeed on the next (counted like `count_calls`)."""
    if _redis().incr(CALLS_KEY.format(self.request.id)) == 1:
        raise RuntimeError("first attempt fails")
    return "passed"


@shared_task(name="tests.big_result")
def big_result(size: int) -> dict[str, str]:
    """A result of about `size` bytes as JSON."""
    return {"data": "x" * size}


SESSION_KEY = "jobsite-tests:session:{}"


@shared_task(bind=True, name="tests.database_session")
def database_session(self, seconds: float = 0, **_: Any) -> dict[str, Any]:
    """Which database session ran this task (PostgreSQL's backend process id),
    noted in Redis (see `session_of`) before sleeping `seconds`."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        backend_pid = cursor.fetchone()[0]
    _redis().set(SESSION_KEY.format(self.request.id), backend_pid)
    time.sleep(float(seconds))
    return {"backend_pid": backend_pid}


def session_of(run_id) -> int | None:
    """The database session of this run's task, once it has noted it."""
    pid = _redis().get(SESSION_KEY.format(run_id))
    return int(pid) if pid else None


@shared_task(name="tests.drop_own_session")
def drop_own_session(**_: Any) -> None:
    """Have the PostgreSQL server end this task's own database session: the
    query fails (OperationalError), and so does the task."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(pg_backend_pid())")


class Opaque:
    """A value JSON cannot say."""

    def __repr__(self) -> str:
        return "<Opaque>"


@shared_task(name="tests.opaque")
def opaque(*args: Any, **kwargs: Any) -> Opaque:
    """Returns a value that is not JSON-serialisable, as celery-director's TASK_CELERY_ERROR does
    (its stand-in, under that name, is in tests/director/tasks.py)."""
    return Opaque()


@shared_task(name="tests.not_a_number")
def not_a_number() -> dict[str, float]:
    """A result with NaN, which Python's json writes but JSON (and the databases) refuse."""
    return {"mean": float("nan")}


@shared_task(name="tests.opaque_unrecorded", ignore_result=True)
def opaque_unrecorded() -> Opaque:
    """tests.opaque with no result stored by Celery: only the run would keep it."""
    return Opaque()


RELEASE_KEY = "jobsite-tests:release:{}"


def release(run_id) -> None:
    """Let a `chatty` task waiting on `wait` go on."""
    _redis().set(RELEASE_KEY.format(run_id), 1)


@shared_task(bind=True, name="tests.chatty")
def chatty(self, lines: int = 0, line_chars: int = 10, fail: bool = False, wait: bool = False) -> int:
    """Log and print as a task does (and never mind Jobsite), then fail if asked.
    With `wait`, stop after its first lines until the test calls `release`."""
    import logging
    import sys

    log = logging.getLogger("tests.chatty")
    log.warning("starting with %d lines", lines)
    log.info("an info line, below the default level")
    print("hello from print")
    print("a warning on stderr", file=sys.stderr)
    for number in range(1, lines + 1):
        print(f"line {number} " + "x" * line_chars)
    if wait:
        deadline = time.monotonic() + 20
        while not _redis().exists(RELEASE_KEY.format(self.request.id)) and time.monotonic() < deadline:
            time.sleep(0.05)
        log.warning("released")
    if fail:
        try:
            raise KeyError("missing")
        except KeyError:
            log.exception("could not go on")
        raise ValueError("chatty gave up")
    return lines
