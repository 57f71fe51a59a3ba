"""Deadlines without a worker: which runs and schedule ticks are late, that each
is claimed once even by dispatchers running at once, what the alerts say, and
the fields in the API, admin and pages. tests/e2e/test_deadlines.py goes through
real beat and workers."""

import base64
import json
import os
import subprocess
import sys
from datetime import timedelta

import pytest
from django.core import mail
from django.db import connection
from django.utils import timezone
from standardwebhooks import Webhook

from jobs.models import MAX_DEADLINE_SECONDS, JobType, Run, Schedule
from jobs.runs import trigger
from jobs.schedules.deadlines import alert_send, runs_due, runs_mark_late, schedule_ticks_check, ticks_due
from tests.conftest import ROOT, _database_url
from tests.factories import JobTypeFactory, RunFactory
from tests.test_import_export import run_command

pytestmark = pytest.mark.postgres  # run on PostgreSQL too (see pyproject.toml)

SECRET = "a-long-webhook-secret-for-tests"


@pytest.fixture
def timed(db):
    return JobTypeFactory(name="timed", deadline_seconds=60, notify_emails=["ops@example.com"])


def late_by(run: Run, seconds: float = 1):
    """The dispatcher's clock, `seconds` past the run's deadline."""
    return run.deadline_at + timedelta(seconds=seconds)


# --- Which runs are late ---------------------------------------------------------------------


def test_a_run_is_due_its_job_types_deadline_after_it_was_triggered_or_due(timed):
    now_run, _ = trigger.run_create(job_type=timed, trigger=Run.Trigger.API)
    assert now_run.deadline_at == now_run.created_at + timedelta(seconds=60)
    later = timezone.now() + timedelta(hours=1)
    later_run, _ = trigger.run_create(job_type=timed, trigger=Run.Trigger.API, run_at=later)
    assert later_run.deadline_at == later + timedelta(seconds=60)  # not while it waits for its time
    untimed, _ = trigger.run_create(job_type=JobTypeFactory(name="untimed"), trigger=Run.Trigger.API)
    assert untimed.deadline_at is None


def test_a_run_past_its_deadline_is_marked_late_once_and_an_ended_one_never(timed):
    running = RunFactory(job_type=timed, status="running", deadline_at=timezone.now())
    ended = RunFactory(job_type=timed, status="succeeded", deadline_at=timezone.now(), finished_at=timezone.now())
    not_yet = RunFactory(job_type=timed, status="queued", deadline_at=timezone.now() + timedelta(minutes=5))
    now = late_by(running)
    assert runs_mark_late(now) == [running.pk]
    assert runs_mark_late(now) == []  # found late once
    running.refresh_from_db()
    assert (running.late_at, running.status) == (now, "running")
    for run in (ended, not_yet):
        run.refresh_from_db()
        assert run.late_at is None


@pytest.mark.parametrize(("query", "index"), [(runs_due, "run_deadline_due"), (ticks_due, "schedule_watch_due")])
def test_the_dispatchers_deadline_queries_read_their_partial_indexes(db, query, index):
    sql, params = query(timezone.now()).values("pk").query.sql_with_params()
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute("EXPLAIN QUERY PLAN " + sql, params)
            plan = " ".join(str(row) for row in cursor.fetchall())
        else:
            cursor.execute("SET LOCAL enable_seqscan = off")  # an empty table would be scanned anyway
            cursor.execute("EXPLAIN " + sql, params)
            plan = " ".join(row[0] for row in cursor.fetchall())
    assert index in plan, plan


DISPATCHER = """
import json, sys
import django
django.setup()
from datetime import datetime
from jobs.schedules.deadlines import runs_mark_late, schedule_ticks_check
now = datetime.fromisoformat(sys.argv[1])
runs = []
while batch := runs_mark_late(now, limit=7):
    runs += [str(pk) for pk in batch]
ticks = []
while (batch := schedule_ticks_check(now, limit=7)) is not None:
    ticks += [[tick["schedule_id"], tick["tick"]] for tick in batch]
print(json.dumps({"runs": runs, "ticks": ticks}))
"""


def test_dispatchers_running_at_once_claim_each_late_run_and_tick_once(transactional_db):
    job_type = JobTypeFactory(name="timed", deadline_seconds=1)
    deadline = timezone.now()
    runs = [RunFactory(job_type=job_type, status="running", deadline_at=deadline) for _ in range(60)]
    schedules = [
        Schedule.objects.create(name=f"s{i}", job_type=job_type, interval_seconds=60, must_succeed_within_seconds=5)
        for i in range(40)
    ]
    now = max(s.watch_due_at for s in schedules) + timedelta(seconds=1)
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", "DATABASE_URL": _database_url()}
    command = [sys.executable, "-c", DISPATCHER, now.isoformat()]
    dispatchers = [subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True) for _ in range(4)]
    results = [json.loads(d.communicate(timeout=120)[0].strip().splitlines()[-1]) for d in dispatchers]
    assert [d.returncode for d in dispatchers] == [0] * 4
    claimed_runs = [run for result in results for run in result["runs"]]
    assert sorted(claimed_runs) == sorted(str(run.pk) for run in runs)  # each once, none twice
    claimed_ticks = [tuple(tick) for result in results for tick in result["ticks"]]
    assert sorted(claimed_ticks) == sorted((s.pk, s.watch_tick.isoformat()) for s in schedules)


