"""Notifications end to end: a run ends on a real worker, which emails a real
SMTP server (aiosmtpd) and posts to a real local webhook receiver."""

import base64
import hashlib
import hmac
import json
import secrets
import time
from datetime import timedelta
from urllib.parse import urlsplit

import pytest
from django.conf import settings
from django.utils import timezone
from django_celery_results.models import TaskResult
from standardwebhooks import Webhook, WebhookVerificationError

from jobs.models import Run
from jobs.notifications import notification_sweep
from jobsite.celery import app
from tests import commands
from tests.conftest import wait_for_notification, wait_for_run, wait_until
from tests.e2e.test_execution import define
from tests.e2e.test_faults import SHORT_VISIBILITY
from tests.factories import JobTypeFactory
from tests.servers import html_part, text_part

SECRET = "a-long-webhook-secret-for-tests"
# Succeeds, or fails when its params say so: one job type for both outcomes.
MAYBE_FAIL = {"argv": commands.MAYBE_FAIL}


def trigger(api, name: str, params: dict | None = None, **extra) -> Run:
    response = api.post(f"/api/v1/job-types/{name}/run/", {"params": params or {}, **extra}, format="json")
    assert response.status_code == 201, response.data
    return Run.objects.get(pk=response.data["id"])


def test_it_emails_the_result_and_link_of_a_completion_job_types_run_once(worker, api, mailbox):
    define(
        api,
        name="report",
        kind="task",
        task="jobs.builtin.echo",
        notify_on="completion",
        notify_emails=["ops@example.com"],
    )
    run = trigger(api, "report", {"rows": 1234}, notify_emails=["me@example.com", "OPS@example.com"])
    assert wait_for_run(run).status == "succeeded"
    wait_for_notification(run)
    [message] = mailbox.wait_for(1)
    assert message["Subject"] == "[Jobsite] report succeeded"
    assert message["From"] == settings.DEFAULT_FROM_EMAIL
    assert sorted(mailbox.envelopes[0][1]) == ["me@example.com", "ops@example.com"]
    text = text_part(message)
    link = f"{settings.SITE_URL}/monitor/runs/{run.pk}/"
    assert link in text
    assert '"rows": 1234' in text
    assert "Status:    succeeded" in text
    assert f'href="{link}"' in html_part(message)
    site = urlsplit(settings.SITE_URL).hostname
    assert message["Message-ID"] == f"<run.finished.{run.pk}@{site}>"  # the same if it is ever sent again
    data = api.get(f"/api/v1/runs/{run.pk}/").data
    assert data["notification"]["status"] == "sent"
    assert data["notification"]["email"]["detail"] == "to ops@example.com, me@example.com"
    assert data["notification"]["notified_at"]
    time.sleep(1)
    assert len(mailbox.messages) == 1


def test_a_failure_job_type_emails_only_about_the_failed_run_with_its_error(worker, api, mailbox):
    define(
        api, name="maybe", kind="command", command=MAYBE_FAIL, notify_on="failure", notify_emails=["ops@example.com"]
    )
    ok = wait_for_run(trigger(api, "maybe", {"mode": "ok"}, notify_emails=["me@example.com"]))
    assert (ok.status, ok.notify_status) == ("succeeded", "")  # decided as the run ended: nobody is told
    failed = wait_for_run(trigger(api, "maybe", {"mode": "fail"}, notify_emails=["me@example.com"]))
    assert failed.status == "failed"
    wait_for_notification(failed)
    [message] = mailbox.wait_for(1)
    assert message["Subject"] == "[Jobsite] maybe failed"
    assert sorted(mailbox.envelopes[0][1]) == ["me@example.com", "ops@example.com"]
    assert "Command exited with code 2" in text_part(message) and "disk <full>" in text_part(message)
    assert "disk &lt;full&gt;" in html_part(message) and "disk <full>" not in html_part(message)
    assert str(failed.pk) in text_part(message)
    assert api.get(f"/api/v1/runs/{ok.pk}/").data["notification"] is None


