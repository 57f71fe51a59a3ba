"""Schedules on the monitoring pages: what comes up next on the dashboard, the
schedules page, and the run history filtered by schedule."""

import re
from datetime import timedelta

import pytest
from django.utils import timezone

from jobs.models import Run, Schedule
from tests.factories import JobTypeFactory, RunFactory
from tests.monitor.test_pages import runs_on_page, section

XSS = "<script>alert(1)</script>"


def make_schedule(name: str, **fields) -> Schedule:
    fields.setdefault("job_type", JobTypeFactory(name="echo"))
    if "cron" not in fields:
        fields.setdefault("interval_seconds", 300)
    return Schedule.objects.create(name=name, **fields)


def fires_on_dashboard(response) -> list[str]:
    return re.findall(r'data-schedule="(\d+)"', section(response, "upcoming").split('id="upcoming-runs"')[0])


# --- Dashboard ------------------------------------------------------------------------


def test_the_dashboard_lists_the_next_schedule_fires_soonest_first(staff_client):
    now = timezone.now()
    later = make_schedule("later")
    soon = make_schedule("soon", cron="0 5 * * 1", timezone="Europe/Berlin")
    off = make_schedule("off", enabled=False)
    ended = make_schedule("ended")
    Schedule.objects.filter(pk=later.pk).update(next_run_at=now + timedelta(hours=2))
    Schedule.objects.filter(pk=soon.pk).update(next_run_at=now + timedelta(minutes=3))
    Schedule.objects.filter(pk=ended.pk).update(next_run_at=None)  # past its end_at

    response = staff_client.get("/monitor/")
    assert fires_on_dashboard(response) == [str(soon.pk), str(later.pk)]
    upcoming = section(response, "upcoming")
    assert "At 05:00, only on Monday (Europe/Berlin)" in upcoming
    assert "in 3.0 min" in upcoming or "in 2.9 min" in upcoming
    assert 'href="/monitor/runs/?schedule=soon"' in upcoming
    assert str(off.pk) not in fires_on_dashboard(response)


def test_the_dashboard_lists_runs_scheduled_for_later_soonest_first_and_bounded(staff_client):
    now = timezone.now()
    echo = JobTypeFactory(name="echo")
    runs = [
        RunFactory(job_type=echo, status="scheduled", scheduled_for=now + timedelta(minutes=m))
        for m in range(15, 0, -1)
    ]
    RunFactory(job_type=echo, status="succeeded", scheduled_for=now + timedelta(seconds=5))  # not waiting any more

    upcoming = section(staff_client.get("/monitor/"), "upcoming")
    listed = re.findall(r'data-run="([0-9a-f-]{36})"', upcoming.split('id="upcoming-runs"')[1])
    assert listed == [str(run.pk) for run in reversed(runs)][:10]
    assert 'href="/monitor/runs/?status=scheduled"' in upcoming


def test_a_tick_planned_ahead_shows_as_coming_up_and_not_as_the_last_run(staff_client):
    schedule = make_schedule("nightly")
    fired = RunFactory(job_type=schedule.job_type, schedule=schedule, trigger="schedule", status="succeeded")
    planned = RunFactory(job_type=schedule.job_type, schedule=schedule, trigger="schedule", status="scheduled",
                         scheduled_for=schedule.next_run_at, schedule_tick=schedule.next_run_at)  # fmt: skip
    upcoming = section(staff_client.get("/monitor/"), "upcoming")
    assert f'data-run="{planned.pk}"' in upcoming
    assert "planned by schedule nightly" in upcoming
    assert Schedule.objects.with_last_run().get().last_run_id == fired.pk == schedule.last_run.pk


def test_the_dashboard_says_when_nothing_is_coming_up(staff_client):
    upcoming = section(staff_client.get("/monitor/"), "upcoming")
    assert "No enabled schedule will fire." in upcoming
    assert "No run waits for a later time." in upcoming


# --- The schedules page -----------------------------------------------------------------


