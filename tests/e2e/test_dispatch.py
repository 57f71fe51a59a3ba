"""The dispatcher, called as beat's message calls it, against a real worker."""

import os
import subprocess
import sys
import time
from datetime import timedelta

from django.utils import timezone

from jobs.dispatch import dispatch_due
from jobs.models import Run, Schedule
from jobs.services import run_cancel, run_create
from tests.conftest import ROOT, _database_url, wait_for_run
from tests.factories import JobTypeFactory


def make_due(*schedules: Schedule, ago: float = 1) -> list:
    """Move the schedules' next fire into the past, as time passing would."""
    tick = timezone.now() - timedelta(seconds=ago)
    Schedule.objects.filter(pk__in=[s.pk for s in schedules]).update(next_run_at=tick)
    return [tick] * len(schedules)


def test_due_schedules_fire_once_with_their_params_and_move_on(worker):
    echo = JobTypeFactory(name="echo", default_params={"from": "defaults"})
    schedules = [
        Schedule.objects.create(name=f"s{i}", job_type=echo, params={"n": i}, interval_seconds=3600) for i in range(3)
    ]
    ticks = make_due(*schedules)
    assert dispatch_due()["fired"] == 3
    assert dispatch_due()["fired"] == 0  # the same ticks again: nothing
    runs = {run.schedule.name: run for run in Run.objects.select_related("schedule")}
    assert set(runs) == {"s0", "s1", "s2"}
    for i, schedule in enumerate(schedules):
        run = wait_for_run(runs[schedule.name])
        assert (run.status, run.trigger, run.schedule_tick) == ("succeeded", "schedule", ticks[i])
        assert run.result == {"from": "defaults", "n": i}
        schedule.refresh_from_db()
        assert schedule.next_run_at > timezone.now()


def test_a_tick_that_already_fired_is_not_fired_again(worker):
    schedule = Schedule.objects.create(name="s", job_type=JobTypeFactory(), interval_seconds=3600)
    (tick,) = make_due(schedule)
    Run.objects.create(job_type=schedule.job_type, trigger="schedule", schedule=schedule, schedule_tick=tick,
                       status="succeeded")  # fmt: skip
    assert dispatch_due()["fired"] == 0
    assert Run.objects.filter(schedule=schedule).count() == 1
    schedule.refresh_from_db()
    assert schedule.next_run_at > timezone.now()


def test_overlap_skip_records_the_skipped_tick_while_a_run_is_active(worker):
    schedule = Schedule.objects.create(name="s", job_type=JobTypeFactory(), interval_seconds=3600, overlap="skip")
    Run.objects.create(job_type=schedule.job_type, trigger="schedule", schedule=schedule, status="running")
    (tick,) = make_due(schedule)
    assert dispatch_due()["fired"] == 0
    schedule.refresh_from_db()
    assert (schedule.skipped_ticks, schedule.last_skipped_at) == (1, tick)
    assert "previous run was still active" in schedule.last_skip_reason
    Run.objects.filter(schedule=schedule).update(status="succeeded")
    make_due(schedule)
    assert dispatch_due()["fired"] == 1


def test_a_schedule_of_a_disabled_job_type_records_why_it_did_not_fire(worker):
    schedule = Schedule.objects.create(name="s", job_type=JobTypeFactory(), interval_seconds=3600)
    schedule.job_type.enabled = False
    schedule.job_type.save()
    make_due(schedule)
    assert dispatch_due()["fired"] == 0
    schedule.refresh_from_db()
    assert "is disabled" in schedule.last_skip_reason


DISPATCHER = """
import django
django.setup()
from jobs.dispatch import dispatch_due
print(dispatch_due()["fired"])
"""


def test_dispatchers_running_at_once_fire_each_tick_exactly_once(worker):
    job_type = JobTypeFactory(name="noop", queue="nobody-listens")
    schedules = [Schedule.objects.create(name=f"s{i}", job_type=job_type, interval_seconds=3600) for i in range(60)]
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", "DATABASE_URL": _database_url()}
    for round_ in range(3):
        make_due(*schedules, ago=round_ + 1)
        dispatchers = [
            subprocess.Popen([sys.executable, "-c", DISPATCHER], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
            for _ in range(4)
        ]
        fired = [int(d.communicate(timeout=120)[0].strip().splitlines()[-1]) for d in dispatchers]
        assert sum(fired) == 60, fired
    assert Run.objects.count() == 180
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


def test_a_scheduled_run_cancelled_before_its_time_never_runs(worker):
    run, _ = run_create(job_type=JobTypeFactory(), trigger="api", run_at=timezone.now() + timedelta(seconds=1))
    run_cancel(run=run)
    time.sleep(1.2)
    assert dispatch_due()["released"] == 0
    run.refresh_from_db()
    assert (run.status, run.started_at) == ("cancelled", None)