def test_the_webhook_receives_one_post_whose_signature_verifies(worker, api, webhook):
    define(
        api,
        name="hooked",
        kind="task",
        task="jobs.builtin.echo",
        notify_on="completion",
        webhook_url=webhook.url,
        webhook_secret=SECRET,
    )
    run = wait_for_run(trigger(api, "hooked", {"n": 7}))
    assert wait_for_notification(run).notify_status == "sent", run.notify_outcome
    [(headers, body)] = webhook.requests
    expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(headers["X-Jobsite-Signature"], expected)
    payload = json.loads(body)
    assert payload["event"] == "run.finished"
    assert payload["run"]["id"] == str(run.pk)
    assert (payload["run"]["status"], payload["run"]["result"]) == ("succeeded", {"n": 7})
    assert payload["run"]["url"] == f"{settings.SITE_URL}/monitor/runs/{run.pk}/"
    assert headers["X-Jobsite-Delivery"] == str(run.pk)
    data = api.get(f"/api/v1/runs/{run.pk}/").data
    assert data["notification"]["webhook"]["detail"] == "HTTP 200 from http://127.0.0.1/…"  # not its path
    # Standard Webhooks, with the spec's own library: a plain secret is given to it as whsec_ + base64.
    assert headers["webhook-id"] == f"run.finished.{run.pk}"
    assert abs(int(headers["webhook-timestamp"]) - time.time()) < 60
    assert Webhook("whsec_" + base64.b64encode(SECRET.encode()).decode()).verify(body, headers) == payload


def test_a_whsec_secret_verifies_with_the_standard_webhooks_library_and_a_replay_does_not(worker, api, webhook):
    secret = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
    define(api, name="standard", kind="task", task="jobs.builtin.echo", notify_on="completion",
           webhook_url=webhook.url, webhook_secret=secret)  # fmt: skip
    run = wait_for_run(trigger(api, "standard", {"n": 1}))
    assert wait_for_notification(run).notify_status == "sent", run.notify_outcome
    [(headers, body)] = webhook.requests
    assert Webhook(secret).verify(body, headers)["run"]["id"] == str(run.pk)
    # The same spec's algorithm, without the library.
    signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
    key = base64.b64decode(secret.removeprefix("whsec_"))
    assert headers["webhook-signature"] == "v1," + base64.b64encode(hmac.digest(key, signed, "sha256")).decode()
    # Replayed later: the signed timestamp is too old, and a fresh one breaks the signature.
    with pytest.raises(WebhookVerificationError, match="too old"):
        Webhook(secret).verify(body, {**headers, "webhook-timestamp": str(int(time.time()) - 600)})
    later = {**headers, "webhook-timestamp": str(int(headers["webhook-timestamp"]) + 1)}
    with pytest.raises(WebhookVerificationError, match="No matching signature"):
        Webhook(secret).verify(body, later)
    # The X-Jobsite-Signature of old is still there, keyed with the secret as written.
    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(headers["X-Jobsite-Signature"], expected)


def test_an_email_sent_while_smtp_is_down_arrives_once_when_it_is_back_20_s_later(worker, api, mailbox):
    JobTypeFactory(name="nightly", notify_on="completion", notify_emails=["ops@example.com"])
    mailbox.stop()
    run = wait_for_run(trigger(api, "nightly"))
    wait_for_notification_attempt(run)
    data = api.get(f"/api/v1/runs/{run.pk}/").data["notification"]
    assert data["status"] == "pending"
    assert "Connection refused" in data["email"]["error"]
    time.sleep(max(0.0, (run.finished_at + timedelta(seconds=20) - timezone.now()).total_seconds()))
    mailbox.start()
    run = wait_for_notification(run, timeout=30)
    assert run.notify_status == "sent"
    assert run.notify_attempts > 1
    assert len(mailbox.wait_for(1)) == 1
    time.sleep(1)
    assert len(mailbox.messages) == 1


