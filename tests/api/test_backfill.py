from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from jobs.models import Backfill, Run, Schedule
from jobs.schedules.dispatcher import dispatch_due
from tests.factories import JobTypeFactory, RunFactory

pytestmark = pytest.mark.postgres  # run on PostgreSQL too (see pyproject.toml)

URL = "/api/v1/schedules/"

# A winter week: Europe/Berlin is UTC+1, so 05:00 there is 04:00 UTC.
START, END = "2026-01-10T00:00:00Z", "2026-01-13T00:00:00Z"


@pytest.fixture
def daily(db):
    job_type = JobTypeFactory(name="report", default_params={"day": "x"})
    return Schedule.objects.create(name="daily", job_type=job_type, cron="0 5 * * *", timezone="Europe/Berlin")


def backfill(api, schedule, **body):
    return api.post(f"{URL}{schedule.pk}/backfill/", {"start": START, "end": END, **body}, format="json")


def test_it_creates_one_waiting_run_per_tick_in_the_schedules_time_zone(api, daily):
    response = backfill(api, daily)
    assert response.status_code == 201, response.data
    assert (response.data["total"], response.data["skipped"]) == (3, 0)
    assert response.data["progress"]["waiting"] == 3
    runs = Run.objects.filter(schedule=daily).order_by("schedule_tick")
    assert [run.schedule_tick for run in runs] == [datetime(2026, 1, day, 4, tzinfo=UTC) for day in (10, 11, 12)]
    assert {(run.trigger, run.status, run.backfill_id) for run in runs} == {
        ("backfill", "waiting", response.data["id"])
    }
    assert runs[0].params == {"day": "x"}


def test_a_second_identical_backfill_creates_nothing(api, daily):
    assert backfill(api, daily).status_code == 201
    again = backfill(api, daily)
    assert again.status_code == 201, again.data
    assert (again.data["total"], again.data["skipped"]) == (0, 3)
    assert Run.objects.filter(schedule=daily).count() == 3


def test_a_tick_the_schedule_fired_already_is_skipped(api, daily):
    fired = RunFactory(job_type=daily.job_type, schedule=daily, schedule_tick=datetime(2026, 1, 11, 4, tzinfo=UTC))
    response = backfill(api, daily)
    assert (response.data["total"], response.data["skipped"]) == (2, 1)
    assert Run.objects.filter(schedule=daily, schedule_tick=fired.schedule_tick).get() == fired


def test_an_interval_schedule_backfills_ticks_from_before_it_was_created(api, daily):
    every_hour = Schedule.objects.create(name="hourly", job_type=daily.job_type, interval_seconds=3600)
    end = every_hour.created_at - timedelta(minutes=1)
    response = api.post(
        f"{URL}{every_hour.pk}/backfill/",
        {"start": (end - timedelta(hours=3)).isoformat(), "end": end.isoformat()},
        format="json",
    )
    assert response.status_code == 201, response.data
    ticks = sorted(Run.objects.filter(schedule=every_hour).values_list("schedule_tick", flat=True))
    assert ticks == [every_hour.created_at - timedelta(hours=n) for n in (3, 2, 1)]


def test_more_ticks_than_the_setting_allows_is_refused_naming_the_count(api, daily, settings):
    settings.JOBS_BACKFILL_MAX_TICKS = 2
    response = backfill(api, daily)
    assert response.status_code == 400
    message = "holds 3 ticks of schedule 'daily', more than the 2 JOBS_BACKFILL_MAX_TICKS allows"
    assert message in response.data["end"][0]
    assert not Run.objects.exists() and not Backfill.objects.exists()


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({"end": START}, "end", "Must be after start."),
        ({"end": (timezone.now() + timedelta(days=1)).isoformat()}, "end", "is in the future"),
        ({"start": "yesterday"}, "start", "Datetime has wrong format"),
        ({"end": "2026-01-10T01:00:00Z"}, "start", "No tick of schedule 'daily'"),
        ({"backfill_concurrency": 0}, "backfill_concurrency", "greater than or equal to 1"),
    ],
)
def test_a_bad_range_is_refused_with_a_field_message(api, daily, body, field, message):
    response = backfill(api, daily, **body)
    assert response.status_code == 400, response.data
    assert message in str(response.data[field][0])
    assert not Run.objects.exists() and not Backfill.objects.exists()


def test_an_unknown_schedule_is_404(api, db):
    response = api.post(f"{URL}999/backfill/", {"start": START, "end": END}, format="json")
    assert response.status_code == 404


def test_a_disabled_job_type_is_refused(api, daily):
    daily.job_type.enabled = False
    daily.job_type.save()
    response = backfill(api, daily)
    assert response.status_code == 409
    assert "disabled" in response.data["detail"]


