"""A webhook URL may carry a token: what is stored and shown of a webhook call is
`scheme://host/…` (jobs/core/redaction.py), in the API, the admin, the run page and
the database. And what definitions show of credentials: masked, the rest readable."""

from urllib.parse import urlsplit

import pytest
from django.urls import reverse
from django.utils import timezone

from jobs.core.redaction import (
    MASK,
    MaskError,
    is_credential_name,
    mask_headers,
    mask_http,
    mask_url,
    mask_urls,
    redact_url,
    redact_urls,
    unmask_http,
    unmask_url,
)
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


# --- Definitions: credentials masked, the rest readable (mask_*, unmask_*) ----------------


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (
            "https://user:pa55@Host.example:8443/path?token=t0k&page=2&API_KEY=k&X-Amz-Signature=s&sig=x#frag",
            "https://user:********@Host.example:8443/path?token=********&page=2&API_KEY=********"
            "&X-Amz-Signature=********&sig=********#frag",
        ),
        ("https://ghp_t0k3n@github.example/repo.git", "https://********@github.example/repo.git"),
        (
            "http://127.0.0.1:9/items?q=jobs&access_token=&page",
            "http://127.0.0.1:9/items?q=jobs&access_token=********&page",
        ),
        ("http://h/no/credentials?a=1", "http://h/no/credentials?a=1"),
        ("http://[oops/", "********"),
    ],
)
def test_a_url_shows_all_but_its_credentials(url, shown):
    assert mask_url(url) == shown
    assert mask_url(shown) == shown


def test_a_webhook_url_shows_its_host_and_the_names_of_its_query_parameters():
    url = "https://u:p@hooks.example.com/services/T0/B0/t0k3n?channel=ops&x"
    assert mask_url(url, webhook=True) == "https://u:********@hooks.example.com/********?channel=********&********"
    assert mask_url("https://hooks.example.com/", webhook=True) == "https://hooks.example.com/"


@pytest.mark.parametrize(
    "name",
    ["Authorization", "proxy-authorization", "Cookie", "Set-Cookie", "X-Api-Key", "Api-Key", "X-Auth-Token",
     "Client-Secret", "X-Password", "sig", "passwd", "X-Session-Id", "X-Amz-Security-Token", "credentials"],
)  # fmt: skip
def test_credential_like_names(name):
    assert is_credential_name(name)


@pytest.mark.parametrize("name", ["Accept", "Content-Type", "User-Agent", "X-Request-Id", "page", "q", "signal"])
def test_other_names_are_shown(name):
    assert not is_credential_name(name)


def test_headers_show_their_names_and_the_values_of_all_but_credentials():
    headers = {"Authorization": "Bearer x", "X-Api-Key": "k", "Accept": "application/json"}
    assert mask_headers(headers) == {"Authorization": MASK, "X-Api-Key": MASK, "Accept": "application/json"}


def test_the_mask_sent_back_keeps_the_stored_value_and_the_rest_is_taken_as_sent():
    stored = {
        "method": "GET",
        "url": "https://user:pa55@h.example/p?token=a&token=b&page=1",
        "headers": {"Authorization": "Bearer x", "X-Api-Key": "k", "Cookie": "c"},
    }
    assert unmask_http(mask_http(stored), stored) == stored
    sent = {
        "method": "POST",
        "url": f"https://user:{MASK}@other.example/p?token=new&token={MASK}&page=2",
        "headers": {"AUTHORIZATION": MASK, "X-Api-Key": "k2"},
    }
    assert unmask_http(sent, stored) == {
        "method": "POST",
        "url": "https://user:pa55@other.example/p?token=new&token=b&page=2",
        "headers": {"AUTHORIZATION": "Bearer x", "X-Api-Key": "k2"},
    }
    hook = "https://hooks.example.com/services/t0k3n?sig=s"
    assert unmask_url(mask_url(hook, webhook=True), hook, webhook=True) == hook
    assert (
        unmask_url(f"https://new.example/{MASK}?sig={MASK}", hook, webhook=True)
        == "https://new.example/services/t0k3n?sig=s"
    )
    assert unmask_url(MASK, hook) == hook


def test_a_mask_with_no_stored_value_is_refused_naming_each():
    with pytest.raises(MaskError) as error:
        unmask_http({"url": f"https://{MASK}@h/?token={MASK}", "headers": {"X-Token": MASK}}, {"url": "https://h/"})
    assert [message.split(" is ")[0] for message in error.value.messages] == [
        "url: the password (before '@')",
        "url: query parameter 'token'",
        "headers: 'X-Token'",
    ]
    with pytest.raises(MaskError):
        unmask_url(f"https://h/{MASK}", "", webhook=True)


def test_every_url_in_an_error_is_masked():
    text = "ConnectError calling http://u:p4ss@127.0.0.1:9/x?token=t0k&page=2: refused"
    assert mask_urls(text) == f"ConnectError calling http://u:{MASK}@127.0.0.1:9/x?token={MASK}&page=2: refused"
