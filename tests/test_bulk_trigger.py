"""What a bulk trigger costs the database, and that it is all or nothing:
runs_create_many (jobs/runs/trigger.py) called as the API and run_job call it,
with real objects and a real Redis. As in tests/test_hot_path_queries.py, a
transaction inside the test's is a SAVEPOINT and its RELEASE."""

import json
import math
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from jobs.core.errors import Conflict, InvalidInput
from jobs.models import JobType, Run
from jobs.runs.trigger import runs_create_many
from tests.factories import JobTypeFactory

pytestmark = pytest.mark.postgres  # run on PostgreSQL too (see pyproject.toml)


@pytest.fixture
def broker(redis_server, settings):
    settings.CELERY_BROKER_URL = redis_server


def rows_per_insert(count: int) -> int:
    """How many runs Django writes per INSERT: all of them on PostgreSQL; on
    SQLite as many as fit in its 999 variables (Django's bound, not ours)."""
    return connection.ops.bulk_batch_size(Run._meta.concrete_fields, [None] * count)


def bulk_queries(job_type: JobType, count: int, capture_on_commit) -> list[str]:
    with CaptureQueriesContext(connection) as captured, capture_on_commit(execute=True):
        runs = runs_create_many(
            job_type=job_type, params_list=[{"n": n} for n in range(count)], trigger=Run.Trigger.API
        )
    assert Run.objects.filter(pk__in=[run.pk for run in runs], status=Run.Status.QUEUED).count() == count
    return [query["sql"] for query in captured.captured_queries]


def test_it_triggers_5_or_50_runs_with_the_same_queries(broker, job_type, django_capture_on_commit_callbacks):
    # SELECT the job type's latest revision (once for all the runs), to compile the
    # INSERTs with; SAVEPOINT, the same SELECT again, INSERT the runs (written `queued`),
    # RELEASE; once committed, the publish: no UPDATE after it.
    five = bulk_queries(job_type, 5, django_capture_on_commit_callbacks)
    fifty = bulk_queries(job_type, 50, django_capture_on_commit_callbacks)
    assert len(five) == 5, five
    inserts = math.ceil(50 / rows_per_insert(50))  # 1 on PostgreSQL, 2 on SQLite
    assert len(fifty) == 4 + inserts, fifty
    assert [sql.split(" (")[0] for sql in fifty].count('INSERT INTO "jobs_run"') == inserts


def test_it_triggers_5_or_50_runs_over_the_api_with_the_same_queries(broker, api, job_type,
                                                                      django_capture_on_commit_callbacks):  # fmt: skip
    def queries(count: int) -> int:
        body = {"params": [{"n": n} for n in range(count)]}
        with CaptureQueriesContext(connection) as captured, django_capture_on_commit_callbacks(execute=True):
            response = api.post(f"/api/v1/job-types/{job_type.name}/runs/bulk/", body, format="json")
        assert response.status_code == 201, response.data
        ids = [run["id"] for run in response.data["runs"]]
        assert Run.objects.filter(pk__in=ids, status=Run.Status.QUEUED).count() == count
        return len(captured.captured_queries) - math.ceil(count / rows_per_insert(count))

    assert queries(5) == queries(50)


def spy_on_params(monkeypatch, then=None) -> list[bool]:
    """Whether a transaction was open each time a run's params were prepared
    for the database (Django prepares every field of every row to INSERT);
    `then`: called after the first time."""
    field, seen = Run._meta.get_field("params"), []

    def spy(value, connection, original=field.get_db_prep_save):
        seen.append(connection.in_atomic_block)
        if then and len(seen) == 1:
            then()
        return original(value, connection)

    monkeypatch.setattr(field, "get_db_prep_save", spy)
    return seen


@pytest.mark.django_db(transaction=True)
def test_the_runs_are_prepared_before_their_transaction_opens(broker, monkeypatch):
    # SQLite's transaction holds the database's one write lock from its BEGIN,
    # and the workers starting and ending runs wait for it: a thousand runs'
    # forty fields are prepared before it opens. On a queue no worker consumes, so
    # that a worker another test started does not start them before they are counted.
    job_type = JobTypeFactory(queue="bulk-not-consumed")
    in_transaction = spy_on_params(monkeypatch)
    runs = runs_create_many(job_type=job_type, params_list=[{"n": n} for n in range(50)], trigger=Run.Trigger.API)
    assert len(in_transaction) == 50 and not any(in_transaction)
    assert Run.objects.filter(pk__in=[run.pk for run in runs], status=Run.Status.QUEUED).count() == 50
    assert sorted(Run.objects.filter(pk__in=[run.pk for run in runs]).values_list("params__n", flat=True)) == list(
        range(50)
    )


