"""What the dispatcher (jobs/schedules/dispatcher.py) costs the database for
many schedules: planning their ticks and publishing the runs it released, with
the same queries for 5 as for 50; and the messages it leaves in Redis. Real
objects and a real Redis (on queues no worker consumes)."""

import json
from datetime import timedelta

import pytest
from celery.signals import after_task_publish
from celery.utils.saferepr import saferepr
from django.conf import settings
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from jobs.core.errors import ServiceError
from jobs.models import JobType, Run, Schedule, latest_revision
from jobs.runs.trigger import run_build
from jobs.schedules import dispatcher
from jobsite.celery import app
from tests.factories import JobTypeFactory, RunFactory

pytestmark = pytest.mark.postgres  # run on PostgreSQL too (see pyproject.toml)


@pytest.fixture
def broker(db, redis_server, settings):
    settings.CELERY_BROKER_URL = redis_server


@pytest.fixture
def dispatches_sent():
    """The `jobsite.dispatch` messages this process publishes during the test (seen
    at their publish: the session's worker may consume the dispatcher's queue);
    those still in Redis at the end are dropped, so that no worker runs them later."""
    sent = []

    def note(sender=None, routing_key=None, **kwargs):
        if sender == "jobsite.dispatch":
            sent.append(routing_key)

    after_task_publish.connect(note, weak=False)
    yield sent
    after_task_publish.disconnect(note)
    with app.connection_for_write() as conn:
        conn.default_channel.client.delete(settings.JOBS_DISPATCH_QUEUE)


def messages(queue: str) -> list[dict]:
    """The messages waiting in a queue: kombu keeps a queue as a Redis list, one
    per priority step (the queue's name, then a separator and the step)."""
    with app.connection_for_write() as conn:
        client = conn.default_channel.client
        lists = [name for name in client.keys(f"{queue}*") if name.split(b"\x06")[0] == queue.encode()]
        return [json.loads(raw) for name in lists for raw in client.lrange(name, 0, -1)]


def due_runs(job_types, count: int) -> list:
    now = timezone.now()
    runs = [
        Run(
            job_type=job_types[n % len(job_types)],
            params={"n": n},
            trigger=Run.Trigger.SCHEDULE,
            status=Run.Status.SCHEDULED,
            scheduled_for=now - timedelta(seconds=1),
            created_at=now,
            job_type_revision_id=latest_revision(job_types[n % len(job_types)].pk),
        )
        for n in range(count)
    ]
    Run.objects.bulk_create(runs)
    return runs


def release_queries(queue: str, count: int) -> list[str]:
    job_types = [JobTypeFactory(queue=queue), JobTypeFactory(queue=queue, priority=5)]
    due_runs(job_types, count)
    with CaptureQueriesContext(connection) as captured:
        released, published = dispatcher._release_and_publish(timezone.now())
    assert (released, published) == (count, count)
    return [query["sql"] for query in captured.captured_queries]


def test_it_releases_and_publishes_5_or_50_due_runs_with_the_same_queries(broker):
    five = release_queries("dispatch-publish-5", 5)
    fifty = release_queries("dispatch-publish-50", 50)
    assert len(five) == len(fifty), fifty
    # The claim reads the few columns publishing needs: the runs are not loaded again
    # after their release, nor the runs' results, errors or tracebacks read.
    loads = [sql for sql in fifty if sql.startswith("SELECT") and 'FROM "jobs_run" WHERE "jobs_run"."id" IN' in sql]
    assert loads == [], fifty
    claims = [sql for sql in fifty if sql.startswith("SELECT") and '"jobs_run"."scheduled_for" <=' in sql]
    assert claims and all('"jobs_run"."params"' in sql and '"traceback"' not in sql for sql in claims), claims
    assert len(messages("dispatch-publish-50")) == 50
    # One UPDATE releases them, written `queued`: none marks them after their publish.
    updates = [sql for sql in fifty if 'UPDATE "jobs_run"' in sql]  # a non-durable mark starts "SET LOCAL …"
    assert len(updates) == 1 and "'queued'" in updates[0].split("WHERE")[0], updates


