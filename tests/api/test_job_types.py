import importlib

import pytest
from django.contrib.admin.models import LogEntry
from django.core.exceptions import ImproperlyConfigured

import jobsite.settings
from jobs.models import JobType, Schedule
from tests import commands
from tests.factories import JobTypeFactory, RunFactory

URL = "/api/v1/job-types/"

ECHO = {
    "name": "say-hello",
    "kind": "task",
    "task": "jobs.builtin.echo",
    "params_schema": {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]},
    "default_params": {"name": "world"},
}


def test_it_creates_a_task_job_type(api):
    response = api.post(URL, ECHO, format="json")
    assert response.status_code == 201, response.data
    assert response.data["name"] == "say-hello"
    job_type = JobType.objects.get(name="say-hello")
    assert job_type.task == "jobs.builtin.echo"
    assert job_type.default_params == {"name": "world"}


def test_it_creates_an_http_job_type_for_an_allowed_host(api):
    body = {"name": "ping", "kind": "http", "http": {"method": "GET", "url": "http://127.0.0.1:9/ok"}}
    response = api.post(URL, body, format="json")
    assert response.status_code == 201, response.data


def test_it_reads_updates_and_lists_by_name(api):
    JobTypeFactory(name="nightly")
    assert api.get(f"{URL}nightly/").data["kind"] == "task"
    response = api.patch(f"{URL}nightly/", {"description": "Every night", "max_retries": 2}, format="json")
    assert response.status_code == 200, response.data
    assert JobType.objects.get(name="nightly").max_retries == 2
    names = [row["name"] for row in api.get(URL).data["results"]]
    assert "nightly" in names


def test_deleting_a_job_type_without_runs_deletes_it(api):
    JobTypeFactory(name="temp")
    assert api.delete(f"{URL}temp/").status_code == 204
    assert not JobType.objects.filter(name="temp").exists()


def test_deleting_a_job_type_with_runs_disables_it(api):
    run = RunFactory(job_type=JobTypeFactory(name="kept"))
    response = api.delete(f"{URL}kept/")
    assert response.status_code == 200
    assert "disabled instead of deleted" in response.data["detail"]
    assert JobType.objects.get(pk=run.job_type.pk).enabled is False


def test_deleting_a_job_type_a_schedule_uses_gets_a_409_naming_it_and_deletes_nothing(api, admin_user):
    job_type = JobTypeFactory(name="nightly-report")
    Schedule.objects.create(name="nightly", job_type=job_type, cron="0 3 * * *")
    response = api.delete(f"{URL}nightly-report/")
    assert response.status_code == 409
    assert response.json() == {
        "detail": "Job type 'nightly-report' is the job type of schedule 'nightly': "
        "remove it from there before deleting it."
    }
    assert JobType.objects.filter(name="nightly-report", enabled=True).exists()
    assert Schedule.objects.filter(name="nightly").exists()
    assert not LogEntry.objects.exists()  # nothing happened, so nothing is recorded


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({**ECHO, "params_schema": {"type": "nope"}}, "params_schema", "Not a valid JSON Schema"),
        ({**ECHO, "task": "no.such.task"}, "task", "Unknown task 'no.such.task'"),
        ({**ECHO, "task": ""}, "task", "Name the Celery task"),
        ({**ECHO, "kind": "teleport"}, "kind", '"teleport" is not a valid choice'),
        ({**ECHO, "name": "not a slug!"}, "name", "letters, numbers, underscores or hyphens"),
        ({**ECHO, "priority": 12}, "priority", "less than or equal to 9"),
        (
            {"name": "x", "kind": "http", "http": {"url": "http://169.254.169.254/latest/meta-data"}},
            "http",
            "loopback, private or link-local address; add it to JOBS_HTTP_ALLOWED_HOSTS",
        ),
        ({"name": "x", "kind": "http", "http": {"url": "http://127.0.0.5:8000/"}}, "http", "resolves to 127.0.0.5"),
        ({"name": "x", "kind": "http", "http": {"url": "ftp://example.com/x"}}, "http", "give an absolute http://"),
        ({"name": "x", "kind": "http", "http": {"url": "https://example.com", "method": "BREW"}}, "http", "BREW"),
        ({"name": "x", "kind": "command", "command": {"argv": ["rm", "-rf", "/"]}}, "command", "not in JOBS_COMMAND"),
        (
            {"name": "x", "kind": "command", "command": {"argv": ["/bin/sh", "-c", "rm -rf /"]}},
            "command",
            "'/bin/sh -c 'rm -rf /'' is not in JOBS_COMMAND_ALLOWLIST (it allows /bin/echo, /bin/sleep, /bin/sh -c",
        ),
        (
            {"name": "x", "kind": "command", "command": {"argv": [*commands.EXIT_3, "-c", "rm -rf /"]}},
            "command",
            "with no further arguments, since /bin/sh is a shell. An administrator must add the whole command.",
        ),
        ({"name": "x", "kind": "command", "command": {"argv": "echo hi"}}, "command", "non-empty list of strings"),
        ({**ECHO, "http": {"url": "https://example.com"}}, "http", "Only for kind 'http'"),
    ],
)
def test_bad_definitions_get_a_400_naming_the_field_and_write_nothing(api, body, field, message):
    response = api.post(URL, body, format="json")
    assert response.status_code == 400
    assert field in response.data, response.data
    assert message in " ".join(str(m) for m in response.data[field])
    assert not JobType.objects.exists()


