"""Commits that need not wait for the disk (PostgreSQL, for that transaction only):
a run's `queued` and `running` marks (`progress_update`), and its log batches
(`progress_commit`). Only a crash of the database server can lose such a write,
and only the last fraction of a second of them (the WAL writer flushes them, and
so does the next durable commit); every other write is durable. Why, what it
saves, and what a lost mark means: docs/architecture.md, "The hot path".
"""

from collections.abc import Iterator
from contextlib import contextmanager

from django.db import connection, connections, transaction
from django.db.models import QuerySet
from django.db.models.sql import UpdateQuery

NOT_DURABLE = "SET LOCAL synchronous_commit TO OFF"


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
            cursor.execute(NOT_DURABLE)
        yield


def progress_update(query: QuerySet, **changes) -> int:
    """`query.update(**changes)`, committed without waiting for the disk, in one
    round trip (PostgreSQL): the SET LOCAL and the UPDATE go as one query string,
    which the server runs as one transaction, where progress_commit's BEGIN, SET,
    UPDATE and COMMIT are four. Inside a transaction already, a plain update."""
    database = connections[query.db]
    if database.vendor != "postgresql" or database.in_atomic_block:
        return query.update(**changes)
    update = query.query.chain(UpdateQuery)
    update.add_update_values(changes)
    statement, params = update.get_compiler(query.db).as_sql()
    with database.cursor() as cursor:
        # Client-side binding (Django's default with psycopg) sends it as one simple query.
        cursor.execute(f"{NOT_DURABLE}; {statement}", params)
        cursor.nextset()  # the UPDATE's result
        return cursor.rowcount
