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

from jobs.core import statements

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
    """`query.update(**changes)`, committed without waiting for the disk
    (progress_execute)."""
    return progress_execute(statements.update(query, changes), using=query.db)


def progress_execute(statement: statements.Statement, *, using: str) -> int:
    """Run a compiled UPDATE, committed without waiting for the disk (PostgreSQL);
    its row count. In one round trip where statements can be sent together
    (statements.together): the SET LOCAL and the UPDATE go as one query string,
    which the server runs as one transaction, where progress_commit's BEGIN, SET,
    UPDATE and COMMIT are four; otherwise (server-side binding) as those four.
    Inside a transaction already, or on another database, it runs as it is."""
    database = connections[using]
    if database.vendor != "postgresql" or database.in_atomic_block:
        return statements.execute(statement, using=using)
    if not statements.together(using):
        with transaction.atomic(using=using), database.cursor() as cursor:
            cursor.execute(NOT_DURABLE)
            return statements.execute(statement, using=using)
    sql, params = statements.joined([statement], using=using)
    with transaction.mark_for_rollback_on_error(using=using), database.cursor() as cursor:
        cursor.execute(f"{NOT_DURABLE}; {sql}", params)
        cursor.nextset()  # the UPDATE's result
        return cursor.rowcount
