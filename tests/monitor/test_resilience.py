"""Pages that ask Celery still render, and say so, when no worker or broker answers.

The requirement is "within 2 seconds"; the tests allow 3.5 s because the
machine is shared and busy (2 cores, other test runs). bench/ measures speed.
"""

import socket
import threading
import time

import httpx
import pytest

from jobsite.celery import app
from tests.conftest import Worker, _log_tail, free_port
from tests.factories import RunFactory

LIMIT_SECONDS = 3.5
PAGES = ["/monitor/", "/monitor/workers/"]


def timed_get(client, url):
    started = time.monotonic()
    response = client.get(url)
    return response, time.monotonic() - started


def test_with_the_worker_stopped_the_pages_render_quickly_and_say_no_worker_answers(
    web_on_own_broker, staff_client, tmp_path
):
    web = web_on_own_broker
    RunFactory(status="queued")
    session = httpx.Client(base_url=web.url, cookies={"sessionid": staff_client.cookies["sessionid"].value})
    worker = Worker(tmp_path / "worker.log", broker_url=web.broker_url)
    prefix = worker.name.split("@")[0] + "@"
    try:
        deadline = time.monotonic() + 60
        while prefix not in session.get("/monitor/workers/", timeout=10).text:
            assert worker.process.poll() is None and time.monotonic() < deadline, _log_tail(worker.log)
            time.sleep(0.5)
        assert prefix in session.get("/monitor/", timeout=10).text
    finally:
        worker.stop()

    for url in PAGES:
        started = time.monotonic()
        response = session.get(url, timeout=10)
        elapsed = time.monotonic() - started
        assert response.status_code == 200, url
        assert "No worker answered." in response.text, url
        assert prefix not in response.text, url
        assert elapsed < LIMIT_SECONDS, (url, elapsed)
    # The database part of the dashboard is still there.
    assert 'data-run="' in session.get("/monitor/", timeout=10).text


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