# --- Which schedule ticks did not succeed in time -------------------------------------------------


@pytest.fixture
def watched(timed):
    schedule = Schedule.objects.create(
        name="nightly", job_type=timed, interval_seconds=600, must_succeed_within_seconds=120
    )
    assert schedule.watch_tick == schedule.next_run_at
    assert schedule.watch_due_at == schedule.next_run_at + timedelta(seconds=120)
    return schedule


def tick_run(schedule: Schedule, status: str, finished_after: float | None = None) -> Run:
    tick = schedule.watch_tick
    finished = tick + timedelta(seconds=finished_after) if finished_after is not None else None
    return RunFactory(job_type=schedule.job_type, schedule=schedule, schedule_tick=tick, status=status,
                      finished_at=finished, trigger="schedule")  # fmt: skip


def test_a_tick_whose_run_succeeded_in_time_is_not_told(watched):
    tick_run(watched, "succeeded", finished_after=100)
    assert schedule_ticks_check(watched.watch_due_at) == []
    watched.refresh_from_db()
    assert watched.watch_tick == watched.next_run_at + timedelta(seconds=600)  # on to the next tick


@pytest.mark.parametrize(
    ("status", "finished_after"),
    [("failed", 10), ("running", None), ("succeeded", 121), (None, None)],
    ids=["failed", "still-running", "succeeded-too-late", "missed"],
)
def test_a_tick_without_a_run_that_succeeded_in_time_is_told_once(watched, status, finished_after):
    run = tick_run(watched, status, finished_after) if status else None
    tick, due = watched.watch_tick, watched.watch_due_at
    [late] = schedule_ticks_check(due)
    assert late == {
        "schedule_id": watched.pk,
        "job_type_id": watched.job_type_id,
        "tick": tick.isoformat(),
        "due_at": due.isoformat(),
        "run_id": str(run.pk) if run else None,
        "run_status": status,
    }
    assert schedule_ticks_check(due) is None  # told once: the next tick is not due yet


def test_ticks_missed_while_nothing_dispatched_are_told_once_not_each(watched):
    hours_later = watched.watch_due_at + timedelta(hours=3)
    assert len(schedule_ticks_check(hours_later)) == 1
    watched.refresh_from_db()
    assert watched.watch_due_at > hours_later  # watching a tick whose time is still running
    assert schedule_ticks_check(hours_later) is None


def test_editing_a_schedule_keeps_the_tick_watched_and_turning_the_check_off_clears_it(watched):
    stale = Schedule.objects.get(pk=watched.pk)
    schedule_ticks_check(watched.watch_due_at)  # the dispatcher moves on while a form is open
    stale.params = {"edited": True}
    stale.save()
    stale.refresh_from_db()
    assert stale.watch_tick == watched.watch_tick + timedelta(seconds=600)
    stale.must_succeed_within_seconds = None
    stale.save()
    stale.refresh_from_db()
    assert (stale.watch_tick, stale.watch_due_at) == (None, None)


def test_a_disabled_schedule_is_not_told_and_watches_again_once_enabled(watched):
    Schedule.objects.filter(pk=watched.pk).update(enabled=False)
    watched.refresh_from_db()
    assert schedule_ticks_check(watched.watch_due_at + timedelta(days=1)) in ([], None)
    Schedule.objects.filter(pk=watched.pk).update(enabled=True)  # the admin's "enable" action
    watched.refresh_from_db()
    assert watched.watch_tick == watched.next_run_at


# --- What is said ---------------------------------------------------------------------------------


def test_a_late_run_alert_goes_to_email_and_signed_webhook_whatever_notify_on(timed, webhook):
    timed.webhook_url, timed.webhook_secret, timed.notify_on = webhook.url, SECRET, "never"
    timed.save()
    run = RunFactory(job_type=timed, status="running", deadline_at=timezone.now(), notify_emails=["me@example.com"])
    runs_mark_late(late_by(run))
    assert alert_send(event="run.late", about={"run_id": str(run.pk)}, sent=[], attempt=1).state == "sent"
    [message] = mail.outbox
    assert sorted(message.to) == ["me@example.com", "ops@example.com"]
    assert message.extra_headers["Message-ID"].startswith(f"<run.late.{run.pk}@")
    assert f"/monitor/runs/{run.pk}/" in message.body
    [(headers, body)] = webhook.requests
    assert headers["webhook-id"] == f"run.late.{run.pk}"
    payload = Webhook("whsec_" + base64.b64encode(SECRET.encode()).decode()).verify(body, headers)
    assert payload["event"] == "run.late"
    assert (payload["run"]["id"], payload["run"]["status"]) == (str(run.pk), "running")
    assert payload["run"]["late_at"] is not None


