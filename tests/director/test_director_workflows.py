"""celery-director's test workflows (tests/fixtures/director/director-tests.yml),
imported and run end to end through a real worker, each with the outcome its
test in celery-director's tests/test_workflows.py expects, read back through
the celery-director API as its clients would."""

import time

import pytest
from django_celery_results.models import TaskResult

from jobs.models import Run
from tests.director.conftest import API, follow, start

NESTED = {
    "jack": 4098,
    "sape": 4139,
    "guido": 4127,
    "nested": {"foo": "bar"},
    "none": None,
    "list": ["jack", "sape", "guido"],
}
DIVISION = "division by zero"
# The workflow's status, then each task's key, status and result (str for an error: its exception's message).
OUTCOMES = {
    "example.WORKFLOW": ("success", [("TASK_EXAMPLE", "success", "task_example")]),
    "example.SIMPLE_CHAIN": (
        "success",
        [("TASK_A", "success", "task_a"), ("TASK_B", "success", "task_b"), ("TASK_C", "success", "task_c")],
    ),
    "example.SIMPLE_GROUP": (
        "success",
        [("TASK_A", "success", "task_a"), ("TASK_B", "success", "task_b"), ("TASK_C", "success", "task_c")],
    ),
    "example.ERROR": ("error", [("TASK_ERROR", "error", DIVISION)]),
    "example.SIMPLE_CHAIN_ERROR": (
        "error",
        [("TASK_A", "success", "task_a"), ("TASK_B", "success", "task_b"), ("TASK_ERROR", "error", DIVISION)],
    ),
    "example.SIMPLE_GROUP_ERROR": (
        "error",
        [("TASK_A", "success", "task_a"), ("TASK_ERROR", "error", DIVISION), ("TASK_C", "success", "task_c")],
    ),
    "example.RETURN_VALUES": (
        "success",
        [
            ("STR", "success", "return_value"),
            ("INT", "success", 1234),
            ("LIST", "success", ["jack", "sape", "guido"]),
            ("NONE", "success", None),
            ("DICT", "success", {"foo": "bar"}),
            ("NESTED", "success", NESTED),
        ],
    ),
    "example.RETURN_EXCEPTION": ("error", [("STR", "success", "return_value"), ("TASK_ERROR", "error", DIVISION)]),
    "example.SUCCESSANDFAILURE_HOOK": ("success", [("TASK_A", "success", "task_a"), ("TASK_B", "success", "task_b")]),
    "example.FAILURE_HOOK": (
        "error",
        [("TASK_A", "success", "task_a"), ("TASK_ERROR", "error", DIVISION), ("TASK_B", "success", "task_b")],
    ),
}


def outcome(workflow: dict) -> tuple[str, list[tuple]]:
    tasks = []
    for task in workflow["tasks"]:
        result = task["result"]
        tasks.append((task["key"], task["status"], result["exception"] if task["status"] == "error" else result))
    return workflow["status"], tasks


@pytest.mark.parametrize("fullname", list(OUTCOMES))
def test_each_of_celery_directors_test_workflows_ends_as_its_test_expects(worker, director_tests, director, fullname):
    director_tests(fullname)
    status, tasks = OUTCOMES[fullname]
    workflow = follow(director, start(director, fullname)["id"], tasks=len(tasks))
    assert outcome(workflow) == (status, tasks)
    hooks = [task["key"] for task in workflow["tasks"] if task["is_hook"]]
    assert hooks == (["TASK_B"] if "HOOK" in fullname else [])
    assert Run.objects.get(pk=workflow["id"]).status == {"success": "succeeded", "error": "failed"}[status]


def test_a_failed_task_keeps_its_exception_and_traceback_as_its_result(worker, director_tests, director):
    director_tests("example.RETURN_EXCEPTION")
    workflow = follow(director, start(director, "example.RETURN_EXCEPTION")["id"], tasks=2)
    failed = workflow["tasks"][1]["result"]
    assert list(failed) == ["exception", "traceback"]
    assert failed["exception"] == "division by zero"
    assert failed["traceback"].startswith("Traceback (most recent call last)")
    assert "ZeroDivisionError: division by zero" in failed["traceback"]


