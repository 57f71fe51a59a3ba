"""Bulk triggers over the API without a worker: what is validated, recorded and
refused, all or nothing. Runs executed by a real worker, the publish's
pipelining and a Redis outage are in tests/e2e/test_bulk.py; the queries in
tests/test_bulk_trigger.py."""

from datetime import timedelta

import pytest
from django.utils import timezone
from drf_spectacular.generators import SchemaGenerator

from jobs.models import JobType, Run
from tests.factories import JobTypeFactory

pytestmark = pytest.mark.postgres  # run on PostgreSQL too (see pyproject.toml)

SCHEMA = {"type": "object", "properties": {"count": {"type": "integer"}}, "required": ["count"]}


@pytest.fixture
def counted(db):
    return JobTypeFactory(name="counted", params_schema=SCHEMA, default_params={"label": "x"})


def bulk_url(name: str) -> str:
    return f"/api/v1/job-types/{name}/runs/bulk/"


def test_it_creates_one_run_per_item_in_order_with_defaults_applied(api, counted, admin_user):
    body = {"params": [{"count": n} for n in range(5)], "comment": "nightly import"}
    response = api.post(bulk_url("counted"), body, format="json")
    assert response.status_code == 201, response.data
    assert response.data["count"] == 5
    ids = [run["id"] for run in response.data["runs"]]
    runs = {str(run.pk): run for run in Run.objects.filter(pk__in=ids)}
    assert [runs[pk].params for pk in ids] == [{"label": "x", "count": n} for n in range(5)]
    assert {(run.trigger, run.requested_by, run.comment) for run in runs.values()} == {
        ("api", admin_user, "nightly import")
    }
    first = response.data["runs"][0]
    assert set(first) == {"id", "status", "scheduled_for", "url"}
    assert first["url"] == f"http://testserver/monitor/runs/{ids[0]}/"
    # Every run records the job type's revision it runs, as one run does.
    assert {run.job_type_revision_id for run in runs.values()} == {counted.history.latest().history_id}


def test_a_bad_item_gets_a_400_naming_its_index_and_nothing_is_written(api, counted):
    items = [{"count": 1}, {"count": 2}, {"count": "three"}, {"count": 4}, {}]
    response = api.post(bulk_url("counted"), {"params": items}, format="json")
    assert response.status_code == 400
    assert response.data == {
        "params": {"2": ["count: 'three' is not of type 'integer'"], "4": ["'count' is a required property"]}
    }
    assert not Run.objects.exists()


@pytest.mark.parametrize(
    ("params", "errors"),
    [
        ([{"count": 1}, 7, "x"], {"1": ['Expected a dictionary of items but got type "int".'],
                                  "2": ['Expected a dictionary of items but got type "str".']}),
        ([{"count": 1}, None], {"1": ["This field may not be null."]}),
    ],
)  # fmt: skip
def test_an_item_that_is_not_an_object_gets_a_400_naming_its_index(api, counted, params, errors):
    response = api.post(bulk_url("counted"), {"params": params}, format="json")
    assert response.status_code == 400
    assert response.json() == {"params": errors}
    assert not Run.objects.exists()


@pytest.mark.parametrize("params", [{"count": 1}, "[]", None])
def test_params_that_are_not_a_list_get_a_400(api, counted, params):
    response = api.post(bulk_url("counted"), {"params": params}, format="json")
    assert response.status_code == 400
    assert list(response.data) == ["params"]
    assert not Run.objects.exists()


def test_an_empty_list_or_none_at_all_gets_a_400(api, counted):
    assert api.post(bulk_url("counted"), {"params": []}, format="json").data == {
        "params": ["Give at least one params object."]
    }
    assert api.post(bulk_url("counted"), {}, format="json").data == {"params": ["This field is required."]}
    assert not Run.objects.exists()


def test_more_items_than_jobs_bulk_max_runs_get_a_400_saying_to_split_them(api, counted, settings):
    settings.JOBS_BULK_MAX_RUNS = 3
    response = api.post(bulk_url("counted"), {"params": [{"count": n} for n in range(4)]}, format="json")
    assert response.status_code == 400
    assert response.data == {
        "params": ["At most 3 runs per request (JOBS_BULK_MAX_RUNS): split the list over several requests."]
    }
    assert not Run.objects.exists()
    assert api.post(bulk_url("counted"), {"params": [{"count": n} for n in range(3)]}, format="json").status_code == 201


