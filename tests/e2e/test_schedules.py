"""Schedules and run-later end to end: API → database ← celery beat → worker."""

import time
from datetime import timedelta

from django.utils import timezone
from django.utils.dateparse import parse_datetime

from jobs.models import Run, Schedule
from tests.conftest import wait_for_run, wait_until
from tests.factories import JobTypeFactory


def runs_of(schedule_id: int) -> list[Run]:
    return list(Run.objects.filter(schedule_id=schedule_id).order_by("created_at"))


def test_an_interval_schedule_fires_keeps_firing_and_follows_edits_live(worker, start_beat, api):
    JobTypeFactory(name="echo")
    start_beat()
    created = timezone.now()
    response = api.post("/api/v1/schedules/", {"name": "often", "job_type": "echo", "params": {"v": 1},
                                               "interval_seconds": 3}, format="json")  # fmt: skip
    assert response.status_code == 201, response.data
    schedule_id = response.data["id"]

    first = wait_until(lambda: runs_of(schedule_id), 3 + 10, "the schedule did not fire within its interval + 10 s")[0]
    assert first.created_at - created < timedelta(seconds=13)
    assert wait_for_run(first).result == {"v": 1}
    wait_until(lambda: len(runs_of(schedule_id)) >= 3, 15, "the schedule did not keep firing")

    # Editing its params changes the next run's params.
    edited_at = timezone.now()
    assert api.patch(f"/api/v1/schedules/{schedule_id}/", {"params": {"v": 2}}, format="json").status_code == 200
    later = wait_until(lambda: [r for r in runs_of(schedule_id) if r.created_at > edited_at], 10, "no run after edit")
    assert later[0].params == {"v": 2}

    # Disabling stops it; enabling starts it again.
    assert api.patch(f"/api/v1/schedules/{schedule_id}/", {"enabled": False}, format="json").status_code == 200
    time.sleep(1.5)  # a dispatch already under way may still finish
    count = len(runs_of(schedule_id))
    time.sleep(7)
    assert len(runs_of(schedule_id)) == count
    api.patch(f"/api/v1/schedules/{schedule_id}/", {"enabled": True}, format="json")
    wait_until(lambda: len(runs_of(schedule_id)) > count, 3 + 10, "re-enabled schedule did not fire")

    # Deleting stops it for good; its runs stay.
    assert api.delete(f"/api/v1/schedules/{schedule_id}/").status_code == 204
    time.sleep(1.5)
    total = Run.objects.filter(trigger="schedule").count()
    time.sleep(7)
    assert Run.objects.filter(trigger="schedule").count() == total


def test_a_new_schedule_is_picked_up_without_restarting_beat(worker, start_beat, api):
    JobTypeFactory(name="echo")
    start_beat()
    time.sleep(3)  # beat has been running a while before the schedule exists
    response = api.post("/api/v1/schedules/", {"name": "late", "job_type": "echo", "interval_seconds": 1},
                        format="json")  # fmt: skip
    wait_until(lambda: runs_of(response.data["id"]), 10, "beat did not pick up a schedule created after it started")


def test_two_beats_running_at_once_create_exactly_one_run_per_tick(worker, start_beat, api):
    JobTypeFactory(name="echo")
    start_beat()
    start_beat()
    schedule = Schedule.objects.create(name="double", job_type_id=JobTypeFactory(name="echo").pk, interval_seconds=5)
    time.sleep(60)
    runs = runs_of(schedule.pk)
    ticks = [run.schedule_tick for run in runs]
    assert len(ticks) == len(set(ticks))
    assert 11 <= len(ticks) <= 13  # one per 5 s tick over a minute
    expected = [schedule.created_at + timedelta(seconds=5 * (i + 1)) for i in range(len(ticks))]
    assert ticks == expected


def test_a_run_at_5_seconds_ahead_is_scheduled_then_succeeds_on_time(worker, start_beat, api):
    JobTypeFactory(name="echo")
    start_beat()
    run_at = timezone.now() + timedelta(seconds=5)
    response = api.post("/api/v1/job-types/echo/run/", {"params": {"x": 1}, "run_at": run_at.isoformat()},
                        format="json")  # fmt: skip
    assert response.status_code == 201, response.data
    assert response.data["status"] == "scheduled"
    assert parse_datetime(response.data["scheduled_for"]) == run_at
    cancelled = api.post("/api/v1/job-types/echo/run/", {"run_at": run_at.isoformat()}, format="json").data
    assert api.post(f"/api/v1/runs/{cancelled['id']}/cancel/").status_code == 200

    run = wait_for_run(Run.objects.get(pk=response.data["id"]), timeout=30)
    assert run.status == "succeeded"
    assert run_at <= run.started_at <= run_at + timedelta(seconds=5)
    time.sleep(2)
    assert Run.objects.get(pk=cancelled["id"]).started_at is None
    assert Run.objects.get(pk=cancelled["id"]).status == "cancelled"


def test_a_run_at_in_the_past_is_refused(api):
    JobTypeFactory(name="echo")
    past = (timezone.now() - timedelta(minutes=1)).isoformat()
    response = api.post("/api/v1/job-types/echo/run/", {"run_at": past}, format="json")
    assert response.status_code == 400
    assert "is in the past" in response.data["run_at"][0]
    assert not Run.objects.exists()