@pytest.mark.parametrize(
    ("fullname", "before"), [("example.CELERY_ERROR_ONE_TASK", []), ("example.CELERY_ERROR_MULTIPLE_TASKS", ["TASK_A"])]
)
def test_a_task_whose_return_value_cannot_be_stored_fails_its_workflow(
    worker, director_tests, director, fullname, before
):
    """celery-director's workflow ends in error (an EncodeError); Jobsite's says why.
    Needs the run tracking change that fails such a run at once (issue 15, run tracking)."""
    director_tests(fullname)
    # At once: the run tracking does not wait for the stuck check to find such a run.
    workflow = follow(director, start(director, fullname)["id"], tasks=len(before) + 1, timeout=10)
    assert workflow["status"] == "error"
    assert [(t["key"], t["status"]) for t in workflow["tasks"]] == [
        *[(key, "success") for key in before],
        ("TASK_CELERY_ERROR", "error"),
    ]
    assert "JSON" in workflow["tasks"][-1]["result"]["exception"]


def test_the_payload_schema_refuses_a_bad_payload_and_a_good_one_runs(worker, director_tests, director):
    director_tests("schemas.SIMPLE_SCHEMA")
    body = {"project": "schemas", "name": "SIMPLE_SCHEMA", "payload": {"price": 3}}
    response = director.post(f"{API}/workflows", body, format="json")
    assert (response.status_code, response.json()) == (
        400,
        {"error": "Payload is not valid", "errors": ["'name' is a required property"]},
    )
    workflow = follow(director, start(director, "schemas.SIMPLE_SCHEMA", {"name": "foo", "price": 100})["id"])
    assert outcome(workflow) == ("success", [("TASK_EXAMPLE", "success", "task_example")])
    assert workflow["payload"] == {"name": "foo", "price": 100}


def test_tasks_are_routed_to_the_workflows_queue_and_their_own(worker, director_tests, director, start_worker):
    director_tests("example.TASK_ROUTING")
    on_q1, on_q2 = start_worker(2, "q1"), start_worker(1, "q2")
    workflow = follow(director, start(director, "example.TASK_ROUTING")["id"])
    assert outcome(workflow) == (
        "success",
        [("TASK_A", "success", "task_a"), ("TASK_B", "success", "task_b"), ("TASK_C", "success", "task_c")],
    )
    ran_on = {run.job_type.task: run.worker for run in Run.objects.filter(parent_id=workflow["id"])}
    assert ran_on == {"TASK_A": on_q1.hostname, "TASK_B": on_q2.hostname, "TASK_C": on_q1.hostname}


def test_cancelling_a_running_workflow_stops_its_task(worker, director_tests, director):
    director_tests("example.DELAY_TASK")
    workflow_id = start(director, "example.DELAY_TASK")["id"]
    deadline = time.monotonic() + 20
    while director.get(f"{API}/workflows/{workflow_id}").json()["tasks"][0]["status"] != "progress":
        assert time.monotonic() < deadline, "DELAY did not start"
        time.sleep(0.2)
    assert director.get(f"{API}/workflows/{workflow_id}").json()["status"] == "progress"
    response = director.post(f"{API}/workflows/{workflow_id}/cancel", {}, format="json")
    assert (response.status_code, response.json()["status"]) == (201, "canceled")
    workflow = follow(director, workflow_id)
    assert (workflow["status"], workflow["tasks"][0]["status"]) == ("canceled", "canceled")
    # Its task was stopped, not left to sleep its five minutes.
    task_id = workflow["tasks"][0]["id"]
    deadline = time.monotonic() + 20
    while not TaskResult.objects.filter(task_id=task_id, status="REVOKED").exists():
        assert time.monotonic() < deadline, "the running task was not stopped"
        time.sleep(0.2)
