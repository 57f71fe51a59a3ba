"""Size limits: request bodies, params, results, errors and tracebacks.
(tests/e2e/test_output_limits.py sends big results and errors through a real worker.)"""

import json
import time
import tracemalloc
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse
from django.utils import timezone

from jobs.core.limits import bounded_result
from jobs.core.placeholders import PlaceholderError, resolve
from jobs.models import JobType, Run, Schedule
from jobs.schedules.dispatcher import dispatch_due
from tests.factories import JobTypeFactory, RunFactory, job_type_form

pytestmark = pytest.mark.postgres  # run on PostgreSQL too (see pyproject.toml)

# --- Request bodies ---------------------------------------------------------------


def test_a_json_body_over_data_upload_max_memory_size_gets_a_413_and_writes_nothing(api, job_type, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 10_000
    body = json.dumps({"params": {"blob": "x" * 20_000}})
    response = api.post(f"/api/v1/job-types/{job_type.name}/run/", body, content_type="application/json")
    assert response.status_code == 413
    assert response.json()["detail"].startswith(f"The request body is {len(body)} bytes; this server takes at most")
    assert "DATA_UPLOAD_MAX_MEMORY_SIZE" in response.json()["detail"]
    assert not Run.objects.exists()
    # A body within the limit goes through as before.
    response = api.post(f"/api/v1/job-types/{job_type.name}/run/", {"params": {"n": 1}}, format="json")
    assert response.status_code == 201


def test_a_body_that_is_not_json_gets_a_415(api, job_type):
    response = api.post(f"/api/v1/job-types/{job_type.name}/run/", "params=1", content_type="text/plain")
    assert response.status_code == 415
    assert "text/plain" in response.json()["detail"]
    assert not Run.objects.exists()


@pytest.mark.parametrize("depth", [65, 100_000])
def test_json_nested_too_deep_gets_a_400(api, job_type, depth):
    body = '{"params": {"a": ' + "[" * depth + "]" * depth + "}}"
    response = api.post(f"/api/v1/job-types/{job_type.name}/run/", body, content_type="application/json")
    assert response.status_code == 400
    assert response.json() == {"detail": "JSON parse error - nested more than 64 levels deep."}


# --- Params -----------------------------------------------------------------------------


@pytest.fixture
def small_params(settings):
    settings.JOBS_PARAMS_MAX_BYTES = 1000


BIG = {"blob": "x" * 2000}
TOO_LARGE = "The params are 2011 bytes as JSON; at most 1000 are allowed (JOBS_PARAMS_MAX_BYTES)."


def test_params_over_the_limit_get_a_400_naming_params_over_the_api(api, job_type, small_params):
    response = api.post(f"/api/v1/job-types/{job_type.name}/run/", {"params": BIG}, format="json")
    assert response.status_code == 400
    [message] = response.json()["params"]
    assert message.startswith(TOO_LARGE)
    assert not Run.objects.exists()
    response = api.post(f"/api/v1/job-types/{job_type.name}/run/", {"params": {"n": 1}}, format="json")
    assert response.status_code == 201


def test_default_params_and_schedule_params_over_the_limit_are_refused_too(api, job_type, small_params):
    response = api.post(
        "/api/v1/job-types/",
        {"name": "big", "kind": "task", "task": "jobs.builtin.echo", "default_params": BIG},
        format="json",
    )
    assert response.status_code == 400
    assert response.json()["default_params"][0].startswith(TOO_LARGE)
    response = api.post(
        "/api/v1/schedules/",
        {"name": "big", "job_type": job_type.name, "params": BIG, "interval_seconds": 60},
        format="json",
    )
    assert response.status_code == 400
    assert response.json()["params"][0].startswith(TOO_LARGE)
    assert not JobType.objects.filter(name="big").exists() and not Schedule.objects.exists()


def test_params_over_the_limit_are_refused_by_the_admin_the_pages_and_run_job(client, admin_user, small_params):
    job_type = JobTypeFactory(name="echo")
    client.force_login(admin_user)
    response = client.post(reverse("admin:jobs_jobtype_run", args=[job_type.pk]), {"params": json.dumps(BIG)})
    assert response.status_code == 200
    assert TOO_LARGE in response.content.decode()
    response = client.post("/monitor/job-types/echo/", {"extra": json.dumps(BIG)})
    assert response.status_code == 400
    assert TOO_LARGE in response.content.decode()
    with pytest.raises(CommandError, match=r"params: The params are 2011 bytes"):
        call_command("run_job", "echo", "--params", json.dumps(BIG))
    assert not Run.objects.exists()


@pytest.mark.parametrize(
    "copies",
    [
        {"text": "{{ params.blob }}" * 2000},  # interpolated into one string
        {"list": ["{{ params }}"] * 2000},  # whole values, each as big as the params
    ],
)
def test_placeholders_that_would_expand_past_the_params_limit_stop_there_without_building_it(
    api, django_capture_on_commit_callbacks, copies
):
    # Each copy is ~60 KB: resolved in full, the step's params would be over 100 MB.
    JobTypeFactory(name="echo")
    schema = {"type": "object", "properties": {"blob": {"type": "string"}}}
    steps = [{"name": "copy", "job_type": "echo", "params": copies}]
    body = {"name": "flood", "kind": "workflow", "params_schema": schema, "steps": steps}
    assert api.post("/api/v1/job-types/", body, format="json").status_code == 201
    tracemalloc.start()
    started = time.monotonic()
    try:
        # The first steps are resolved once the trigger's transaction commits.
        with django_capture_on_commit_callbacks(execute=True):
            response = api.post("/api/v1/job-types/flood/run/", {"params": {"blob": "x" * 60_000}}, format="json")
        elapsed = time.monotonic() - started
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert response.status_code == 201, response.data
    assert peak < 20_000_000, f"{peak / 1e6:.0f} MB"
    assert elapsed < 2, elapsed
    run = Run.objects.get(pk=response.data["id"])
    assert (run.status, run.error) == (
        "failed",
        "Step 'copy' failed: Params of step 'copy': once resolved, the params would be more than 65536 bytes as "
        "JSON (JOBS_PARAMS_MAX_BYTES): pass large data by reference (a URL, a path, an id) instead",
    )


# --- Patterns in params schemas ----------------------------------------------------------

# With a backtracking engine, ^(a+)+$ takes twice as long for each "a" before the "!".
BACKTRACKER = {"type": "object", "properties": {"word": {"type": "string", "pattern": "^(a+)+$"}}}
STALLING_WORD = "a" * 50 + "!"


@pytest.mark.timeout(30)  # without RE2, these would run for days
def test_a_pattern_that_would_backtrack_answers_at_once_through_the_api(api):
    JobTypeFactory(name="spell", params_schema=BACKTRACKER)
    started = time.monotonic()
    response = api.post("/api/v1/job-types/spell/run/", {"params": {"word": STALLING_WORD}}, format="json")
    assert time.monotonic() - started < 1
    assert response.status_code == 400
    assert response.json()["params"] == [f"word: '{STALLING_WORD}' does not match '^(a+)+$'"]
    assert api.post("/api/v1/job-types/spell/run/", {"params": {"word": "a" * 50}}, format="json").status_code == 201


@pytest.mark.timeout(30)
def test_a_pattern_property_that_would_backtrack_answers_at_once(api):
    schema = {"type": "object", "patternProperties": {"^(a+)+$": {"type": "integer"}}, "additionalProperties": False}
    JobTypeFactory(name="keys", params_schema=schema)
    started = time.monotonic()
    response = api.post("/api/v1/job-types/keys/run/", {"params": {STALLING_WORD: 1}}, format="json")
    assert time.monotonic() - started < 1
    assert response.status_code == 400
    assert response.json()["params"] == [f"'{STALLING_WORD}' does not match any of the regexes: '^(a+)+$'"]
    response = api.post("/api/v1/job-types/keys/run/", {"params": {"aaa": "three"}}, format="json")
    assert response.json()["params"] == ["aaa: 'three' is not of type 'integer'"]


@pytest.mark.timeout(30)
def test_the_dispatcher_skips_at_once_a_tick_whose_params_a_pattern_would_backtrack_on(api):
    JobTypeFactory(name="spell")
    body = {"name": "hourly", "job_type": "spell", "params": {"word": STALLING_WORD}, "interval_seconds": 3600}
    assert api.post("/api/v1/schedules/", body, format="json").status_code == 201
    # The schema gets its pattern after the schedule was saved with those params.
    assert api.patch("/api/v1/job-types/spell/", {"params_schema": BACKTRACKER}, format="json").status_code == 200
    schedule = Schedule.objects.get(name="hourly")
    started = time.monotonic()
    dispatch_due(now=schedule.next_run_at - timedelta(seconds=5))
    assert time.monotonic() - started < 1
    schedule.refresh_from_db()
    assert schedule.skipped_ticks == 1
    assert schedule.last_skip_reason == f"params: word: '{STALLING_WORD}' does not match '^(a+)+$'"
    assert not Run.objects.exists()


@pytest.mark.parametrize(
    ("schema", "message"),
    [
        (
            {"properties": {"code": {"pattern": "^(?!x)"}}},
            "pattern '^(?!x)' cannot be used: invalid perl operator: (?!. Patterns are matched with RE2, which runs "
            "in time linear in the text and so has no lookaround and no backreferences.",
        ),
        (
            {"patternProperties": {"^(a)\\1$": {}}},
            "pattern '^(a)\\\\1$' cannot be used: invalid escape sequence: \\1. Patterns are matched with RE2",
        ),
        (
            {"patternProperties": {"^x": {}}, "unevaluatedProperties": False},
            "Use additionalProperties rather than unevaluatedProperties in a schema with patternProperties",
        ),
    ],
)
def test_a_params_schema_with_a_pattern_re2_cannot_run_gets_a_400(api, schema, message):
    body = {"name": "x", "kind": "task", "task": "jobs.builtin.echo", "params_schema": schema}
    response = api.post("/api/v1/job-types/", body, format="json")
    assert response.status_code == 400
    [problem] = response.json()["params_schema"]
    assert problem.startswith(message), problem
    assert not JobType.objects.filter(name="x").exists()


# --- What runs store --------------------------------------------------------------------


def test_a_result_over_the_limit_is_stored_as_a_marked_preview(job_type, settings):
    settings.JOBS_RESULT_MAX_BYTES = 100
    run = RunFactory(job_type=job_type, status=Run.Status.RUNNING)
    result = {"rows": list(range(100))}
    assert run.mark_succeeded(result=result)
    run.refresh_from_db()
    text = json.dumps(result, separators=(",", ":"))
    assert run.result == {"truncated": True, "size": len(text), "limit": 100, "preview": text[:100]}
    small = RunFactory(job_type=job_type, status=Run.Status.RUNNING)
    small.mark_succeeded(result={"rows": [1, 2]})
    small.refresh_from_db()
    assert small.result == {"rows": [1, 2]}


def test_a_preview_never_cuts_a_character_in_half(settings):
    settings.JOBS_RESULT_MAX_BYTES = 10
    cut = bounded_result("ééééééééé")  # 2 bytes each
    assert cut["preview"] == '"éééé' and cut["size"] == 20


def test_errors_keep_their_beginning_and_tracebacks_their_end_each_saying_what_was_cut(job_type, settings):
    settings.JOBS_ERROR_MAX_CHARS = 50
    run = RunFactory(job_type=job_type, status=Run.Status.RUNNING)
    error = "E" * 40 + "F" * 40
    traceback = "Traceback (most recent call last):\n" + "  frame\n" * 20 + "ValueError: the end"
    assert run.mark_failed(error=error, traceback=traceback)
    run.refresh_from_db()
    assert run.error == "E" * 40 + "F" * 10 + "\n[… 30 more characters cut (JOBS_ERROR_MAX_CHARS)]"
    assert run.traceback.startswith(f"[… {len(traceback) - 50} earlier characters cut (JOBS_ERROR_MAX_CHARS)]\n")
    assert run.traceback.endswith("ValueError: the end")


def test_a_step_cannot_use_a_result_that_was_cut(settings):
    settings.JOBS_RESULT_MAX_BYTES = 10
    results = {"extract": bounded_result({"rows": list(range(10))})}
    with pytest.raises(PlaceholderError, match="the result of 'extract' was 30 bytes, more than JOBS_RESULT_MAX_BYTES"):
        resolve({"rows": "{{ steps.extract.result.rows }}"}, params={}, results=results)


def test_the_run_page_says_a_result_was_cut(client, admin_user, job_type, settings):
    settings.JOBS_RESULT_MAX_BYTES = 100
    run = RunFactory(job_type=job_type, status=Run.Status.RUNNING, started_at=timezone.now())
    run.mark_succeeded(result={"rows": list(range(1000))})
    client.force_login(admin_user)
    body = client.get(f"/monitor/runs/{run.pk}/").content.decode()
    assert "The result was 3.8\xa0KB as JSON, more than the 100\xa0bytes kept" in body
    assert "<pre>{&quot;rows&quot;:[0,1,2,3" in body


def test_json_nested_too_deep_is_a_form_error_on_the_pages_and_in_the_admin(client, admin_user):
    job_type = JobTypeFactory(name="echo")
    client.force_login(admin_user)
    message = "Nested more than 64 levels deep: flatten it."
    for depth in (65, 5000):  # 5000: deeper than Python's json module can read
        deep = "[" * depth + "]" * depth
        response = client.post("/monitor/job-types/echo/", {"extra": deep})
        assert response.status_code == 400 and message in response.content.decode()
        response = client.post(reverse("admin:jobs_jobtype_run", args=[job_type.pk]), {"params": deep})
        assert response.status_code == 200 and message in response.content.decode()
        form = job_type_form(name="echo", params_schema=deep, notify_on="never")
        response = client.post(reverse("admin:jobs_jobtype_change", args=[job_type.pk]), form)
        assert response.status_code == 200 and message in response.content.decode()
    assert not Run.objects.exists()
    job_type.refresh_from_db()
    assert job_type.params_schema == {}
