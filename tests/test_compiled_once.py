"""The hot path's statements are compiled by Django once per process
(jobs/core/statements.py): a trigger's INSERT, a worker's start and (SQLite)
a run's end. After the first, Django's SQL compiler is not called for them, and
each writes what the ORM writes."""

from datetime import timedelta

import pytest
from django.db.models.sql.compiler import SQLInsertCompiler, SQLUpdateCompiler
from django.utils import timezone

from jobs.models import Run, latest_revision
from jobs.runs import trigger
from tests.factories import JobTypeFactory, RunFactory

pytestmark = pytest.mark.postgres  # run on PostgreSQL too (see pyproject.toml)


@pytest.fixture
def compiles(monkeypatch) -> list[str]:
    """The SQL Django's INSERT and UPDATE compilers produce from now on."""
    compiled = []
    for compiler in (SQLInsertCompiler, SQLUpdateCompiler):

        def as_sql(self, *args, original=compiler.as_sql, **kwargs):
            result = original(self, *args, **kwargs)
            compiled.append(self.query.model._meta.db_table)
            return result

        monkeypatch.setattr(compiler, "as_sql", as_sql)
    return compiled


def columns(run: Run, *names: str) -> dict:
    """The run's row as stored, column by column (but its id), or only the columns named."""
    names = names or [field.attname for field in Run._meta.concrete_fields if not field.primary_key]
    return Run.objects.filter(pk=run.pk).values(*names).get()


def trigger_run(job_type, **options) -> Run:
    run, created = trigger.run_create(job_type=job_type, params={"n": 1}, trigger=Run.Trigger.API, **options)
    assert created
    return run


def test_a_second_trigger_is_not_compiled_again(db, compiles):
    job_type = JobTypeFactory()
    trigger_run(job_type)
    compiles.clear()
    trigger_run(job_type, comment="another", idempotency_key="k")
    assert "jobs_run" not in compiles


def test_a_trigger_writes_what_the_orm_writes(db):
    job_type = JobTypeFactory()
    trigger_run(job_type)  # compiled by now
    build = {"job_type": job_type, "params": {"n": 2, "s": "é"}, "trigger": Run.Trigger.API, "comment": "c"}
    ours, orm = trigger.run_build(**build), trigger.run_build(**build)
    orm.created_at = orm.released_at = ours.created_at
    orm.deadline_at, orm.republish_after = ours.deadline_at, ours.republish_after
    ours.save_new()
    orm.job_type_revision_id = latest_revision(job_type.pk)
    orm.save(force_insert=True)
    assert columns(ours) == columns(orm)
    assert columns(ours)["job_type_revision_id"] is not None


def test_each_run_records_the_job_types_latest_revision_as_of_its_insert(db):
    job_type = JobTypeFactory()
    history = job_type.history.model.objects.filter(id=job_type.pk)
    first, second = trigger_run(job_type), trigger_run(job_type)
    job_type.description = "edited between two triggers"
    job_type.save()  # another process's edit, as far as the compiled INSERT can tell
    third = trigger_run(job_type)
    revisions = [Run.objects.get(pk=run.pk).job_type_revision_id for run in (first, second, third)]
    assert revisions[0] == revisions[1] != revisions[2]
    assert [run.job_type_revision_id for run in (first, second, third)] == revisions  # as the API answers
    assert revisions[2] == history.latest("history_date", "history_id").history_id
    assert Run.objects.get(pk=third.pk).job_type_revision.description == "edited between two triggers"


@pytest.mark.parametrize("unlimited_only", [False, True])
@pytest.mark.parametrize("durable", [True, False])
def test_a_second_start_is_not_compiled_again(db, compiles, unlimited_only, durable):
    job_type = JobTypeFactory()
    first, second = (RunFactory(job_type=job_type, status=Run.Status.QUEUED) for _ in range(2))
    assert first.mark_started(worker="w1@host", unlimited_only=unlimited_only, durable=durable)
    compiles.clear()
    assert second.mark_started(worker="w2@host", unlimited_only=unlimited_only, durable=durable)
    assert compiles == []
    second.refresh_from_db()
    assert (second.status, second.worker, second.attempts) == (Run.Status.RUNNING, "w2@host", 1)


def test_a_start_keeps_queued_at_no_later_than_its_start_and_counts_its_attempt(db):
    job_type = JobTypeFactory()
    RunFactory(job_type=job_type, status=Run.Status.QUEUED).mark_started(worker="warm@host")  # compiled by now
    now = timezone.now()
    never = RunFactory(job_type=job_type, status=Run.Status.PENDING, queued_at=None, attempts=0)
    earlier = RunFactory(job_type=job_type, status=Run.Status.QUEUED, queued_at=now - timedelta(seconds=5))
    later = RunFactory(job_type=job_type, status=Run.Status.RETRYING, queued_at=now + timedelta(hours=1), attempts=2)
    for run in (never, earlier, later):
        assert run.mark_started(worker="w@host")
    for run in (never, earlier, later):
        run.refresh_from_db()
        assert run.status == Run.Status.RUNNING and run.worker == "w@host"
    assert never.queued_at == never.started_at
    assert earlier.queued_at == now - timedelta(seconds=5) < earlier.started_at
    assert later.queued_at == later.started_at
    assert (never.attempts, earlier.attempts, later.attempts) == (1, 1, 3)


def test_a_start_writes_what_the_orm_writes(db):
    job_type = JobTypeFactory()
    RunFactory(job_type=job_type, status=Run.Status.QUEUED).mark_started(worker="warm@host")  # compiled by now
    ours, orm = (RunFactory(job_type=job_type, status=Run.Status.QUEUED, attempts=2) for _ in range(2))
    assert ours.mark_started(worker="w@host")
    started_at = Run.objects.get(pk=ours.pk).started_at
    Run.objects.filter(pk=orm.pk, status__in=Run.STARTABLE).update(**Run._attempt_start("w@host", started_at))
    written = ("status", "started_at", "queued_at", "attempts", "worker")
    assert columns(ours, *written) == columns(orm, *written)
    assert columns(ours, "attempts", "queued_at") == {"attempts": 3, "queued_at": started_at}


def test_a_second_end_is_not_compiled_again_and_writes_what_the_orm_writes(db, compiles):
    job_type = JobTypeFactory()
    first, ours, orm = (RunFactory(job_type=job_type, status=Run.Status.RUNNING, attempts=1) for _ in range(3))
    first.mark_failed(error="boom", traceback="tb", notify=True)
    compiles.clear()
    assert ours.mark_failed(error="bang", traceback="tb2", notify=True)
    assert "jobs_run" not in compiles
    finished_at = Run.objects.get(pk=ours.pk).finished_at
    Run.objects.filter(pk=orm.pk, status__in=Run.NOT_TERMINAL).update(
        status=Run.Status.FAILED, error="bang", traceback="tb2", finished_at=finished_at, notify_status="pending"
    )
    written = ("status", "error", "traceback", "finished_at", "notify_status", "result")
    assert columns(ours, *written) == columns(orm, *written)
    assert not ours.mark_failed(error="again")  # ended already: changes nothing
    assert Run.objects.get(pk=ours.pk).error == "bang"