def test_with_smtp_down_for_good_the_run_shows_why_and_keeps_its_own_status(worker, api, mailbox, webhook):
    webhook.status = 500
    JobTypeFactory(
        name="doomed-notice",
        notify_on="completion",
        notify_emails=["ops@example.com"],
        webhook_url=webhook.url,
        webhook_secret=SECRET,
    )
    mailbox.stop()
    run = wait_for_run(trigger(api, "doomed-notice"))
    run = wait_for_notification(run, timeout=60)
    data = api.get(f"/api/v1/runs/{run.pk}/").data
    assert data["status"] == "succeeded"
    assert data["notification"]["status"] == "failed"
    assert data["notification"]["attempts"] == settings.JOBS_NOTIFY_MAX_ATTEMPTS
    assert "Connection refused" in data["notification"]["email"]["error"]
    assert data["notification"]["webhook"]["error"] == 'HTTP 500 from http://127.0.0.1/…: {"ok": false}'
    assert len(webhook.requests) == settings.JOBS_NOTIFY_MAX_ATTEMPTS


def test_a_redelivered_notify_task_sends_no_second_email(worker, api, mailbox):
    JobTypeFactory(name="once", notify_on="completion", notify_emails=["ops@example.com"])
    run = wait_for_notification(wait_for_run(trigger(api, "once")))
    assert run.notify_status == "sent"
    mailbox.wait_for(1)
    # The broker hands the same message out again (same task id, same run).
    task_id = f"notify-{run.pk}"
    # The first task's result is stored after it has marked the run notified:
    # wait for it, or it may land after the delete and pass for the second's.
    deadline = time.monotonic() + 20
    while not TaskResult.objects.filter(task_id=task_id, status="SUCCESS").exists():
        assert time.monotonic() < deadline, "the first notify task stored no result"
        time.sleep(0.1)
    TaskResult.objects.filter(task_id=task_id).delete()
    app.send_task("jobsite.notify_run", args=[str(run.pk)], task_id=task_id)
    deadline = time.monotonic() + 20
    while not TaskResult.objects.filter(task_id=task_id, status="SUCCESS").exists():
        assert time.monotonic() < deadline, "the redelivered task did not run"
        time.sleep(0.1)
    assert json.loads(TaskResult.objects.get(task_id=task_id).result) == "done"
    assert len(mailbox.messages) == 1


def test_duplicate_notify_tasks_racing_for_one_run_send_one_email(worker, mailbox):
    job_type = JobTypeFactory(name="raced", notify_on="completion", notify_emails=["ops@example.com"])
    run = Run.objects.create(
        job_type=job_type, trigger="api", status="succeeded", finished_at=timezone.now(), notify_status="pending"
    )
    for _ in range(3):
        app.send_task("jobsite.notify_run", args=[str(run.pk)], task_id=f"notify-{run.pk}")
    assert wait_for_notification(run).notify_status == "sent"
    mailbox.wait_for(1)
    time.sleep(1.5)
    assert len(mailbox.messages) == 1
    run.refresh_from_db()
    assert run.notify_attempts == 1


def test_a_notification_whose_task_was_lost_is_sent_by_the_sweeper(worker, mailbox):
    job_type = JobTypeFactory(name="lost", notify_on="failure", notify_emails=["ops@example.com"])
    long_ago = timezone.now() - timedelta(minutes=10)
    lost = Run.objects.create(
        job_type=job_type, trigger="api", status="failed", error="boom", finished_at=long_ago, notify_status="pending"
    )
    fresh = Run.objects.create(
        job_type=job_type, trigger="api", status="failed", finished_at=timezone.now(), notify_status="pending"
    )
    assert notification_sweep() == 1  # the fresh one's own task is still on its way
    assert wait_for_notification(lost).notify_status == "sent"
    [message] = mailbox.wait_for(1)
    assert str(lost.pk) in text_part(message)
    fresh.refresh_from_db()
    assert fresh.notify_status == "pending"


