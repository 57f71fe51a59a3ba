"""Commits that need not wait for the disk.

On a durable PostgreSQL every commit waits for its WAL to be flushed (an
fsync). One of a run's writes is a progress mark that Jobsite can lose in a
database server crash without harm, because the sweeper covers it:

- `queued` (services.runs_publish): lost, the run is `pending` again and the
  sweeper publishes it once more; the second message finds it started or
  ended and is dropped (services.run_started).

It commits with `synchronous_commit` off, for that transaction only:
committed and visible at once, flushed by PostgreSQL's WAL writer within a
fraction of a second or by the next durable commit, whichever comes first. A
crash of Jobsite's own processes loses nothing; only a crash of the database
server can lose the last fraction of a second of such marks. The mark comes
after the publish, so the flush it saves is time the API's answer does not
wait for.

The start mark (`running`) could be lost as harmlessly, but it is a plain
UPDATE: a transaction of its own costs three more round trips (BEGIN, SET,
COMMIT) before the task runs, which measured slower than the flush
(bench/latency.py: 1 to 1.4 ms more at the median, the same throughput).
Every other write (the run itself at its trigger, its end, its notification,
workflows) is durable. SQLite in WAL mode with synchronous=NORMAL
(settings.py) already commits without an fsync.
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
