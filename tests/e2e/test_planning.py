"""Schedule ticks planned ahead: every way of editing, disabling or deleting a
schedule (or changing its job type) applies to the tick already planned, and
cancelling a planned run skips that tick only.

`dispatch_due(now=...)` with a time ahead stands for the clock having moved on."""

from datetime import timedelta

from django.core.management import call_command
from django.urls import reverse

from jobs.models import Run, Schedule
from jobs.schedules.dispatcher import dispatch_due
from tests.conftest import wait_for_run
from tests.factories import JobTypeFactory

HOUR = timedelta(seconds=3600)
BEFORE = timedelta(seconds=5)


def hourly(name: str = "s", **fields) -> Schedule:
    fields.setdefault("job_type", JobTypeFactory(name="echo"))
    return Schedule.objects.create(name=name, interval_seconds=3600, **fields)


def plan(*schedules: Schedule) -> list[Run]:
    """Dispatch a little before the schedules' next tick, and return their planned runs."""
    dispatch_due(now=min(s.next_run_at for s in schedules) - BEFORE)
    return list(Run.objects.filter(schedule__in=schedules, status="scheduled").order_by("schedule__name"))


def test_editing_params_over_the_api_plans_the_tick_again_with_them(worker, api):
    schedule = hourly(params={"v": 1})
    tick = schedule.next_run_at
    (first,) = plan(schedule)
    assert first.params == {"v": 1}
    assert api.get(f"/api/v1/runs/{first.pk}/").data["released_at"] is None

    assert api.patch(f"/api/v1/schedules/{schedule.pk}/", {"params": {"v": 2}}, format="json").status_code == 200
    assert not Run.objects.filter(pk=first.pk).exists()
    schedule.refresh_from_db()
    assert (schedule.next_run_at, schedule.planned) == (tick, False)  # the same tick, to plan again
    (replanned,) = plan(schedule)
    assert (replanned.params, replanned.schedule_tick) == ({"v": 2}, tick)
    assert dispatch_due(now=tick)["released"] == 1
    assert wait_for_run(replanned).result == {"v": 2}
    assert api.get(f"/api/v1/runs/{replanned.pk}/").data["released_at"] is not None


def test_changing_the_timing_drops_the_planned_tick_for_the_new_one(worker, api):
    schedule = hourly()
    (first,) = plan(schedule)
    assert api.patch(f"/api/v1/schedules/{schedule.pk}/", {"interval_seconds": 7200}, format="json").status_code == 200
    assert not Run.objects.filter(pk=first.pk).exists()
    schedule.refresh_from_db()
    (replanned,) = plan(schedule)
    assert replanned.schedule_tick == schedule.next_run_at == schedule.created_at + 2 * HOUR


def test_disabling_one_by_one_or_in_bulk_drops_the_planned_ticks(worker, client, admin_user):
    echo = JobTypeFactory(name="echo")
    by_action, by_update = hourly("a", job_type=echo), hourly("b", job_type=echo)
    assert len(plan(by_action, by_update)) == 2
    client.force_login(admin_user)
    url = reverse("admin:jobs_schedule_changelist")
    client.post(url, {"action": "disable", "_selected_action": [by_action.pk]})
    assert [run.schedule for run in Run.objects.filter(status="scheduled")] == [by_update]
    Schedule.objects.filter(pk=by_update.pk).update(enabled=False)  # code, or any bulk change
    assert not Run.objects.exists()
    assert dispatch_due(now=by_update.next_run_at + BEFORE)["released"] == 0

    Schedule.objects.update(enabled=True)  # counts from now again, as a save does
    for schedule in Schedule.objects.all():
        assert (schedule.next_run_at, schedule.planned) == (schedule.compute_next_run(schedule.updated_at), False)
    assert len(plan(*Schedule.objects.all())) == 2


def test_deleting_drops_the_planned_tick_and_keeps_the_runs_that_fired(worker, api):
    echo = JobTypeFactory(name="echo")
    one, many = hourly("one", job_type=echo), hourly("many", job_type=echo)
    fired = Run.objects.create(job_type=echo, trigger="schedule", schedule=one, status="succeeded")
    assert len(plan(one, many)) == 2
    assert api.delete(f"/api/v1/schedules/{one.pk}/").status_code == 204
    Schedule.objects.filter(name="many").delete()  # the admin's bulk delete does this
    assert list(Run.objects.all()) == [fired]
    assert dispatch_due(now=one.next_run_at + HOUR)["released"] == 0


def test_an_import_that_changes_a_schedule_plans_its_tick_again(worker, tmp_path):
    schedule = hourly(params={"v": 1})
    (first,) = plan(schedule)
    exported = tmp_path / "job-types.yml"
    call_command("export_job_types", "--output", str(exported))
    exported.write_text(exported.read_text().replace("v: 1", "v: 2"))
    call_command("import_job_types", str(exported))
    assert not Run.objects.filter(pk=first.pk).exists()
    (replanned,) = plan(schedule)
    assert replanned.params == {"v": 2}


def test_changing_its_job_type_plans_the_tick_again_from_it(worker):
    echo = JobTypeFactory(name="echo", default_params={"a": 1})
    schedule = hourly(job_type=echo)
    (first,) = plan(schedule)
    assert first.params == {"a": 1}
    echo.default_params = {"a": 2}
    echo.save()
    (replanned,) = plan(schedule)
    assert replanned.params == {"a": 2}

    echo.enabled = False
    echo.save()
    assert plan(schedule) == []
    schedule.refresh_from_db()
    assert "is disabled" in schedule.last_skip_reason


def test_cancelling_a_planned_run_skips_that_tick_only(worker, api):
    schedule = hourly()
    tick = schedule.next_run_at
    (planned,) = plan(schedule)
    listed = api.get("/api/v1/runs/", {"status": "scheduled"}).data["results"]
    assert [(r["id"], r["schedule"], r["trigger"]) for r in listed] == [(str(planned.pk), "s", "schedule")]

    assert api.post(f"/api/v1/runs/{planned.pk}/cancel/").status_code == 200
    assert dispatch_due(now=tick)["released"] == 0
    schedule.refresh_from_db()
    assert (schedule.next_run_at, schedule.skipped_ticks) == (tick + HOUR, 0)
    (following,) = plan(schedule)
    assert following.schedule_tick == tick + HOUR
    planned.refresh_from_db()
    assert (planned.status, planned.started_at) == ("cancelled", None)


def test_after_downtime_a_planned_tick_fires_once_and_the_missed_ones_not_at_all(worker):
    schedule = hourly()
    tick = schedule.next_run_at
    plan(schedule)
    back = tick + 5 * HOUR + timedelta(minutes=10)  # nothing dispatched for five hours
    assert dispatch_due(now=back)["released"] == 1
    schedule.refresh_from_db()
    assert schedule.next_run_at == tick + 6 * HOUR
    assert list(Run.objects.values_list("schedule_tick", flat=True)) == [tick]
