"""The admin's notification settings, test action and run outcome."""

import pytest
from django.core import mail
from django.urls import reverse

from jobs.models import JobType, Run
from tests.factories import JobTypeFactory, RunFactory, job_type_form

SECRET = "a-long-webhook-secret-for-tests"


@pytest.fixture
def staff(client, admin_user):
    client.force_login(admin_user)
    return client


def test_it_saves_recipients_typed_as_text_and_the_secret(staff):
    response = staff.post(
        reverse("admin:jobs_jobtype_add"),
        job_type_form(
            notify_emails="ops@example.com, dev@example.com\nme@example.com",
            webhook_url="http://127.0.0.1:9/hook",
            webhook_secret=SECRET,
        ),
    )
    assert response.status_code == 302, response.content.decode()[-3000:]
    job_type = JobType.objects.get(name="told")
    assert job_type.notify_emails == ["ops@example.com", "dev@example.com", "me@example.com"]
    assert job_type.webhook_secret == SECRET


def test_a_bad_address_or_a_webhook_without_secret_is_a_form_error(staff):
    response = staff.post(
        reverse("admin:jobs_jobtype_add"),
        job_type_form(notify_emails="ops@example.com, oops", webhook_url="http://127.0.0.1:9/hook"),
    )
    text = response.content.decode()
    assert response.status_code == 200
    assert "&#x27;oops&#x27; is not a valid email address." in text
    assert "at least 16 characters" in text
    assert not JobType.objects.exists()


def test_the_secret_is_never_shown_and_an_empty_field_keeps_it(staff):
    job_type = JobTypeFactory(
        name="told", notify_on="failure", webhook_url="http://127.0.0.1:9/hook", webhook_secret=SECRET
    )
    change = reverse("admin:jobs_jobtype_change", args=[job_type.pk])
    page = staff.get(change).content.decode()
    assert SECRET not in page
    assert "A secret is set" in page
    listing = staff.get(reverse("admin:jobs_jobtype_changelist")).content.decode()
    assert SECRET not in listing
    assert "on failure: 0 addresses, webhook to http://127.0.0.1/…" in listing
    response = staff.post(change, job_type_form(notify_on="failure", webhook_url="http://127.0.0.1:9/other"))
    assert response.status_code == 302
    job_type.refresh_from_db()
    assert (job_type.webhook_url, job_type.webhook_secret) == ("http://127.0.0.1:9/other", SECRET)


def test_the_test_notification_action_emails_the_recipients_and_says_so(staff, webhook):
    job_type = JobTypeFactory(
        name="told", notify_emails=["ops@example.com"], webhook_url=webhook.url, webhook_secret=SECRET
    )
    silent = JobTypeFactory(name="silent")
    response = staff.post(
        reverse("admin:jobs_jobtype_changelist"),
        {"action": "send_test_notification", "_selected_action": [job_type.pk, silent.pk]},
        follow=True,
    )
    text = response.content.decode()
    assert "Test email for told sent to ops@example.com." in text
    assert "Test webhook for told sent HTTP 200 from http://127.0.0.1/…." in text
    assert "Job type &#x27;silent&#x27; has no notify_emails and no webhook_url" in text
    [message] = mail.outbox
    assert message.subject == "[Jobsite] Test notification: told succeeded"
    assert message.to == ["ops@example.com"]
    [(headers, _)] = webhook.requests
    assert headers["X-Jobsite-Event"] == "test"
    assert not Run.objects.exists()  # a sample, not a run


def test_the_run_form_adds_recipients_and_rejects_bad_ones(staff):
    job_type = JobTypeFactory(name="told", notify_on="completion")
    url = reverse("admin:jobs_jobtype_run", args=[job_type.pk])
    response = staff.post(url, {"params": "{}", "notify_emails": "me@example.com, nope@"})
    assert response.status_code == 200
    assert "&#x27;nope@&#x27; is not a valid email address." in response.content.decode()
    assert not Run.objects.exists()
    response = staff.post(url, {"params": "{}", "notify_emails": "me@example.com"})
    assert response.status_code == 302
    assert Run.objects.get().notify_emails == ["me@example.com"]


def test_a_runs_page_and_list_show_its_notification_outcome(staff):
    run = RunFactory(
        status="succeeded",
        notify_status="failed",
        notify_attempts=3,
        notify_outcome={"email": {"status": "failed", "error": "SMTPServerDisconnected: <gone>", "at": "x"}},
    )
    expected = "failed: email failed (SMTPServerDisconnected: &lt;gone&gt;)"
    assert expected in staff.get(reverse("admin:jobs_run_change", args=[run.pk])).content.decode()
    listing = staff.get(reverse("admin:jobs_run_changelist") + "?notify_status__exact=failed").content.decode()
    assert expected in listing


def test_a_viewer_sees_that_a_secret_is_set_but_not_the_secret(client, viewer):
    viewer.is_staff = True
    viewer.save()
    client.force_login(viewer)
    job_type = JobTypeFactory(name="told", webhook_url="http://127.0.0.1:9/hook", webhook_secret=SECRET)
    page = client.get(reverse("admin:jobs_jobtype_change", args=[job_type.pk]))
    assert page.status_code == 200
    text = page.content.decode()
    assert SECRET not in text
    assert "set (never shown)" in text
    assert "http://127.0.0.1:9/********" in text  # its host; the path may be a token
