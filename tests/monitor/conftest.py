"""Fixtures for the monitoring pages: logged-in clients and a real Flower."""

import os
import secrets
import socket
import subprocess
import sys
import time

import httpx
import pytest

from tests.conftest import ROOT, _log_tail


@pytest.fixture
def staff_client(client, admin_user):
    client.force_login(admin_user)
    return client


@pytest.fixture
def operator_client(client, operator):
    client.force_login(operator)
    return client


@pytest.fixture
def viewer_client(client, viewer):
    client.force_login(viewer)
    return client


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Flower:
    """A real `celery flower` on loopback, with basic auth, against the tests' Redis."""

    def __init__(self, log):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/flower"
        self.basic_auth = f"flower:{secrets.token_urlsafe(16)}"
        self.log = log
        command = [sys.executable, "-m", "celery", "-A", "jobsite", "flower", "--address=127.0.0.1"]
        command += [f"--port={self.port}", "--url_prefix=flower", f"--basic_auth={self.basic_auth}"]
        env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings"}
        self.process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            self._wait_until_ready()
        except BaseException:
            self.stop()
            raise

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + 60
        user, password = self.basic_auth.split(":", 1)
        while True:
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"Flower did not start:\n{_log_tail(self.log)}")
            try:
                if httpx.get(f"{self.url}/healthcheck", auth=(user, password), timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@pytest.fixture(scope="session")
def flower_server(redis_server, tmp_path_factory):
    flower = Flower(tmp_path_factory.mktemp("flower") / "flower.log")
    yield flower
    flower.stop()


@pytest.fixture
def flower(flower_server, settings):
    """Flower, with the web process's settings pointing at it."""
    settings.FLOWER_URL = flower_server.url
    settings.FLOWER_BASIC_AUTH = flower_server.basic_auth
    return flower_server
