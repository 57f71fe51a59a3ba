"""CELERY_WORKER_SEND_TASK_EVENTS: one variable turns task events off for the
workers and for Flower, which would otherwise turn them back on.

The worker and Flower here are this test's own, on a broker of their own (another
database of the tests' Redis): the session's Flower, with events on, asks every
worker on its broker to send them.
"""

import json
import os
import subprocess
import sys
import time

import httpx
import pytest
from celery import Celery
from rest_framework.authtoken.models import Token

from jobs.models import Run
from tests.conftest import FLOWER_CONF, ROOT, Flower, Worker, _log_tail, wait_for_run
from tests.factories import JobTypeFactory

# Flower asks the workers to send task events every this many seconds (flower/events.py,
# Events.events_enable_interval; not an option).
FLOWER_ENABLE_EVENTS_INTERVAL = 5


@pytest.fixture
def events_off(web_on_own_broker, tmp_path, settings):
    """A worker and a Flower started with CELERY_WORKER_SEND_TASK_EVENTS=off, on the
    web process's own broker; the in-process proxy points at this Flower."""
    broker_url = web_on_own_broker.broker_url
    off = {"CELERY_WORKER_SEND_TASK_EVENTS": "off"}
    worker = Worker(tmp_path / "worker.log", broker_url=broker_url, env=off)
    flower = None
    try:
        flower = Flower(tmp_path / "flower.log", env={**off, "REDIS_URL": broker_url})
        prefix = worker.name.split("@")[0] + "@"
        deadline = time.monotonic() + 60
        # This process's Celery app publishes on the tests' broker: ask with one of this broker's.
        with Celery(broker=broker_url, set_as_current=False) as probe:
            while worker.hostname is None:
                assert worker.process.poll() is None and time.monotonic() < deadline, _log_tail(worker.log)
                replies = probe.control.ping(timeout=0.5) or []
                worker.hostname = next((name for reply in replies for name in reply if name.startswith(prefix)), None)
        settings.FLOWER_URL = flower.url
        settings.FLOWER_BASIC_AUTH = flower.basic_auth
        yield web_on_own_broker, worker
    finally:
        if flower is not None:
            flower.stop()
        worker.stop()


def test_with_task_events_off_flower_lists_the_worker_but_never_learns_of_its_runs(
    events_off, admin_user, staff_client
):
    web, worker = events_off
    ready = time.monotonic()
    JobTypeFactory(name="echo")
    headers = {"Authorization": f"Token {Token.objects.create(user=admin_user).key}"}
    runs = []
    with httpx.Client(base_url=web.url, headers=headers, timeout=10) as api:

        def trigger() -> Run:
            response = api.post("/api/v1/job-types/echo/run/", json={"params": {"hello": "flower"}})
            assert response.status_code == 201, response.text
            run = wait_for_run(Run.objects.get(pk=response.json()["id"]))
            assert run.status == "succeeded", run.error
            return run

        runs.append(trigger())
        # Past Flower's next request to the workers to send task events: with events
        # on, it would have come, and the worker would send them from now on.
        time.sleep(max(0, ready + FLOWER_ENABLE_EVENTS_INTERVAL + 1 - time.monotonic()))
        runs.append(trigger())
    time.sleep(1)  # events, if any were sent, reach Flower within milliseconds

    assert staff_client.get("/flower/api/tasks").json() == {}
    for run in runs:
        assert staff_client.get(f"/flower/task/{run.pk}").status_code == 404
    # What a worker logs when Flower (or anyone) turns its task events on.
    assert "Events of group {task} enabled by remote" not in worker.log.read_text()
    # Flower's worker and broker pages ask the workers and Redis, and still show this worker and its queue.
    workers = staff_client.get("/flower/api/workers", {"refresh": "1", "workername": worker.hostname})
    assert workers.status_code == 200 and worker.hostname in workers.json()
    page = staff_client.get(f"/flower/worker/{worker.hostname}")
    assert page.status_code == 200 and worker.hostname in page.content.decode()
    broker = staff_client.get("/flower/broker")
    assert broker.status_code == 200 and "<td>celery</td>" in broker.content.decode()


# What `celery -A jobsite flower --conf=...` does first: its options from FLOWER_*
# variables, then from its command line and the config file (flower/command.py).
READ_BOTH = f"""
import json
from flower.command import apply_env_options, apply_options
from tornado.options import options
from jobsite.celery import app

apply_env_options()
apply_options("celery", ["--conf={FLOWER_CONF}", "--url_prefix=flower"])
print(json.dumps({{"worker": app.conf.worker_send_task_events, "flower": options.enable_events}}))
"""


# As env_bool reads it: "off" and "no" are false, which Flower's own --enable_events
# would read as true; empty is the default, on, which FLOWER_ENABLE_EVENTS refuses.
READINGS = {"off": False, "no": False, "0": False, "false": False, "": True, "on": True, "yes": True}


def test_the_variable_reads_the_same_for_the_workers_and_flower():
    started = {
        value: subprocess.Popen(
            [sys.executable, "-c", READ_BOTH],
            cwd=ROOT,
            env={**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", "CELERY_WORKER_SEND_TASK_EVENTS": value},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for value in READINGS
    }
    for value, process in started.items():
        out, err = process.communicate(timeout=60)
        assert process.returncode == 0, err
        sent = READINGS[value]
        assert json.loads(out.splitlines()[-1]) == {"worker": sent, "flower": sent}, value
