"""Notifications without a worker: who is told when, what they are told, and
that each run is notified once. The email goes to Django's test outbox here;
tests/e2e/test_notifications.py sends real ones through a worker."""

import hashlib
import hmac
import json
import uuid

import pytest
from django.core import mail
from django.db import connection
from django.utils import timezone

from jobs.core import errors
from jobs.models import Run
from jobs.notifications import notify_on_for, run_notify, wants_notification
from jobs.runs import tracking, trigger
from tests.factories import JobTypeFactory, RunFactory
from tests.settings import _free_port

SECRET = "a-long-webhook-secret-for-tests"


@pytest.fixture
def notifying(db):
    return JobTypeFactory(name="nightly", notify_on="completion", notify_emails=["ops@example.com"])


@pytest.fixture
def closed_smtp_port(settings):
    """Email goes to real SMTP on a port nothing listens on."""
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_PORT = _free_port()
    settings.JOBS_NOTIFY_RETRY_BACKOFF_SECONDS = 0  # attempts can follow each other at once


def ended(job_type, status="succeeded", **fields) -> Run:
    """A run that just ended the way the worker ends runs."""
    run = RunFactory(job_type=job_type, status="running", started_at=timezone.now(), attempts=1, **fields)
    if status == "succeeded":
        tracking.run_succeeded(run_id=run.pk, result=fields.get("result", {"ok": True}), notify_on=None)
    else:
        tracking.run_failed(run_id=run.pk, error="Boom: <b>it broke</b>")
    run.refresh_from_db()
    return run


@pytest.mark.parametrize(
    ("notify_on", "told_about"),
    [("never", set()), ("failure", {"failed"}), ("completion", {"succeeded", "failed", "cancelled"})],
)
def test_it_tells_about_the_statuses_notify_on_names(notify_on, told_about):
    for status in ("succeeded", "failed", "cancelled"):
        assert wants_notification(notify_on, status) is (status in told_about), (notify_on, status)


def test_a_run_with_a_parent_is_never_notified_on_its_own(notifying):
    # A workflow's step run has parent_id set: its workflow run is the one reported.
    step = Run(job_type=notifying)
    assert notify_on_for(step) == "completion"
    step.parent_id = uuid.uuid4()
    assert notify_on_for(step) == "never"


def test_a_run_ending_marks_its_notification_pending_only_when_notify_on_matches(db):
    never = JobTypeFactory(notify_on="never", notify_emails=["a@example.com"])
    failure = JobTypeFactory(notify_on="failure", notify_emails=["a@example.com"])
    assert ended(never, "failed").notify_status == ""
    assert ended(failure, "succeeded").notify_status == ""
    assert ended(failure, "failed").notify_status == "pending"
    cancelled = trigger.run_cancel(run=RunFactory(job_type=failure, status="scheduled"))
    cancelled.refresh_from_db()
    assert cancelled.notify_status == ""


def test_a_cancelled_run_of_a_completion_job_type_is_notified(notifying):
    run = trigger.run_cancel(run=RunFactory(job_type=notifying, status="scheduled"))
    run.refresh_from_db()
    assert (run.status, run.notify_status) == ("cancelled", "pending")
    assert run_notify(run_id=run.pk).state == "sent"
    assert mail.outbox[0].subject == "[Jobsite] nightly cancelled"


def test_a_status_written_twice_queues_one_notification(notifying, django_capture_on_commit_callbacks):
    run = RunFactory(job_type=notifying, status="running")
    with django_capture_on_commit_callbacks() as queued:
        tracking.run_succeeded(run_id=run.pk, result={"n": 1}, notify_on="completion")
        tracking.run_succeeded(run_id=run.pk, result={"n": 2}, notify_on="completion")
        tracking.run_failed(run_id=run.pk, error="late failure signal")
    assert len(queued) == 1
    run.refresh_from_db()
    assert (run.status, run.result) == ("succeeded", {"n": 1})


def test_a_run_whose_message_says_never_costs_no_query_to_end(notifying, django_assert_num_queries):
    run = RunFactory(job_type=notifying, status="running")
    # The conditional UPDATE and the INSERT that counts it for /metrics (RunToCount), nothing
    # else (PostgreSQL: one statement, jobs/core/statements.py).
    with django_assert_num_queries(1 if connection.vendor == "postgresql" else 2):
        # As the worker calls it for a message that says: notify never, no workflow.
        tracking.run_succeeded(run_id=run.pk, result={}, notify_on="never", parent_id="")


def test_running_the_task_twice_sends_one_email(notifying):
    run = ended(notifying, notify_emails=["me@example.com"])
    assert run_notify(run_id=run.pk).state == "sent"
    assert run_notify(run_id=run.pk).state == "done"
    assert len(mail.outbox) == 1
    assert mail.outbox[0].to == ["ops@example.com", "me@example.com"]
    run.refresh_from_db()
    assert (run.notify_status, run.notify_attempts) == ("sent", 1)
    assert run.notified_at is not None


def test_the_email_says_what_happened_and_escapes_user_text_in_html(notifying, settings):
    settings.SITE_URL = "https://jobs.example.com"
    run = ended(notifying, "failed", params={"who": "<script>alert(1)</script>"})
    run_notify(run_id=run.pk)
    [message] = mail.outbox
    assert message.subject == "[Jobsite] nightly failed"
    assert message.from_email == settings.DEFAULT_FROM_EMAIL
    link = f"https://jobs.example.com/monitor/runs/{run.pk}/"
    text = message.body
    for fact in ["Job type:  nightly", "Status:    failed", "Started:", "Ended:", "Duration:", link]:
        assert fact in text, fact
    assert "Boom: <b>it broke</b>" in text
    assert '"who": "<script>alert(1)</script>"' in text
    html, mimetype = message.alternatives[0]
    assert mimetype == "text/html"
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "Boom: &lt;b&gt;it broke&lt;/b&gt;" in html
    assert f'<a href="{link}">' in html
    assert message.extra_headers["X-Jobsite-Run"] == str(run.pk)


