"""What a real worker stores for runs whose output is too large: cut, and marked.
(Defaults from settings: results 256 KiB, errors and tracebacks 20,000
characters, command output 16 KiB each.)"""

import json

from django.conf import settings
from django_celery_results.models import TaskResult

from jobs.models import Run
from jobs.runs.trigger import run_create
from tests import commands
from tests.conftest import wait_for_run
from tests.factories import JobTypeFactory


def run_of(task: str, **params) -> Run:
    run, _ = run_create(job_type=JobTypeFactory(task=task), params=params, trigger="cli")
    return wait_for_run(run)


def test_a_result_over_the_limit_is_stored_cut_and_marked_in_the_run_and_its_task_result(worker):
    run = run_of("tests.big_result", size=300_000)
    assert run.status == "succeeded"
    limit = settings.JOBS_RESULT_MAX_BYTES
    assert run.result["truncated"] is True
    assert (run.result["size"], run.result["limit"]) == (300_011, limit)
    assert run.result["preview"] == '{"data":"' + "x" * (limit - 9)
    stored = json.loads(TaskResult.objects.get(task_id=str(run.pk)).result)
    assert stored == run.result


def test_an_error_and_traceback_over_the_limit_are_cut_and_marked(worker):
    run = run_of("jobs.builtin.fail", message="m" * 30_000 + " THE END")
    assert run.status == "failed"
    limit = settings.JOBS_ERROR_MAX_CHARS
    assert run.error.startswith("BuiltinTaskFailed: mmm")
    assert run.error.endswith(f"\n[… {30_027 - limit} more characters cut (JOBS_ERROR_MAX_CHARS)]")
    assert run.traceback.startswith("[… ") and "earlier characters cut (JOBS_ERROR_MAX_CHARS)]\n" in run.traceback
    assert run.traceback.endswith("m THE END\n")  # the end is what matters in a traceback
    assert len(run.traceback) < limit + 100
    task_result = TaskResult.objects.get(task_id=str(run.pk))
    assert len(task_result.traceback) < limit + 100 and len(task_result.result) < limit + 200


def test_command_output_keeps_its_tail_saying_how_much_was_cut(worker):
    job_type = JobTypeFactory(kind="command", task="", command={"argv": commands.LONG_OUTPUT})
    run, _ = run_create(job_type=job_type, trigger="cli")
    run = wait_for_run(run, timeout=60)
    assert run.status == "succeeded", run.error
    tail = settings.JOBS_COMMAND_OUTPUT_TAIL_BYTES
    stdout = run.result["stdout"]
    assert run.result["stdout_truncated"] is True and run.result["stderr_truncated"] is False
    assert stdout.startswith(f"[… {40_004 - tail} earlier bytes cut]\n")
    assert stdout.endswith("xxend\n") and len(stdout) < tail + 50