def test_a_channel_that_failed_is_tried_again_without_sending_the_other_twice(timed, webhook):
    timed.webhook_url, timed.webhook_secret = webhook.url, SECRET
    timed.save()
    run = RunFactory(job_type=timed, status="running", deadline_at=timezone.now())
    webhook.status = 503
    first = alert_send(event="run.late", about={"run_id": str(run.pk)}, sent=[], attempt=1)
    assert (first.state, first.sent) == ("retry", ["email"])
    webhook.status = 200
    assert alert_send(event="run.late", about={"run_id": str(run.pk)}, sent=first.sent, attempt=2).state == "sent"
    assert len(mail.outbox) == 1
    assert [headers["webhook-id"] for headers, _ in webhook.requests] == [f"run.late.{run.pk}"] * 2


def test_a_schedule_late_alert_names_the_tick_and_its_run(watched):
    run = tick_run(watched, "failed", finished_after=5)
    [late] = schedule_ticks_check(watched.watch_due_at)
    assert alert_send(event="schedule.late", about=late, sent=[], attempt=1).state == "sent"
    [message] = mail.outbox
    assert message.to == ["ops@example.com"]
    assert message.subject == "[Jobsite] Schedule nightly (timed) did not succeed in time"
    assert f"schedule.late.{watched.pk}.{watched.watch_tick.isoformat()}" in message.extra_headers["Message-ID"]
    assert f"{run.pk} (failed when checked)" in message.body


# --- Fields: API, admin, pages ---------------------------------------------------------------------


def test_the_api_takes_the_deadline_fields_and_refuses_bad_ones(api, timed):
    response = api.patch("/api/v1/job-types/timed/", {"deadline_seconds": 0}, format="json")
    assert response.status_code == 400
    assert "deadline_seconds" in response.data
    response = api.patch("/api/v1/job-types/timed/", {"deadline_seconds": MAX_DEADLINE_SECONDS + 1}, format="json")
    assert response.status_code == 400
    assert "deadline_seconds" in response.data
    response = api.patch("/api/v1/job-types/timed/", {"deadline_seconds": 300}, format="json")
    assert response.data["deadline_seconds"] == 300
    body = {"name": "nightly", "job_type": "timed", "interval_seconds": 60, "must_succeed_within_seconds": -1}
    response = api.post("/api/v1/schedules/", body, format="json")
    assert response.status_code == 400
    assert "must_succeed_within_seconds" in response.data
    assert not Schedule.objects.exists()
    response = api.post("/api/v1/schedules/", {**body, "must_succeed_within_seconds": 90}, format="json")
    assert response.status_code == 201, response.data
    assert Schedule.objects.get().watch_due_at is not None


def test_a_late_run_shows_late_at_in_the_api_and_a_late_badge_on_its_pages(api, admin_user, client, timed):
    run = RunFactory(job_type=timed, status="running", deadline_at=timezone.now())
    on_time = RunFactory(job_type=timed, status="running", deadline_at=timezone.now() + timedelta(hours=1))
    runs_mark_late(late_by(run))
    data = api.get(f"/api/v1/runs/{run.pk}/").data
    assert data["late_at"] is not None and data["deadline_at"] is not None
    assert api.get(f"/api/v1/runs/{on_time.pk}/").data["late_at"] is None
    client.force_login(admin_user)
    page = client.get(f"/monitor/runs/{run.pk}/").content.decode()
    assert 'class="status late"' in page
    assert 'class="status late"' not in client.get(f"/monitor/runs/{on_time.pk}/").content.decode()
    listing = client.get("/monitor/runs/").content.decode()
    assert listing.count('class="status late"') == 1


def test_the_admin_edits_must_succeed_within_seconds(admin_user, client, timed):
    client.force_login(admin_user)
    data = {"name": "nightly", "job_type": timed.pk, "params": "{}", "enabled": "on", "interval_seconds": "60",
            "timezone": "UTC", "overlap": "allow", "must_succeed_within_seconds": "0"}  # fmt: skip
    response = client.post("/admin/jobs/schedule/add/", data)
    assert response.status_code == 200
    assert "must_succeed_within_seconds" in response.context["adminform"].form.errors
    response = client.post("/admin/jobs/schedule/add/", {**data, "must_succeed_within_seconds": "30"})
    assert response.status_code == 302
    assert Schedule.objects.get().must_succeed_within_seconds == 30


def test_the_deadline_fields_go_through_export_and_import(timed, tmp_path):
    Schedule.objects.create(name="nightly", job_type=timed, cron="0 3 * * *", must_succeed_within_seconds=3600)
    exported = tmp_path / "job-types.yml"
    run_command("export_job_types", "--output", str(exported))
    text = exported.read_text()
    assert "deadline_seconds: 60" in text and "must_succeed_within_seconds: 3600" in text
    Schedule.objects.all().delete()
    JobType.objects.all().delete()
    run_command("import_job_types", str(exported))
    assert JobType.objects.get(name="timed").deadline_seconds == 60
    schedule = Schedule.objects.get(name="nightly")
    assert schedule.must_succeed_within_seconds == 3600
    assert schedule.watch_due_at == schedule.next_run_at + timedelta(hours=1)  # watched from its first tick