def test_a_bad_shared_option_is_named_once_not_per_item(api, counted):
    body = {"params": [{"count": 1}, {"count": 2}], "notify_emails": ["not-an-address"]}
    response = api.post(bulk_url("counted"), body, format="json")
    assert response.status_code == 400
    assert list(response.data) == ["notify_emails"]
    assert len(response.data["notify_emails"]) == 1
    assert not Run.objects.exists()


def test_run_at_stores_every_run_scheduled_and_refuses_the_past(api, counted):
    later = timezone.now() + timedelta(hours=1)
    body = {"params": [{"count": 1}, {"count": 2}], "run_at": later.isoformat()}
    response = api.post(bulk_url("counted"), body, format="json")
    assert response.status_code == 201, response.data
    assert {(run["status"], run["scheduled_for"]) for run in response.data["runs"]} == {
        ("scheduled", later.isoformat().replace("+00:00", "Z"))
    }
    past = {"params": [{"count": 1}], "run_at": (timezone.now() - timedelta(hours=1)).isoformat()}
    response = api.post(bulk_url("counted"), past, format="json")
    assert response.status_code == 400
    assert "is in the past" in response.data["run_at"][0]
    assert Run.objects.count() == 2


def test_a_disabled_job_type_is_a_409_and_nothing_is_written(api):
    JobTypeFactory(name="off", enabled=False)
    response = api.post(bulk_url("off"), {"params": [{}, {}]}, format="json")
    assert response.status_code == 409
    assert response.data == {"detail": "Job type 'off' is disabled: enable it before running it."}
    assert not Run.objects.exists()


def test_an_unknown_job_type_is_a_json_404(api):
    response = api.post(bulk_url("ghost"), {"params": [{}]}, format="json")
    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"


def test_it_needs_the_run_permission(viewer, operator, api_as, counted):
    body = {"params": [{"count": 1}]}
    assert api_as(None).post(bulk_url("counted"), body, format="json").status_code == 401
    assert api_as(viewer).post(bulk_url("counted"), body, format="json").status_code == 403
    assert not Run.objects.exists()
    assert api_as(operator).post(bulk_url("counted"), body, format="json").status_code == 201


def test_a_workflow_gets_one_workflow_run_per_item_each_with_its_step_runs(api):
    echo = JobTypeFactory(name="echo")
    flow = JobType.objects.create(name="flow", kind=JobType.Kind.WORKFLOW)
    flow.steps.create(name="one", job_type=echo, params={"n": "{{ params.n }}"})
    flow.steps.create(name="two", job_type=echo, depends_on=["one"], position=1)
    response = api.post(bulk_url("flow"), {"params": [{"n": 1}, {"n": 2}, {"n": 3}]}, format="json")
    assert response.status_code == 201, response.data
    for run in Run.objects.filter(pk__in=[run["id"] for run in response.data["runs"]]):
        assert sorted(run.children.values_list("step_name", "status")) == [("one", "waiting"), ("two", "waiting")]


def test_a_workflow_without_steps_is_a_409(api):
    JobType.objects.create(name="empty", kind=JobType.Kind.WORKFLOW)
    response = api.post(bulk_url("empty"), {"params": [{}]}, format="json")
    assert response.status_code == 409
    assert not Run.objects.exists()


def test_the_schema_describes_the_request_its_limit_and_every_answer(settings):
    schema = SchemaGenerator().get_schema(request=None, public=True)
    operation = schema["paths"]["/api/v1/job-types/{name}/runs/bulk/"]["post"]
    assert {"201", "400", "401", "403", "404", "409", "413", "415"} <= set(operation["responses"])
    request = schema["components"]["schemas"]["BulkRunRequestRequest"]
    assert request["required"] == ["params"]
    assert (request["properties"]["params"]["minItems"], request["properties"]["params"]["maxItems"]) == (
        1,
        settings.JOBS_BULK_MAX_RUNS,
    )
    answer = schema["components"]["schemas"]["BulkRun"]
    assert set(answer["properties"]) == {"id", "status", "scheduled_for", "url"}