@pytest.mark.parametrize(
    ("requested", "on_schedule", "max_concurrency", "expected"),
    [(None, None, None, 1), (None, 3, None, 3), (4, 3, None, 4), (4, None, 2, 2), (None, None, 2, 2)],
)
def test_its_concurrency_comes_from_the_request_the_schedule_or_the_job_type(
    api, daily, requested, on_schedule, max_concurrency, expected
):
    daily.backfill_concurrency = on_schedule
    daily.save()
    daily.job_type.max_concurrency = max_concurrency
    daily.job_type.save()
    body = {"backfill_concurrency": requested} if requested else {}
    assert backfill(api, daily, **body).data["concurrency"] == expected


def test_cancelling_cancels_the_runs_not_started_and_stops_the_release(api, daily):
    created = backfill(api, daily).data
    started = Run.objects.filter(schedule=daily).order_by("schedule_tick").first()
    Run.objects.filter(pk=started.pk).update(status=Run.Status.RUNNING)
    response = api.post(f"{URL}{daily.pk}/backfills/{created['id']}/cancel/")
    assert response.status_code == 200, response.data
    assert response.data["cancelled_at"] is not None
    progress = response.data["progress"]
    assert (progress["done"], progress["cancelled"], progress["active"], progress["waiting"]) == (2, 2, 1, 0)
    assert Run.objects.get(pk=started.pk).status == Run.Status.RUNNING
    again = api.post(f"{URL}{daily.pk}/backfills/{created['id']}/cancel/")
    assert again.status_code == 409


def test_it_lists_the_schedules_backfills_with_their_progress(api, daily):
    first = backfill(api, daily).data
    one = Run.objects.filter(backfill_id=first["id"]).first()
    Run.objects.filter(pk=one.pk).update(status=Run.Status.SUCCEEDED)
    listed = api.get(f"{URL}{daily.pk}/backfills/").data
    assert [(b["id"], b["total"], b["progress"]["done"]) for b in listed] == [(first["id"], 3, 1)]


def test_cancelling_a_backfill_of_another_schedule_is_404(api, daily):
    created = backfill(api, daily).data
    other = Schedule.objects.create(name="other", job_type=daily.job_type, interval_seconds=60)
    assert api.post(f"{URL}{other.pk}/backfills/{created['id']}/cancel/").status_code == 404


def test_a_workflows_backfill_runs_wait_with_their_steps_and_are_cancelled_with_them(api, daily):
    flow = JobTypeFactory(name="flow", kind="workflow", task="")
    flow.steps.create(name="one", job_type=daily.job_type)
    nightly = Schedule.objects.create(name="nightly", job_type=flow, cron="0 3 * * *")
    created = backfill(api, nightly).data
    assert created["total"] == 3, created
    parents = list(Run.objects.filter(backfill_id=created["id"]).values_list("pk", flat=True))
    steps = Run.objects.filter(parent_id__in=parents)
    assert (steps.count(), set(steps.values_list("status", flat=True))) == (3, {"waiting"})
    api.post(f"{URL}{nightly.pk}/backfills/{created['id']}/cancel/")
    everything = Run.objects.filter(pk__in=[*parents, *steps.values_list("pk", flat=True)])
    assert set(everything.values_list("status", flat=True)) == {"cancelled"}


def test_a_range_far_above_the_limit_is_refused_without_counting_every_tick(api, daily, settings):
    settings.JOBS_BACKFILL_MAX_TICKS = 2
    every_minute = Schedule.objects.create(name="every-minute", job_type=daily.job_type, cron="* * * * *")
    response = api.post(f"{URL}{every_minute.pk}/backfill/", {"start": "2016-01-01T00:00:00Z", "end": END},
                        format="json")  # fmt: skip
    assert response.status_code == 400
    assert "holds at least 4 ticks of schedule 'every-minute', more than the 2" in response.data["end"][0]


def test_its_runs_record_the_revision_they_run_and_are_late_only_counting_from_their_release(api, daily, redis_server):
    daily.job_type.deadline_seconds = 600
    daily.job_type.save()  # a new revision
    created = backfill(api, daily, backfill_concurrency=3)
    assert created.status_code == 201
    runs = Run.objects.filter(schedule=daily)
    assert {api.get(f"/api/v1/runs/{run.pk}/").data["backfill"] for run in runs} == {created.data["id"]}
    assert {run.job_type_revision_id for run in runs} == {daily.job_type.history.latest().history_id}

    outcome = dispatch_due()
    assert (outcome["released"], outcome["late_runs"]) == (3, 0)  # ticks days ago, released now: not late
    for run in runs.all():
        assert run.deadline_at == run.released_at + timedelta(seconds=600)
        assert run.late_at is None
