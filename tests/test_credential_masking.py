"""Credentials in job types, outside the API: the admin (view-only and change
forms, lists, the Run… page), the monitoring pages, export_job_types and
import_job_types, and the audit log show them as ******** and never send the
stored value; a form or file that sends ******** back keeps the stored value
(jobs/core/redaction.py). The API: tests/api/test_job_type_credentials.py;
the workers, which use the real values: tests/e2e/test_credentials.py."""

import io
import json

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import User
from django.core.management import call_command
from django.core.management.base import CommandError
from django.urls import reverse

from jobs.core.redaction import MASK
from jobs.core.roles import EDITORS, VIEWERS
from jobs.models import JobType
from tests.credentials import HOOK_SECRET, HTTP, SECRETS, WEBHOOK, fetch_job_type
from tests.factories import JobTypeFactory

# The URL as every page shows it (HTML-escaped).
SHOWN_URL = f"http://robot:{MASK}@127.0.0.1:9/items?token={MASK}&amp;page=2"


@pytest.fixture
def fetch(db) -> JobType:
    return fetch_job_type()


def logged_in(client, role: str):
    User.objects.create_user(role.lower(), password="pw")
    call_command("setup_roles", "--add", role.lower(), role, stdout=io.StringIO())
    client.force_login(User.objects.get(username=role.lower()))
    return client


