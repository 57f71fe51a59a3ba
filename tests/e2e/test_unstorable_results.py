"""A task whose return value cannot be stored: its run fails at once, through a real worker."""

import pytest
from django_celery_results.models import TaskResult

from tests.conftest import WORKFLOW_QUEUE, wait_for_run
from tests.e2e.test_execution import define, trigger
from tests.e2e.test_workflows import steps_of

pytestmark = pytest.mark.postgres  # run on PostgreSQL too (see pyproject.toml)

NOT_JSON = (
    "result is not JSON-serialisable: Object of type Opaque is not JSON serializable. Return JSON data (dicts, "
    "lists, strings, numbers, booleans, None); pass anything else by reference (a URL, a path, an id)"
)


def test_a_result_that_is_not_json_fails_the_run_at_once_without_retries(worker, api):
    # Like celery-director's TASK_CELERY_ERROR, it returns an object JSON cannot say.
    define(api, name="opaque", kind="task", task="tests.opaque", max_retries=2, retry_backoff_seconds=1)
    run = wait_for_run(trigger(api, "opaque"), timeout=15)  # no beat: the stuck check cannot be what ends it
    assert (run.status, run.attempts, run.result) == ("failed", 1, None)
    data = api.get(f"/api/v1/runs/{run.pk}/").data
    assert data["error"] == NOT_JSON
    # Celery's own record says the same.
    task_result = TaskResult.objects.get(task_id=str(run.pk))
    assert task_result.status == "FAILURE"
    assert "result is not JSON-serialisable: Object of type Opaque" in task_result.result


def test_a_result_with_nan_fails_the_run(worker, api):
    define(api, name="nan", kind="task", task="tests.not_a_number")
    run = wait_for_run(trigger(api, "nan"), timeout=15)
    assert run.status == "failed"
    assert run.error.startswith("result is not JSON-serialisable: Out of range float values are not JSON compliant")


def test_a_step_whose_result_is_not_json_fails_its_workflow(workflow_worker, api):
    define(api, name="opaque", kind="task", task="tests.opaque")
    define(api, name="echo", kind="task", task="jobs.builtin.echo")
    define(
        api,
        name="director-style",
        kind="workflow",
        queue=WORKFLOW_QUEUE,
        steps=[
            {"name": "first", "job_type": "echo", "params": {"n": 1}},
            {"name": "opaque", "job_type": "opaque", "depends_on": ["first"]},
            {"name": "after", "job_type": "echo", "depends_on": ["opaque"]},
        ],
    )
    run = wait_for_run(trigger(api, "director-style"), timeout=30)
    assert run.status == "failed"
    assert run.error == f"Step 'opaque' failed: {NOT_JSON}"
    steps = steps_of(api, run)
    assert [steps[name]["status"] for name in ("first", "opaque", "after")] == ["succeeded", "failed", "cancelled"]


def test_a_result_that_is_not_json_fails_the_run_of_a_task_that_ignores_results_too(worker, api):
    define(api, name="unrecorded", kind="task", task="tests.opaque_unrecorded")
    run = wait_for_run(trigger(api, "unrecorded"), timeout=15)
    assert (run.status, run.error) == ("failed", NOT_JSON)
