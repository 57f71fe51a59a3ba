"""Schemathesis over the API's OpenAPI schema: generated requests, valid and
invalid, against the Django app (WSGI, in this process), as a superuser with a
token. No answer may be a server error or break the schema (status code,
content type, headers, body), invalid input must be refused, and so on: every
check Schemathesis has but one (see below).

Bounded so that it stays quick in `make test`: a few examples per operation,
derandomized (the same requests every run). A longer hunt, with other
examples each time: JOBSITE_FUZZ_EXAMPLES=300 .venv/bin/pytest tests/api/test_fuzz.py
"""

import json
import os
import traceback

import pytest
import schemathesis
from django.core import signals
from django.core.handlers.wsgi import WSGIHandler
from django.db import close_old_connections
from django.utils import timezone
from drf_spectacular.generators import SchemaGenerator
from hypothesis import HealthCheck, settings
from rest_framework.authtoken.models import Token
from schemathesis.specs.openapi.checks import positive_data_acceptance

from jobs import audit
from jobs.core.secrets import encrypt
from jobs.models import JobType, Run, Schedule, Secret
from jobs.runs.trigger_urls import trigger_url_create

HUNT = "JOBSITE_FUZZ_EXAMPLES" in os.environ
EXAMPLES_PER_OPERATION = int(os.environ.get("JOBSITE_FUZZ_EXAMPLES", "15"))


def served_schema() -> dict:
    # The same generator that serves /api/schema/ (test_it_fuzzes_the_schema_that_is_served
    # checks that); loaded here, when the tests are collected, without a database.
    return json.loads(json.dumps(SchemaGenerator().get_schema(request=None, public=True), default=str))


schema = schemathesis.openapi.from_dict(served_schema())
schema.app = WSGIHandler()


@pytest.fixture
def wsgi_requests():
    """Requests through the WSGI handler share the test's database connection:
    Django must not close it at the end of each, as its test client also ensures."""
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


@pytest.fixture
def objects(db, settings, admin_user):
    """Something for every route to find: a job type, a workflow, runs, a schedule, a secret, a trigger URL."""
    settings.JOBS_TRIGGER_URL_RATE = "10000/m"  # the same URL, over and over
    echo = JobType.objects.create(name="echo", kind="task", task="jobs.builtin.echo")
    flow = JobType.objects.create(name="flow", kind="workflow")
    flow.steps.create(name="one", job_type=echo)
    pending = Run.objects.create(job_type=echo, trigger="api")
    finished = Run.objects.create(
        job_type=echo, trigger="api", status=Run.Status.FAILED, error="boom", finished_at=timezone.now()
    )
    schedule = Schedule.objects.create(name="nightly", job_type=echo, cron="0 3 * * *")
    Secret.objects.create(name="API_TOKEN", encrypted_value=encrypt("t0ken-value"))
    trigger_url, token = trigger_url_create(job_type=echo, by=audit.Author(admin_user, audit.API))
    hook_run = Run.objects.create(job_type=echo, trigger="url", trigger_url=trigger_url)
    return {
        "job-types": ["echo", "flow"],
        "runs": [str(pending.pk), str(finished.pk)],
        "schedules": [schedule.pk],
        "secrets": ["API_TOKEN"],
        "trigger-urls": [trigger_url.pk],
        "token": [token],
        "run_id": [str(hook_run.pk)],
    }


def existing(case, objects) -> None:
    """Point about half of the generated cases at objects that exist, so that
    updates, runs and cancels get past the 404; the rest keep their random
    (usually unknown) names and ids."""
    for key, value in case.path_parameters.items():
        if len(str(value)) % 2:
            continue
        if key in ("token", "run_id"):  # a trigger URL's
            choices = objects[key]
        else:
            choices = objects["trigger-urls" if "trigger-urls" in case.path else case.path.split("/")[3]]
        case.path_parameters[key] = choices[len(str(value)) // 2 % len(choices)]


@pytest.fixture
def server_errors():
    """The exceptions behind any 500, so that a failure shows the server's traceback
    beside Schemathesis' report (its report has the response, not the cause)."""
    seen = []

    def record(sender, request=None, **kwargs):
        seen.append(f"{request.method} {request.path}:\n{traceback.format_exc()}")

    signals.got_request_exception.connect(record)
    yield seen
    signals.got_request_exception.disconnect(record)


@schema.parametrize()
@settings(
    max_examples=EXAMPLES_PER_OPERATION,
    derandomize=not HUNT,
    database=None,  # nothing to remember between runs that are always the same
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.function_scoped_fixture],
)
def test_it_answers_generated_requests_as_its_schema_says(
    case, admin_user, objects, redis_server, wsgi_requests, server_errors
):
    existing(case, objects)
    token, _ = Token.objects.get_or_create(user=admin_user)
    # positive_data_acceptance expects any body the schema allows to be accepted;
    # the API also applies rules a schema cannot state (a task must be registered,
    # a cron expression must parse, a workflow's steps must form no cycle), and
    # answers 400 with the field's message for those.
    try:
        case.call_and_validate(
            headers={"Authorization": f"Token {token.key}"}, excluded_checks=[positive_data_acceptance]
        )
    except Exception as failure:
        if server_errors:
            failure.add_note("The server's exception:\n" + server_errors[-1])
        raise


def test_it_fuzzes_the_schema_that_is_served(api):
    response = api.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    assert json.loads(response.content) == served_schema()
