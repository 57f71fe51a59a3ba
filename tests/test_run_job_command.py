"""manage.py run_job, as a user runs it: a separate process against a real worker."""

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT, _database_url
from tests.factories import JobTypeFactory


def run_job(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", "DATABASE_URL": _database_url()}
    return subprocess.run(
        [sys.executable, "manage.py", "run_job", *args],
        cwd=ROOT,
        env=env,
        input=stdin,
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


@pytest.mark.postgres  # one transaction for the whole file
def test_a_params_file_creates_one_run_per_line_that_all_succeed(worker, tmp_path):
    from jobs.models import Run
    from tests.e2e.test_faults import wait_for_runs

    JobTypeFactory(name="echo")
    lines = [json.dumps({"n": n}) for n in range(20)]
    lines.insert(5, "")  # blank lines are skipped
    (tmp_path / "params.jsonl").write_text("\n".join(lines) + "\n")
    done = run_job("echo", "--params-file", str(tmp_path / "params.jsonl"))
    assert done.returncode == 0, done.stderr
    ids = done.stdout.split()
    runs = wait_for_runs(list(Run.objects.filter(pk__in=ids)), timeout=60)
    by_id = {str(run.pk): run for run in runs}
    assert [by_id[pk].result for pk in ids] == [{"n": n} for n in range(20)]
    assert {(run.status, run.trigger) for run in runs} == {("succeeded", "cli")}


def test_a_params_file_on_stdin(worker):
    from jobs.models import Run

    JobTypeFactory(name="echo")
    done = run_job("echo", "--params-file", "-", stdin='{"n": 1}\n{"n": 2}\n')
    assert done.returncode == 0, done.stderr
    assert sorted(Run.objects.values_list("params", flat=True), key=str) == [{"n": 1}, {"n": 2}]


@pytest.mark.postgres  # one transaction for the whole file
def test_a_bad_line_exits_non_zero_with_one_line_naming_it_and_creates_nothing(worker, tmp_path):
    from jobs.models import Run

    JobTypeFactory(name="typed", params_schema={"type": "object", "properties": {"n": {"type": "integer"}}})
    path = tmp_path / "params.jsonl"
    cases = {
        '{"n": 1}\n\n{"n": "x"}\n{"n": 4}\n[5]\n': (
            f"{path}, line 3: n: 'x' is not of type 'integer' (and 1 more bad line: 5); nothing was created"
        ),
        '{"n": 1}\n{"n": 2,\n': f"{path}, line 2: not valid JSON (",
        "\n\n": f"{path} has no params: give one JSON object per line",
    }
    for text, message in cases.items():
        path.write_text(text)
        done = run_job("typed", "--params-file", str(path))
        assert done.returncode != 0
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr
        assert message in done.stderr
    done = run_job("typed", "--params-file", str(tmp_path / "missing.jsonl"))
    assert done.returncode != 0 and "No such file or directory" in done.stderr
    done = run_job("typed", "--params-file", "-", "--params", "{}", stdin="{}")
    assert done.returncode != 0 and "leave out --params and --wait" in done.stderr
    assert not Run.objects.exists()


def test_many_bad_lines_are_named_by_the_first_and_the_numbers_of_ten_more():
    from jobs.core.errors import InvalidInput
    from jobs.management.commands.run_job import bad_lines_message

    items = {str(index): ["Params must be a JSON object."] for index in range(0, 30, 2)}
    bad = InvalidInput({"params": items, "comment": ["Too long."]})
    line_numbers = [number * 2 for number in range(1, 31)]  # a blank line before each
    assert bad_lines_message(bad, "f.jsonl", line_numbers) == (
        "f.jsonl, line 2: Params must be a JSON object. (and 14 more bad lines: 6, 10, 14, 18, 22, 26, 30, 34, 38, "
        "42, ...); comment: Too long.; nothing was created"
    )