def test_each_released_run_is_published_with_its_own_params_and_job_type(broker):
    queue = "dispatch-publish-messages"
    urgent, plain = JobTypeFactory(queue=queue, priority=7), JobTypeFactory(queue=queue, timeout_seconds=30)
    runs = due_runs([urgent, plain], 4)
    dispatcher._release_and_publish(timezone.now())
    sent = {message["headers"]["id"]: message for message in messages(queue)}
    assert set(sent) == {str(run.pk) for run in runs}
    for run in runs:
        message = sent[str(run.pk)]
        assert message["headers"]["task"] == "jobs.builtin.echo"
        # Flower shows the arguments as the message's reprs say.
        assert (message["headers"]["argsrepr"], message["headers"]["kwargsrepr"]) == ("()", repr(run.params))
        assert message["properties"]["priority"] == (run.job_type.priority or 0)  # None: the broker's default
        assert message["headers"]["timelimit"] == [run.job_type.hard_time_limit, run.job_type.soft_time_limit]
    assert set(Run.objects.filter(pk__in=[run.pk for run in runs]).values_list("status", flat=True)) == {"queued"}


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"customer": 42, "day": "2026-12-03", "dry_run": False, "ratio": 0.5, "note": None},
        {"nested": {"deeper": {"deepest": {"gone": 1}}}},  # beyond the safe repr's three levels
        {"long": "x" * 3000},  # beyond its length
    ],
)
def test_a_runs_params_are_shown_in_flower_as_celerys_safe_repr_shows_them(broker, params):
    queue = "dispatch-publish-reprs"
    job_type = JobTypeFactory(queue=queue)
    (run,) = due_runs([job_type], 1)
    Run.objects.filter(pk=run.pk).update(params=params)
    dispatcher._release_and_publish(timezone.now())
    (message,) = [m for m in messages(queue) if m["headers"]["id"] == str(run.pk)]
    stored = Run.objects.get(pk=run.pk).params  # as the database keeps it (PostgreSQL orders the keys)
    expected = saferepr(stored, app.amqp.kwargsrepr_maxsize, maxlevels=app.conf.task_repr_maxlevels)
    assert message["headers"]["kwargsrepr"] == expected
    assert len(message["headers"]["kwargsrepr"]) <= app.amqp.kwargsrepr_maxsize + 10


def plan_queries(queue: str, count: int) -> list[str]:
    job_types = [JobTypeFactory(queue=queue), JobTypeFactory(queue=queue)]
    tick = timezone.now() + timedelta(seconds=30)
    Schedule.objects.bulk_create(
        Schedule(name=f"{queue}-{n}", job_type=job_types[n % 2], cron="* * * * *", params={"n": n}, next_run_at=tick)
        for n in range(count)
    )
    with CaptureQueriesContext(connection) as captured:
        assert dispatcher._plan_batch(timezone.now()) == count
    planned = Run.objects.filter(schedule__name__startswith=f"{queue}-")
    assert planned.count() == count
    for job_type in job_types:
        # Each tick's run records the definition it will run: its job type's latest revision.
        revisions = set(planned.filter(job_type=job_type).values_list("job_type_revision", flat=True))
        assert revisions == {job_type.history.latest().history_id}
    return [query["sql"] for query in captured.captured_queries]


def test_it_plans_the_ticks_of_5_or_50_schedules_with_the_same_queries(db):
    five = plan_queries("plan-5", 5)
    fifty = plan_queries("plan-50", 50)
    inserts = [sql for sql in fifty if sql.startswith("INSERT") and 'INTO "jobs_run" ' in sql]  # OR IGNORE on SQLite
    # One INSERT for the runs, on SQLite too: a row's parameters are its tick's few
    # values, not its forty columns (Django's bulk_create split 50 rows in three there).
    assert len(inserts) == 1, fifty
    assert len(five) == len(fifty), fifty
    # The latest revision is read once per job type, not built into each run's row.
    assert not any("jobs_historicaljobtype" in sql for sql in inserts)


