"""Trigger URLs: made, listed and revoked through the API by Editors; POSTed
to by anyone holding one, without an account. No worker here: the run a POST
creates stays pending (tests/e2e/test_trigger_urls.py runs one on a worker)."""

import hashlib
import importlib
import io
import json
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import pytest
import redis
from django.conf import settings
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import User
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.test import Client
from rest_framework.test import APIClient

import jobsite.settings
from jobs.api.throttles import TriggerUrlThrottle
from jobs.models import Run, TriggerUrl
from tests.conftest import free_port
from tests.factories import JobTypeFactory

pytestmark = pytest.mark.postgres  # run on PostgreSQL too (see pyproject.toml)

SCHEMA = {"type": "object", "properties": {"count": {"type": "integer"}}, "required": ["count"]}


@pytest.fixture(autouse=True)
def fresh_counts(redis_server):
    """Rate counts are kept in Redis by trigger URL id, and ids come again from one test to the next."""
    client = redis.Redis.from_url(settings.CACHES["throttle"]["LOCATION"])
    for key in client.scan_iter("jobsite-throttle:*"):
        client.delete(key)


@pytest.fixture
def role_client(db):
    """An API client signed in (with a token) as a new user in `role`; None: anonymous."""

    def make(role: str | None) -> APIClient:
        client = APIClient()
        if role is not None:
            name = role.lower()
            user = User.objects.create_user(name if not User.objects.filter(username=name).exists() else f"{name}-2")
            call_command("setup_roles", "--add", user.username, role, stdout=io.StringIO())
            client.force_authenticate(User.objects.get(pk=user.pk))
        return client

    return make


@pytest.fixture
def editor(role_client) -> APIClient:
    return role_client("Editors")


@pytest.fixture
def counted(db):
    return JobTypeFactory(name="counted", params_schema=SCHEMA, default_params={"label": "x"})


def make_url(editor: APIClient, name: str = "counted", label: str = "ci") -> dict:
    response = editor.post(f"/api/v1/job-types/{name}/trigger-urls/", {"label": label}, format="json")
    assert response.status_code == 201, response.data
    return response.json()


def hook_path(created: dict) -> str:
    return created["url"].removeprefix("http://testserver")


def test_an_editor_makes_a_url_whose_token_is_shown_once_and_stored_only_hashed(editor, counted):
    created = make_url(editor)
    assert set(created) == {"id", "url", "label", "prefix", "created_at"}
    token = created["url"].removeprefix("http://testserver/hooks/").removesuffix("/")
    assert len(token) >= 43  # 32 random bytes, URL-safe base64
    stored = TriggerUrl.objects.get(pk=created["id"])
    assert stored.token_hash == hashlib.sha256(token.encode()).hexdigest()
    assert created["prefix"] == token[:6] == stored.prefix
    assert token not in json.dumps(list(TriggerUrl.objects.values()), default=str)
    # Lists say which URL is which, never the token.
    listed = editor.get("/api/v1/job-types/counted/trigger-urls/")
    assert listed.status_code == 200
    (row,) = listed.json()["results"]
    assert row == {
        "id": created["id"],
        "job_type": "counted",
        "label": "ci",
        "prefix": token[:6],
        "created_by": "editors",
        "created_at": created["created_at"],
        "last_used_at": None,
        "revoked_at": None,
    }
    assert token not in listed.content.decode()
    # The job type's history says who added it.
    assert LogEntry.objects.get(object_id=str(counted.pk)).change_message == (
        f"Added trigger URL {token[:6]}… through the API."
    )


@pytest.mark.parametrize(
    "role, list_status, create_status, revoke_status",
    [(None, 401, 401, 401), ("Viewers", 200, 403, 403), ("Operators", 200, 403, 403), ("Editors", 200, 201, 204)],
)
def test_viewers_list_trigger_urls_and_only_editors_make_and_revoke_them(
    role_client, editor, counted, role, list_status, create_status, revoke_status
):
    existing = make_url(editor)
    client = role_client(role)
    assert client.get("/api/v1/job-types/counted/trigger-urls/").status_code == list_status
    made = client.post("/api/v1/job-types/counted/trigger-urls/", {}, format="json")
    assert made.status_code == create_status
    assert TriggerUrl.objects.count() == (2 if create_status == 201 else 1)
    revoked = client.delete(f"/api/v1/job-types/counted/trigger-urls/{existing['id']}/")
    assert revoked.status_code == revoke_status
    assert TriggerUrl.objects.get(pk=existing["id"]).is_revoked is (revoke_status == 204)


def test_a_url_of_a_job_type_that_does_not_exist_or_of_another_one_is_not_found(editor, counted):
    JobTypeFactory(name="other")
    created = make_url(editor)
    assert editor.get("/api/v1/job-types/nothing/trigger-urls/").status_code == 404
    assert editor.post("/api/v1/job-types/nothing/trigger-urls/", {}, format="json").status_code == 404
    assert editor.delete(f"/api/v1/job-types/other/trigger-urls/{created['id']}/").status_code == 404
    assert not TriggerUrl.objects.get(pk=created["id"]).is_revoked


