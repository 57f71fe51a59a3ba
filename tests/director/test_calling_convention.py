"""celery-director's calling convention, end to end through a real worker: a
step gets the results of the steps it depends on as positional arguments (one:
its result; a group: the list of their results; none: None), and `payload` and
`workflow_id` as keyword arguments. Imported workflows use it, so celery-director
task modules (tests/director/tasks.py) run as they are; any workflow may."""

import pytest

from jobs.models import JobType, Run
from tests.conftest import wait_for_run
from tests.director.conftest import API, follow, start
from tests.e2e.test_execution import define, trigger


def results(workflow: dict) -> dict:
    return {task["key"]: task["result"] for task in workflow["tasks"]}


def test_directors_demo_of_three_tasks_each_reading_the_one_before_in_args_0_succeeds(worker, demos, director):
    started = start(director, "demo.PRICES", {"prices": [10, 20.5, 4], "discount": 0.1})
    workflow = follow(director, started["id"])
    assert workflow["status"] == "success", workflow
    assert results(workflow) == {
        "FETCH_PRICES": {"prices": [10, 20.5, 4]},
        "PROCESS_PRICES": {"prices": [9.0, 18.45, 3.6]},
        "TOTAL": {"total": 31.05, "workflow_id": started["id"]},
    }
    run = Run.objects.get(pk=started["id"])
    assert run.status == "succeeded"
    assert run.result["total"] == {"total": 31.05, "workflow_id": started["id"]}
    # What each step was called with, on its run: its payload and workflow_id (its args are the steps before it).
    step = run.children.get(step_name="process-prices")
    assert step.params == {"payload": {"prices": [10, 20.5, 4], "discount": 0.1}, "workflow_id": started["id"]}


def test_a_task_after_a_group_gets_the_list_of_the_groups_results(worker, demos, director):
    workflow = follow(director, start(director, "example.RANDOMS", {"start": 4, "end": 4})["id"])
    assert workflow["status"] == "success", workflow
    assert [(task["key"], task["result"]) for task in workflow["tasks"]] == [("RANDOM", 4), ("RANDOM", 4), ("ADD", 8)]


def test_the_success_hook_gets_the_workflows_result_and_the_failure_hook_the_payload(worker, demos, director):
    payload = {"prices": [1, 2]}
    workflow = follow(director, start(director, "demo.HOOKED", payload)["id"], tasks=3)
    assert workflow["status"] == "success", workflow
    hook = workflow["tasks"][-1]
    assert (hook["key"], hook["is_hook"], hook["status"]) == ("RECORD_CALL", True, "success")
    # celery-director gives its success hook None (its closing task's result); Jobsite, the last task's result.
    assert hook["result"] == {
        "args": [{"prices": [1, 2]}],
        "kwargs": {"payload": payload, "workflow_id": workflow["id"]},
    }

    broken = {"prices": ["one", "two"]}
    failed = follow(director, start(director, "demo.HOOKED", broken)["id"], tasks=4)
    assert failed["status"] == "error"
    assert [(t["key"], t["status"], t["is_hook"]) for t in failed["tasks"]] == [
        ("FETCH_PRICES", "success", False),
        ("PROCESS_PRICES", "error", False),
        ("RECORD_CALL", "canceled", True),  # the success hook
        ("RECORD_CALL", "success", True),  # the failure hook
    ]
    assert failed["tasks"][1]["result"]["exception"] == "type str doesn't define __round__ method"
    called = failed["tasks"][-1]["result"]
    assert called["args"] == []
    assert {key: called["kwargs"][key] for key in ("payload", "workflow_id")} == {
        "payload": broken,
        "workflow_id": failed["id"],
    }
    assert called["kwargs"]["error"].startswith("Step 'process-prices' failed: TypeError")


@pytest.mark.parametrize("step_args", ["director", "params"])
def test_any_workflow_may_call_its_steps_celery_directors_way(worker, api, step_args):
    define(api, name="record", kind="task", task="RECORD_CALL")
    define(
        api,
        name="recorded",
        kind="workflow",
        step_args=step_args,
        steps=[
            {"name": "first", "job_type": "record", "params": {"note": "{{ params.note }}"}},
            {"name": "second", "job_type": "record", "depends_on": ["first"]},
        ],
    )
    run = wait_for_run(trigger(api, "recorded", {"note": "hi"}))
    assert run.status == "succeeded", run.error
    first, second = run.result["first"], run.result["second"]
    if step_args == "params":  # the default: params as keyword arguments, nothing else
        assert first == {"args": [], "kwargs": {"note": "hi"}}
        assert second == {"args": [], "kwargs": {}}
        return
    given = {"payload": {"note": "hi"}, "workflow_id": str(run.pk)}
    assert first == {"args": [None], "kwargs": {"note": "hi", **given}}
    assert second == {"args": [first], "kwargs": given}


def test_under_the_convention_step_params_cannot_set_payload_or_workflow_id(db, api):
    define(api, name="record", kind="task", task="RECORD_CALL")
    body = {
        "name": "recorded",
        "kind": "workflow",
        "step_args": "director",
        "steps": [{"name": "first", "job_type": "record", "params": {"payload": {}, "workflow_id": "x"}}],
    }
    response = api.post("/api/v1/job-types/", body, format="json")
    assert response.status_code == 400
    assert response.json() == {
        "steps": [
            f"Step 'first': params '{key}' is what celery-director's calling convention (step_args 'director') "
            "passes by itself: remove it from the step's params."
            for key in ("payload", "workflow_id")
        ]
    }
    assert not JobType.objects.filter(name="recorded").exists()


def test_step_args_and_director_name_are_for_workflows_and_the_name_is_project_dot_name_used_once(db, api):
    response = api.post(
        "/api/v1/job-types/",
        {"name": "t", "kind": "task", "task": "TASK_A", "step_args": "director", "director_name": "a.B"},
        format="json",
    )
    assert response.status_code == 400
    assert response.json() == {
        "step_args": ["Only for kind 'workflow': leave it 'params' for kind 'task'."],
        "director_name": ["Only for kind 'workflow': leave it empty for kind 'task'."],
    }
    define(api, name="t", kind="task", task="TASK_A")
    flow = {"kind": "workflow", "steps": [{"name": "a", "job_type": "t"}]}
    define(api, name="one", director_name="shop.ETL", **flow)
    for name, message in [
        ("shop.ETL", "Workflow 'one' has the celery-director name 'shop.ETL'."),
        ("ETL", "'ETL' is not a celery-director name: give project.NAME, e.g. 'shop.ETL' "),
        ("my shop.ETL", "'my shop.ETL' is not a celery-director name"),
    ]:
        response = api.post("/api/v1/job-types/", {"name": "two", "director_name": name, **flow}, format="json")
        assert response.status_code == 400
        assert response.json()["director_name"][0].startswith(message)
    assert api.get("/api/v1/job-types/one/").json()["director_name"] == "shop.ETL"
    assert api.get(f"{API}/ping").status_code == 200