def bulk_created(schedules: list[Schedule], now) -> None:
    """The runs planned for these schedules' ticks as the dispatcher wrote them
    before its one INSERT: a Run each, built from the checked pair's run_build, and
    bulk_create. What the dispatcher plans must stay that, field by field."""
    runs = []
    for schedule in schedules:
        try:
            template = run_build(job_type=schedule.job_type, params=schedule.params, trigger=Run.Trigger.SCHEDULE)
        except ServiceError:
            continue
        tick = schedule.next_run_at
        runs.append(
            Run(
                job_type=template.job_type,
                params=template.params,
                trigger=Run.Trigger.SCHEDULE,
                status=Run.Status.SCHEDULED,
                scheduled_for=tick,
                schedule_id=schedule.pk,
                schedule_tick=tick,
                created_at=now,
                deadline_at=template.job_type.deadline_for(tick),
                job_type_revision_id=latest_revision(template.job_type_id),
            )
        )
    Run.objects.bulk_create(runs, ignore_conflicts=True)


def top_level_runs(schedules: list[Schedule]) -> dict[int, dict]:
    runs = Run.objects.filter(schedule__in=schedules, parent=None).order_by("schedule_id")
    return {run["schedule_id"]: run for run in runs.values()}


def test_a_batch_plans_each_tick_field_by_field_as_a_run_built_for_it_would_be(db):
    now = timezone.now()
    schema = {"type": "object", "properties": {"n": {"type": "integer"}, "day": {"type": "string"}}}
    typed = JobTypeFactory(name="typed", params_schema=schema, default_params={"day": "monday"}, deadline_seconds=90)
    plain = JobTypeFactory(name="plain", queue="plain", priority=3)
    off = JobTypeFactory(name="off", enabled=False)
    flow = JobTypeFactory(name="flow", kind=JobType.Kind.WORKFLOW)
    flow.steps.create(name="one", job_type=plain)
    flow.steps.create(name="two", job_type=plain, depends_on=["one"])
    tick = now + timedelta(seconds=20)
    plans = [
        ("typed-a", typed, {"n": 1}),
        ("typed-b", typed, {"n": 1}),  # the same pair: checked once
        ("typed-c", typed, {"n": 2, "day": "friday"}),
        ("bad-params", typed, {"n": "two"}),
        ("plain", plain, {}),
        ("disabled", off, {}),
        ("flow", flow, {"x": 1}),
        ("taken", plain, {"y": 1}),
    ]
    schedules = Schedule.objects.bulk_create(
        Schedule(name=name, job_type=job_type, cron="* * * * *", params=params, next_run_at=tick)
        for name, job_type, params in plans
    )
    by_name = {schedule.name: schedule for schedule in schedules}
    # A tick that has its run already (cancelled, or planned before an edit raced its release).
    cancelled = Run.objects.create(
        job_type=plain,
        trigger=Run.Trigger.SCHEDULE,
        status=Run.Status.CANCELLED,
        schedule=by_name["taken"],
        schedule_tick=tick,
    )

    assert dispatcher._plan_batch(now) == 6  # all but the two skipped
    planned = top_level_runs(schedules)
    assert planned[by_name["taken"].pk]["id"] == cancelled.pk
    flow_run = Run.objects.get(schedule=by_name["flow"])
    assert sorted(flow_run.children.values_list("step_name", "status")) == [("one", "waiting"), ("two", "waiting")]
    skips = {
        s.name: (s.planned, s.skipped_ticks, s.last_skipped_at, s.last_skip_reason) for s in Schedule.objects.all()
    }
    assert skips["disabled"][:3] == (True, 1, tick) and "is disabled" in skips["disabled"][3]
    assert skips["bad-params"][:3] == (True, 1, tick) and "two" in skips["bad-params"][3]
    assert all(skips[name][:2] == (True, 0) for name in ("typed-a", "typed-b", "typed-c", "plain", "flow", "taken"))

    Run.objects.exclude(pk=cancelled.pk).delete()
    bulk_created(schedules, now)
    expected = top_level_runs(schedules)
    assert planned.keys() == expected.keys()
    for schedule_id, run in planned.items():
        want = expected[schedule_id]
        if run["id"] != cancelled.pk:
            # Only the id is new for each, and the sweeper's time, set at the INSERT, the same for all.
            assert want.pop("id") != run.pop("id")
            assert abs(want.pop("republish_after") - run.pop("republish_after")) < timedelta(seconds=5)
        assert run == want


