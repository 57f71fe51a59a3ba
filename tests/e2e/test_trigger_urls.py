"""A trigger URL end to end: POSTed to without an account → Redis → a real
Celery worker → the run's status, read back through the URL's status link."""

import pytest
from django.test import Client

from jobs.models import Run
from tests.conftest import wait_for_run

pytestmark = pytest.mark.postgres  # run on PostgreSQL too (see pyproject.toml)


def test_a_post_to_a_trigger_url_without_an_account_runs_the_job_on_a_worker(worker, api):
    defined = api.post(
        "/api/v1/job-types/", {"name": "echo", "kind": "task", "task": "jobs.builtin.echo"}, format="json"
    )
    assert defined.status_code == 201, defined.data
    made = api.post("/api/v1/job-types/echo/trigger-urls/", {"label": "ci"}, format="json")
    assert made.status_code == 201, made.data
    anyone = Client(enforce_csrf_checks=True)
    posted = anyone.post(
        made.data["url"].removeprefix("http://testserver"),
        {"commit": "abc123"},
        content_type="application/json",
        HTTP_IDEMPOTENCY_KEY="pipeline-7",
    )
    assert posted.status_code == 201, posted.content
    run = wait_for_run(Run.objects.get(pk=posted.json()["id"]))
    assert (run.status, run.result, run.trigger) == ("succeeded", {"commit": "abc123"}, "url")
    assert run.worker == worker.hostname
    status = anyone.get(posted.json()["status_url"].removeprefix("http://testserver")).json()
    assert (status["status"], status["finished_at"] is not None) == ("succeeded", True)
