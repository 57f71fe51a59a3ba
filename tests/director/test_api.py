"""celery-director's API on Jobsite: the answers celery-director's own API tests
expect (its tests/test_api.py and test_auth.py), checked without a worker: a
workflow started here stays `pending`."""

from datetime import timedelta

import pytest
from django.utils import timezone

from jobs.models import JobType, Run, Schedule
from tests.director.conftest import API, basic, start, user_in_role

pytestmark = pytest.mark.postgres  # run on PostgreSQL too (see pyproject.toml)

# What celery-director's tests leave out of each answer: it differs each time.
VARYING = ("id", "created", "updated", "task")


def without(data, keys=VARYING):
    if isinstance(data, dict):
        return {key: without(value, keys) for key, value in data.items() if key not in keys}
    if isinstance(data, list):
        return [without(item, keys) for item in data]
    return data


def post(client, body):
    return client.post(f"{API}/workflows", body, format="json")


WORKFLOW = {"project": "example", "name": "WORKFLOW", "payload": {}}
PENDING_WORKFLOW = {
    "fullname": "example.WORKFLOW",
    "name": "WORKFLOW",
    "payload": {},
    "periodic": False,
    "project": "example",
    "status": "pending",
}


def test_ping_answers_pong_to_anyone(client):
    response = client.get(f"{API}/ping")
    assert (response.status_code, response.json()) == (200, {"message": "pong"})


def test_without_credentials_or_with_wrong_ones_it_answers_401_as_celery_director(director_tests, director):
    director_tests("example.WORKFLOW")
    unauthorized = {"status": 401, "error": "unauthorized", "message": "Please authenticate to access this API."}
    for client in (basic("ops", "wrong"), basic("nobody")):
        response = client.get(f"{API}/workflows")
        assert (response.status_code, response.json()) == (401, unauthorized)
        assert response["WWW-Authenticate"].startswith("Basic")
    from rest_framework.test import APIClient

    response = APIClient().post(f"{API}/workflows", WORKFLOW, format="json")
    assert (response.status_code, response.json()) == (401, unauthorized)
    assert not Run.objects.exists()


def test_wrong_passwords_count_towards_the_login_throttling(director_tests, director, settings):
    """Five wrong passwords for a username from one address lock that pair out, as at the login pages."""
    assert settings.AXES_FAILURE_LIMIT == 5
    for _ in range(5):
        assert basic("ops", "wrong").get(f"{API}/workflows").status_code == 401
    assert basic("ops").get(f"{API}/workflows").status_code == 401  # the right password, locked out
    other_address = basic("ops")
    other_address.defaults["REMOTE_ADDR"] = "203.0.113.5"
    assert other_address.get(f"{API}/workflows").status_code == 200


def test_a_viewer_reads_but_cannot_start_relaunch_or_cancel(director_tests, director):
    director_tests("example.WORKFLOW")
    run_id = start(director, "example.WORKFLOW")["id"]
    user_in_role("watcher", "Viewers")
    viewer = basic("watcher")
    assert viewer.get(f"{API}/workflows/{run_id}").status_code == 200
    for url, permission in [
        (f"{API}/workflows", "jobs.run_jobtype"),
        (f"{API}/workflows/{run_id}/relaunch", "jobs.run_jobtype"),
        (f"{API}/workflows/{run_id}/cancel", "jobs.cancel_run"),
    ]:
        response = viewer.post(url, WORKFLOW, format="json")
        assert response.status_code == 403
        assert response.json() == {"error": f"This needs the permission {permission}, which the Operators role has."}
    assert Run.objects.filter(parent=None).count() == 1


def test_post_workflow_without_or_with_a_payload_and_a_comment(director_tests, director, api):
    director_tests("example.WORKFLOW")
    response = post(director, WORKFLOW)
    assert response.status_code == 201
    assert without(response.json()) == PENDING_WORKFLOW
    payload = {"nested": {"foo": "bar"}}
    response = post(director, {**WORKFLOW, "payload": payload, "comment": "This is an example workflow."})
    assert response.status_code == 201
    assert without(response.json()) == {
        **PENDING_WORKFLOW,
        "payload": payload,
        "comment": "This is an example workflow.",
    }
    run = Run.objects.get(pk=response.json()["id"])
    assert (run.job_type.name, run.params, run.comment, run.trigger) == (
        "example-workflow",
        payload,
        "This is an example workflow.",
        "api",
    )
    assert run.requested_by.username == "ops"
    assert api.get(f"/api/v1/runs/{run.pk}/").json()["comment"] == "This is an example workflow."


