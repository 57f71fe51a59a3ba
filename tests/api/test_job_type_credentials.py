"""Credentials in job types through the API: an `http` job type's credential-like
headers and its URL's credentials and tokens, and a webhook URL's credentials,
path and query, read back as ******** by every role; a write that sends
******** back keeps the stored value, a new value replaces it, a header left
out is removed (jobs/core/redaction.py)."""

import io

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import User
from django.core.management import call_command

from jobs.core.redaction import MASK
from jobs.core.roles import EDITORS, OPERATORS, VIEWERS
from jobs.models import JobType
from tests.credentials import HTTP, SECRETS, WEBHOOK, fetch_job_type

URL = "/api/v1/job-types/"


@pytest.fixture
def fetch(db) -> JobType:
    return fetch_job_type()


def role_user(name: str, role: str | None) -> User:
    if role is None:
        return User.objects.create_superuser(name, password="pw")
    User.objects.create_user(name, password="pw")
    call_command("setup_roles", "--add", name, role, stdout=io.StringIO())
    return User.objects.get(username=name)


def assert_no_secret(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text, secret


@pytest.mark.parametrize("role", [VIEWERS, OPERATORS, EDITORS, None])
def test_every_role_reads_credentials_masked_and_the_rest_as_stored(fetch, api_as, role):
    api = api_as(role_user("reader", role))
    detail = api.get(f"{URL}fetch/")
    listing = api.get(URL)
    assert detail.status_code == listing.status_code == 200
    assert_no_secret(detail.content.decode())
    assert_no_secret(listing.content.decode())
    assert detail.data["http"] == {
        "method": "GET",
        "url": f"http://robot:{MASK}@127.0.0.1:9/items?token={MASK}&page=2",
        "headers": {"Authorization": MASK, "X-Api-Key": MASK, "Cookie": MASK, "Accept": "application/json"},
    }
    assert detail.data["webhook_url"] == f"http://127.0.0.1:9/{MASK}?sig={MASK}"
    [row] = listing.data["results"]
    assert row["http"] == detail.data["http"]


def test_sending_back_what_was_read_keeps_every_stored_credential_and_records_no_change(fetch, api):
    body = api.get(f"{URL}fetch/").json()
    response = api.put(f"{URL}fetch/", body, format="json")
    assert response.status_code == 200, response.data
    assert_no_secret(response.content.decode())
    fetch.refresh_from_db()
    assert (fetch.http, fetch.webhook_url) == (HTTP, WEBHOOK)
    assert not LogEntry.objects.exists()  # nothing changed, so nothing to record


def test_a_masked_value_sent_back_keeps_that_one_and_new_values_replace_the_others(fetch, api):
    http = {
        "method": "GET",
        # The password and the token kept; a new host port and a new page.
        "url": f"http://robot:{MASK}@127.0.0.1:8/items?token={MASK}&page=3",
        "headers": {
            "authorization": MASK,  # header names compare case-insensitively
            "X-Api-Key": "n3w-key",  # replaced
            "Accept": "text/plain",
            # Cookie left out: removed
        },
    }
    response = api.patch(
        f"{URL}fetch/", {"http": http, "webhook_url": f"http://127.0.0.1:9/{MASK}?sig=n3w"}, format="json"
    )
    assert response.status_code == 200, response.data
    assert "n3w-key" not in response.content.decode()
    fetch.refresh_from_db()
    assert fetch.http["url"] == "http://robot:us3r-pass@127.0.0.1:8/items?token=qu3ry-token&page=3"
    assert fetch.http["headers"] == {
        "authorization": "Bearer s3cr3t-bearer",
        "X-Api-Key": "n3w-key",
        "Accept": "text/plain",
    }
    assert fetch.webhook_url == "http://127.0.0.1:9/hooks/h00k-path?sig=n3w"
    [entry] = LogEntry.objects.all()
    assert entry.get_change_message() == "Changed http and webhook_url through the API."
    assert_no_secret(entry.change_message)


def test_a_new_url_without_the_masks_replaces_the_stored_one(fetch, api):
    http = {**api.get(f"{URL}fetch/").data["http"], "url": "http://127.0.0.1:9/items"}
    assert (
        api.patch(f"{URL}fetch/", {"http": http, "webhook_url": "http://127.0.0.1:9/other"}, format="json").status_code
        == 200
    )
    fetch.refresh_from_db()
    assert fetch.http["url"] == "http://127.0.0.1:9/items"
    assert fetch.http["headers"]["Authorization"] == "Bearer s3cr3t-bearer"  # sent back masked
    assert fetch.webhook_url == "http://127.0.0.1:9/other"


@pytest.mark.parametrize(
    ("http", "webhook_url", "field", "message"),
    [
        ({"url": "http://127.0.0.1:9/x", "headers": {"X-Token": MASK}}, "", "http", "headers: 'X-Token' is ********"),
        ({"url": f"http://127.0.0.1:9/x?token={MASK}"}, "", "http", "url: query parameter 'token' is ********"),
        ({"url": f"http://robot:{MASK}@127.0.0.1:9/x"}, "", "http", "url: the password (before '@') is ********"),
        ({"url": "http://127.0.0.1:9/x"}, f"http://127.0.0.1:9/{MASK}", "webhook_url", "the path is ********"),
    ],
)
def test_a_mask_with_nothing_stored_behind_it_gets_a_400_and_writes_nothing(api, http, webhook_url, field, message):
    body = {"name": "fresh", "kind": "http", "http": http, "webhook_url": webhook_url}
    if webhook_url:
        body |= {"notify_on": "failure", "webhook_secret": "a-long-webhook-secret-for-tests"}
    response = api.post(URL, body, format="json")
    assert response.status_code == 400
    text = " ".join(response.data[field])
    assert message in text and "there is no stored value for it to keep: give the real value" in text
    assert not JobType.objects.exists()


def test_a_mask_for_a_header_or_parameter_that_was_not_stored_gets_a_400_and_changes_nothing(fetch, api):
    http = {**HTTP, "url": f"http://127.0.0.1:9/items?signature={MASK}", "headers": {"X-Other-Token": MASK}}
    response = api.patch(f"{URL}fetch/", {"http": http}, format="json")
    assert response.status_code == 400
    assert response.data["http"] == [
        "url: query parameter 'signature' is ********, the mask shown in place of a credential "
        "(in the API, the admin and exports), and there is no stored value for it to keep: give the real value.",
        "headers: 'X-Other-Token' is ********, the mask shown in place of a credential "
        "(in the API, the admin and exports), and there is no stored value for it to keep: give the real value.",
    ]
    fetch.refresh_from_db()
    assert fetch.http == HTTP