def test_a_time_limit_the_visibility_timeout_would_cut_short_gets_a_400_naming_both(api):
    # CELERY_VISIBILITY_TIMEOUT 3600 s and a grace of 2 s (tests/settings.py): 3598 + 2 s is not under 3600 s.
    response = api.post(URL, {**ECHO, "timeout_seconds": 3598}, format="json")
    assert response.status_code == 400
    assert response.data["timeout_seconds"] == [
        "timeout_seconds 3598 s + JOBS_HARD_TIMEOUT_GRACE_SECONDS 2 s = 3600 s is not under "
        "CELERY_VISIBILITY_TIMEOUT (3600 s): Redis would hand the run's task to a second worker while the first "
        "still holds it. Lower timeout_seconds to at most 3597, or raise CELERY_VISIBILITY_TIMEOUT (on every process)."
    ]
    assert not JobType.objects.exists()
    assert api.post(URL, {**ECHO, "timeout_seconds": 3597}, format="json").status_code == 201


def test_a_retry_wait_counts_towards_the_visibility_timeout(api, settings):
    settings.JOBS_RETRY_BACKOFF_MAX_SECONDS = 600
    body = {**ECHO, "timeout_seconds": 3000, "max_retries": 3, "retry_backoff_seconds": 200}
    response = api.post(URL, body, format="json")
    assert response.status_code == 400
    (message,) = response.data["timeout_seconds"]
    assert message.startswith(
        "timeout_seconds 3000 s + JOBS_HARD_TIMEOUT_GRACE_SECONDS 2 s + the longest wait before a retry 600 s "
        "(retry_backoff_seconds, max_retries) = 3602 s is not under CELERY_VISIBILITY_TIMEOUT (3600 s)"
    )
    assert "Lower timeout_seconds to at most 2997" in message
    # An edit is checked the same way: fewer retries wait less.
    assert api.post(URL, {**body, "max_retries": 2}, format="json").status_code == 201
    response = api.patch(f"{URL}{ECHO['name']}/", {"max_retries": 3}, format="json")
    assert response.status_code == 400
    assert "CELERY_VISIBILITY_TIMEOUT" in response.data["timeout_seconds"][0]
    assert JobType.objects.get(name=ECHO["name"]).max_retries == 2


