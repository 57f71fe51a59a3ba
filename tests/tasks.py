"""Celery tasks for the tests only, registered on the workers the tests start
(tests/settings.py adds this module to CELERY_IMPORTS)."""

import time
from typing import Any

import redis
from celery import shared_task
from django.conf import settings

CALLS_KEY = "jobsite-tests:calls:{}"


def calls(run_id) -> int:
    """How many times a task of `count_calls` ran for this run id."""
    return int(redis.Redis.from_url(settings.CELERY_BROKER_URL).get(CALLS_KEY.format(run_id)) or 0)


@shared_task(bind=True, name="tests.count_calls")
def count_calls(self, **params: Any) -> dict[str, Any]:
    """Count each execution of this run's task in Redis, then return the params."""
    redis.Redis.from_url(settings.CELERY_BROKER_URL).incr(CALLS_KEY.format(self.request.id))
    return params


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


@shared_task(name="tests.big_result")
def big_result(size: int) -> dict[str, str]:
    """A result of about `size` bytes as JSON."""
    return {"data": "x" * size}
