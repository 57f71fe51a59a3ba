"""The API's notification fields: job types' recipients and webhook, runs' own
recipients and their notification's outcome."""

import pytest

from jobs.models import JobType, Run
from tests.factories import JobTypeFactory, RunFactory

URL = "/api/v1/job-types/"
SECRET = "a-long-webhook-secret-for-tests"
BASE = {"name": "told", "kind": "task", "task": "jobs.builtin.echo"}


def test_it_saves_notification_settings_and_never_returns_the_secret(api):
    body = {
        **BASE,
        "notify_on": "failure",
        "notify_emails": ["ops@example.com"],
        "webhook_url": "http://127.0.0.1:9/hook",
        "webhook_secret": SECRET,
    }
    response = api.post(URL, body, format="json")
    assert response.status_code == 201, response.data
    assert "webhook_secret" not in response.data
    assert SECRET not in response.content.decode()
    read = api.get(f"{URL}told/")
    assert (read.data["notify_on"], read.data["notify_emails"]) == ("failure", ["ops@example.com"])
    assert read.data["webhook_url"] == "http://127.0.0.1:9/********"  # a webhook's path may be its token
    assert SECRET not in read.content.decode()
    assert JobType.objects.get(name="told").webhook_secret == SECRET
    # A change that leaves the secret out keeps it.
    assert api.patch(f"{URL}told/", {"notify_on": "completion"}, format="json").status_code == 200
    assert JobType.objects.get(name="told").webhook_secret == SECRET


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({"notify_emails": ["ops@example.com", "not-an-address"]}, "notify_emails", "'not-an-address' is not a valid"),
        ({"notify_emails": "ops@example.com"}, "notify_emails", "Give a list of email addresses"),
        ({"notify_on": "sometimes"}, "notify_on", "not a valid choice"),
        ({"webhook_url": "http://127.0.0.1:9/hook"}, "webhook_secret", "at least 16 characters"),
        ({"webhook_url": "http://127.0.0.1:9/hook", "webhook_secret": "short"}, "webhook_secret", "at least 16"),
        ({"webhook_url": "ftp://example.com/", "webhook_secret": SECRET}, "webhook_url", "Give an absolute http://"),
        (
            {"webhook_url": "http://169.254.169.254/latest", "webhook_secret": SECRET},
            "webhook_url",
            "loopback, private or link-local",
        ),
        (
            {"webhook_url": "http://127.0.0.1:9/hook", "webhook_secret": "whsec_not*base64!at-all"},
            "webhook_secret",
            "must be followed by base64",
        ),
        (
            {"webhook_url": "http://127.0.0.1:9/hook", "webhook_secret": "whsec_" + "QUFB" * 4},
            "webhook_secret",
            "a key of 24 to 64 bytes, not 12",
        ),
    ],
)
def test_bad_notification_settings_get_a_400_naming_the_field(api, body, field, message):
    response = api.post(URL, {**BASE, **body}, format="json")
    assert response.status_code == 400
    assert message in " ".join(str(m) for m in response.data[field]), response.data
    assert not JobType.objects.exists()


def test_a_run_can_add_recipients_and_bad_ones_get_a_400(api):
    JobTypeFactory(name="told", notify_on="completion")
    url = f"{URL}told/run/"
    response = api.post(url, {"notify_emails": ["a@example.com", "b@"]}, format="json")
    assert response.status_code == 400
    assert response.data == {"notify_emails": ["'b@' is not a valid email address."]}
    response = api.post(url, {"notify_emails": "a@example.com"}, format="json")
    assert response.status_code == 400 and "notify_emails" in response.data
    assert not Run.objects.exists()
    response = api.post(url, {"notify_emails": ["a@example.com", "A@example.com "]}, format="json")
    assert response.status_code == 201, response.data
    assert response.data["notify_emails"] == ["a@example.com"]


def test_adding_recipients_to_a_job_type_that_never_notifies_is_refused(api):
    JobTypeFactory(name="quiet")
    response = api.post(f"{URL}quiet/run/", {"notify_emails": ["me@example.com"]}, format="json")
    assert response.status_code == 400
    assert "notify_on is 'never'" in response.data["notify_emails"][0]
    assert not Run.objects.exists()


def test_a_run_shows_its_notification_outcome(api):
    quiet = RunFactory(status="succeeded")
    assert api.get(f"/api/v1/runs/{quiet.pk}/").data["notification"] is None
    failed = RunFactory(
        status="succeeded",
        notify_status="failed",
        notify_attempts=8,
        notify_outcome={
            "email": {"status": "failed", "error": "SMTPServerDisconnected: gone", "at": "2026-01-01T00:00:00Z"}
        },
    )
    data = api.get(f"/api/v1/runs/{failed.pk}/").data["notification"]
    assert data["status"] == "failed"
    assert data["attempts"] == 8
    assert data["email"]["error"] == "SMTPServerDisconnected: gone"
    assert "notification" in api.get("/api/v1/runs/").data["results"][0]
