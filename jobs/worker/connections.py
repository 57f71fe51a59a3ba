"""A worker's database connection, kept from task to task (CELERY_DB_REUSE_MAX)
and checked the way Django checks one around a request: before a task starts
(jobs/worker/signals.py), and again before its end is written if the task ran
for a while or its own queries failed, since an idle connection may have been
dropped and a failed query may have broken it. A run whose start is a read
(Run.read_for_start, sent again on a new connection if this one turns out
dropped) skips the check when the connection ended a task under IDLE_SECONDS
ago: the read is the check, one round trip less per run. Why: docs/architecture.md,
"The hot path".
"""

import time

from django import db

# A connection idle for less than this is not checked again before the end,
# nor before a run's start read.
IDLE_SECONDS = 1.0
CHECKED_ATTRIBUTE = "jobsite_db_checked_at"
# On the connection: when a task last ended on it without a database error.
ENDED_ATTRIBUTE = "jobsite_task_ended_at"


def checkup(request, *, reads_first: bool = False) -> None:
    """Check the worker's connections for the task of `request`, as Django does
    for a request. Never inside a transaction (a test's, or eager tasks run in a
    web request), which owns its connection. `reads_first`: the task's first
    statement is a read that goes again on a new connection if this one turns
    out dropped; the connection is then not checked if a task ended on it under
    IDLE_SECONDS ago (a connection older than CONN_MAX_AGE is still closed)."""
    if _ours(request):
        _check(request, reads_first=reads_first)


def _check(request, *, reads_first: bool = False) -> None:
    connection = db.connection
    ended = getattr(connection, ENDED_ATTRIBUTE, None)
    now = time.monotonic()
    trusted = reads_first and ended is not None and now - ended < IDLE_SECONDS and not connection.errors_occurred
    db.close_old_connections()
    if trusted and connection.connection is not None:
        connection.health_check_done = True
    setattr(request, CHECKED_ATTRIBUTE, now)


def task_ended(request) -> None:
    """After a task: check the connections for what comes next, and note when a
    task last ended on a connection that worked."""
    if not _ours(request):
        return
    _check(request)
    connection = db.connection
    # close_old_connections checked one that had an error, and closed it if it failed.
    setattr(connection, ENDED_ATTRIBUTE, time.monotonic() if connection.connection is not None else None)


def _ours(request) -> bool:
    """Whether the task owns the connection: not inside a transaction (a test's,
    or an eager task's run in a web request)."""
    return not (getattr(request, "is_eager", False) or db.connection.in_atomic_block)


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