def test_a_label_too_long_gets_a_400_and_no_url(editor, counted):
    response = editor.post("/api/v1/job-types/counted/trigger-urls/", {"label": "x" * 201}, format="json")
    assert response.status_code == 400
    assert list(response.json()) == ["label"]
    assert not TriggerUrl.objects.exists()


def test_anyone_holding_the_url_runs_the_job_type_with_the_body_as_params(editor, counted):
    created = make_url(editor)
    # No account, no session, no CSRF token: a plain client that checks CSRF as a browser's would.
    anyone = Client(enforce_csrf_checks=True)
    response = anyone.post(hook_path(created), {"count": 3}, content_type="application/json")
    assert response.status_code == 201, response.content
    body = response.json()
    run = Run.objects.get(pk=body["id"])
    assert (run.params, run.trigger, run.trigger_url_id, run.requested_by) == (
        {"label": "x", "count": 3},
        "url",
        created["id"],
        None,
    )
    assert body["status"] == "queued"  # written so, published once committed
    assert body["job_type"] == "counted"
    # The status link answers its holder, still without an account.
    status = anyone.get(body["status_url"].removeprefix("http://testserver"))
    assert status.status_code == 200
    assert status.json()["id"] == str(run.pk)
    # The run's record (API) says which URL it came through; the URL when it was last used.
    recorded = editor.get(f"/api/v1/runs/{run.pk}/").json()
    assert (recorded["trigger"], recorded["trigger_url"]) == ("url", created["id"])
    assert TriggerUrl.objects.get(pk=created["id"]).last_used_at is not None
    # So does its page.
    page = Client()
    page.force_login(User.objects.get(username="editors"))
    html = page.get(f"/monitor/runs/{run.pk}/").content.decode()
    assert f'<dd id="trigger">url through trigger URL {created["prefix"]}… (ci)</dd>' in html


def test_an_empty_body_runs_with_the_default_params(editor):
    JobTypeFactory(name="plain", default_params={"a": 1})
    response = Client().generic("POST", hook_path(make_url(editor, "plain")))  # as `curl -X POST URL` sends it
    assert response.status_code == 201, response.content
    assert Run.objects.get(pk=response.json()["id"]).params == {"a": 1}


def test_the_same_idempotency_key_returns_the_first_run(editor, counted):
    path = hook_path(make_url(editor))
    first = Client().post(path, {"count": 1}, content_type="application/json", HTTP_IDEMPOTENCY_KEY="build-42")
    again = Client().post(path, {"count": 2}, content_type="application/json", HTTP_IDEMPOTENCY_KEY="build-42")
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json()["id"] == again.json()["id"]
    assert Run.objects.get().params["count"] == 1
    other = Client().post(path, {"count": 3}, content_type="application/json", HTTP_IDEMPOTENCY_KEY="build-43")
    assert other.status_code == 201
    assert Run.objects.count() == 2


def test_idempotency_keys_of_a_url_are_its_own(editor, counted):
    """A URL's holder cannot get back a run started through the API or another URL by sending its key."""
    by_api = editor.post(
        "/api/v1/job-types/counted/run/", {"params": {"count": 1}, "idempotency_key": "k1"}, format="json"
    )
    assert by_api.status_code == 201
    first, second = hook_path(make_url(editor)), hook_path(make_url(editor))
    through = [
        Client().post(p, {"count": 2}, content_type="application/json", HTTP_IDEMPOTENCY_KEY="k1")
        for p in (first, second)
    ]
    assert [answer.status_code for answer in through] == [201, 201]
    assert len({by_api.json()["id"], *(answer.json()["id"] for answer in through)}) == 3


@pytest.mark.parametrize(
    "body, headers, errors",
    [
        ('{"count": "three"}', {}, {"params": ["count: 'three' is not of type 'integer'"]}),
        ("{}", {}, {"params": ["'count' is a required property"]}),
        ("[1, 2]", {}, {"params": ["Params must be a JSON object."]}),
        ('{"count": ', {}, {"detail": "JSON parse error - Expecting value: line 1 column 11 (char 10)"}),
        (
            '{"count": 1}',
            {"HTTP_IDEMPOTENCY_KEY": "k" * 151},
            {"Idempotency-Key": ["Give a key of at most 150 characters."]},
        ),
    ],
)
def test_bad_json_or_params_get_a_400_with_field_messages_and_no_run(editor, counted, body, headers, errors):
    response = Client().post(hook_path(make_url(editor)), body, content_type="application/json", **headers)
    assert response.status_code == 400, response.content
    assert response.json() == errors
    assert not Run.objects.exists()


