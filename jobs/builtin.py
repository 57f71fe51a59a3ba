"""Built-in tasks for demos and tests, registered on every worker."""

import time
from typing import Any

from celery import shared_task


@shared_task(name="jobs.builtin.echo")
def echo(**params: Any) -> dict[str, Any]:
    """Return the params it was given."""
    return params


@shared_task(name="jobs.builtin.sleep")
def sleep(seconds: float = 1, **_: Any) -> float:
    """Sleep `seconds` and return them."""
    time.sleep(float(seconds))
    return seconds


class BuiltinTaskFailed(Exception):
    pass


@shared_task(name="jobs.builtin.fail")
def fail(message: str = "Failed on purpose", **_: Any) -> None:
    """Raise an error with `message`."""
    raise BuiltinTaskFailed(message)
