"""Commits that need not wait for the disk: `progress_commit()` commits a run's
`queued` mark with `synchronous_commit` off (PostgreSQL), for that transaction
only. Only a crash of the database server can lose such a mark, and then the
run is `pending` again and the sweeper publishes it once more. Every other write
is durable. Why, and what it saves: docs/architecture.md, "The hot path".
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
