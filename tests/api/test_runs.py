"""The runs API without a worker: what is validated, recorded and refused.

Execution through a real worker is in tests/e2e/.
"""

import base64
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from jobs.models import JobType, Run, Schedule
from tests.factories import JobTypeFactory, RunFactory

pytestmark = pytest.mark.postgres  # run on PostgreSQL too (see pyproject.toml)

SCHEMA = {"type": "object", "properties": {"count": {"type": "integer"}}, "required": ["count"]}


@pytest.fixture
def counted(db):
    return JobTypeFactory(name="counted", params_schema=SCHEMA, default_params={"label": "x"})


def run_url(name: str) -> str:
    return f"/api/v1/job-types/{name}/run/"


def test_running_records_a_run_with_defaults_applied(api, counted, admin_user):
    response = api.post(run_url("counted"), {"params": {"count": 3}}, format="json")
    assert response.status_code == 201, response.data
    run = Run.objects.get(pk=response.data["id"])
    assert run.params == {"label": "x", "count": 3}
    assert run.trigger == "api"
    assert run.requested_by == admin_user
    assert response.data["job_type"] == "counted"
    assert response.data["url"] == f"http://testserver/monitor/runs/{run.pk}/"


def test_params_that_break_the_schema_get_a_400_and_no_run(api, counted):
    response = api.post(run_url("counted"), {"params": {"count": "three"}}, format="json")
    assert response.status_code == 400
    assert response.data == {"params": ["count: 'three' is not of type 'integer'"]}
    assert not Run.objects.exists()


def test_params_must_be_an_object(api, counted):
    response = api.post(run_url("counted"), {"params": [1, 2]}, format="json")
    assert response.status_code == 400
    assert "params" in response.data
    assert not Run.objects.exists()


def test_running_a_disabled_job_type_is_refused(api):
    JobTypeFactory(name="off", enabled=False)
    response = api.post(run_url("off"), {}, format="json")
    assert response.status_code == 409
    assert response.data["detail"] == "Job type 'off' is disabled: enable it before running it."
    assert not Run.objects.exists()


def test_running_an_unknown_job_type_is_a_404(api):
    assert api.post(run_url("ghost"), {}, format="json").status_code == 404


def test_the_same_idempotency_key_returns_the_first_run(api, job_type):
    first = api.post(run_url(job_type.name), {"idempotency_key": "order-17"}, format="json")
    again = api.post(run_url(job_type.name), {"idempotency_key": "order-17", "params": {"x": 2}}, format="json")
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.data["id"] == first.data["id"]
    assert Run.objects.count() == 1


def test_running_needs_the_run_permission(viewer, api_as, job_type):
    response = api_as(viewer).post(run_url(job_type.name), {}, format="json")
    assert response.status_code == 403
    assert not Run.objects.exists()


def test_an_operator_may_run(operator, api_as, job_type):
    assert api_as(operator).post(run_url(job_type.name), {}, format="json").status_code == 201


def test_the_list_filters_by_status_job_type_trigger_and_date(api):
    echo, other = JobTypeFactory(name="echo"), JobTypeFactory(name="other")
    old = RunFactory(job_type=echo, status="failed")
    Run.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=3))
    recent = RunFactory(job_type=echo, status="succeeded", trigger="cli")
    RunFactory(job_type=other, status="failed")

    def ids(query):
        response = api.get(f"/api/v1/runs/?{query}")
        assert response.status_code == 200, response.data
        return {row["id"] for row in response.data["results"]}

    assert ids("job_type=echo") == {str(old.pk), str(recent.pk)}
    assert ids("job_type=echo&status=failed") == {str(old.pk)}
    assert ids("job_type=nothing-by-this-name") == set()
    assert ids("trigger=cli") == {str(recent.pk)}
    since = (timezone.now() - timedelta(days=1)).isoformat()
    assert str(old.pk) not in ids(f"created_after={since.replace('+', '%2B')}")
    nightly = Schedule.objects.create(name="nightly", job_type=echo, interval_seconds=60)
    fired = RunFactory(job_type=echo, schedule=nightly, trigger="schedule")
    assert ids("schedule=nightly") == {str(fired.pk)}
    assert ids("schedule=nightly&status=failed") == set()
    assert ids("schedule=nothing-by-this-name") == set()


def test_a_bad_filter_value_gets_a_400(api):
    response = api.get("/api/v1/runs/?status=sleeping")
    assert response.status_code == 400
    assert "status" in response.data
    assert api.get("/api/v1/runs/?created_after=yesterday").status_code == 400


