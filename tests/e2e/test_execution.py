"""Runs end to end: API → Redis → a real Celery worker → the database."""

import time

from django_celery_results.models import TaskResult

from jobs.models import Run
from tests import commands
from tests.conftest import wait_for_run
from tests.factories import JobTypeFactory


def define(api, **body) -> str:
    response = api.post("/api/v1/job-types/", body, format="json")
    assert response.status_code == 201, response.data
    return body["name"]


def trigger(api, name: str, params: dict | None = None) -> Run:
    response = api.post(f"/api/v1/job-types/{name}/run/", {"params": params or {}}, format="json")
    assert response.status_code == 201, response.data
    return Run.objects.get(pk=response.data["id"])


def test_an_echo_task_runs_to_succeeded_with_its_result(worker, api):
    define(api, name="echo", kind="task", task="jobs.builtin.echo")
    run = wait_for_run(trigger(api, "echo", {"greeting": "hi", "n": 2}))
    assert run.status == "succeeded"
    data = api.get(f"/api/v1/runs/{run.pk}/").data
    assert data["result"] == {"greeting": "hi", "n": 2}
    assert data["attempts"] == 1
    assert data["worker"] == worker.hostname
    assert data["queued_at"] and data["started_at"] and data["finished_at"]
    assert data["duration_seconds"] >= 0
    # django-celery-results keeps its row, joined on the run id.
    task_result = TaskResult.objects.get(task_id=str(run.pk))
    assert (task_result.status, task_result.task_name) == ("SUCCESS", "jobs.builtin.echo")


def test_an_http_job_type_runs_against_an_allowed_local_server(worker, api, http_service):
    define(
        api, name="fetch", kind="http", http={"method": "GET", "url": f"{http_service}/ok", "expected_status": [200]}
    )
    run = wait_for_run(trigger(api, "fetch", {"q": "jobs"}))
    assert run.status == "succeeded", run.error
    assert run.result["status_code"] == 200
    assert run.result["json"] == {"hello": "world", "path": "/ok?q=jobs"}


def test_an_http_post_sends_the_params_as_json(worker, api, http_service):
    define(api, name="post", kind="http", http={"method": "POST", "url": f"{http_service}/items"})
    run = wait_for_run(trigger(api, "post", {"item": 7}))
    assert run.status == "succeeded", run.error
    assert run.result["json"] == {"received": {"item": 7}}


def test_an_unexpected_http_status_fails_the_run(worker, api, http_service):
    define(api, name="broken", kind="http", http={"url": f"{http_service}/boom"})
    run = wait_for_run(trigger(api, "broken"))
    assert run.status == "failed"
    assert run.error.startswith(f"HTTP 500 from {http_service}/boom")
    assert "upstream broke" in run.error


def test_a_redirect_to_a_refused_host_is_not_followed(worker, api, http_service):
    define(api, name="sneaky", kind="http", http={"url": f"{http_service}/redirect-to-refused"})
    run = wait_for_run(trigger(api, "sneaky"))
    assert run.status == "failed"
    assert "127.0.0.2" in run.error and "JOBS_HTTP_ALLOWED_HOSTS" in run.error


def test_a_large_http_body_is_cut_and_marked(worker, api, http_service, settings):
    define(api, name="big", kind="http", http={"url": f"{http_service}/big"})
    run = wait_for_run(trigger(api, "big"))
    assert run.status == "succeeded", run.error
    assert run.result["truncated"] is True
    assert len(run.result["body"]) == settings.JOBS_HTTP_MAX_BODY_BYTES


def test_a_fail_run_ends_failed_with_error_and_traceback(worker, api):
    define(api, name="doomed", kind="task", task="jobs.builtin.fail")
    run = wait_for_run(trigger(api, "doomed", {"message": "disk full"}))
    assert run.status == "failed"
    data = api.get(f"/api/v1/runs/{run.pk}/").data
    assert data["error"] == "BuiltinTaskFailed: disk full"
    assert "Traceback (most recent call last)" in data["traceback"]
    assert "raise BuiltinTaskFailed(message)" in data["traceback"]


def test_a_failing_run_is_retried_then_fails(worker, api):
    define(api, name="flaky", kind="task", task="jobs.builtin.fail", max_retries=2, retry_backoff_seconds=1)
    run = wait_for_run(trigger(api, "flaky"), timeout=60)
    assert run.status == "failed"
    assert run.attempts == 3


