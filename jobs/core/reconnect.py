"""A read sent again on a new connection when the one it went out on turns out
dropped (the server restarted, or ended the session). Only for a read outside a
transaction: it changes nothing, so sending it twice is safe, and no
transaction's earlier statements are lost with the connection.

Why: a worker does not check its connection before a run's start read when it
ended a task on it under a second ago (jobs/worker/connections.py); the read is
the check.
"""

from collections.abc import Callable
from typing import TypeVar

from django.db import InterfaceError, OperationalError, connections

T = TypeVar("T")


def read_again_if_dropped(read: Callable[[], T], *, using: str) -> T:
    """`read()`; if its connection turned out dropped, `read()` once more on a
    new one. Any other error (a statement timeout, say, on a live connection)
    is raised as it is."""
    database = connections[using]
    try:
        return read()
    except (OperationalError, InterfaceError):
        if database.in_atomic_block or database.connection is None or database.is_usable():
            raise
    database.close()
    return read()
