"""A run's progress marks are committed without waiting for the disk
(jobs/core/durability.py) in one round trip where statements can be sent
together, and as a transaction of their own where they cannot: PostgreSQL with
server-side binding, which a deployment may turn on in DATABASES' OPTIONS."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from jobs.core import durability, statements
from jobs.models import Run
from tests.factories import RunFactory

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL's synchronous_commit and binding"),
]


@pytest.fixture
def server_side_binding():
    """The default connection, from its next query on, with server-side binding."""
    options = connection.settings_dict["OPTIONS"]
    before = options.get("server_side_binding")
    connection.close()
    options["server_side_binding"] = True
    yield
    connection.close()
    if before is None:
        options.pop("server_side_binding")
    else:
        options["server_side_binding"] = before


def committed_status(run: Run) -> str:
    """The status another session reads: what was committed."""
    connection.close()  # a new session
    return Run.objects.values_list("status", flat=True).get(pk=run.pk)


@pytest.mark.django_db(transaction=True)
def test_a_progress_mark_is_one_round_trip_with_client_side_binding():
    run = RunFactory(status=Run.Status.PENDING)
    with CaptureQueriesContext(connection) as queries:
        count = durability.progress_update(Run.objects.filter(pk=run.pk), status=Run.Status.QUEUED)
    assert count == 1
    assert [query["sql"].split(";")[0] for query in queries] == [durability.NOT_DURABLE]
    assert committed_status(run) == Run.Status.QUEUED


@pytest.mark.django_db(transaction=True)
def test_a_progress_mark_is_its_own_transaction_with_server_side_binding(server_side_binding):
    run = RunFactory(status=Run.Status.PENDING)
    assert not statements.together(connection.alias)
    with CaptureQueriesContext(connection) as queries:
        count = durability.progress_update(Run.objects.filter(pk=run.pk), status=Run.Status.QUEUED)
    assert count == 1
    sent = [query["sql"].split(" ")[0] for query in queries]
    assert sent == ["BEGIN", "SET", "UPDATE", "COMMIT"], sent
    assert committed_status(run) == Run.Status.QUEUED
