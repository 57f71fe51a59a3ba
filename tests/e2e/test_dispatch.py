"""The dispatcher, called as beat's message calls it, against a real worker.

`dispatch_due(now=...)` with a time ahead stands for the clock having moved
on, so that planning a tick ahead and releasing it at the tick need no sleeps."""

import json
import os
import subprocess
import sys
import time
from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import timezone

from jobs.models import Run, Schedule
from jobs.runs.trigger import run_cancel, run_create
from jobs.schedules.dispatcher import dispatch_due
from tests.conftest import ROOT, _database_url, wait_for_run
from tests.factories import JobTypeFactory

pytestmark = pytest.mark.postgres  # run on PostgreSQL too (see pyproject.toml)

AHEAD = timedelta(seconds=settings.JOBS_SCHEDULE_PLAN_AHEAD_SECONDS)


def make_due(*schedules: Schedule, ago: float = 1) -> list:
    """Move the schedules' next fire into the past, as time passing would."""
    tick = timezone.now() - timedelta(seconds=ago)
    Schedule.objects.filter(pk__in=[s.pk for s in schedules]).update(next_run_at=tick)
    return [tick] * len(schedules)


def planned_run(schedule: Schedule) -> Run:
    return Run.objects.get(schedule=schedule, status="scheduled")


def test_due_schedules_fire_once_with_their_params_and_move_on(worker):
    echo = JobTypeFactory(name="echo", default_params={"from": "defaults"})
    schedules = [
        Schedule.objects.create(name=f"s{i}", job_type=echo, params={"n": i}, interval_seconds=3600) for i in range(3)
    ]
    ticks = make_due(*schedules)
    assert dispatch_due()["released"] == 3  # planned and, being due, released at once
    assert dispatch_due()["released"] == 0  # the same ticks again: nothing
    runs = {run.schedule.name: run for run in Run.objects.select_related("schedule")}
    assert set(runs) == {"s0", "s1", "s2"}
    for i, schedule in enumerate(schedules):
        run = wait_for_run(runs[schedule.name])
        assert (run.status, run.trigger, run.schedule_tick) == ("succeeded", "schedule", ticks[i])
        assert run.result == {"from": "defaults", "n": i}
        assert run.released_at >= run.created_at
        schedule.refresh_from_db()
        assert schedule.next_run_at > timezone.now()


def test_a_tick_is_planned_ahead_as_a_scheduled_run_and_released_at_its_time(worker):
    schedule = Schedule.objects.create(name="s", job_type=JobTypeFactory(name="echo"), params={"v": 1},
                                       interval_seconds=3600)  # fmt: skip
    tick = schedule.next_run_at
    assert dispatch_due(now=tick - AHEAD - timedelta(seconds=1))["planned"] == 0  # not within reach yet
    assert dispatch_due(now=tick - AHEAD / 2)["planned"] == 1
    run = planned_run(schedule)
    assert (run.scheduled_for, run.schedule_tick, run.released_at, run.params) == (tick, tick, None, {"v": 1})
    schedule.refresh_from_db()
    assert (schedule.next_run_at, schedule.planned) == (tick, True)  # the next fire is still that tick
    assert schedule.last_run is None  # a planned run has not run
    assert dispatch_due(now=tick - timedelta(seconds=1)) == {"planned": 0, "released": 0, "published": 0,
                                                              "republished": 0, "late_runs": 0,
                                                              "late_ticks": 0}  # fmt: skip

    assert dispatch_due(now=tick)["released"] == 1
    run = wait_for_run(run)
    assert (run.status, run.result) == ("succeeded", {"v": 1})
    assert run.released_at <= run.queued_at <= run.started_at
    schedule.refresh_from_db()
    assert (schedule.next_run_at, schedule.planned) == (tick + timedelta(seconds=3600), False)
    assert schedule.last_run == run


def test_a_tick_that_already_fired_is_not_fired_again(worker):
    schedule = Schedule.objects.create(name="s", job_type=JobTypeFactory(), interval_seconds=3600)
    (tick,) = make_due(schedule)
    Run.objects.create(job_type=schedule.job_type, trigger="schedule", schedule=schedule, schedule_tick=tick,
                       status="succeeded")  # fmt: skip
    assert dispatch_due()["released"] == 0
    assert dispatch_due()["released"] == 0
    assert Run.objects.filter(schedule=schedule).count() == 1
    schedule.refresh_from_db()
    assert schedule.next_run_at > timezone.now()