def wait_for_notification_attempt(run: Run, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not Run.objects.filter(pk=run.pk, notify_attempts__gte=1, notify_outcome__has_key="email").exists():
        assert time.monotonic() < deadline, "no notification attempt was made"
        time.sleep(0.1)


def test_a_workflow_run_sends_one_email_for_the_whole_workflow(worker, api, mailbox):
    define(api, name="step", kind="task", task="jobs.builtin.echo", notify_on="completion",
           notify_emails=["steps@example.com"])  # fmt: skip
    define(
        api,
        name="nightly-flow",
        kind="workflow",
        notify_on="completion",
        notify_emails=["ops@example.com"],
        steps=[
            {"name": "a", "job_type": "step", "params": {"n": 1}},
            {"name": "b", "job_type": "step", "params": {"n": 2}, "depends_on": ["a"]},
            {"name": "c", "job_type": "step", "params": {"n": 3}, "depends_on": ["a"]},
        ],
    )
    run = trigger(api, "nightly-flow")
    assert wait_for_run(run, timeout=60).status == "succeeded"
    wait_for_notification(run)
    [message] = mailbox.wait_for(1)
    assert message["Subject"] == "[Jobsite] nightly-flow succeeded"
    assert mailbox.envelopes[0][1] == ["ops@example.com"]
    time.sleep(2)
    # The steps' own job type notifies on completion, but a step is told through its workflow.
    assert len(mailbox.messages) == 1
    assert set(run.children.values_list("notify_status", flat=True)) == {""}


def kill_once(worker):
    def kill():
        if worker.process.poll() is None:
            worker.kill()

    return kill


@pytest.mark.parametrize("channel", ["email", "webhook"])
def test_a_notification_sent_again_after_its_worker_died_carries_the_same_id(start_worker, mailbox, webhook, channel):
    """Delivery is at least once: the worker dies after the send, before its
    record, and the next attempt sends again with the same id, for the receiver
    to drop the repeat."""
    queue = f"notify-crash-{channel}"
    first = start_worker(1, queue, SHORT_VISIBILITY)
    job_type = JobTypeFactory(name="crashy", notify_on="completion", notify_emails=["ops@example.com"],
                              webhook_url=webhook.url, webhook_secret=SECRET)  # fmt: skip
    run = Run.objects.create(
        job_type=job_type, trigger="api", status="succeeded", finished_at=timezone.now(), notify_status="pending"
    )
    # The receiver has the message; the worker is killed before it hears back.
    if channel == "email":
        mailbox.on_message = kill_once(first)
    else:
        webhook.on_request = kill_once(first)
    app.send_task("jobsite.notify_run", args=[str(run.pk)], task_id=f"notify-{run.pk}", queue=queue)
    wait_until(lambda: first.process.poll() is not None, 30, "the worker was not killed at the send")
    run.refresh_from_db()
    assert run.notify_status == "pending"
    assert run.notify_outcome.get(channel) is None  # the send was not recorded

    start_worker(1, queue, SHORT_VISIBILITY)  # takes over once Redis hands the task out again
    assert wait_for_notification(run, timeout=120).notify_status == "sent", run.notify_outcome
    if channel == "email":
        first_email, second_email = mailbox.wait_for(2)
        site = urlsplit(settings.SITE_URL).hostname
        assert first_email["Message-ID"] == second_email["Message-ID"] == f"<run.finished.{run.pk}@{site}>"
        assert len(webhook.requests) == 1
    else:
        (first_headers, first_body), (second_headers, second_body) = webhook.requests
        assert first_headers["webhook-id"] == second_headers["webhook-id"] == f"run.finished.{run.pk}"
        standard = Webhook("whsec_" + base64.b64encode(SECRET.encode()).decode())
        assert standard.verify(first_body, first_headers) == standard.verify(second_body, second_headers)
        assert len(mailbox.messages) == 1  # recorded before the crash: not sent again
