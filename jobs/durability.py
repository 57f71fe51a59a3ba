"""Commits that need not wait for the disk.

On a durable PostgreSQL every commit waits for its WAL to be flushed (an
fsync), and that wait, not the statements, is most of what a run costs. Two of
a run's writes are progress marks that Jobsite can lose in a database server
crash without harm, because a later write or the sweeper covers them:

- `queued` (services.runs_publish): lost, the run is `pending` again and the
  sweeper publishes it once more; the second message finds it started or
  ended and is dropped (services.run_started).
- `running` (services.run_started): lost, the run is `queued` until its end,
  which is a durable commit and applies from any state that is not terminal.

Those commit with `synchronous_commit` off, for that transaction only:
committed and visible at once, flushed by PostgreSQL's WAL writer within a
fraction of a second or by the next durable commit, whichever comes first. A
crash of Jobsite's own processes loses nothing; only a crash of the database
server can lose the last fraction of a second of such marks. Every other write
(the run itself at its trigger, its end, its notification, workflows) stays
durable. SQLite in WAL mode with synchronous=NORMAL (settings.py) already
commits without an fsync.
"""

from collections.abc import Iterator
from contextlib import contextmanager

from django.db import connection, transaction


@contextmanager
def progress_commit() -> Iterator[None]:
    """Run the block as a transaction whose commit does not wait for the disk
    (PostgreSQL). Inside a transaction already, it changes nothing: that one's
    commit must keep its own durability."""
    if connection.vendor != "postgresql" or connection.in_atomic_block:
        yield
        return
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL synchronous_commit TO OFF")
        yield
