"""The hot path's statements are compiled by Django once per process
(jobs/core/statements.py): a trigger's INSERT, a worker's start, (SQLite)
a run's end, and a step hop's reads and UPDATE. After the first, Django's SQL compiler is not called for them, and
each writes what the ORM writes."""

from datetime import timedelta

import pytest
from django.db.models.sql.compiler import SQLCompiler, SQLInsertCompiler, SQLUpdateCompiler
from django.utils import timezone

from jobs.core import statements
from jobs.models import JobType, Run, latest_revision
from jobs.runs import tracking, trigger
from jobs.workflows import steps
from tests.factories import JobTypeFactory, RunFactory

pytestmark = pytest.mark.postgres  # run on PostgreSQL too (see pyproject.toml)


@pytest.fixture
def compiles(monkeypatch) -> list[str]:
    """The tables of the SQL Django's INSERT and UPDATE compilers produce from now on."""
    return capture_compiles(monkeypatch, SQLInsertCompiler, SQLUpdateCompiler)


@pytest.fixture
def every_compile(monkeypatch) -> list[str]:
    """The tables of the SQL Django's SELECT, INSERT and UPDATE compilers produce from now on."""
    return capture_compiles(monkeypatch, SQLCompiler, SQLInsertCompiler, SQLUpdateCompiler)


def capture_compiles(monkeypatch, *compilers) -> list[str]:
    compiled = []
    for compiler in compilers:

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


def chain(job_type) -> JobType:
    workflow = JobTypeFactory(name="chain", kind=JobType.Kind.WORKFLOW)
    workflow.steps.create(name="a", job_type=job_type)
    workflow.steps.create(name="b", job_type=job_type, params={"after": "{{ steps.a.result.n }}"}, depends_on=["a"])
    return workflow


def workflow_run(workflow: JobType) -> Run:
    parent, _ = trigger.run_create(job_type=workflow, params={"x": 1}, trigger=Run.Trigger.API)
    trigger.workflow_advance(parent_id=parent.pk)  # what its publish does once committed: its first step ready
    return parent


def started(parent: Run, name: str) -> str:
    step = parent.children.get(step_name=name)
    assert tracking.run_started(run_id=str(step.pk), worker="w@host", parent_id=str(parent.pk)).go
    return str(step.pk)


def test_a_second_step_hop_is_not_compiled_again(db, every_compile):
    workflow = chain(JobTypeFactory())
    first = workflow_run(workflow)
    tracking.run_succeeded(run_id=started(first, "a"), result={"n": 1}, notify_on="never", parent_id=str(first.pk))
    second = workflow_run(workflow)
    step_id = started(second, "a")
    every_compile.clear()
    # The step's end, the workflow run locked, its steps read, the next one made ready.
    tracking.run_succeeded(run_id=step_id, result={"n": 2}, notify_on="never", parent_id=str(second.pk))
    assert "jobs_run" not in every_compile
    following = second.children.get(step_name="b")
    assert (following.status, following.params) == (Run.Status.QUEUED, {"after": 2})
    assert following.queued_at == following.released_at is not None


def loaded(instance) -> dict:
    """What a model instance holds: its fields' values as loaded, and its select_related job type's."""
    values = {key: value for key, value in instance.__dict__.items() if key != "_state"}
    return {**values, "job_type": loaded(instance.job_type) if "job_type" in instance._state.fields_cache else None}


def test_a_step_hops_reads_make_what_the_orm_makes(db):
    workflow = chain(JobTypeFactory(default_params={"d": [1, "é"]}))
    first = workflow_run(workflow)
    tracking.run_succeeded(run_id=started(first, "a"), result={"n": 1}, notify_on="never", parent_id=str(first.pk))
    second = workflow_run(workflow)  # another workflow run: each read filled with its own id
    reads = {"workflow run": steps._locked_workflow_run, "steps": steps._steps_of}
    inputs = {"pk": (str(second.pk), Run._meta.pk)}
    ours = statements.read(
        [statements.select(("advance", name), build, inputs, using="default") for name, build in reads.items()],
        using="default",
    )
    orm = [list(build(second.pk)) for build in reads.values()]
    by_name = lambda runs: sorted(runs, key=lambda run: run.step_name)  # noqa: E731
    assert [[loaded(run) for run in by_name(runs)] for runs in ours] == [
        [loaded(run) for run in by_name(runs)] for runs in orm
    ]
    assert [len(runs) for runs in ours] == [1, 2]
    assert ours[0][0].pk == second.pk and ours[0][0].job_type.queue == workflow.queue