def test_a_long_result_is_cut_in_the_email(notifying, settings):
    settings.JOBS_NOTIFY_EXCERPT_CHARS = 100
    run = ended(notifying, result={"rows": ["x" * 50] * 100})
    run_notify(run_id=run.pk)
    text = mail.outbox[0].body
    assert "more characters)" in text
    assert len(text) < 2000


def test_a_failing_smtp_server_is_retried_then_recorded_without_touching_the_run(notifying, closed_smtp_port, settings):
    settings.JOBS_NOTIFY_MAX_ATTEMPTS = 3
    run = ended(notifying)
    assert run_notify(run_id=run.pk).state == "retry"
    assert run_notify(run_id=run.pk).state == "retry"
    assert run_notify(run_id=run.pk).state == "failed"
    assert run_notify(run_id=run.pk).state == "done"
    run.refresh_from_db()
    assert (run.status, run.notify_status, run.notify_attempts) == ("succeeded", "failed", 3)
    assert run.notify_outcome["email"]["status"] == "failed"
    assert "ConnectionRefusedError" in run.notify_outcome["email"]["error"]


def test_retries_wait_with_a_growing_delay(notifying, closed_smtp_port, settings):
    settings.JOBS_NOTIFY_RETRY_BACKOFF_SECONDS = 5
    settings.JOBS_NOTIFY_RETRY_BACKOFF_MAX_SECONDS = 15
    run = ended(notifying)
    delays = []
    for _ in range(4):
        result = run_notify(run_id=run.pk)
        delays.append(result.retry_in)
        Run.objects.filter(pk=run.pk).update(notify_locked_until=timezone.now())  # as if the delay had passed
    assert delays == [5, 10, 15, 15]


def test_an_attempt_in_progress_is_not_repeated_by_a_duplicate_task(notifying):
    run = ended(notifying)
    assert run.claim_notification(lease_seconds=60) == 1  # a first task is sending
    result = run_notify(run_id=run.pk)
    assert result.state == "busy"
    assert 59 < result.retry_in <= 61  # back when the first one's hold ends, in case it died
    assert mail.outbox == []


def test_an_attempt_that_outlived_its_hold_cannot_overwrite_the_next_ones_record(notifying):
    run = ended(notifying)
    first = run.claim_notification(lease_seconds=0)
    second = Run.objects.get(pk=run.pk).claim_notification(lease_seconds=60)
    assert (first, second) == (1, 2)
    assert not run.mark_notified(attempt=first, status="failed", outcome={"email": {"status": "failed"}})
    assert run.mark_notified(attempt=second, status="sent", outcome={})
    assert Run.objects.get(pk=run.pk).notify_status == "sent"


def test_with_nobody_to_tell_the_notification_fails_with_the_reason(db):
    run = ended(JobTypeFactory(notify_on="completion"))
    assert run_notify(run_id=run.pk).state == "failed"
    run.refresh_from_db()
    assert run.notify_outcome["error"].startswith("Nobody to notify")


def test_the_webhook_is_signed_and_an_email_already_sent_is_not_sent_again(notifying, webhook):
    notifying.webhook_url, notifying.webhook_secret = webhook.url, SECRET
    notifying.save()
    webhook.status = 503
    run = ended(notifying)
    assert run_notify(run_id=run.pk).state == "retry"
    webhook.status = 200
    Run.objects.filter(pk=run.pk).update(notify_locked_until=timezone.now())
    assert run_notify(run_id=run.pk).state == "sent"
    assert len(mail.outbox) == 1  # the email went out on the first attempt only
    assert len(webhook.requests) == 2
    headers, body = webhook.requests[-1]
    assert headers["X-Jobsite-Signature"] == "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert headers["Content-Type"] == "application/json"
    assert json.loads(body)["run"]["status"] == "succeeded"


def test_a_webhook_to_a_host_no_longer_allowed_is_refused_when_sending(notifying, webhook, settings):
    notifying.webhook_url, notifying.webhook_secret, notifying.notify_emails = webhook.url, SECRET, []
    notifying.save()
    settings.JOBS_HTTP_ALLOWED_HOSTS = []
    settings.JOBS_NOTIFY_MAX_ATTEMPTS = 1
    run = ended(notifying)
    assert run_notify(run_id=run.pk).state == "failed"
    run.refresh_from_db()
    assert "JOBS_HTTP_ALLOWED_HOSTS" in run.notify_outcome["webhook"]["error"]
    assert webhook.requests == []


def test_run_create_checks_the_runs_own_recipients(notifying):
    with pytest.raises(errors.InvalidInput) as error:
        trigger.run_create(job_type=notifying, trigger="api", notify_emails=["ok@example.com", "nope@"])
    assert error.value.errors == {"notify_emails": ["'nope@' is not a valid email address."]}
    quiet = JobTypeFactory(name="quiet")
    with pytest.raises(errors.InvalidInput, match="never notifies"):
        trigger.run_create(job_type=quiet, trigger="api", notify_emails=["me@example.com"])
    assert not Run.objects.exists()


def test_a_rerun_does_not_inherit_the_runs_own_recipients(notifying):
    run = RunFactory(job_type=notifying, status="failed", notify_emails=["me@example.com"])
    assert trigger.run_rerun(run=run).notify_emails == []