def test_a_disabled_job_type_answers_409(editor):
    JobTypeFactory(name="off", enabled=False)
    response = Client().post(hook_path(make_url(editor, "off")), {}, content_type="application/json")
    assert response.status_code == 409
    assert response.json() == {"detail": "Job type 'off' is disabled: enable it before running it."}


def test_a_revoked_url_answers_404_as_an_unknown_token_does(editor, counted):
    created = make_url(editor)
    path = hook_path(created)
    assert Client().post(path, {"count": 1}, content_type="application/json").status_code == 201
    run = Run.objects.get()
    assert editor.delete(f"/api/v1/job-types/counted/trigger-urls/{created['id']}/").status_code == 204
    revoked = Client().post(path, {"count": 1}, content_type="application/json")
    unknown = Client().post("/hooks/no-such-token/", {"count": 1}, content_type="application/json")
    assert (revoked.status_code, unknown.status_code) == (404, 404)
    assert revoked.json() == unknown.json() == {"detail": "No such trigger URL."}
    assert Client().get(f"{path}runs/{run.pk}/").status_code == 404
    assert Run.objects.count() == 1
    # Still listed, with when it was revoked; revoking it again changes nothing.
    assert editor.get("/api/v1/job-types/counted/trigger-urls/").json()["results"][0]["revoked_at"]
    assert editor.delete(f"/api/v1/job-types/counted/trigger-urls/{created['id']}/").status_code == 204
    assert LogEntry.objects.filter(change_message__startswith="Revoked trigger URL").count() == 1


def test_a_url_shows_only_the_runs_it_started(editor, counted):
    mine, theirs = hook_path(make_url(editor)), hook_path(make_url(editor))
    run_id = Client().post(theirs, {"count": 1}, content_type="application/json").json()["id"]
    assert Client().get(f"{theirs}runs/{run_id}/").status_code == 200
    assert Client().get(f"{mine}runs/{run_id}/").status_code == 404


def test_past_its_rate_a_url_answers_429_with_retry_after_and_others_still_run(editor, counted, settings):
    settings.JOBS_TRIGGER_URL_RATE = "2/m"
    busy, quiet = hook_path(make_url(editor)), hook_path(make_url(editor))
    answers = [Client().post(busy, {"count": n}, content_type="application/json") for n in range(3)]
    assert [a.status_code for a in answers] == [201, 201, 429]
    assert 0 < int(answers[2]["Retry-After"]) <= 60
    assert "throttled" in answers[2].json()["detail"].lower()
    assert Run.objects.count() == 2
    # Counted per URL: another URL of the same job type is not held back.
    assert Client().post(quiet, {"count": 1}, content_type="application/json").status_code == 201


def test_a_bad_rate_setting_stops_the_site_with_a_message(monkeypatch):
    monkeypatch.setenv("JOBS_TRIGGER_URL_RATE", "lots")
    try:
        with pytest.raises(ImproperlyConfigured, match=r"JOBS_TRIGGER_URL_RATE='lots': give requests per period"):
            importlib.reload(jobsite.settings)
    finally:
        monkeypatch.undo()
        importlib.reload(jobsite.settings)


def test_when_the_rate_counter_does_not_answer_the_trigger_still_runs(editor, counted, settings):
    path = hook_path(make_url(editor))
    settings.JOBS_TRIGGER_URL_RATE = "1/m"
    nowhere = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    settings.CACHES = {**settings.CACHES, "throttle": {**settings.CACHES["throttle"], "LOCATION": nowhere}}
    answers = [Client().post(path, {"count": n}, content_type="application/json").status_code for n in range(2)]
    assert answers == [201, 201]
    assert Run.objects.count() == 2


def test_a_site_wide_login_requirement_leaves_trigger_urls_open_and_nothing_else(editor, counted, settings):
    """The URL's views are marked as needing no login (DRF marks its views so too), so
    Django's LoginRequiredMiddleware, if a deployment adds it, leaves them open."""
    path = hook_path(make_url(editor))
    settings.MIDDLEWARE = [*settings.MIDDLEWARE, "django.contrib.auth.middleware.LoginRequiredMiddleware"]
    posted = Client().post(path, {"count": 1}, content_type="application/json")
    assert posted.status_code == 201, posted.content
    assert Client().get(f"{path}runs/{posted.json()['id']}/").status_code == 200
    assert Client().get("/monitor/").status_code == 302


def test_requests_at_once_get_no_more_than_the_rate_between_them(settings):
    """Many web threads asking at the same moment share one count (Redis' INCR)."""
    settings.JOBS_TRIGGER_URL_RATE = "5/m"
    view = SimpleNamespace(trigger_url=SimpleNamespace(pk=987654))
    with ThreadPoolExecutor(max_workers=16) as pool:
        allowed = list(pool.map(lambda _: TriggerUrlThrottle().allow_request(None, view), range(40)))
    assert allowed.count(True) == 5