def test_the_dispatchers_own_queue_gets_a_400(api, settings):
    response = api.post(URL, {**ECHO, "queue": settings.JOBS_DISPATCH_QUEUE}, format="json")
    assert response.status_code == 400
    assert response.data["queue"] == [
        "'jobsite' is Jobsite's own queue (its dispatcher's, JOBS_DISPATCH_QUEUE): runs there would delay every "
        "schedule's fire. Name another queue, or leave it empty for the default one."
    ]
    assert not JobType.objects.exists()


def test_malformed_json_gets_a_400(api):
    response = api.post(URL, '{"name": "x", "kind": ', content_type="application/json")
    assert response.status_code == 400
    assert "JSON parse error" in response.data["detail"]
    assert not JobType.objects.exists()


def test_an_update_that_breaks_the_rules_changes_nothing(api):
    JobTypeFactory(name="stable", task="jobs.builtin.echo")
    response = api.patch(f"{URL}stable/", {"task": "no.such.task", "description": "x"}, format="json")
    assert response.status_code == 400
    job_type = JobType.objects.get(name="stable")
    assert (job_type.task, job_type.description) == ("jobs.builtin.echo", "")


def test_no_credentials_get_a_401(db, api_as):
    assert api_as(None).get(URL).status_code == 401
    assert api_as(None).post(URL, ECHO, format="json").status_code == 401


def test_a_user_without_the_permission_gets_a_403(operator, api_as):
    # An operator can read job types but not define them.
    client = api_as(operator)
    assert client.get(URL).status_code == 200
    assert client.post(URL, ECHO, format="json").status_code == 403
    assert not JobType.objects.exists()


def test_a_user_with_no_permissions_cannot_even_read(django_user_model, api_as):
    nobody = django_user_model.objects.create_user("nobody", password="pw")
    assert api_as(nobody).get(URL).status_code == 403


def test_tasks_lists_registered_tasks_but_not_celery_internals(api):
    names = [row["name"] for row in api.get("/api/v1/tasks/").data]
    assert {"jobs.builtin.echo", "jobs.builtin.sleep", "jobs.builtin.fail"} <= set(names)
    assert not any(name.startswith(("celery.", "jobsite.")) for name in names)


def test_a_filter_value_that_is_neither_true_nor_false_gets_a_400_naming_it(api, job_type):
    for value in ("maybe", "100%", "%s%d"):
        response = api.get("/api/v1/job-types/", {"enabled": value})
        assert response.status_code == 400
        assert response.json() == {"enabled": [f"{value!r}: use true or false."]}
    assert api.get("/api/v1/job-types/", {"enabled": ""}).json()["count"] == 1  # empty: not filtered
    assert api.get("/api/v1/job-types/", {"enabled": "false"}).json()["count"] == 0


def test_a_page_or_page_size_that_is_not_a_whole_number_from_1_gets_a_400(api, job_type):
    for name, value in (("page", "0"), ("page", "last"), ("page_size", "-1"), ("page_size", "x")):
        response = api.get("/api/v1/job-types/", {name: value})
        assert response.status_code == 400
        assert response.json() == {name: [f"{value!r}: give a whole number from 1."]}
    assert api.get("/api/v1/job-types/", {"page": "2"}).status_code == 404  # past the last page


def test_a_name_with_a_dot_gets_a_json_404(api):
    response = api.get("/api/v1/job-types/no.such/")
    assert response.status_code == 404
    assert response.json() == {"detail": "No JobType matches the given query."}


def test_the_default_queue_cannot_be_the_dispatchers_own(monkeypatch):
    try:
        monkeypatch.setenv("JOBS_DEFAULT_QUEUE", "jobsite")
        with pytest.raises(ImproperlyConfigured, match="JOBS_DEFAULT_QUEUE='jobsite' is Jobsite's own queue"):
            importlib.reload(jobsite.settings)
    finally:
        monkeypatch.undo()
        importlib.reload(jobsite.settings)
