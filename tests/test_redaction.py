"""A webhook URL may carry a token: what is stored and shown of it is `scheme://host/…`
(jobs/core/redaction.py), in the API, the admin, the run page and the database."""

from urllib.parse import urlsplit

import pytest
from django.urls import reverse
from django.utils import timezone

from jobs.core.redaction import redact_url, redact_urls
from jobs.models import Run
from jobs.notifications import run_notify
from jobs.runs import tracking
from tests.factories import JobTypeFactory, RunFactory
from tests.settings import _free_port

SECRETS = ("hookuser", "hookpass", "t0kenpath", "qu3rytoken")


def secret_url(port: int) -> str:
    return f"http://hookuser:hookpass@127.0.0.1:{port}/hooks/t0kenpath?key=qu3rytoken"


def test_a_url_shows_its_scheme_and_host_only():
    assert redact_url("https://u:p@Hooks.Example.com:8443/t/s3cr3t?sig=1#x") == "https://hooks.example.com/…"
    assert redact_url("http://[::1]:8000/t") == "http://[::1]/…"
    assert redact_url("not a url") == "…"


def test_every_url_in_a_text_is_redacted_and_the_rest_kept():
    text = (
        "ConnectError calling http://u:p@ss@127.0.0.1:9/hook?k=v: [Errno 111] Connection refused; "
        "see 'https://x.org/a/b' (or http://y.org/c)."
    )
    assert redact_urls(text) == (
        "ConnectError calling http://127.0.0.1/…: [Errno 111] Connection refused; "
        "see 'https://x.org/…' (or http://y.org/…)."
    )
    assert redact_urls(redact_urls(text)) == redact_urls(text)
    assert redact_urls("to ops@example.com") == "to ops@example.com"


# --- Through a real delivery to the tests' webhook receiver -------------------------------


@pytest.fixture
def staff(client, admin_user):
    client.force_login(admin_user)
    return client


def ended_with_webhook(url: str) -> Run:
    job_type = JobTypeFactory(
        name="hooked", notify_on="completion", webhook_url=url, webhook_secret="a-long-webhook-secret-for-tests"
    )
    run = RunFactory(job_type=job_type, status="running", started_at=timezone.now(), attempts=1)
    tracking.run_succeeded(run_id=run.pk, result={"ok": True}, notify_on=None)
    return run


def shown(run: Run, staff, api) -> dict[str, str]:
    run.refresh_from_db()
    return {
        "database": str(run.notify_outcome),
        "api": api.get(f"/api/v1/runs/{run.pk}/").content.decode(),
        "admin run list": staff.get(reverse("admin:jobs_run_changelist")).content.decode(),
        "admin run page": staff.get(reverse("admin:jobs_run_change", args=[run.pk])).content.decode(),
        "admin job types": staff.get(reverse("admin:jobs_jobtype_changelist")).content.decode(),
        "run page": staff.get(f"/monitor/runs/{run.pk}/").content.decode(),
    }


def assert_no_secret(pages: dict[str, str]) -> None:
    for where, text in pages.items():
        for secret in SECRETS:
            assert secret not in text, (where, secret)


def test_a_failed_then_sent_webhook_never_shows_its_url(webhook, staff, api):
    webhook.status = 500
    run = ended_with_webhook(secret_url(urlsplit(webhook.url).port))
    assert run_notify(run_id=run.pk).state == "retry"
    pages = shown(run, staff, api)
    assert_no_secret(pages)
    assert run.notify_outcome["webhook"]["error"] == 'HTTP 500 from http://127.0.0.1/…: {"ok": false}'
    assert "webhook failed (HTTP 500 from http://127.0.0.1/…" in pages["admin run list"]

    webhook.status = 200
    Run.objects.filter(pk=run.pk).update(notify_locked_until=timezone.now())
    assert run_notify(run_id=run.pk).state == "sent"
    pages = shown(run, staff, api)
    assert_no_secret(pages)
    assert run.notify_outcome["webhook"]["detail"] == "HTTP 200 from http://127.0.0.1/…"
    for where in ("api", "run page"):
        assert "HTTP 200 from http://127.0.0.1/…" in pages[where], where
    [(headers, _)] = webhook.requests[1:]
    assert headers["X-Jobsite-Delivery"] == str(run.pk)  # it did go to the URL with its token


def test_a_webhook_that_cannot_be_reached_does_not_show_its_url(staff, api, settings):
    settings.JOBS_NOTIFY_MAX_ATTEMPTS = 1
    run = ended_with_webhook(secret_url(_free_port()))
    assert run_notify(run_id=run.pk).state == "failed"
    pages = shown(run, staff, api)
    assert_no_secret(pages)
    assert run.notify_outcome["webhook"]["error"].startswith("ConnectError calling http://127.0.0.1/…: ")


def test_an_outcome_stored_with_the_full_url_is_shown_redacted(staff, api):
    run = ended_with_webhook(secret_url(9))
    Run.objects.filter(pk=run.pk).update(
        notify_status="failed",
        notified_at=timezone.now(),
        notify_outcome={
            "webhook": {"status": "failed", "error": f"HTTP 500 from {secret_url(9)}: no", "at": "2026-05-01T10:00Z"}
        },
    )
    pages = shown(run, staff, api)
    del pages["database"]  # as it was stored
    assert_no_secret(pages)
    assert "HTTP 500 from http://127.0.0.1/…: no" in pages["api"]
