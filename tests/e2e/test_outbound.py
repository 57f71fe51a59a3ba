"""What an `http` run sends, through a real worker to real local HTTP servers:
credentials stay with their origin across redirects, and run params never
replace a query parameter the job type's url fixes. Two servers on two ports
of 127.0.0.1 are two origins (tests/servers.py)."""

import json
from urllib.parse import urlencode

import pytest

from jobs.models import Run
from tests.conftest import wait_for_run
from tests.e2e.test_execution import define, trigger
from tests.servers import HttpRecorder

CREDENTIALS = {
    "Authorization": "Bearer s3cret",
    "Proxy-Authorization": "Basic cHJveHk6cHc=",
    "Cookie": "session=abc",
    "X-Api-Key": "k3y",
}
HARMLESS = {"Accept": "application/json", "X-Trace": "t-1"}


@pytest.fixture
def origin_a():
    server = HttpRecorder()
    yield server
    server.close()


@pytest.fixture
def origin_b():
    server = HttpRecorder()
    yield server
    server.close()


def redirect(server: HttpRecorder, status: int, to: str) -> str:
    return f"{server.origin}/redirect/{status}?{urlencode({'to': to})}"


def header_names(headers: dict[str, str]) -> set[str]:
    return {name.lower() for name in headers}


def test_a_redirect_to_another_origin_leaves_the_credentials_behind(worker, api, origin_a, origin_b):
    # a → b → back to a: once left behind, they are not sent again.
    back = redirect(origin_b, 302, f"{origin_a.origin}/back")
    define(api, name="hop", kind="http", http={"url": redirect(origin_a, 302, back), "headers": CREDENTIALS | HARMLESS})
    run = wait_for_run(trigger(api, "hop"))
    assert run.status == "succeeded", run.error
    assert run.result["url"] == f"{origin_a.origin}/back"
    (_, _, first, _), (_, _, back_at_a, _) = origin_a.requests
    [(_, _, at_b, _)] = origin_b.requests
    assert header_names(CREDENTIALS) <= header_names(first)  # the origin they were given for gets them
    for headers in (at_b, back_at_a):
        assert not header_names(CREDENTIALS) & header_names(headers), headers
        assert (headers["Accept"], headers["X-Trace"]) == ("application/json", "t-1")


def test_a_redirect_within_the_origin_keeps_the_credentials_and_a_307_keeps_the_body(worker, api, origin_a):
    define(
        api,
        name="same-origin",
        kind="http",
        http={"method": "POST", "url": redirect(origin_a, 307, "/landing"), "headers": CREDENTIALS},
    )
    run = wait_for_run(trigger(api, "same-origin", {"item": 7}))
    assert run.status == "succeeded", run.error
    [(method, headers, body)] = origin_a.received("/landing")
    assert method == "POST"
    assert json.loads(body) == {"item": 7}
    assert {name: headers[name] for name in CREDENTIALS} == CREDENTIALS


def test_a_307_to_another_origin_is_not_followed_with_the_body(worker, api, origin_a, origin_b):
    target = f"{origin_b.origin}/landing"
    define(
        api,
        name="resend",
        kind="http",
        http={"method": "POST", "url": redirect(origin_a, 307, target), "headers": CREDENTIALS},
    )
    run = wait_for_run(trigger(api, "resend", {"password": "hunter2"}))
    assert run.status == "failed"
    assert f"redirects to another origin ({target})" in run.error
    assert "does not send a body on to another origin" in run.error
    assert origin_b.requests == []


def test_a_303_to_another_origin_becomes_a_get_without_body_or_credentials(worker, api, origin_a, origin_b):
    define(
        api,
        name="see-other",
        kind="http",
        http={"method": "POST", "url": redirect(origin_a, 303, f"{origin_b.origin}/done"), "headers": CREDENTIALS},
    )
    run = wait_for_run(trigger(api, "see-other", {"password": "hunter2"}))
    assert run.status == "succeeded", run.error
    [(method, headers, body)] = origin_b.received("/done")
    assert (method, body) == ("GET", b"")
    assert not header_names(CREDENTIALS) & header_names(headers)


# --- Query parameters the url fixes ------------------------------------------------


def test_params_may_add_to_the_query_but_not_replace_what_the_url_fixes(worker, api, origin_a):
    define(api, name="search", kind="http", http={"url": f"{origin_a.origin}/search?scope=public&limit=10"})
    refused = api.post("/api/v1/job-types/search/run/", {"params": {"scope": "all", "q": "x"}}, format="json")
    assert refused.status_code == 400
    assert refused.data["params"] == [
        "scope: the job type's url fixes the query parameter 'scope'; leave it out of params "
        "(or take it out of the url, to let each run choose it)."
    ]
    assert not Run.objects.exists()  # nothing half-written
    run = wait_for_run(trigger(api, "search", {"q": "jobs", "page": 2}))
    assert run.status == "succeeded", run.error
    assert [path for _, path, _, _ in origin_a.requests] == ["/search?scope=public&limit=10&q=jobs&page=2"]


def test_a_post_sends_its_params_as_json_whatever_the_url_says(worker, api, origin_a):
    define(api, name="submit", kind="http", http={"method": "POST", "url": f"{origin_a.origin}/items?scope=public"})
    run = wait_for_run(trigger(api, "submit", {"scope": "all"}))
    assert run.status == "succeeded", run.error
    [(method, path, _, body)] = origin_a.requests
    assert (method, path, json.loads(body)) == ("POST", "/items?scope=public", {"scope": "all"})


def test_default_params_and_schedules_may_not_replace_a_fixed_query_parameter(db, api, origin_a):
    response = api.post(
        "/api/v1/job-types/",
        {"name": "fixed", "kind": "http", "http": {"url": f"{origin_a.origin}/s?scope=public"},
         "default_params": {"scope": "all"}},
        format="json",
    )  # fmt: skip
    assert response.status_code == 400
    assert response.data["default_params"][0].startswith("scope: the job type's url fixes the query parameter")
    define(api, name="fixed", kind="http", http={"url": f"{origin_a.origin}/s?scope=public"})
    response = api.post(
        "/api/v1/schedules/",
        {"name": "nightly", "job_type": "fixed", "params": {"scope": "all"}, "interval_seconds": 60},
        format="json",
    )
    assert response.status_code == 400
    assert response.data["params"][0].startswith("scope: the job type's url fixes the query parameter")


def test_a_run_queued_before_its_url_fixed_a_param_calls_the_url_as_it_is_now(start_worker, api, origin_a):
    queue = "outbound-parked"  # no worker yet: the run waits in the queue
    define(api, name="later", kind="http", queue=queue, http={"url": f"{origin_a.origin}/s"})
    run = trigger(api, "later", {"scope": "all", "q": "x"})
    fixed = {"http": {"url": f"{origin_a.origin}/s?scope=public"}}
    changed = api.patch("/api/v1/job-types/later/", fixed, format="json")
    assert changed.status_code == 200, changed.data
    start_worker(1, queue)
    run = wait_for_run(run)
    assert run.status == "succeeded", run.error
    assert [path for _, path, _, _ in origin_a.requests] == ["/s?scope=public&q=x"]
