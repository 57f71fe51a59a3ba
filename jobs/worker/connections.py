"""A worker's database connection, kept from task to task.

Celery closes a worker's connections before and after every task unless
CELERY_DB_REUSE_MAX is set (settings.py sets it), so each task would open a
new one. Kept instead, a connection is checked the way Django checks one
around each request: `close_old_connections()` drops it once older than
CONN_MAX_AGE, or broken, and makes the next query run the health check
(CONN_HEALTH_CHECKS) first, which replaces a connection the server dropped.

That check happens before a task starts (jobs/worker/signals.py), and again before
its end is written if the task ran for a while or its own queries failed: a
long task leaves its connection idle, and servers, connection poolers and
load balancers drop idle connections, and a task's failed query may have
broken it; the end would otherwise go to a dead connection, and the run
would stay `running`.
"""

import time

from django import db

# A connection idle for less than this is not checked again before the end.
IDLE_SECONDS = 1.0
CHECKED_ATTRIBUTE = "jobsite_db_checked_at"


def checkup(request) -> None:
    """Check the worker's connections for the task of `request`, as Django does
    for a request. Never inside a transaction (a test's, or eager tasks run in a
    web request), which owns its connection."""
    if getattr(request, "is_eager", False) or db.connection.in_atomic_block:
        return
    db.close_old_connections()
    setattr(request, CHECKED_ATTRIBUTE, time.monotonic())


def checkup_if_idle(request) -> None:
    """Before a task's end is written: check again if the connection has been
    idle for a while since the last check (the task ran long), or had an error
    meanwhile (the task's own queries failed)."""
    if request is None:
        return
    checked = getattr(request, CHECKED_ATTRIBUTE, None)
    recent = checked is not None and time.monotonic() - checked < IDLE_SECONDS
    if recent and not db.connection.errors_occurred:
        return
    checkup(request)