def test_post_workflow_checks_its_body_as_celery_director(director_tests, director):
    director_tests("example.WORKFLOW")
    response = post(director, {})
    assert response.status_code == 400
    assert response.json()["error"] == "Error validating against schema"
    assert len(response.json()["errors"]) == 3
    for prop in ("project", "name", "payload"):
        assert prop in " ".join(response.json()["errors"])
    response = post(director, {"project": "example"})
    assert len(response.json()["errors"]) == 2
    response = post(director, {"project": "example", "name": "WORKFLOW"})
    assert response.json()["errors"] == ["'payload' is a required property"]
    response = post(director, {**WORKFLOW, "foo": "bar"})
    assert response.status_code == 400
    assert "'foo' was unexpected" in response.json()["errors"][0]
    response = post(director, {**WORKFLOW, "comment": "x" * 256})
    assert response.status_code == 400
    assert response.json()["errors"] == [f"'{'x' * 256}' is too long"]
    response = director.post(f"{API}/workflows", "{not json", content_type="application/json")
    assert response.status_code == 400
    assert response.json()["error"].startswith("JSON parse error")
    assert not Run.objects.exists()


def test_unknown_workflows_are_404_as_celery_director_says_it(director_tests, director):
    director_tests("example.WORKFLOW")
    assert post(director, WORKFLOW).status_code == 201
    response = post(director, {**WORKFLOW, "name": "NOT_FOUND"})
    assert (response.status_code, response.json()) == (404, {"error": "Workflow example.NOT_FOUND not found"})
    response = post(director, {**WORKFLOW, "project": "NOT_FOUND"})
    assert (response.status_code, response.json()) == (404, {"error": "Workflow NOT_FOUND.WORKFLOW not found"})
    for missing in ("280d0c4065d04063a800a3b674562711", "e0ee42d8-e00f-4557-8f75-781106dbbea4", "not-a-uuid"):
        assert director.get(f"{API}/workflows/{missing}").status_code == 404
        for action in ("relaunch", "cancel"):
            response = director.post(f"{API}/workflows/{missing}/{action}", {}, format="json")
            assert (response.status_code, response.json()) == (404, {"error": f"Workflow {missing} not found"})


def test_a_run_of_a_job_type_without_a_director_name_is_not_a_director_workflow(director_tests, director):
    director_tests("example.WORKFLOW")
    run_id = start(director, "example.WORKFLOW")["id"]
    JobType.objects.filter(name="example-workflow").update(director_name="")
    assert director.get(f"{API}/workflows/{run_id}").status_code == 404
    assert director.get(f"{API}/workflows").json() == []
    assert post(director, WORKFLOW).status_code == 404


def test_the_payload_is_checked_against_the_workflows_schema(director_tests, director):
    director_tests("schemas.SIMPLE_SCHEMA")
    body = {"project": "schemas", "name": "SIMPLE_SCHEMA", "payload": {}}
    response = post(director, body)
    assert (response.status_code, response.json()) == (
        400,
        {"error": "Payload is not valid", "errors": ["'name' is a required property"]},
    )
    body["payload"]["price"] = "foo"
    response = post(director, body)
    assert response.status_code == 400
    assert response.json()["error"] == "Payload is not valid"
    # Jobsite names where the problem is, before celery-director's message.
    assert sorted(response.json()["errors"]) == [
        "'name' is a required property",
        "price: 'foo' is not of type 'number'",
    ]
    assert not Run.objects.exists()
    body["payload"] = {"name": "foo", "price": 100}
    assert post(director, body).status_code == 201


