"""Workflows over the API: defining them (the rules, the 400s), and what the
runs API shows of them. Execution through a worker is in tests/e2e/."""

import pytest

from jobs.models import JobType, Run, WorkflowStep
from jobs.runs import trigger
from tests.factories import JobTypeFactory

URL = "/api/v1/job-types/"
SCHEMA = {"type": "object", "properties": {"day": {"type": "string"}}}
EXTRACT = {"name": "extract", "job_type": "echo", "params": {"day": "{{ params.day }}"}}
LOAD = {"name": "load", "job_type": "echo", "params": {"rows": "{{ steps.extract.result }}"}, "depends_on": ["extract"]}


@pytest.fixture
def echo(db):
    return JobTypeFactory(name="echo")


def workflow(name="etl", steps=None, **extra) -> dict:
    return {
        "name": name,
        "kind": "workflow",
        "params_schema": SCHEMA,
        "steps": steps
        if steps is not None
        else [
            {"name": "extract", "job_type": "echo", "params": {"day": "{{ params.day }}"}},
            {
                "name": "load",
                "job_type": "echo",
                "params": {"rows": "{{ steps.extract.result }}"},
                "depends_on": ["extract"],
            },
        ],
        **extra,
    }


def test_it_creates_a_workflow_with_its_steps(api, echo):
    response = api.post(URL, workflow(), format="json")
    assert response.status_code == 201, response.data
    assert response.data["steps"] == [
        {"name": "extract", "job_type": "echo", "params": {"day": "{{ params.day }}"}, "depends_on": []},
        {
            "name": "load",
            "job_type": "echo",
            "params": {"rows": "{{ steps.extract.result }}"},
            "depends_on": ["extract"],
        },
    ]
    etl = JobType.objects.get(name="etl")
    assert list(etl.steps.values_list("name", "job_type__name", "position")) == [
        ("extract", "echo", 0),
        ("load", "echo", 1),
    ]


def test_putting_steps_replaces_them_and_keeps_the_rows_of_steps_that_stay(api, echo):
    api.post(URL, workflow(), format="json")
    kept = WorkflowStep.objects.get(name="load")
    steps = [
        {"name": "load", "job_type": "echo"},
        {"name": "report", "job_type": "echo", "depends_on": ["load"]},
    ]
    response = api.patch(f"{URL}etl/", {"steps": steps}, format="json")
    assert response.status_code == 200, response.data
    assert [s["name"] for s in response.data["steps"]] == ["load", "report"]
    assert WorkflowStep.objects.get(name="load").pk == kept.pk
    assert not WorkflowStep.objects.filter(name="extract").exists()


def test_a_patch_without_steps_leaves_them(api, echo):
    api.post(URL, workflow(), format="json")
    assert api.patch(f"{URL}etl/", {"description": "nightly"}, format="json").status_code == 200
    assert JobType.objects.get(name="etl").steps.count() == 2


CYCLE = [
    {"name": "a", "job_type": "echo", "depends_on": ["b"]},
    {"name": "b", "job_type": "echo", "depends_on": ["a"]},
]
LONGER_CYCLE = [
    {"name": "start", "job_type": "echo"},
    {"name": "a", "job_type": "echo", "depends_on": ["start", "c"]},
    {"name": "b", "job_type": "echo", "depends_on": ["a"]},
    {"name": "c", "job_type": "echo", "depends_on": ["b"]},
]


