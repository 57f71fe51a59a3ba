"""Workflows end to end: API → Redis → a real worker with four processes → the database."""

import time

from django_celery_results.models import TaskResult

from jobs.models import JobType, Run, Schedule
from tests.conftest import WORKFLOW_QUEUE, wait_for_run
from tests.e2e.test_execution import define, trigger
from tests.tasks import calls
from tests.test_import_export import WORKFLOWS_YML, run_command


def steps_of(api, run: Run) -> dict[str, dict]:
    data = api.get(f"/api/v1/runs/{run.pk}/").data
    return {step["name"]: step for step in data["steps"]}


def define_diamond(api, b_job_type: str = "sleepy") -> None:
    define(api, name="echo", kind="task", task="jobs.builtin.echo")
    define(api, name="sleepy", kind="task", task="tests.sleep_echo")
    define(api, name="doomed", kind="task", task="jobs.builtin.fail")
    define(api, name="counted", kind="task", task="tests.count_calls")
    define(
        api,
        name="diamond",
        kind="workflow",
        queue=WORKFLOW_QUEUE,
        params_schema={"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]},
        steps=[
            {"name": "a", "job_type": "counted", "params": {"n": "{{ params.n }}"}},
            {
                "name": "b",
                "job_type": b_job_type,
                "params": {"seconds": 1, "side": "b", "from_a": "{{ steps.a.result.n }}"},
                "depends_on": ["a"],
            },
            {
                "name": "c",
                "job_type": "sleepy",
                "params": {"seconds": 1, "side": "c", "label": "c saw n={{ steps.a.result.n }}"},
                "depends_on": ["a"],
            },
            {
                "name": "d",
                "job_type": "echo",
                "params": {"b": "{{ steps.b.result }}", "c_label": "{{ steps.c.result.label }}"},
                "depends_on": ["b", "c"],
            },
        ],
    )


def test_a_diamond_runs_b_and_c_in_parallel_and_d_gets_their_results(workflow_worker, api):
    define_diamond(api)
    run = wait_for_run(trigger(api, "diamond", {"n": 5}), timeout=60)
    assert run.status == "succeeded", run.error
    steps = steps_of(api, run)
    assert list(steps) == ["a", "b", "c", "d"]
    assert {step["status"] for step in steps.values()} == {"succeeded"}
    assert steps["d"]["params"] == {"b": {"side": "b", "from_a": 5}, "c_label": "c saw n=5"}
    assert steps["d"]["result"] == steps["d"]["params"]
    b, c, d = (Run.objects.get(pk=steps[name]["run"]) for name in "bcd")
    assert b.started_at < c.finished_at and c.started_at < b.finished_at, "b and c did not overlap"
    assert d.started_at > max(b.finished_at, c.finished_at)
    assert run.started_at <= b.started_at and run.finished_at >= d.finished_at
    assert run.result["d"] == steps["d"]["result"]


def test_a_failed_step_fails_the_workflow_and_a_rerun_from_failed_reuses_what_succeeded(workflow_worker, api):
    define_diamond(api, b_job_type="doomed")
    api.patch("/api/v1/job-types/doomed/", {"max_retries": 1, "retry_backoff_seconds": 1}, format="json")
    first = wait_for_run(trigger(api, "diamond", {"n": 7}), timeout=60)
    assert first.status == "failed"
    assert first.error == "Step 'b' failed: BuiltinTaskFailed: Failed on purpose"
    steps = steps_of(api, first)
    assert steps["b"]["attempts"] == 2  # it failed after its retry
    assert steps["d"]["status"] == "cancelled" and steps["d"]["started_at"] is None
    wait_for_run(Run.objects.get(pk=steps["c"]["run"]))  # c was running already: it finishes on its own
    assert calls(steps["a"]["run"]) == 1

    # Fix b (it now runs the sleepy job type), then rerun from the failed steps.
    definition = api.get("/api/v1/job-types/diamond/").data
    fixed = [{**step, "job_type": "sleepy"} if step["name"] == "b" else step for step in definition["steps"]]
    assert api.patch("/api/v1/job-types/diamond/", {"steps": fixed}, format="json").status_code == 200
    response = api.post(f"/api/v1/runs/{first.pk}/rerun/", {"from_failed": True}, format="json")
    assert response.status_code == 201, response.data
    second = wait_for_run(Run.objects.get(pk=response.data["id"]), timeout=60)
    assert second.status == "succeeded", second.error
    assert (second.trigger, second.rerun_of_id) == ("rerun", first.pk)
    again = steps_of(api, second)
    # a and c were reused: same result, not executed again.
    for name in "ac":
        assert again[name]["reused_from"] == steps[name]["run"]
        assert again[name]["result"] == Run.objects.get(pk=steps[name]["run"]).result
        assert again[name]["attempts"] == 0
    assert calls(again["a"]["run"]) == 0 and calls(steps["a"]["run"]) == 1
    assert again["b"]["reused_from"] is None and again["b"]["attempts"] == 1
    assert again["d"]["result"] == {"b": {"side": "b", "from_a": 7}, "c_label": "c saw n=7"}


def test_a_plain_rerun_runs_every_step_again(workflow_worker, api):
    define_diamond(api)
    first = wait_for_run(trigger(api, "diamond", {"n": 1}), timeout=60)
    response = api.post(f"/api/v1/runs/{first.pk}/rerun/", {}, format="json")
    assert response.status_code == 201
    second = wait_for_run(Run.objects.get(pk=response.data["id"]), timeout=60)
    assert second.status == "succeeded"
    steps = steps_of(api, second)
    assert all(step["reused_from"] is None and step["attempts"] == 1 for step in steps.values())
    assert calls(steps["a"]["run"]) == 1


def test_a_fan_out_of_20_publishes_its_join_step_exactly_once_every_time(workflow_worker, api):
    define(api, name="counted", kind="task", task="tests.count_calls")
    parts = [f"part-{i:02}" for i in range(20)]
    steps = [{"name": part, "job_type": "counted", "params": {"i": i}} for i, part in enumerate(parts)]
    join_params = {"got": [f"{{{{ steps.{part}.result.i }}}}" for part in parts]}
    steps.append({"name": "join", "job_type": "counted", "params": join_params, "depends_on": parts})
    define(api, name="fan", kind="workflow", queue=WORKFLOW_QUEUE, steps=steps)
    for repetition in range(20):
        run = wait_for_run(trigger(api, "fan"), timeout=60)
        assert run.status == "succeeded", (repetition, run.error)
        join = run.children.get(step_name="join")
        assert calls(join.pk) == 1, f"repetition {repetition}: the join step ran {calls(join.pk)} times"
        assert join.attempts == 1
        assert join.result == {"got": list(range(20))}
        last_part_end = max(run.children.exclude(pk=join.pk).values_list("finished_at", flat=True))
        assert join.started_at > last_part_end


def test_cancelling_a_workflow_run_cancels_its_running_and_waiting_steps(workflow_worker, api):
    define(api, name="sleepy", kind="task", task="tests.sleep_echo")
    define(
        api,
        name="slow",
        kind="workflow",
        queue=WORKFLOW_QUEUE,
        steps=[
            {"name": "nap", "job_type": "sleepy", "params": {"seconds": 60}},
            {"name": "after", "job_type": "sleepy", "depends_on": ["nap"]},
        ],
    )
    run = trigger(api, "slow")
    nap = run.children.get(step_name="nap")
    wait_for_run(nap, "running")
    assert wait_for_run(run, "running").status == "running"
    response = api.post(f"/api/v1/runs/{run.pk}/cancel/")
    assert response.status_code == 200
    assert response.data["status"] == "cancelled"
    steps = {step["name"]: step for step in response.data["steps"]}
    assert steps["nap"]["status"] == steps["after"]["status"] == "cancelled"
    assert steps["after"]["started_at"] is None
    # The running step's task was stopped, not left to sleep its minute out.
    deadline = time.monotonic() + 20
    while not TaskResult.objects.filter(task_id=str(nap.pk), status="REVOKED").exists():
        assert time.monotonic() < deadline, "the running step was not stopped"
        time.sleep(0.2)


def hook_run() -> Run:
    """The failure hook's run, started once the workflow run's failure is committed: a moment after it."""
    deadline = time.monotonic() + 10
    while not (hook := Run.objects.filter(trigger="hook").first()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert hook is not None, "no failure hook run was started"
    return hook


def test_a_failed_workflow_starts_its_failure_hook(workflow_worker, api):
    define(api, name="doomed", kind="task", task="jobs.builtin.fail", queue=WORKFLOW_QUEUE)
    define(api, name="on-failure", kind="task", task="jobs.builtin.echo", queue=WORKFLOW_QUEUE)
    define(
        api,
        name="fragile",
        kind="workflow",
        on_failure="on-failure",
        steps=[{"name": "boom", "job_type": "doomed", "params": {"message": "no disk"}}],
    )
    run = wait_for_run(trigger(api, "fragile", {"day": "monday"}), timeout=60)
    assert run.status == "failed"
    hook = hook_run()
    assert hook.job_type.name == "on-failure"
    assert wait_for_run(hook, timeout=30).status == "succeeded"
    assert hook.result == {
        "run_id": str(run.pk),
        "job_type": "fragile",
        "error": "Step 'boom' failed: BuiltinTaskFailed: no disk",
        "params": {"day": "monday"},
    }
    # The failed step is the workflow's business: it starts no hook of its own.
    assert Run.objects.filter(trigger="hook").count() == 1


def test_an_imported_celery_director_workflow_runs_with_its_hooks_and_exports_back(workflow_worker, api, tmp_path):
    out, _ = run_command("import_workflows", str(WORKFLOWS_YML))
    assert out.startswith("Job types: created 9")
    assert "Schedules: created 2 (shop-etl-periodic, shop-nightly-periodic)" in out
    periodic = Schedule.objects.get(name="shop-etl-periodic")
    assert (periodic.cron, periodic.timezone, periodic.params) == ("0 */3 * * *", "UTC", {"rows": 3})
    run = wait_for_run(trigger(api, "shop-etl", {"rows": 4}), timeout=60)
    assert run.status == "succeeded", run.error
    assert run.result == {
        "extract": [0, 1, 2, 3],
        "transform-sum": 6,
        "transform-count": 4,
        "load": "loaded 4 rows",
        "on-success": "all good",
    }
    steps = steps_of(api, run)
    assert steps["on-success"]["started_at"] > steps["load"]["finished_at"]
    transforms = [Run.objects.get(pk=steps[name]["run"]) for name in ("transform-sum", "transform-count")]
    assert all(t.started_at > Run.objects.get(pk=steps["extract"]["run"]).finished_at for t in transforms)

    # The failure hook: break LOAD, and the workflow's failure starts NOTIFY_FAILURE.
    JobType.objects.filter(name="load").update(task="jobs.builtin.fail")
    failed = wait_for_run(trigger(api, "shop-etl", {"rows": 1}), timeout=60)
    assert failed.status == "failed"
    assert steps_of(api, failed)["on-success"]["status"] == "cancelled"
    hook = wait_for_run(hook_run(), timeout=30)
    assert hook.job_type.name == "notify-failure-on-workflow-tests"
    assert hook.result == {"failed_run": str(failed.pk), "error": failed.error}

    # Exported, and read back unchanged.
    exported = tmp_path / "job-types.yml"
    run_command("export_job_types", "--output", str(exported))
    out, _ = run_command("import_job_types", str(exported))
    assert out.strip().splitlines() == [
        "Job types: created 0; updated 0; unchanged 9.",
        "Schedules: created 0; updated 0; unchanged 2.",
    ]