def test_get_workflow_shows_its_tasks_in_celery_directors_shape(director_tests, director):
    director_tests("example.WORKFLOW", "example.SIMPLE_GROUP")
    run_id = start(director, "example.WORKFLOW")["id"]
    response = director.get(f"{API}/workflows/{run_id}")
    assert response.status_code == 200
    data = response.json()
    assert data["tasks"][0]["task"] == data["tasks"][0]["id"] == str(Run.objects.get(parent_id=run_id).pk)
    assert without(data) == {
        **PENDING_WORKFLOW,
        "tasks": [{"key": "TASK_EXAMPLE", "previous": [], "result": None, "status": "pending", "is_hook": False}],
    }
    chain = director.get(f"{API}/workflows/{start(director, 'example.SIMPLE_GROUP')['id']}").json()["tasks"]
    assert [(task["key"], task["previous"]) for task in chain] == [
        ("TASK_A", []),
        ("TASK_B", [chain[0]["id"]]),
        ("TASK_C", [chain[0]["id"]]),
    ]


def test_relaunch_starts_the_same_workflow_with_the_same_payload_and_comment(director_tests, director):
    director_tests("example.SIMPLE_CHAIN")
    first = start(director, "example.SIMPLE_CHAIN", {"nested": {"foo": "bar"}}, comment="This is an example workflow.")
    response = director.post(f"{API}/workflows/{first['id']}/relaunch", {}, format="json")
    assert response.status_code == 201
    second = response.json()
    assert second["id"] != first["id"]
    assert without(second) == without(first)
    assert Run.objects.get(pk=second["id"]).rerun_of_id == Run.objects.get(pk=first["id"]).pk
    listed = director.get(f"{API}/workflows").json()
    assert [w["id"] for w in listed] == [second["id"], first["id"]]
    assert without(listed[0]) == without(listed[1])
    keys = [[t["key"] for t in director.get(f"{API}/workflows/{w['id']}").json()["tasks"]] for w in listed]
    assert keys[0] == keys[1] == ["TASK_A", "TASK_B", "TASK_C"]


def test_cancel_cancels_a_workflow_and_its_tasks_and_a_second_cancel_is_a_conflict(director_tests, director):
    director_tests("example.DELAY_TASK")
    workflow_id = start(director, "example.DELAY_TASK")["id"]
    response = director.post(f"{API}/workflows/{workflow_id}/cancel", {}, format="json")
    assert response.status_code == 201
    assert response.json()["status"] == "canceled"
    tasks = director.get(f"{API}/workflows/{workflow_id}").json()["tasks"]
    assert [task["status"] for task in tasks] == ["canceled"]
    # celery-director would mark it canceled again; a Jobsite run that has ended never changes.
    response = director.post(f"{API}/workflows/{workflow_id}/cancel", {}, format="json")
    assert response.status_code == 409
    assert response.json() == {
        "error": f"Run {workflow_id} is already cancelled: only runs that have not finished can be cancelled."
    }


def test_list_workflows_newest_first(director_tests, director):
    director_tests("example.WORKFLOW")
    assert director.get(f"{API}/workflows").json() == []
    start(director, "example.WORKFLOW")
    assert without(director.get(f"{API}/workflows").json()) == [PENDING_WORKFLOW]
    for _ in range(9):
        start(director, "example.WORKFLOW")
    assert len(director.get(f"{API}/workflows").json()) == 10
    listed = director.get(f"{API}/workflows", {"with_payload": "false"}).json()
    assert all("payload" not in workflow for workflow in listed)
    assert all("payload" in w for w in director.get(f"{API}/workflows", {"with_payload": "maybe"}).json())


def test_list_workflows_by_page(director_tests, director):
    director_tests("example.WORKFLOW")
    job_type = JobType.objects.get(director_name="example.WORKFLOW")
    now = timezone.now()
    Run.objects.bulk_create(
        Run(job_type=job_type, trigger="api", params={"i": i + 1}, created_at=now + timedelta(minutes=i))
        for i in range(20)
    )

    def payloads(**query):
        response = director.get(f"{API}/workflows", query)
        assert response.status_code == 200, response.json()
        return [workflow["payload"]["i"] for workflow in response.json()]

    assert payloads() == list(range(20, 0, -1))
    assert payloads(per_page=1) == [20]
    assert payloads(per_page=4, page=1) == [20, 19, 18, 17]
    assert payloads(per_page=4, page=2) == [16, 15, 14, 13]
    assert payloads(per_page=3, page=7) == [2, 1]
    assert payloads(per_page="x", page="y") == list(range(20, 0, -1))  # unreadable: the defaults
    for query in ({"per_page": 4, "page": 6}, {"page": 0}, {"per_page": -1}):
        response = director.get(f"{API}/workflows", query)
        assert response.status_code == 404, query
        assert "error" in response.json()
    response = director.get(f"{API}/workflows", {"per_page": 1001})
    assert response.status_code == 400
    assert response.json() == {"error": "per_page 1001 is more than 1000, the most a page holds."}