@pytest.mark.parametrize(
    ("steps", "message"),
    [
        (CYCLE, "The steps form a cycle: a → b → a (each waits for the next). Remove one of these."),
        (LONGER_CYCLE, "The steps form a cycle: a → c → b → a"),
        ([{"name": "a", "job_type": "echo", "depends_on": ["a"]}], "Step 'a' depends on itself."),
        (
            [{"name": "a", "job_type": "echo", "depends_on": ["ghost"]}],
            "Step 'a' depends on 'ghost', which is not a step of this workflow.",
        ),
        (
            [
                {"name": "a", "job_type": "echo"},
                {"name": "b", "job_type": "echo", "params": {"x": "{{ steps.c.result }}"}, "depends_on": ["a"]},
                {"name": "c", "job_type": "echo", "depends_on": ["a"]},
            ],
            "Step 'b': {{ steps.c.result }} refers to step 'c', which is not upstream of 'b': "
            "add 'c' to its depends_on (or to a step it depends on).",
        ),
        (
            [{"name": "a", "job_type": "echo", "params": {"x": "{{ steps.nope.result.rows }}"}}],
            "Step 'a': {{ steps.nope.result.rows }} refers to step 'nope', which is not a step of this workflow.",
        ),
        (
            [{"name": "a", "job_type": "echo", "params": {"x": "on {{ params.month }}"}}],
            "Step 'a': {{ params.month }} names param 'month', which the workflow's params_schema does not list "
            "(it lists: day).",
        ),
        (
            [{"name": "a", "job_type": "echo", "params": {"x": "{{ env.HOME }}"}}],
            "Step 'a': '{{ env.HOME }}' is not a placeholder Jobsite knows",
        ),
        ([{"name": "a", "job_type": "ghost"}], "Step 'a': there is no job type named 'ghost'."),
        ([{"name": "a", "job_type": "sub"}], "Step 'a': 'sub' is a workflow; a step runs a task, http or command"),
        (
            [{"name": "a", "job_type": "echo"}, {"name": "a", "job_type": "echo"}],
            "Step name 'a' is used twice: names must be unique in a workflow.",
        ),
        ([{"name": "not a slug", "job_type": "echo"}], "Step 1: name 'not a slug' must be a slug"),
        ([], "A workflow needs at least one step."),
    ],
)
def test_a_bad_graph_gets_a_400_naming_it_and_writes_nothing(api, echo, steps, message):
    JobType.objects.create(name="sub", kind="workflow")
    response = api.post(URL, workflow(steps=steps), format="json")
    assert response.status_code == 400, response.data
    assert any(error.startswith(message) for error in response.data["steps"]), response.data
    assert not JobType.objects.filter(name="etl").exists()
    assert not WorkflowStep.objects.exists()


def chain(length: int) -> list[dict]:
    """`length` steps, each waiting for the one before."""
    return [{"name": f"s{i}", "job_type": "echo", "depends_on": [f"s{i - 1}"] if i else []} for i in range(length)]


def test_more_steps_than_jobs_max_workflow_steps_get_a_400_naming_the_setting(api, echo, settings):
    assert settings.JOBS_MAX_WORKFLOW_STEPS == 200  # the default
    response = api.post(URL, workflow(steps=chain(950)), format="json")
    assert response.status_code == 400, response.data
    assert response.data["steps"] == [
        "A workflow has at most 200 steps, not 950: make it shorter, "
        "or ask an administrator to raise JOBS_MAX_WORKFLOW_STEPS."
    ]
    assert not JobType.objects.filter(name="etl").exists() and not WorkflowStep.objects.exists()
    assert api.post(URL, workflow(steps=chain(200)), format="json").status_code == 201


def test_a_long_chain_of_steps_within_the_limit_saves_and_its_cycle_is_named(api, echo, settings):
    # The cycle check once recursed per step: a chain of ~950 steps answered 500.
    settings.JOBS_MAX_WORKFLOW_STEPS = 1000
    closed = chain(950)
    closed[0]["depends_on"] = ["s949"]
    response = api.post(URL, workflow(steps=closed), format="json")
    assert response.status_code == 400, response.data
    [message] = response.data["steps"]
    assert message.startswith("The steps form a cycle: s0 → s949 → s948 → ")
    assert message.endswith(" → s1 → s0 (each waits for the next). Remove one of these.")
    response = api.post(URL, workflow(steps=chain(950)), format="json")
    assert response.status_code == 201, response.data
    assert JobType.objects.get(name="etl").steps.count() == 950


def test_a_workflow_without_steps_is_refused(api):
    body = workflow()
    del body["steps"]
    response = api.post(URL, body, format="json")
    assert response.status_code == 400
    assert response.data["steps"] == ["A workflow needs at least one step."]


def test_steps_are_only_for_workflows(api, echo):
    body = {"name": "x", "kind": "task", "task": "jobs.builtin.echo", "steps": [{"name": "a", "job_type": "echo"}]}
    response = api.post(URL, body, format="json")
    assert response.status_code == 400
    assert response.data["steps"] == ["Only for kind 'workflow': leave it empty for kind 'task'."]


