"""manage.py run_job, as a user runs it: a separate process against a real worker."""

import json
import os
import subprocess
import sys

from tests.conftest import ROOT, _database_url
from tests.factories import JobTypeFactory


def run_job(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", "DATABASE_URL": _database_url()}
    return subprocess.run(
        [sys.executable, "manage.py", "run_job", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_it_prints_the_result_of_a_job_type_created_over_the_api_and_exits_0(worker, api):
    api.post("/api/v1/job-types/", {"name": "echo", "kind": "task", "task": "jobs.builtin.echo"}, format="json")
    done = run_job("echo", "--params", '{"x": 1}', "--wait")
    assert done.returncode == 0, done.stderr
    run_id, result = done.stdout.split("\n", 1)
    assert len(run_id) == 36
    assert json.loads(result) == {"x": 1}


def test_a_failing_run_prints_the_error_and_exits_non_zero(worker):
    JobTypeFactory(name="doomed", task="jobs.builtin.fail")
    done = run_job("doomed", "--params", '{"message": "no luck"}', "--wait")
    assert done.returncode == 1
    assert done.stderr.strip() == "Run failed: BuiltinTaskFailed: no luck"


def test_bad_input_exits_non_zero_with_one_line_and_creates_nothing(worker):
    JobTypeFactory(name="typed", params_schema={"type": "object", "properties": {"n": {"type": "integer"}}})
    cases = {
        ("ghost",): "No job type named 'ghost'",
        ("typed", "--params", "{oops"): "--params is not valid JSON",
        ("typed", "--params", '{"n": "x"}'): "params: n: 'x' is not of type 'integer'",
    }
    for args, message in cases.items():
        done = run_job(*args)
        assert done.returncode != 0
        assert message in done.stderr
        assert "Traceback" not in done.stderr
    from jobs.models import Run

    assert not Run.objects.exists()


def test_at_stores_a_scheduled_run_and_refuses_the_past(worker):
    from jobs.models import Run

    JobTypeFactory(name="later")
    done = run_job("later", "--at", "2999-01-01T09:30:00+01:00")
    assert done.returncode == 0, done.stderr
    run = Run.objects.get(pk=done.stdout.strip())
    assert (run.status, run.scheduled_for.isoformat()) == ("scheduled", "2999-01-01T08:30:00+00:00")
    done = run_job("later", "--at", "2001-01-01T00:00:00")
    assert done.returncode != 0
    assert "run_at: 2001-01-01T00:00:00+00:00 is in the past" in done.stderr
    done = run_job("later", "--at", "next tuesday")
    assert done.returncode != 0
    assert "--at 'next tuesday' is not an ISO 8601 time" in done.stderr
    assert Run.objects.count() == 1
