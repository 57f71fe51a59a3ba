"""celery-director's material: its workflows files imported, its API as a user of a Jobsite role."""

import base64
import time
from io import StringIO
from pathlib import Path

import pytest
import yaml
from django.contrib.auth.models import User
from django.core.management import call_command
from rest_framework.test import APIClient

FIXTURES = Path(__file__).parent.parent / "fixtures" / "director"
DIRECTOR_TESTS_YML = FIXTURES / "director-tests.yml"  # celery-director's test workflows
DEMO_YML = FIXTURES / "demo.yml"
PASSWORD = "director-pw"
API = "/director/api"
ENDED = ("success", "error", "canceled")


def import_workflows(path: Path) -> str:
    out = StringIO()
    call_command("import_workflows", str(path), "--schemas", str(FIXTURES / "schemas"), stdout=out)
    return out.getvalue()


def user_in_role(username: str, role: str) -> User:
    user = User.objects.create_user(username, password=PASSWORD)
    call_command("setup_roles", "--add", username, role, stdout=StringIO())
    return user


def basic(username: str, password: str = PASSWORD) -> APIClient:
    client = APIClient()
    token = base64.b64encode(f"{username}:{password}".encode()).decode()
    client.credentials(HTTP_AUTHORIZATION=f"Basic {token}")
    return client


@pytest.fixture
def director(db) -> APIClient:
    """celery-director's API as a user of the Operators role, signed in with HTTP Basic."""
    user_in_role("ops", "Operators")
    return basic("ops")


@pytest.fixture
def director_tests(db, tmp_path):
    """Import celery-director's test workflows: those named, or all of them (a
    file of 15 workflows and 20 tasks takes seconds to import)."""

    def import_them(*names: str) -> str:
        if not names:
            return import_workflows(DIRECTOR_TESTS_YML)
        workflows = yaml.safe_load(DIRECTOR_TESTS_YML.read_text())
        path = tmp_path / "workflows.yml"
        path.write_text(yaml.safe_dump({name: workflows[name] for name in names}))
        return import_workflows(path)

    return import_them


@pytest.fixture
def demos(db) -> None:
    import_workflows(DEMO_YML)


def start(client: APIClient, fullname: str, payload: dict | None = None, **extra) -> dict:
    project, name = fullname.split(".", 1)
    body = {"project": project, "name": name, "payload": payload or {}, **extra}
    response = client.post(f"{API}/workflows", body, format="json")
    assert response.status_code == 201, response.json()
    return response.json()


def follow(client: APIClient, workflow_id: str, *, tasks: int | None = None, timeout: float = 30) -> dict:
    """GET /workflows/<id> until it has ended and so have its tasks (`tasks` of them: hooks come after)."""
    deadline = time.monotonic() + timeout
    while True:
        data = client.get(f"{API}/workflows/{workflow_id}").json()
        done = data["status"] in ENDED and all(task["status"] in ENDED for task in data["tasks"])
        if done and (tasks is None or len(data["tasks"]) == tasks):
            return data
        assert time.monotonic() < deadline, f"workflow {workflow_id} did not end in {timeout} s: {data}"
        time.sleep(0.2)