def test_overlap_skip_is_decided_at_the_tick_not_when_planned(worker):
    schedule = Schedule.objects.create(name="s", job_type=JobTypeFactory(), interval_seconds=3600, overlap="skip")
    tick = schedule.next_run_at
    previous = Run.objects.create(job_type=schedule.job_type, trigger="schedule", schedule=schedule, status="running")
    assert dispatch_due(now=tick - timedelta(seconds=5))["planned"] == 1  # planned although a run is active
    previous.mark_succeeded(result=None)  # ...which ends before the tick
    assert dispatch_due(now=tick)["released"] == 1

    # The next tick is planned while nothing runs, but at its time a run is active: skipped.
    following = tick + timedelta(seconds=3600)
    assert dispatch_due(now=following - timedelta(seconds=5))["planned"] == 1
    Run.objects.create(job_type=schedule.job_type, trigger="admin", schedule=schedule, status="running")
    assert dispatch_due(now=following)["released"] == 0
    assert not Run.objects.filter(schedule=schedule, schedule_tick=following).exists()
    schedule.refresh_from_db()
    assert (schedule.skipped_ticks, schedule.last_skipped_at) == (1, following)
    assert "previous run was still active" in schedule.last_skip_reason
    assert schedule.next_run_at == following + timedelta(seconds=3600)


def test_a_schedule_of_a_disabled_job_type_records_why_it_did_not_fire(worker):
    schedule = Schedule.objects.create(name="s", job_type=JobTypeFactory(), interval_seconds=3600)
    schedule.job_type.enabled = False
    schedule.job_type.save()
    make_due(schedule)
    assert dispatch_due()["released"] == 0
    schedule.refresh_from_db()
    assert "is disabled" in schedule.last_skip_reason


DISPATCHER = """
import json, sys
import django
django.setup()
from datetime import datetime
from jobs.schedules.dispatcher import dispatch_due
print(json.dumps(dispatch_due(now=datetime.fromisoformat(sys.argv[1]))))
"""


def test_dispatchers_running_at_once_plan_and_release_each_tick_exactly_once(worker):
    job_type = JobTypeFactory(name="noop", queue="nobody-listens")
    schedules = [Schedule.objects.create(name=f"s{i}", job_type=job_type, cron="0 * * * *") for i in range(60)]
    tick = schedules[0].next_run_at  # on the hour, as for every one of them
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", "DATABASE_URL": _database_url()}

    def dispatch_at_once(now) -> list[dict]:
        command = [sys.executable, "-c", DISPATCHER, now.isoformat()]
        dispatchers = [
            subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True) for _ in range(4)
        ]
        return [json.loads(d.communicate(timeout=120)[0].strip().splitlines()[-1]) for d in dispatchers]

    for _ in range(3):
        planning = dispatch_at_once(tick - timedelta(seconds=5))
        assert sum(d["planned"] for d in planning) == 60, planning
        assert Run.objects.filter(status="scheduled").count() == 60
        releasing = dispatch_at_once(tick)
        assert sum(d["released"] for d in releasing) == 60, releasing
        tick += timedelta(seconds=3600)
    assert Run.objects.count() == 180
    assert Run.objects.filter(status="scheduled").count() == 0
    per_tick = Run.objects.values_list("schedule_id", "schedule_tick")
    assert len(set(per_tick)) == 180


def test_a_run_at_run_waits_as_scheduled_then_runs(worker):
    job_type = JobTypeFactory(name="echo")
    run, _ = run_create(job_type=job_type, params={"later": True}, trigger="api",
                        run_at=timezone.now() + timedelta(seconds=2))  # fmt: skip
    assert run.status == "scheduled"
    assert dispatch_due()["released"] == 0
    time.sleep(2.2)
    assert dispatch_due()["released"] == 1
    assert wait_for_run(run).status == "succeeded"


def test_a_run_due_before_beats_next_dispatch_is_released_at_its_moment(worker):
    # Beat's dispatches come once a second at moments of their own: the one before a
    # run's time sends one more for that moment, which the worker holds until then.
    run, _ = run_create(job_type=JobTypeFactory(name="echo"), trigger="api",
                        run_at=timezone.now() + timedelta(seconds=0.6))  # fmt: skip
    assert dispatch_due()["released"] == 0  # and no beat to dispatch again
    run = wait_for_run(run, timeout=10)
    assert run.status == "succeeded"
    late = run.released_at - run.scheduled_for
    assert timedelta(0) <= late < timedelta(seconds=settings.JOBS_DISPATCH_INTERVAL_SECONDS), late


def test_a_scheduled_run_cancelled_before_its_time_never_runs(worker):
    run, _ = run_create(job_type=JobTypeFactory(), trigger="api", run_at=timezone.now() + timedelta(seconds=1))
    run_cancel(run=run)
    time.sleep(1.2)
    assert dispatch_due()["released"] == 0
    run.refresh_from_db()
    assert (run.status, run.started_at) == ("cancelled", None)
