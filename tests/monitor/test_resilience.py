"""Pages that ask Celery still render, and say so, when no worker or broker answers.

The requirement is "within 2 seconds"; the tests allow 3.5 s because the
machine is shared and busy (2 cores, other test runs). bench/ measures speed.
"""

import socket
import threading
import time

import pytest

from jobsite.celery import app
from tests.conftest import Worker
from tests.factories import RunFactory

from .conftest import free_port

LIMIT_SECONDS = 3.5
PAGES = ["/monitor/", "/monitor/workers/"]


def timed_get(client, url):
    started = time.monotonic()
    response = client.get(url)
    return response, time.monotonic() - started


@pytest.fixture
def own_broker(redis_server, monkeypatch):
    """Another database of the tests' Redis: the session's worker does not listen there."""
    url = redis_server.rsplit("/", 1)[0] + "/7"
    monkeypatch.setattr(app.conf, "broker_url", url)
    return url


def test_with_the_worker_stopped_the_pages_render_quickly_and_say_no_worker_answers(
    own_broker, transactional_db, staff_client, tmp_path
):
    RunFactory(status="queued")
    worker = Worker(tmp_path / "worker.log", broker_url=own_broker)
    try:
        for url in PAGES:
            body = staff_client.get(url).content.decode()
            assert worker.hostname in body, url
            assert "No worker answered" not in body, url
    finally:
        worker.stop()

    for url in PAGES:
        response, elapsed = timed_get(staff_client, url)
        assert response.status_code == 200, url
        body = response.content.decode()
        assert "No worker answered." in body, url
        assert worker.hostname not in body, url
        assert elapsed < LIMIT_SECONDS, (url, elapsed)
    # The database part of the dashboard is still there.
    assert 'data-run="' in staff_client.get("/monitor/").content.decode()


def test_with_redis_down_the_pages_render_quickly_and_say_the_broker_is_unreachable(staff_client, monkeypatch):
    monkeypatch.setattr(app.conf, "broker_url", f"redis://127.0.0.1:{free_port()}/0")  # nothing listens there
    for url in PAGES:
        response, elapsed = timed_get(staff_client, url)
        assert response.status_code == 200, url
        assert "Broker unreachable." in response.content.decode(), url
        assert elapsed < LIMIT_SECONDS, (url, elapsed)


@pytest.fixture
def silent_broker():
    """A loopback port that accepts connections and never answers: a hung Redis."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    accepted = []
    stop = threading.Event()

    def accept():
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"redis://127.0.0.1:{server.getsockname()[1]}/0"
    stop.set()
    thread.join()
    for conn in accepted:
        conn.close()
    server.close()


def test_with_redis_hung_the_pages_still_render_quickly(staff_client, monkeypatch, silent_broker):
    monkeypatch.setattr(app.conf, "broker_url", silent_broker)
    for url in PAGES:
        response, elapsed = timed_get(staff_client, url)
        assert response.status_code == 200, url
        assert "Broker unreachable." in response.content.decode(), url
        assert elapsed < LIMIT_SECONDS, (url, elapsed)