def test_a_scheduled_run_is_periodic(director_tests, director):
    director_tests("example.WORKFLOW")
    job_type = JobType.objects.get(director_name="example.WORKFLOW")
    schedule = Schedule.objects.create(name="every-minute", job_type=job_type, interval_seconds=60)
    Run.objects.create(job_type=job_type, trigger="schedule", schedule=schedule)
    assert director.get(f"{API}/workflows").json()[0]["periodic"] is True


@pytest.mark.parametrize("disabled", [False, True])
def test_list_definitions_as_workflows_yml_says_them(director_tests, director, disabled):
    director_tests()
    routing = JobType.objects.get(director_name="example.TASK_ROUTING")
    Schedule.objects.create(name="routing-nightly", job_type=routing, cron="0 3 * * *", params={"day": "today"})
    if disabled:
        JobType.objects.filter(director_name="example.WORKFLOW").update(enabled=False)
    response = director.get(f"{API}/definitions")
    assert response.status_code == 200
    definitions = {definition.pop("fullname"): definition for definition in response.json()}
    assert list(definitions) == sorted(definitions)
    expected = {
        "example.CELERY_ERROR_MULTIPLE_TASKS": {"tasks": ["TASK_A", "TASK_CELERY_ERROR"]},
        "example.CELERY_ERROR_ONE_TASK": {"tasks": ["TASK_CELERY_ERROR"]},
        "example.DELAY_TASK": {"tasks": ["DELAY"]},
        "example.ERROR": {"tasks": ["TASK_ERROR"]},
        "example.FAILURE_HOOK": {"hooks": {"failure": "TASK_B"}, "tasks": ["TASK_A", "TASK_ERROR"]},
        "example.RETURN_EXCEPTION": {"tasks": ["STR", "TASK_ERROR"]},
        "example.RETURN_VALUES": {"tasks": ["STR", "INT", "LIST", "NONE", "DICT", "NESTED"]},
        "example.SIMPLE_CHAIN": {"tasks": ["TASK_A", "TASK_B", "TASK_C"]},
        "example.SIMPLE_CHAIN_ERROR": {"tasks": ["TASK_A", "TASK_B", "TASK_ERROR"]},
        # Groups keep no name in Jobsite: they are named by their position.
        "example.SIMPLE_GROUP": {"tasks": ["TASK_A", {"GROUP_2": {"tasks": ["TASK_B", "TASK_C"], "type": "group"}}]},
        "example.SIMPLE_GROUP_ERROR": {
            "tasks": ["TASK_A", {"GROUP_2": {"tasks": ["TASK_ERROR", "TASK_C"], "type": "group"}}]
        },
        "example.SUCCESSANDFAILURE_HOOK": {"hooks": {"failure": "TASK_C", "success": "TASK_B"}, "tasks": ["TASK_A"]},
        "example.TASK_ROUTING": {
            "queue": {"customs": {"TASK_B": "q2"}, "default": "q1"},
            "tasks": ["TASK_A", {"GROUP_2": {"tasks": ["TASK_B", "TASK_C"], "type": "group"}}],
            "periodic": {"crontab": "0 3 * * *", "payload": {"day": "today"}},
        },
        "example.WORKFLOW": {"tasks": ["TASK_EXAMPLE"]},
        "schemas.SIMPLE_SCHEMA": {
            "schema": {
                "properties": {"name": {"type": "string"}, "price": {"type": "number"}},
                "required": ["name"],
                "type": "object",
            },
            "tasks": ["TASK_EXAMPLE"],
        },
    }
    if disabled:
        del expected["example.WORKFLOW"]
    assert definitions == {
        fullname: {"project": fullname.split(".")[0], "name": fullname.split(".")[1], **definition}
        for fullname, definition in expected.items()
    }
