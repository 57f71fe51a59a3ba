"""/healthz: open to anyone, cheap, and naming nothing internal except to staff."""

import base64
import json
import threading
import time

import pytest
import redis
from django.conf import settings as django_settings
from django.db import connection
from django.test import Client

pytestmark = pytest.mark.postgres  # run on PostgreSQL too (see pyproject.toml)


@pytest.fixture
def uncached(settings):
    """Each /healthz checks the broker and the workers again (this process may
    have checked them for an earlier test); a test may set a window of its own."""
    settings.HEALTHZ_CACHE_SECONDS = 0
    return settings


def test_healthz_needs_no_login_and_counts_the_workers_without_naming_them(worker, client, uncached):
    response = client.get("/healthz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["database"] == {"ok": True} and body["broker"] == {"ok": True}
    assert body["workers"]["ok"] and body["workers"]["count"] >= 1
    assert "names" not in body["workers"]
    assert worker.hostname not in response.content.decode()


def test_staff_see_the_workers_names(worker, client, admin_user, uncached):
    client.force_login(admin_user)
    body = client.get("/healthz").json()
    assert worker.hostname in body["workers"]["names"]


def test_a_signed_in_user_who_is_not_staff_sees_what_anyone_sees(worker, client, viewer, uncached):
    client.force_login(viewer)
    body = client.get("/healthz").json()
    assert "names" not in body["workers"] and body["workers"]["count"] >= 1


class PingCounter:
    """Counts the pings broadcast to the workers, as the broker carries them:
    Celery's control messages, published on Redis for its pidbox fan-out
    (other control messages, such as Flower's inspections, are not counted)."""

    def __init__(self):
        self.count = 0
        self._pubsub = redis.Redis.from_url(django_settings.CELERY_BROKER_URL).pubsub()
        self._pubsub.psubscribe("*celery.pidbox*")
        self._pubsub.get_message(timeout=1)  # the subscription's confirmation
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._listen, daemon=True)
        self._thread.start()

    def _listen(self):
        while not self._stop.is_set():
            message = self._pubsub.get_message(timeout=0.1)
            if message is not None and self._method(message["data"]) == "ping":
                self.count += 1

    @staticmethod
    def _method(data: bytes) -> str | None:
        envelope = json.loads(data)
        return json.loads(base64.b64decode(envelope["body"])).get("method")

    def stop(self) -> int:
        time.sleep(0.3)  # the last broadcasts arrive
        self._stop.set()
        self._thread.join()
        self._pubsub.close()
        return self.count


def test_many_callers_share_one_worker_ping_until_it_is_a_few_seconds_old(worker, client, uncached):
    uncached.HEALTHZ_CACHE_SECONDS = 3
    uncached.MONITOR_INSPECT_TIMEOUT = 0.5
    time.sleep(3)  # whatever was checked before is too old now
    pings = PingCounter()
    started = time.monotonic()
    answers = [client.get("/healthz") for _ in range(20)]
    elapsed = time.monotonic() - started
    assert pings.stop() == 1
    assert all(a.status_code == 200 and a.json()["workers"]["count"] >= 1 for a in answers)
    assert len({a.json()["checked_at"] for a in answers}) == 1
    assert elapsed < 3  # one ping's wait (0.5 s), not twenty

    time.sleep(3)  # the answer is now too old: the next caller checks again
    pings = PingCounter()
    later = client.get("/healthz").json()
    assert pings.stop() == 1
    assert later["checked_at"] > answers[0].json()["checked_at"]


def test_callers_at_the_same_time_wait_for_one_ping(worker, uncached):
    uncached.HEALTHZ_CACHE_SECONDS = 2
    uncached.MONITOR_INSPECT_TIMEOUT = 0.5
    Client().get("/healthz")
    time.sleep(2.1)  # that answer is too old now
    pings = PingCounter()
    answers = []

    def call():
        try:
            answers.append(Client().get("/healthz").json())
        finally:
            connection.close()  # this thread's own, which would keep the test database open

    callers = [threading.Thread(target=call) for _ in range(6)]
    for caller in callers:
        caller.start()
    for caller in callers:
        caller.join()
    assert pings.stop() == 1
    assert len(answers) == 6 and len({answer["checked_at"] for answer in answers}) == 1


def test_every_other_page_needs_a_login(client, db):
    for url in ("/admin/", "/api/v1/job-types/", "/api/v1/runs/", "/api/docs/", "/api/schema/", "/api/v1/tasks/"):
        assert client.get(url).status_code in (302, 401, 403), url
    assert client.get("/accounts/login/").status_code == 200