def assert_no_secret(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text, secret


def form_data(form, **changes) -> dict:
    """What a browser posts back for the admin's job type form as it was shown
    (with the hidden initial values Django adds for JSON fields)."""
    data = {}
    for field in form:
        value = field.value()
        if isinstance(value, bool):
            value = "on" if value else None
        if value is not None:
            data[field.html_name] = value
            if field.field.show_hidden_initial:
                data[field.html_initial_name] = value
    return data | changes


# --- The admin ------------------------------------------------------------------------


def test_a_viewer_sees_the_credentials_masked_on_the_admin_page(client, fetch):
    page = logged_in(client, VIEWERS).get(reverse("admin:jobs_jobtype_change", args=[fetch.pk]))
    assert page.status_code == 200
    text = page.content.decode()
    assert_no_secret(text)
    assert "View job type" in text
    assert f"&quot;Authorization&quot;: &quot;{MASK}&quot;" in text  # the header's name is shown
    assert "&quot;Accept&quot;: &quot;application/json&quot;" in text
    assert f"http://127.0.0.1:9/{MASK}?sig={MASK}" in text


def test_an_editors_form_holds_the_credentials_masked_and_saving_it_keeps_them(client, fetch):
    editor = logged_in(client, EDITORS)
    change = reverse("admin:jobs_jobtype_change", args=[fetch.pk])
    page = editor.get(change)
    assert_no_secret(page.content.decode())
    form = page.context["adminform"].form
    assert form.initial["http"]["headers"] == {
        "Authorization": MASK,
        "X-Api-Key": MASK,
        "Cookie": MASK,
        "Accept": "application/json",
    }
    assert form.initial["http"]["url"] == f"http://robot:{MASK}@127.0.0.1:9/items?token={MASK}&page=2"
    assert form.initial["webhook_url"] == f"http://127.0.0.1:9/{MASK}?sig={MASK}"

    response = editor.post(change, form_data(form, description="Fetches items"))
    assert response.status_code == 302, response.content.decode()[-3000:]
    fetch.refresh_from_db()
    assert (fetch.description, fetch.http, fetch.webhook_url, fetch.webhook_secret) == (
        "Fetches items",
        HTTP,
        WEBHOOK,
        HOOK_SECRET,
    )
    [entry] = LogEntry.objects.all()
    assert entry.get_change_message() == "Changed Description."
    history = editor.get(reverse("admin:jobs_jobtype_history", args=[fetch.pk])).content.decode()
    audit = editor.get(reverse("monitor:audit")).content.decode()
    for text in (history, audit):
        assert "Changed Description." in text
        assert_no_secret(text)


def test_the_admin_form_takes_new_values_and_drops_headers_left_out(client, fetch):
    editor = logged_in(client, EDITORS)
    change = reverse("admin:jobs_jobtype_change", args=[fetch.pk])
    form = editor.get(change).context["adminform"].form
    http = {
        **form.initial["http"],
        "url": f"http://robot:{MASK}@127.0.0.1:9/items?token=n3w-token&page=2",
        "headers": {"Authorization": MASK, "X-Api-Key": "n3w-key"},
    }
    response = editor.post(change, form_data(form, http=json.dumps(http), webhook_url="http://127.0.0.1:9/new"))
    assert response.status_code == 302, response.content.decode()[-3000:]
    fetch.refresh_from_db()
    assert fetch.http["url"] == "http://robot:us3r-pass@127.0.0.1:9/items?token=n3w-token&page=2"
    assert fetch.http["headers"] == {"Authorization": "Bearer s3cr3t-bearer", "X-Api-Key": "n3w-key"}
    assert fetch.webhook_url == "http://127.0.0.1:9/new"
    [entry] = LogEntry.objects.all()
    assert entry.get_change_message() == "Changed Http and Webhook url."
    page = editor.get(change).content.decode()
    assert "n3w-key" not in page and "n3w-token" not in page


def test_a_mask_with_nothing_stored_behind_it_is_an_admin_form_error(client, db):
    editor = logged_in(client, EDITORS)
    add = reverse("admin:jobs_jobtype_add")
    form = editor.get(add).context["adminform"].form
    http = {"url": "http://127.0.0.1:9/items", "headers": {"Authorization": MASK}}
    response = editor.post(add, form_data(form, name="fresh", kind="http", http=json.dumps(http)))
    assert response.status_code == 200
    assert "headers: &#x27;Authorization&#x27; is ********, the mask shown in place of a credential" in (
        response.content.decode()
    )
    assert not JobType.objects.exists()


def test_a_workflows_admin_page_shows_its_webhook_masked_and_saving_it_keeps_it(client, db):
    flow = JobType.objects.create(
        name="flow", kind="workflow", notify_on="failure", webhook_url=WEBHOOK, webhook_secret=HOOK_SECRET
    )
    change = reverse("admin:jobs_workflow_change", args=[flow.pk])
    viewer_page = logged_in(client, VIEWERS).get(change).content.decode()
    assert_no_secret(viewer_page)
    assert f"http://127.0.0.1:9/{MASK}?sig={MASK}" in viewer_page
    editor = logged_in(client, EDITORS)
    page = editor.get(change)
    assert_no_secret(page.content.decode())
    echo = JobTypeFactory(name="echo")
    data = form_data(page.context["adminform"].form, description="Nightly") | {
        "steps-TOTAL_FORMS": "1",
        "steps-INITIAL_FORMS": "0",
        "steps-MIN_NUM_FORMS": "0",
        "steps-MAX_NUM_FORMS": "1000",
        "steps-0-name": "say",
        "steps-0-job_type": echo.pk,
        "steps-0-params": "{}",
        "steps-0-depends_on": "",
    }
    response = editor.post(change, data)
    assert response.status_code == 302, response.content.decode()[-3000:]
    flow.refresh_from_db()
    assert (flow.description, flow.webhook_url) == ("Nightly", WEBHOOK)


def test_the_admin_lists_and_run_form_show_the_url_masked(client, fetch):
    admin = logged_in(client, EDITORS)
    for url in (reverse("admin:jobs_jobtype_changelist"), reverse("admin:jobs_jobtype_run", args=[fetch.pk])):
        text = admin.get(url).content.decode()
        assert_no_secret(text)
        assert SHOWN_URL in text, url


# --- The monitoring pages --------------------------------------------------------------


def test_the_job_type_pages_show_the_url_masked(client, fetch):
    viewer = logged_in(client, VIEWERS)
    for url in (reverse("monitor:job-types"), reverse("monitor:job-type", args=["fetch"])):
        text = viewer.get(url).content.decode()
        assert_no_secret(text)
        assert f"GET {SHOWN_URL}" in text, url


# --- export_job_types and import_job_types ------------------------------------------------


def run_command(name, *args) -> str:
    out = io.StringIO()
    call_command(name, *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def test_an_export_masks_credentials_and_importing_it_back_keeps_the_stored_ones(fetch, tmp_path):
    exported = tmp_path / "job-types.yml"
    run_command("export_job_types", "--output", str(exported))
    text = exported.read_text()
    assert_no_secret(text)
    assert "Authorization: '********'" in text and "Accept: application/json" in text
    assert "# Credentials show as ********: importing them keeps the stored values" in text

    assert run_command("import_job_types", str(exported)).startswith("Job types: created 0; updated 0; unchanged 1.")
    fetch.refresh_from_db()
    assert (fetch.http, fetch.webhook_url) == (HTTP, WEBHOOK)

    # A real value typed into the file replaces the stored one; the masked ones stay.
    exported.write_text(text.replace("X-Api-Key: '********'", "X-Api-Key: n3w-key"))
    assert "updated 1 (fetch)" in run_command("import_job_types", str(exported))
    fetch.refresh_from_db()
    assert fetch.http["headers"] == {**HTTP["headers"], "X-Api-Key": "n3w-key"}
    assert fetch.http["url"] == HTTP["url"]
    # The same file again: its real value is the stored one now.
    assert "unchanged 1." in run_command("import_job_types", str(exported))


def test_importing_an_export_into_an_installation_without_the_job_type_refuses_the_masks(fetch, tmp_path):
    exported = tmp_path / "job-types.yml"
    run_command("export_job_types", "--output", str(exported))
    fetch.delete()
    with pytest.raises(CommandError) as error:
        run_command("import_job_types", str(exported))
    message = str(error.value)
    assert "job type 'fetch': http: url: the password (before '@') is ********" in message
    assert "http: headers: 'Authorization' is ********" in message
    assert "webhook_url: the path is ********" in message
    assert "there is no stored value for it to keep: give the real value" in message
    assert "\n" not in message
    assert not JobType.objects.exists()
