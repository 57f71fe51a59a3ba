"""The admin's Workflows page: steps inline, the graph drawn, the API's rules as form errors."""

import pytest
from django.urls import reverse

from jobs.models import JobType, Run, WorkflowStep
from jobs.runs import trigger
from tests.factories import JobTypeFactory


@pytest.fixture
def staff(client, admin_user):
    client.force_login(admin_user)
    return client


@pytest.fixture
def echo(db):
    return JobTypeFactory(name="echo")


def form_data(steps: list[dict], **fields) -> dict:
    data = {
        "name": "etl",
        "description": "",
        "enabled": "on",
        "params_schema": '{"type": "object", "properties": {"day": {"type": "string"}}}',
        "default_params": "{}",
        "queue": "",
        "on_failure": "",
        "notify_on": "never",  # what the form's select submits by default
        "notify_emails": "",
        "webhook_url": "",
        "webhook_secret": "",
        "step_args": "params",  # the select's default, as for notify_on
        "director_name": "",
        "steps-TOTAL_FORMS": str(len(steps)),
        "steps-INITIAL_FORMS": "0",
        "steps-MIN_NUM_FORMS": "0",
        "steps-MAX_NUM_FORMS": "1000",
        **fields,
    }
    for i, step in enumerate(steps):
        data.update({f"steps-{i}-{key}": value for key, value in step.items()})
    return data


def test_adding_a_workflow_with_its_steps_inline(staff, echo):
    assert staff.get(reverse("admin:jobs_workflow_add")).status_code == 200
    steps = [
        {"name": "extract", "job_type": echo.pk, "params": "", "depends_on": ""},
        {
            "name": "load",
            "job_type": echo.pk,
            "params": '{"rows": "{{ steps.extract.result }}"}',
            "depends_on": "extract",
        },
    ]
    response = staff.post(reverse("admin:jobs_workflow_add"), form_data(steps))
    assert response.status_code == 302, response.context["errors"] if response.context else response
    etl = JobType.objects.get(name="etl")
    assert etl.kind == "workflow"
    assert list(etl.steps.values_list("name", "params", "depends_on", "position")) == [
        ("extract", {}, [], 0),
        ("load", {"rows": "{{ steps.extract.result }}"}, ["extract"], 1),
    ]
    # It runs from its Run… form like any job type.
    run_form = reverse("admin:jobs_workflow_run", args=[etl.pk])
    assert staff.get(run_form).status_code == 200
    response = staff.post(run_form, {"params": '{"day": "mon"}'})
    run = Run.objects.get(parent=None)
    assert response.status_code == 302 and run.job_type == etl
    assert run.children.count() == 2


@pytest.mark.parametrize(
    ("steps", "message"),
    [
        (
            [{"name": "a", "depends_on": "b"}, {"name": "b", "depends_on": "a"}],
            "The steps form a cycle: a → b → a (each waits for the next). Remove one of these.",
        ),
        ([{"name": "a", "depends_on": "a"}], "Step &#x27;a&#x27; depends on itself."),
        ([{"name": "a", "depends_on": "ghost"}], "Step &#x27;a&#x27; depends on &#x27;ghost&#x27;, which is not"),
        (
            [
                {"name": "a", "depends_on": ""},
                {"name": "b", "depends_on": "a", "params": '{"x": "{{ steps.c.result }}"}'},
                {"name": "c", "depends_on": "a"},
            ],
            "{{ steps.c.result }} refers to step &#x27;c&#x27;, which is not upstream of &#x27;b&#x27;",
        ),
        ([], "A workflow needs at least one step."),
    ],
)
def test_the_api_rules_show_as_form_errors_and_nothing_is_saved(staff, echo, steps, message):
    steps = [{"job_type": echo.pk, "params": "{}", **step} for step in steps]
    response = staff.post(reverse("admin:jobs_workflow_add"), form_data(steps))
    assert response.status_code == 200
    assert message in response.content.decode()
    assert not JobType.objects.filter(name="etl").exists()
    assert not WorkflowStep.objects.exists()


def test_the_workflows_page_lists_workflows_and_draws_their_graph(staff, echo):
    flow = JobType.objects.create(name="zebra", kind="workflow")
    flow.steps.create(name="first", job_type=echo)
    flow.steps.create(name="<b>second</b>", job_type=echo, depends_on=["first"])
    listing = staff.get(reverse("admin:jobs_workflow_changelist")).content.decode()
    assert ">zebra<" in listing and ">echo<" not in listing
    listing = staff.get(reverse("admin:jobs_jobtype_changelist")).content.decode()
    assert ">echo<" in listing and ">zebra<" not in listing
    page = staff.get(reverse("admin:jobs_workflow_change", args=[flow.pk])).content.decode()
    assert '<svg class="workflow-graph"' in page
    assert page.count("marker-end=") == 1  # one arrow: first → second
    assert "&lt;b&gt;second&lt;/b&gt;" in page and "<b>second</b>" not in page


def test_a_workflow_run_page_lists_its_steps(staff, echo):
    flow = JobType.objects.create(name="flow", kind="workflow")
    flow.steps.create(name="only", job_type=echo)
    run, _ = trigger.run_create(job_type=flow, trigger=Run.Trigger.ADMIN)
    page = staff.get(reverse("admin:jobs_run_change", args=[run.pk])).content.decode()
    assert "Steps" in page and "only" in page and "Waiting" in page
    # The run's job type links to the workflow's page.
    response = staff.get(reverse("admin:jobs_jobtype_change", args=[flow.pk]))
    assert response.status_code == 302
    assert response.url == reverse("admin:jobs_workflow_change", args=[flow.pk])


def test_renaming_a_step_in_the_admin_keeps_its_row_and_the_link_from_past_runs(staff, echo):
    workflow = JobType.objects.create(name="etl", kind="workflow")
    step = WorkflowStep.objects.create(workflow=workflow, name="first", job_type=echo)
    past = Run.objects.create(job_type=echo, trigger="workflow", step=step, step_name="first")
    data = form_data(
        [{"id": step.pk, "workflow": workflow.pk, "name": "renamed", "job_type": echo.pk, "params": "{}"}],
        **{"steps-INITIAL_FORMS": "1"},
    )
    response = staff.post(reverse("admin:jobs_workflow_change", args=[workflow.pk]), data)
    assert response.status_code == 302, response.content.decode()[:3000]
    assert list(workflow.steps.values_list("pk", "name")) == [(step.pk, "renamed")]
    past.refresh_from_db()
    assert past.step_id == step.pk
    history = staff.get(reverse("admin:jobs_workflow_history", args=[workflow.pk])).content.decode()
    assert "Changed Name for workflow step “etl.renamed”" in history
