"""How a workflow run advances, step by step, without a broker: jobs.workflows.steps
called the way the services call it. The same paths through a real worker are
in tests/e2e/test_workflows.py."""

import pytest
from django.db import transaction

from jobs.core import errors
from jobs.models import JobType, Run
from jobs.runs import trigger
from jobs.workflows import steps as workflow_steps
from tests.factories import JobTypeFactory


@pytest.fixture
def diamond(db):
    echo = JobTypeFactory(name="echo")
    typed = JobTypeFactory(
        name="typed", params_schema={"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    )
    flow = JobType.objects.create(name="diamond", kind=JobType.Kind.WORKFLOW)
    flow.steps.create(name="a", job_type=echo, params={"day": "{{ params.day }}"})
    flow.steps.create(name="b", job_type=typed, params={"n": "{{ steps.a.result.n }}"}, depends_on=["a"])
    flow.steps.create(name="c", job_type=echo, params={"msg": "a said {{ steps.a.result }}"}, depends_on=["a"])
    flow.steps.create(name="d", job_type=echo, depends_on=["b", "c"])
    return flow


def start(workflow: JobType, params=None) -> Run:
    run, _ = trigger.run_create(job_type=workflow, params=params or {"day": "mon"}, trigger=Run.Trigger.API)
    return run


def advance(run: Run) -> workflow_steps.Advance:
    with transaction.atomic():
        return workflow_steps.advance(parent_id=run.pk)


def statuses(run: Run) -> dict[str, str]:
    return dict(run.children.values_list("step_name", "status"))


def finish(run: Run, step: str, result) -> None:
    run.children.get(step_name=step).mark_succeeded(result=result)


def test_only_steps_without_dependencies_start(diamond):
    run = start(diamond)
    outcome = advance(run)
    assert [r.step_name for r in outcome.ready] == ["a"]
    assert statuses(run) == {"a": "queued", "b": "waiting", "c": "waiting", "d": "waiting"}
    assert run.children.get(step_name="a").params == {"day": "mon"}
    assert advance(run).ready == []  # advancing again publishes nothing twice


def test_a_step_gets_upstream_results_when_its_dependencies_succeed(diamond):
    run = start(diamond)
    advance(run)
    finish(run, "a", {"n": 4})
    outcome = advance(run)
    assert sorted(r.step_name for r in outcome.ready) == ["b", "c"]
    assert run.children.get(step_name="b").params == {"n": 4}
    assert run.children.get(step_name="c").params == {"msg": 'a said {"n": 4}'}
    finish(run, "b", "B")
    assert advance(run).ready == []  # d still waits for c
    finish(run, "c", "C")
    assert [r.step_name for r in advance(run).ready] == ["d"]
    finish(run, "d", None)
    advance(run)
    run.refresh_from_db()
    assert run.status == "succeeded"
    assert run.result == {"a": {"n": 4}, "b": "B", "c": "C", "d": None}


def test_a_failed_step_fails_the_workflow_and_cancels_what_has_not_started(diamond):
    run = start(diamond)
    advance(run)
    finish(run, "a", {"n": 4})
    advance(run)
    c = run.children.get(step_name="c")
    c.mark_started(worker="w1")
    run.children.get(step_name="b").mark_failed(error="boom")
    outcome = advance(run)
    run.refresh_from_db()
    assert (run.status, run.error) == ("failed", "Step 'b' failed: boom")
    assert outcome.failed == run
    assert statuses(run) == {"a": "succeeded", "b": "failed", "c": "running", "d": "cancelled"}
    assert outcome.revoke == []  # d never reached the broker


def test_a_placeholder_that_cannot_be_resolved_fails_its_step(diamond):
    run = start(diamond)
    advance(run)
    finish(run, "a", {"other": 1})
    advance(run)
    run.refresh_from_db()
    assert run.status == "failed"
    assert run.error == ("Step 'b' failed: Params of step 'b': {{ steps.a.result.n }}: the result of 'a' has no 'n'")
    assert statuses(run)["c"] == "cancelled"  # promoted in the same pass, but never published


def test_resolved_params_are_checked_against_the_step_job_type_schema(diamond):
    run = start(diamond)
    advance(run)
    finish(run, "a", {"n": "four"})
    advance(run)
    run.refresh_from_db()
    assert run.error == (
        "Step 'b' failed: Params of step 'b' do not match job type 'typed' once resolved: "
        "n: 'four' is not of type 'integer'"
    )


def test_cancelling_a_workflow_run_cancels_its_steps(diamond):
    run = start(diamond)
    trigger.run_cancel(run=run)
    assert set(statuses(run).values()) == {"cancelled"}


def test_cancelling_one_step_fails_its_workflow(diamond):
    run = start(diamond)
    trigger.run_cancel(run=run.children.get(step_name="d"))
    run.refresh_from_db()
    assert (run.status, run.error) == ("failed", "Step 'd' was cancelled.")
    assert set(statuses(run).values()) == {"cancelled"}


def test_a_rerun_from_failed_reuses_succeeded_steps_whose_upstream_is_reused(diamond):
    first = start(diamond)
    advance(first)
    finish(first, "a", {"n": 1})
    advance(first)
    finish(first, "c", "C")
    first.children.get(step_name="b").mark_failed(error="boom")
    advance(first)
    first.refresh_from_db()
    second = trigger.run_rerun(run=first, from_failed=True)
    children = {r.step_name: r for r in second.children.all()}
    assert {name: r.status for name, r in children.items()} == {
        "a": "succeeded",
        "b": "waiting",
        "c": "succeeded",
        "d": "waiting",
    }
    assert children["a"].rerun_of == first.children.get(step_name="a")
    assert children["c"].result == "C"
    # Once the definition changes a's job type, a runs again, and so does c, which depends on it.
    diamond.steps.filter(name="a").update(job_type=JobTypeFactory(name="echo-2"))
    third = trigger.run_rerun(run=first, from_failed=True)
    assert set(statuses(third).values()) == {"waiting"}


def test_a_step_of_a_disabled_job_type_fails_at_dispatch(diamond):
    JobType.objects.filter(name="echo").update(enabled=False)
    run = start(diamond)
    advance(run)
    run.refresh_from_db()
    assert run.error == "Step 'a' failed: Job type 'echo' is disabled: enable it, then rerun the workflow."


def test_a_workflow_without_steps_cannot_run(db):
    empty = JobType.objects.create(name="empty", kind=JobType.Kind.WORKFLOW)
    with pytest.raises(errors.Conflict, match="has no steps"):
        start(empty)