def test_the_list_is_paginated_newest_first_up_to_200(api, job_type):
    Run.objects.bulk_create(
        [Run(job_type=job_type, trigger="api", created_at=timezone.now() - timedelta(seconds=i)) for i in range(205)]
    )
    page = api.get("/api/v1/runs/?page_size=500").data
    assert set(page) == {"next", "previous", "results"}  # no count: that would read every run
    assert len(page["results"]) == 200
    assert page["previous"] is None
    created = [row["created_at"] for row in page["results"]]
    assert created == sorted(created, reverse=True)
    last = api.get(page["next"]).data
    assert len(last["results"]) == 5
    assert last["next"] is None
    assert "page_size=500" in last["previous"]


# --- Paging by cursor ------------------------------------------------------------------


def walk(api, url: str, link: str) -> list[list[str]]:
    """The run ids of each page, following `link` ("next" or "previous") from `url` to the end."""
    pages = []
    while url:
        response = api.get(url)
        assert response.status_code == 200, response.data
        pages.append([row["id"] for row in response.data["results"]])
        url = response.data[link]
    return pages


def flat(pages) -> list[str]:
    return [run for page in pages for run in page]


def test_walking_every_page_forward_and_back_gives_every_run_once_in_order(api, job_type):
    # 23 runs, in groups of five created at the same instant: the pages break inside the groups.
    now = timezone.now()
    Run.objects.bulk_create(
        [Run(job_type=job_type, trigger="api", created_at=now - timedelta(seconds=i // 5)) for i in range(23)]
    )
    expected = [str(pk) for pk in Run.objects.order_by("-created_at", "-id").values_list("pk", flat=True)]

    forward = walk(api, "/api/v1/runs/?page_size=4", "next")
    assert [len(page) for page in forward] == [4, 4, 4, 4, 4, 3]
    assert flat(forward) == expected

    # Back from the last page, by `previous`, to the first page.
    last_page = api.get("/api/v1/runs/?page_size=4")
    for _ in range(5):
        last_page = api.get(last_page.data["next"])
    backward = walk(api, last_page.data["previous"], "previous")
    assert flat(reversed(backward)) == expected[:20]
    assert backward[-1] == forward[0]


def test_the_next_link_keeps_the_filters(api, job_type):
    other = JobTypeFactory(name="other")
    now = timezone.now()
    Run.objects.bulk_create(
        [
            Run(
                job_type=[job_type, other][i % 2],
                status=["failed", "succeeded"][i % 3 == 0],
                trigger="api",
                created_at=now,
            )
            for i in range(30)
        ]
    )
    expected = Run.objects.filter(job_type=job_type, status="failed").order_by("-created_at", "-id")
    url = f"/api/v1/runs/?job_type={job_type.name}&status=failed&page_size=3"
    pages = walk(api, url, "next")
    assert flat(pages) == [str(pk) for pk in expected.values_list("pk", flat=True)]
    assert len(pages) == 4


def _token(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode()


@pytest.mark.parametrize(
    "cursor",
    [
        "not-a-cursor",
        "%%%%",
        _token("after:2026-05-01T10:00:00+00:00_not-a-uuid"),
        _token("after:2026-05-01T10:00:00_0123456789abcdef0123456789abcdef"),  # no time zone
        _token("sideways:2026-05-01T10:00:00+00:00_0123456789abcdef0123456789abcdef"),
        _token("before:9999-12-31T23:59:59-23:00_0123456789abcdef0123456789abcdef"),  # past year 9999 in UTC
        _token("after:yesterday_0123456789abcdef0123456789abcdef"),
        base64.urlsafe_b64encode(b"\xff\xfe").decode(),
    ],
)
def test_a_malformed_or_tampered_cursor_gets_a_400_saying_what_to_do(api, job_type, cursor):
    RunFactory(job_type=job_type)
    response = api.get("/api/v1/runs/", {"cursor": cursor})
    assert response.status_code == 400
    assert response.json() == {
        "cursor": [
            "Not a cursor this list gave: use the `next` or `previous` link of a page as it is, "
            "or leave `cursor` out to start from the newest."
        ]
    }


def test_a_page_number_gets_a_400_pointing_at_the_cursor(api, job_type):
    response = api.get("/api/v1/runs/?page=2")
    assert response.status_code == 400
    assert response.json() == {
        "page": ["This list is paged by cursor, not page number: follow the `next` link (its `cursor`)."]
    }


@pytest.mark.parametrize("size", ["0", "-1", "abc", "1.5"])
def test_a_page_size_that_is_not_a_whole_number_from_1_gets_a_400(api, job_type, size):
    response = api.get("/api/v1/runs/", {"page_size": size})
    assert response.status_code == 400
    assert response.json() == {"page_size": [f"{size!r}: give a whole number from 1."]}


def _list_queries(api, size: int) -> list[str]:
    users = [User.objects.create_user(f"user-{i}") for i in range(3)]
    job_types = [JobTypeFactory(name=f"kind-{i}") for i in range(4)]
    schedules = [
        Schedule.objects.create(name=f"every-{i}", job_type=job_types[i], interval_seconds=60) for i in range(4)
    ]
    Run.objects.bulk_create(
        [
            Run(
                job_type=job_types[i % 4],
                trigger="schedule",
                schedule=schedules[i % 4],
                requested_by=users[i % 3],
                cancelled_by=users[(i + 1) % 3],
                status="cancelled",
            )
            for i in range(size)
        ]
    )
    with CaptureQueriesContext(connection) as queries:
        response = api.get("/api/v1/runs/")
    assert response.status_code == 200
    assert len(response.data["results"]) == size
    assert {row["schedule"] for row in response.data["results"]} == {s.name for s in schedules}
    return [query["sql"] for query in queries.captured_queries]


@pytest.mark.parametrize("size", [5, 50])
def test_a_page_of_runs_counts_nothing_and_costs_the_same_queries_at_any_size(api, size):
    sql = _list_queries(api, size)
    assert not [query for query in sql if "COUNT(" in query.upper()]
    # The token's user, the page (one query, LIMIT 51, no OFFSET), then the page's job types.
    assert len(sql) == 3, sql
    assert "LIMIT 51" in sql[1]
    assert "OFFSET" not in sql[1].upper()


def test_run_detail_and_unknown_ids(api, job_type):
    run = RunFactory(job_type=job_type, status="succeeded", result={"ok": True})
    data = api.get(f"/api/v1/runs/{run.pk}/").data
    assert data["result"] == {"ok": True}
    assert data["status"] == "succeeded"
    assert api.get("/api/v1/runs/00000000-0000-0000-0000-000000000000/").status_code == 404
    assert api.get("/api/v1/runs/not-a-uuid/").status_code == 404


def test_cancelling_a_finished_run_is_a_409_and_changes_nothing(api, job_type):
    run = RunFactory(job_type=job_type, status="succeeded")
    response = api.post(f"/api/v1/runs/{run.pk}/cancel/")
    assert response.status_code == 409
    assert "already succeeded" in response.data["detail"]
    run.refresh_from_db()
    assert run.status == "succeeded"


def test_cancelling_needs_the_cancel_permission(viewer, api_as, job_type):
    run = RunFactory(job_type=job_type, status="queued")
    assert api_as(viewer).post(f"/api/v1/runs/{run.pk}/cancel/").status_code == 403
    run.refresh_from_db()
    assert run.status == "queued"


def test_rerun_creates_a_new_run_with_the_same_params(api, job_type):
    run = RunFactory(job_type=job_type, status="failed", params={"a": 1})
    response = api.post(f"/api/v1/runs/{run.pk}/rerun/")
    assert response.status_code == 201
    new = Run.objects.get(pk=response.data["id"])
    assert (new.params, new.rerun_of, new.trigger) == ({"a": 1}, run, "rerun")


@pytest.mark.parametrize(
    ("url", "body"),
    [
        ("/api/v1/runs/{run}/rerun/", {"from_failed": 0}),
        ("/api/v1/job-types/{job_type}/", {"enabled": "yes"}),
        ("/api/v1/schedules/", {"name": "s", "job_type": "{job_type}", "cron": "0 3 * * *", "enabled": 1}),
    ],
)
def test_a_boolean_that_is_not_json_true_or_false_gets_a_400_and_writes_nothing(api, job_type, url, body):
    """As the schema says: DRF on its own also takes 0, 1, "yes", "on" and the like (found by fuzzing)."""
    run = RunFactory(job_type=job_type, status="failed")
    url = url.format(run=run.pk, job_type=job_type.name)
    body = {
        key: value.format(job_type=job_type.name) if isinstance(value, str) else value for key, value in body.items()
    }
    send = api.patch if "job-types" in url else api.post
    response = send(url, body, format="json")
    assert response.status_code == 400
    [field] = set(body) & {"from_failed", "enabled"}
    assert response.json() == {field: ["Must be a valid boolean."]}
    assert Run.objects.count() == 1 and not Schedule.objects.exists()
    assert JobType.objects.get(pk=job_type.pk).enabled is True


def test_rerun_of_an_unfinished_run_is_a_409(api, job_type):
    run = RunFactory(job_type=job_type, status="running")
    assert api.post(f"/api/v1/runs/{run.pk}/rerun/").status_code == 409
    assert Run.objects.count() == 1


def test_session_login_works_for_the_browsable_api(client, admin_user, job_type):
    client.force_login(admin_user)
    response = client.get("/api/v1/runs/", HTTP_ACCEPT="text/html")
    assert response.status_code == 200
    assert b"Run List" in response.content


def test_the_openapi_schema_and_docs_need_a_login(client, api):
    assert client.get("/api/schema/").status_code in (401, 403)
    assert client.get("/api/docs/").status_code == 302
    schema = api.get("/api/schema/?format=json")
    assert schema.status_code == 200
    assert "/api/v1/job-types/{name}/run/" in schema.json()["paths"]