def test_a_batch_of_more_ticks_than_one_statement_holds_plans_each_with_its_own_params(db):
    # SQLite takes 999 parameters a statement: the batch's INSERT is split, each
    # part with the (job type, params) pairs of its own rows. PostgreSQL takes it whole.
    job_types = [JobTypeFactory(name=f"split-{k}") for k in range(3)]
    tick = timezone.now() + timedelta(seconds=20)
    schedules = Schedule.objects.bulk_create(
        Schedule(name=f"split-{n}", job_type=job_types[n % 3], cron="* * * * *", params={"n": n}, next_run_at=tick)
        for n in range(250)
    )
    assert dispatcher._plan_batch(timezone.now()) == 250
    planned = Run.objects.filter(schedule__in=schedules).values_list("schedule__name", "job_type_id", "params")
    assert sorted(planned) == sorted((f"split-{n}", job_types[n % 3].pk, {"n": n}) for n in range(250))


def test_ticks_planned_past_their_time_are_released_batch_by_batch(broker, monkeypatch, dispatches_sent):
    # A tick so big that planning it ran past its time (or schedules that missed
    # ticks while nothing dispatched): each batch is released and published as
    # soon as it is planned, not once every other schedule is planned.
    monkeypatch.setattr(dispatcher, "BATCH_SIZE", 2)
    job_type = JobTypeFactory(queue="plan-late")
    past = timezone.now() - timedelta(seconds=5)
    Schedule.objects.bulk_create(
        Schedule(name=f"late-{n}", job_type=job_type, cron="* * * * *", next_run_at=past) for n in range(6)
    )
    with CaptureQueriesContext(connection) as captured:
        outcome = dispatcher.dispatch_due(timezone.now())
    assert (outcome["planned"], outcome["released"], outcome["published"]) == (6, 6, 6)
    writes = [
        "plan" if sql.startswith("INSERT") and 'INTO "jobs_run" ' in sql else "release"
        for sql in (query["sql"] for query in captured.captured_queries)
        if (sql.startswith("INSERT") and 'INTO "jobs_run" ' in sql)
        or (sql.startswith('UPDATE "jobs_run" SET "status"') and "'queued'" in sql.split("WHERE")[0])
    ]
    assert writes == ["plan", "release"] * 3, writes
    assert len(messages("plan-late")) == 6


def test_a_full_release_batch_sends_one_more_dispatch_so_another_process_joins_in(broker, monkeypatch, dispatches_sent):
    # A big tick: the first full batch released calls one more dispatch at once, for
    # another dispatcher process to release and publish the batches this one has not
    # reached yet, rather than from beat's next dispatch, up to a second later.
    monkeypatch.setattr(dispatcher, "BATCH_SIZE", 2)
    job_type = JobTypeFactory(queue="big-tick")
    due = timezone.now() - timedelta(seconds=1)
    RunFactory.create_batch(5, job_type=job_type, status=Run.Status.SCHEDULED, scheduled_for=due)
    assert dispatcher._release_and_publish(timezone.now()) == (5, 5)
    assert dispatches_sent == [settings.JOBS_DISPATCH_QUEUE]  # one, however many batches
    assert len(messages("big-tick")) == 5


def test_a_tick_that_fits_one_batch_sends_no_more_dispatches(broker, monkeypatch, dispatches_sent):
    monkeypatch.setattr(dispatcher, "BATCH_SIZE", 2)
    job_type = JobTypeFactory(queue="small-tick")
    RunFactory(job_type=job_type, status=Run.Status.SCHEDULED, scheduled_for=timezone.now() - timedelta(seconds=1))
    assert dispatcher._release_and_publish(timezone.now()) == (1, 1)
    assert dispatches_sent == []