def test_a_schema_change_that_orphans_a_placeholder_is_refused(api, echo):
    api.post(URL, workflow(), format="json")
    schema = {"type": "object", "properties": {"month": {"type": "string"}}}
    response = api.patch(f"{URL}etl/", {"params_schema": schema}, format="json")
    assert response.status_code == 400
    assert "names param 'day', which the workflow's params_schema does not list" in response.data["steps"][0]
    assert JobType.objects.get(name="etl").params_schema == SCHEMA


def test_a_step_job_type_cannot_become_a_workflow_nor_be_deleted(api, echo):
    api.post(URL, workflow(), format="json")
    response = api.patch(f"{URL}echo/", {"kind": "workflow", "task": ""}, format="json")
    assert response.status_code == 400
    assert "'echo' is a step of etl, and a step cannot be a workflow" in response.data["kind"][0]
    response = api.delete(f"{URL}echo/")
    assert response.status_code == 409
    assert response.data["detail"] == (
        "Job type 'echo' is a step of workflow 'etl': remove it from there before deleting it."
    )
    assert JobType.objects.filter(name="echo").exists()


def test_a_failure_hook_is_set_by_name_and_cannot_be_the_job_type_itself(api, echo):
    response = api.post(URL, workflow(on_failure="echo"), format="json")
    assert response.status_code == 201, response.data
    assert response.data["on_failure"] == "echo"
    response = api.patch(f"{URL}etl/", {"on_failure": "etl"}, format="json")
    assert response.status_code == 400
    assert response.data["on_failure"] == ["A job type cannot be its own failure hook."]


# --- Runs of workflows, without a worker ------------------------------------------


@pytest.fixture
def etl_run(api, echo):
    api.post(URL, workflow(), format="json")
    run, _ = trigger.run_create(job_type=JobType.objects.get(name="etl"), params={"day": "mon"}, trigger="api")
    return run


def test_a_workflow_run_has_one_waiting_child_run_per_step(api, etl_run):
    data = api.get(f"/api/v1/runs/{etl_run.pk}/").data
    assert data["status"] == "pending"
    assert [(s["name"], s["status"], s["job_type"]) for s in data["steps"]] == [
        ("extract", "waiting", "echo"),
        ("load", "waiting", "echo"),
    ]
    assert data["steps"][1]["params"] == {"rows": "{{ steps.extract.result }}"}  # resolved at dispatch
    child = Run.objects.get(pk=data["steps"][0]["run"])
    assert (child.parent_id, child.trigger, child.step.name) == (etl_run.pk, "workflow", "extract")


def test_the_runs_list_filters_by_parent(api, etl_run):
    JobTypeFactory(name="other")
    response = api.get("/api/v1/runs/", {"parent": str(etl_run.pk)})
    rows = sorted((row["step"], row["parent"]) for row in response.data["results"])
    assert rows == [("extract", etl_run.pk), ("load", etl_run.pk)]
    assert "steps" not in response.data["results"][0]


def test_a_plain_run_has_no_steps(api, echo):
    run = Run.objects.create(job_type=echo, trigger="api")
    assert api.get(f"/api/v1/runs/{run.pk}/").data["steps"] is None


def test_running_a_workflow_with_bad_params_gets_a_400(api, echo):
    api.post(URL, workflow(), format="json")
    response = api.post(f"{URL}etl/run/", {"params": {"day": 3}}, format="json")
    assert response.status_code == 400
    assert response.data == {"params": ["day: 3 is not of type 'string'"]}
    assert not Run.objects.exists()


def test_rerun_from_failed_is_only_for_workflow_runs_that_did_not_succeed(api, echo, etl_run):
    plain = Run.objects.create(job_type=echo, trigger="api", status="failed")
    response = api.post(f"/api/v1/runs/{plain.pk}/rerun/", {"from_failed": True}, format="json")
    assert response.status_code == 400
    assert response.data == {"from_failed": ["Only a workflow run can be rerun from its failed steps."]}
    Run.objects.filter(pk=etl_run.pk).update(status="succeeded")
    response = api.post(f"/api/v1/runs/{etl_run.pk}/rerun/", {"from_failed": True}, format="json")
    assert response.status_code == 409
    assert "no step failed: rerun it without from_failed" in response.data["detail"]
    assert Run.objects.filter(trigger="rerun").count() == 0