@pytest.mark.django_db(transaction=True)
def test_runs_record_the_job_types_revision_as_of_their_insert_though_edited_while_prepared(broker, monkeypatch):
    job_type = JobTypeFactory()

    def edit():  # another process's edit, between the runs' preparing and their INSERT
        job_type.description = "edited while the runs were prepared"
        job_type.save()

    spy_on_params(monkeypatch, then=edit)
    runs = runs_create_many(job_type=job_type, params_list=[{}] * 3, trigger=Run.Trigger.API)
    latest = job_type.history.model.objects.filter(id=job_type.pk).latest("history_date", "history_id")
    assert latest.description == "edited while the runs were prepared"
    stored = set(Run.objects.filter(pk__in=[run.pk for run in runs]).values_list("job_type_revision_id", flat=True))
    assert stored == {latest.history_id}
    assert {run.job_type_revision_id for run in runs} == stored  # as the API answers


def test_validation_reads_nothing_per_item(job_type, django_assert_num_queries):
    items = [{"n": n} for n in range(50)]
    items[7] = "seven"
    with django_assert_num_queries(0), pytest.raises(InvalidInput) as refused:
        runs_create_many(job_type=job_type, params_list=items, trigger=Run.Trigger.API)
    assert refused.value.errors == {"params": {"7": ["Params must be a JSON object."]}}
    assert refused.value.messages == ["params[7]: Params must be a JSON object."]


def test_a_bad_item_writes_nothing_even_inside_a_callers_transaction(job_type):
    typed = JobTypeFactory(name="typed", params_schema={"type": "object", "properties": {"n": {"type": "integer"}}})
    with pytest.raises(InvalidInput) as refused:
        runs_create_many(
            job_type=typed, params_list=[{"n": 1}, {"n": "x"}, {"n": 3}, {"n": 4.5}], trigger=Run.Trigger.CLI
        )
    assert refused.value.errors == {
        "params": {"1": ["n: 'x' is not of type 'integer'"], "3": ["n: 4.5 is not of type 'integer'"]}
    }
    assert not Run.objects.exists()


def test_a_disabled_job_type_is_a_conflict(db):
    off = JobTypeFactory(name="off", enabled=False)
    with pytest.raises(Conflict):
        runs_create_many(job_type=off, params_list=[{}], trigger=Run.Trigger.API)
    assert not Run.objects.exists()


def test_a_workflow_reads_its_steps_once_to_check_them(db, broker, django_capture_on_commit_callbacks):
    # Each workflow run costs a few queries of its own (its step runs, its first
    # steps published); the check that the workflow has steps is read once.
    echo = JobTypeFactory(name="echo")
    flow = JobType.objects.create(name="flow", kind=JobType.Kind.WORKFLOW)
    flow.steps.create(name="one", job_type=echo)
    flow = JobType.objects.get(pk=flow.pk)
    with CaptureQueriesContext(connection) as captured, django_capture_on_commit_callbacks(execute=True):
        runs = runs_create_many(job_type=flow, params_list=[{}] * 3, trigger=Run.Trigger.API)
    steps_reads = [q["sql"] for q in captured.captured_queries if 'FROM "jobs_workflowstep"' in q["sql"]]
    # One for the check (not an EXISTS per run), then one per run to create its step runs.
    assert len(steps_reads) == 1 + 3, steps_reads
    assert Run.objects.filter(parent__in=runs, status=Run.Status.QUEUED).count() == 3


def test_runs_written_in_bulk_read_back_as_given_each_time(db):
    # The first bulk of a size is compiled by Django, later ones reuse its SQL and
    # prepare their values, an object shared by several runs once: every run
    # reads back as it was given, with its JSON's types (1, 1.0 and true are
    # equal in Python, not in JSON), over several INSERTs on SQLite.
    job_type = JobTypeFactory(notify_on="completion")
    shared = {"shared": [1, 2]}
    items = [shared, {"a": 1}, {"a": True}, {"a": 1.0}, shared, {"a": None, "s": "x'y\"z"}, {}, {"k": [True, 1, "1"]}]
    run_at = timezone.now() + timedelta(days=1)
    for comment in ("first", "second", "third"):
        runs = runs_create_many(
            job_type=job_type,
            params_list=items * 7,
            trigger=Run.Trigger.API,
            run_at=run_at,
            notify_emails=["ops@example.com"],
            comment=comment,
        )
        stored = {
            row["id"]: row
            for row in Run.objects.filter(pk__in=[run.pk for run in runs]).values(
                "id", "params", "comment", "notify_emails", "scheduled_for", "status", "job_type_id"
            )
        }
        assert len(stored) == len(items) * 7
        for run, given in zip(runs, items * 7, strict=True):
            row = stored[run.pk]
            assert json.dumps(row["params"], sort_keys=True) == json.dumps(given, sort_keys=True)
            assert (row["comment"], row["notify_emails"], row["scheduled_for"]) == (
                comment, ["ops@example.com"], run_at
            )  # fmt: skip
            assert (row["status"], row["job_type_id"]) == (Run.Status.SCHEDULED, job_type.pk)
