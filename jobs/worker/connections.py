"""A worker's database connection, kept from task to task (CELERY_DB_REUSE_MAX)
and checked the way Django checks one around a request: before a task starts
(jobs/worker/signals.py), and again before its end is written if the task ran
for a while or its own queries failed, since an idle connection may have been
dropped and a failed query may have broken it. Why: docs/architecture.md,
"The hot path".
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
