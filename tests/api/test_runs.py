"""The runs API without a worker: what is validated, recorded and refused.

Execution through a real worker is in tests/e2e/.
"""

from datetime import timedelta

import pytest
from django.utils import timezone

from jobs.models import JobType, Run, Schedule
from tests.factories import JobTypeFactory, RunFactory

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
    assert ids("trigger=cli") == {str(recent.pk)}
    since = (timezone.now() - timedelta(days=1)).isoformat()
    assert str(old.pk) not in ids(f"created_after={since.replace('+', '%2B')}")


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
    assert len(page["results"]) == 200
    assert page["next"]
    created = [row["created_at"] for row in page["results"]]
    assert created == sorted(created, reverse=True)
    assert len(api.get("/api/v1/runs/?page=2&page_size=200").data["results"]) == 5


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