def test_the_schedules_page_shows_each_schedules_timing_next_fire_and_last_run(staff_client):
    now = timezone.now()
    nightly = make_schedule("nightly", cron="30 2 * * *", timezone="UTC", overlap="skip")
    Schedule.objects.filter(pk=nightly.pk).update(
        skipped_ticks=4,
        last_skipped_at=now - timedelta(hours=1),
        last_skip_reason="the previous run was still active (overlap: skip)",
    )
    RunFactory(job_type=nightly.job_type, schedule=nightly, status="succeeded", created_at=now - timedelta(days=1))
    last = RunFactory(job_type=nightly.job_type, schedule=nightly, status="failed", created_at=now - timedelta(hours=2))
    make_schedule("fresh", interval_seconds=90)
    make_schedule("paused", enabled=False)

    response = staff_client.get("/monitor/schedules/")
    assert response.status_code == 200
    body = section(response, "schedules")
    rows = dict(re.findall(r'<tr data-schedule="\d+">\s*<td><a [^>]*>([^<]+)</a>(.*?)</tr>', body, re.S))
    assert list(rows) == ["fresh", "nightly", "paused"]
    nightly_row = rows["nightly"]
    assert "At 02:30 (UTC)" in nightly_row
    assert f'href="/monitor/runs/{last.pk}/"' in nightly_row
    assert '<span class="status failed">failed</span>' in nightly_row
    assert ">skip<" in nightly_row
    assert "4" in nightly_row and "the previous run was still active (overlap: skip)" in nightly_row
    assert "Every 90 s" in rows["fresh"] and "not run yet" in rows["fresh"]
    assert "(disabled)" in rows["paused"] and ">no<" in rows["paused"]
    assert 'aria-current="page">Schedules</a>' in response.content.decode()


def test_the_schedules_page_is_paginated(staff_client):
    for i in range(55):
        make_schedule(f"s-{i:02}")
    first = staff_client.get("/monitor/schedules/")
    assert first.content.decode().count("data-schedule=") == 50
    assert "page 1 of 2 (55 schedules)" in first.content.decode()
    second = staff_client.get("/monitor/schedules/?page=2")
    assert re.findall(r'data-schedule="\d+">\s*<td><a [^>]*>([^<]+)<', second.content.decode()) == [
        f"s-{i}" for i in range(50, 55)
    ]
    # A page number out of range or not a number shows a page, not an error.
    assert staff_client.get("/monitor/schedules/?page=99").status_code == 200
    assert staff_client.get("/monitor/schedules/?page=x").status_code == 200


def test_the_schedules_page_reads_last_runs_with_a_fixed_number_of_queries(staff_client, django_assert_max_num_queries):
    for i in range(20):
        schedule = make_schedule(f"s-{i}")
        RunFactory(job_type=schedule.job_type, schedule=schedule, status="succeeded")
    with django_assert_max_num_queries(8):
        assert staff_client.get("/monitor/schedules/").status_code == 200


def test_schedule_names_and_skip_reasons_are_escaped(staff_client):
    # Names are slugs when typed in the admin or the API; a row written another way is still shown safely.
    schedule = make_schedule(XSS, last_skip_reason=f"params: {XSS}")
    Schedule.objects.filter(pk=schedule.pk).update(next_run_at=timezone.now() + timedelta(minutes=1))
    RunFactory(job_type=schedule.job_type, schedule=schedule, status="scheduled", scheduled_for=timezone.now())
    run = Run.objects.get()
    for page in ["/monitor/", "/monitor/schedules/", f"/monitor/runs/{run.pk}/", "/monitor/runs/"]:
        body = staff_client.get(page).content.decode()
        assert XSS not in body, page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in staff_client.get("/monitor/schedules/").content.decode()


# --- The run history and a run -------------------------------------------------------------


def test_the_history_filters_by_schedule(staff_client):
    nightly, hourly = make_schedule("nightly"), make_schedule("hourly")
    a = RunFactory(job_type=nightly.job_type, schedule=nightly, status="succeeded")
    b = RunFactory(job_type=nightly.job_type, schedule=nightly, status="failed")
    RunFactory(job_type=hourly.job_type, schedule=hourly, status="failed")
    RunFactory(job_type=nightly.job_type, status="failed")  # same job type, no schedule

    def ids(query: str) -> set[str]:
        response = staff_client.get(f"/monitor/runs/?{query}")
        assert response.status_code == 200
        return set(runs_on_page(response))

    assert ids("schedule=nightly") == {str(a.pk), str(b.pk)}
    assert ids("schedule=nightly&status=failed") == {str(b.pk)}
    body = staff_client.get("/monitor/runs/").content.decode()
    assert '<datalist id="schedule-names"><option value="hourly"><option value="nightly"></datalist>' in body


@pytest.mark.parametrize("name", ["ghost", XSS])
def test_an_unknown_schedule_in_the_filter_gets_a_400_saying_so(staff_client, name):
    make_schedule("nightly")
    response = staff_client.get("/monitor/runs/", {"schedule": name})
    assert response.status_code == 400
    body = response.content.decode()
    assert "No schedule is named &#x27;" in body
    assert XSS not in body


def test_a_scheduled_runs_page_names_its_schedule(staff_client):
    nightly = make_schedule("nightly")
    run = RunFactory(job_type=nightly.job_type, schedule=nightly, trigger="schedule", status="succeeded")
    body = staff_client.get(f"/monitor/runs/{run.pk}/").content.decode()
    assert 'from schedule <a id="schedule-link" href="/monitor/runs/?schedule=nightly"' in body
