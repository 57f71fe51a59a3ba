"""manage.py send_test_notification, run as a user runs it: a separate process
that emails the tests' real SMTP server."""

import os
import subprocess
import sys

from tests.conftest import ROOT, _database_url
from tests.factories import JobTypeFactory
from tests.servers import text_part


def manage(*args: str, **env: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", "DATABASE_URL": _database_url(), **env}
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )


def test_it_emails_a_sample_to_the_job_types_recipients(transactional_db, mailbox, webhook):
    JobTypeFactory(
        name="nightly",
        notify_emails=["ops@example.com", "dev@example.com"],
        webhook_url=webhook.url,
        webhook_secret="a-long-webhook-secret-for-tests",
    )
    done = manage("send_test_notification", "nightly")
    assert done.returncode == 0, done.stderr
    assert "email: sent to ops@example.com, dev@example.com" in done.stdout
    assert "webhook: sent HTTP 200 from http://127.0.0.1/…" in done.stdout  # the URL may hold a token
    assert "notify_on is 'never'" in done.stdout  # the factory's default: a hint that runs stay silent
    [message] = mailbox.wait_for(1)
    assert message["Subject"] == "[Jobsite] Test notification: nightly succeeded"
    assert "This is a test notification for job type nightly" in text_part(message)
    assert len(webhook.requests) == 1


def test_a_failed_send_exits_non_zero_with_the_reason(transactional_db, mailbox):
    JobTypeFactory(name="nightly", notify_on="failure", notify_emails=["ops@example.com"])
    mailbox.stop()
    done = manage("send_test_notification", "nightly")
    assert done.returncode == 1
    assert done.stderr.strip().startswith("email: failed: ConnectionRefusedError")
    assert "Traceback" not in done.stderr


def test_bad_input_exits_non_zero_with_one_line(transactional_db):
    JobTypeFactory(name="silent")
    cases = {
        "ghost": "No job type named 'ghost'",
        "silent": "Job type 'silent' has no notify_emails and no webhook_url",
    }
    for name, message in cases.items():
        done = manage("send_test_notification", name)
        assert done.returncode != 0
        assert message in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1


def test_run_job_adds_recipients_and_refuses_bad_ones(transactional_db):
    # notify_on failure, and echo succeeds: should a worker run it, nobody is emailed.
    JobTypeFactory(name="told", notify_on="failure")
    done = manage("run_job", "told", "--notify", "me@example.com,bad@")
    assert done.returncode != 0
    assert "notify_emails: 'bad@' is not a valid email address." in done.stderr
    from jobs.models import Run

    assert not Run.objects.exists()
    done = manage("run_job", "told", "--notify", "me@example.com", "--notify", "you@example.com")
    assert done.returncode == 0, done.stderr
    assert Run.objects.get(pk=done.stdout.strip()).notify_emails == ["me@example.com", "you@example.com"]


def test_an_unknown_email_url_scheme_stops_the_start_with_what_to_use(transactional_db):
    done = manage("check", EMAIL_URL="smtp+tls://user:pass@mail.example.com:587")
    assert done.returncode != 0
    assert "EMAIL_URL scheme 'smtp+tls' is not known: use smtp://, submission:// (STARTTLS)" in done.stderr
