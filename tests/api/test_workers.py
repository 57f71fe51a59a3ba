"""GET /api/v1/workers/: the workers online, their queues and the runs they
execute, from the same inspection as the workers page; bounded in time."""

import time

import httpx
import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.core.cache import cache
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from jobs.models import Run
from jobs.runs.trigger import run_create
from jobsite.celery import app
from tests.conftest import free_port, wait_for_run
from tests.factories import JobTypeFactory

URL = "/api/v1/workers/"
# Workers get MONITOR_INSPECT_TIMEOUT (1 s) to answer; the rest is for a shared, busy machine.
LIMIT_SECONDS = 3.5


@pytest.fixture(autouse=True)
def fresh_answer():
    """Answers are kept a few seconds: each test asks the workers anew."""
    cache.clear()


def test_anonymous_callers_are_refused():
    response = APIClient().get(URL)
    assert response.status_code == 401


def test_a_user_who_may_not_view_runs_is_refused(api_as, db):
    outsider = User.objects.create_user("outsider", password="pw")
    assert api_as(outsider).get(URL).status_code == 403


@pytest.mark.worker
def test_it_lists_the_worker_with_its_queue_and_the_run_it_executes(worker, api_as, viewer):
    sleepy = JobTypeFactory(name="sleepy", task="tests.sleep_echo")
    run, _ = run_create(job_type=sleepy, params={"seconds": 4}, trigger=Run.Trigger.API)
    wait_for_run(run, "running")
    client = api_as(viewer)  # Viewers may read it.

    response = client.get(URL)

    assert response.status_code == 200, response.data
    body = response.json()
    assert body["worker_error"] == ""
    ours = next(w for w in body["workers"] if w["hostname"] == worker.hostname)
    assert settings.CELERY_TASK_DEFAULT_QUEUE in ours["queues"]
    assert ours["concurrency"] == 2
    assert ours["active_tasks"] >= 1
    active = {entry["id"]: entry for entry in ours["active_runs"]}
    assert active[str(run.pk)]["job_type"] == "sleepy"
    assert active[str(run.pk)]["status"] == "running"
    assert active[str(run.pk)]["started_at"] is not None
    assert {"name": settings.CELERY_TASK_DEFAULT_QUEUE, "waiting": 0} in body["queues"]

    assert wait_for_run(run).status == "succeeded"
    cache.clear()
    ours = next(w for w in client.get(URL).json()["workers"] if w["hostname"] == worker.hostname)
    assert str(run.pk) not in {entry["id"] for entry in ours["active_runs"]}


def test_with_no_worker_it_answers_quickly_with_an_empty_list_then_from_its_cache(web_on_own_broker, viewer):
    headers = {"Authorization": f"Token {Token.objects.create(user=viewer).key}"}
    with httpx.Client(base_url=web_on_own_broker.url, headers=headers, timeout=10) as client:
        started = time.monotonic()
        response = client.get(URL)
        elapsed = time.monotonic() - started
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["workers"] == []
        assert body["worker_error"].startswith("No worker answered within")
        assert elapsed < LIMIT_SECONDS

        started = time.monotonic()
        again = client.get(URL).json()
        assert time.monotonic() - started < 0.5
        assert again["checked_at"] == body["checked_at"]


def test_with_the_broker_down_it_answers_503_quickly(api, monkeypatch):
    monkeypatch.setattr(app.conf, "broker_url", f"redis://127.0.0.1:{free_port()}/0")  # nothing listens there
    started = time.monotonic()
    response = api.get(URL)
    assert time.monotonic() - started < LIMIT_SECONDS
    assert response.status_code == 503
    assert response.json()["detail"].startswith("Broker unreachable")