def test_a_sleep_run_cancelled_while_running_ends_cancelled_and_frees_its_worker(worker, api):
    define(api, name="nap", kind="task", task="jobs.builtin.sleep")
    define(api, name="echo", kind="task", task="jobs.builtin.echo")
    # Fill both worker processes, so the echo below can only run on a freed one.
    naps = [trigger(api, "nap", {"seconds": 60}) for _ in range(2)]
    for nap in naps:
        wait_for_run(nap, "running")
    response = api.post(f"/api/v1/runs/{naps[0].pk}/cancel/")
    assert response.status_code == 200
    assert response.data["status"] == "cancelled"
    started = time.monotonic()
    echo = wait_for_run(trigger(api, "echo", {"after": "cancel"}), timeout=20)
    assert echo.status == "succeeded"
    assert time.monotonic() - started < 20
    assert wait_for_run(naps[0]).status == "cancelled"
    api.post(f"/api/v1/runs/{naps[1].pk}/cancel/")
    wait_for_run(naps[1])


def test_a_run_cancelled_while_queued_never_starts(worker, api):
    define(api, name="nap", kind="task", task="jobs.builtin.sleep")
    blockers = [trigger(api, "nap", {"seconds": 3}) for _ in range(2)]
    waiting = trigger(api, "nap", {"seconds": 0})
    assert api.post(f"/api/v1/runs/{waiting.pk}/cancel/").status_code == 200
    for blocker in blockers:
        wait_for_run(blocker)
    time.sleep(1)
    waiting.refresh_from_db()
    assert (waiting.status, waiting.started_at, waiting.attempts) == ("cancelled", None, 0)


def test_a_command_runs_without_a_shell_and_records_its_output(worker, api):
    define(api, name="greet", kind="command", command={"argv": ["/bin/echo", "hello", "$HOME; rm -rf /"]})
    run = wait_for_run(trigger(api, "greet"))
    assert run.status == "succeeded", run.error
    assert run.result["exit_code"] == 0
    assert run.result["stdout"] == "hello $HOME; rm -rf /\n"


def test_a_command_gets_its_params_but_not_the_workers_secrets(worker, api):
    define(api, name="env", kind="command", command={"argv": commands.PARAMS_AND_SECRET})
    run = wait_for_run(trigger(api, "env", {"n": 1}))
    assert run.result["stdout"] == '{"n": 1}\nsecret=none\n'


def test_a_command_with_a_non_zero_exit_fails_the_run(worker, api):
    define(api, name="bad", kind="command", command={"argv": commands.EXIT_3})
    run = wait_for_run(trigger(api, "bad"))
    assert run.status == "failed"
    assert run.error.startswith("Command exited with code 3")
    assert "oops" in run.error


def test_a_command_that_runs_too_long_is_killed(worker, api):
    define(api, name="slow", kind="command", command={"argv": ["/bin/sleep", "30"], "timeout_seconds": 1})
    started = time.monotonic()
    run = wait_for_run(trigger(api, "slow"), timeout=20)
    assert run.status == "failed"
    assert run.error == "Command timed out after 1 s"
    assert time.monotonic() - started < 15


def test_a_running_command_can_be_cancelled(worker, api):
    define(api, name="long", kind="command", command={"argv": ["/bin/sleep", "60"]})
    run = wait_for_run(trigger(api, "long"), "running")
    assert api.post(f"/api/v1/runs/{run.pk}/cancel/").status_code == 200
    define(api, name="echo", kind="task", task="jobs.builtin.echo")
    assert wait_for_run(trigger(api, "echo"), timeout=20).status == "succeeded"
    assert wait_for_run(run).status == "cancelled"


def test_a_soft_time_limit_fails_the_run_with_a_clear_error(worker):
    job_type = JobTypeFactory(name="nap-limited", task="jobs.builtin.sleep", timeout_seconds=1)
    from jobs.runs.trigger import run_create

    run, _ = run_create(job_type=job_type, params={"seconds": 10}, trigger="cli")
    run = wait_for_run(run, timeout=20)
    assert run.status == "failed"
    assert run.error == "Timed out after 1 s"
