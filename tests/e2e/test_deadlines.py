"""Deadline alerts end to end: real beat ticks the dispatcher on a real worker,
which finds a run late or a tick not succeeded in time and tells a real SMTP
server and a local webhook receiver."""

import base64
from collections import Counter

import pytest
from standardwebhooks import Webhook

from jobs.models import Run, Schedule
from tests import commands
from tests.conftest import wait_for_notification, wait_for_run, wait_until
from tests.e2e.test_execution import define
from tests.e2e.test_notifications import trigger

pytestmark = pytest.mark.postgres  # run on PostgreSQL too (see pyproject.toml)

SECRET = "a-long-webhook-secret-for-tests"
VERIFIER = Webhook("whsec_" + base64.b64encode(SECRET.encode()).decode())


def events(webhook) -> list[dict]:
    """The webhook calls received, each verified with the Standard Webhooks library."""
    return [VERIFIER.verify(body, headers) | {"id": headers["webhook-id"]} for headers, body in list(webhook.requests)]


def test_a_run_past_its_deadline_sends_one_late_alert_then_its_completion(worker, start_beat, api, mailbox, webhook):
    define(api, name="slow-report", kind="task", task="tests.sleep_echo", deadline_seconds=2, notify_on="completion",
           notify_emails=["ops@example.com"], webhook_url=webhook.url, webhook_secret=SECRET)  # fmt: skip
    start_beat()
    run = trigger(api, "slow-report", {"seconds": 8})

    wait_until(lambda: Run.objects.filter(pk=run.pk, late_at__isnull=False).exists(), 15, "the run was not found late")
    run.refresh_from_db()
    assert run.status in Run.ACTIVE_STATUSES  # it goes on
    assert run.late_at >= run.deadline_at
    assert (run.deadline_at - run.created_at).total_seconds() == 2
    assert api.get(f"/api/v1/runs/{run.pk}/").data["late_at"] is not None

    assert wait_for_run(run, timeout=20).status == "succeeded"
    wait_for_notification(run)
    wait_until(lambda: len(webhook.requests) >= 2, 10, "the completion webhook did not follow")
    late, finished = events(webhook)  # signed: verify() raises otherwise
    assert (late["event"], late["id"], late["run"]["id"]) == ("run.late", f"run.late.{run.pk}", str(run.pk))
    assert late["run"]["status"] in Run.ACTIVE_STATUSES
    assert (finished["event"], finished["run"]["status"]) == ("run.finished", "succeeded")
    first, second = mailbox.wait_for(2)
    assert first["X-Jobsite-Event"] == "run.late"
    assert first["Subject"] == f"[Jobsite] slow-report is late: still {late['run']['status']} after its deadline"
    assert first["Message-ID"].startswith(f"<run.late.{run.pk}@")
    assert second["Subject"] == "[Jobsite] slow-report succeeded"
    assert [e["event"] for e in events(webhook)] == ["run.late", "run.finished"]
    assert len(mailbox.messages) == 2


def test_a_schedule_tick_that_did_not_succeed_in_time_sends_one_late_alert(worker, start_beat, api, webhook):
    define(api, name="maybe-fail", kind="command", command={"argv": commands.MAYBE_FAIL},
           webhook_url=webhook.url, webhook_secret=SECRET)  # fmt: skip
    start_beat()  # before the schedules: their first tick must not wait for beat to start
    for name, params in (("failing", {"fail": True}), ("fine", {})):
        response = api.post("/api/v1/schedules/", {"name": name, "job_type": "maybe-fail", "params": params,
                                                   "interval_seconds": 3, "must_succeed_within_seconds": 4},
                            format="json")  # fmt: skip
        assert response.status_code == 201, response.data
        assert response.data["must_succeed_within_seconds"] == 4
    failing = Schedule.objects.get(name="failing")

    wait_until(lambda: len(events(webhook)) >= 2, 30, "no schedule.late alert for two ticks of the failing schedule")
    Schedule.objects.filter(enabled=True).update(enabled=False)
    alerts = events(webhook)
    assert {alert["event"] for alert in alerts} == {"schedule.late"}
    # The schedule whose runs succeed is never told.
    assert {alert["schedule"]["name"] for alert in alerts} == {"failing"}, alerts
    assert all(count == 1 for count in Counter(alert["id"] for alert in alerts).values()), "a tick was told twice"
    first = alerts[0]
    run = Run.objects.get(schedule=failing, schedule_tick=first["schedule"]["tick"])
    assert first["id"] == f"schedule.late.{failing.pk}.{run.schedule_tick.isoformat()}"
    assert first["run"] == {"id": str(run.pk), "status": "failed", "url": first["run"]["url"]}
    assert first["schedule"]["must_succeed_within_seconds"] == 4
    fine_runs = Run.objects.filter(schedule__name="fine")
    assert fine_runs.filter(status="succeeded").exists()
