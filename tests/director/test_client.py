"""A celery-director client script (tests/director/client.py), pointed at
Jobsite's /director/api over real HTTP, with a real worker behind it:
it triggers workflows, follows them, relaunches and cancels them."""

import pytest

from tests.director.client import Director, DirectorError
from tests.director.conftest import PASSWORD, user_in_role


@pytest.fixture
def client(live_server, worker, director_tests, demos) -> Director:
    director_tests("example.SIMPLE_GROUP", "example.DELAY_TASK")
    user_in_role("script", "Operators")
    return Director(f"{live_server.url}/director/api", "script", PASSWORD)


def test_a_celery_director_client_triggers_follows_relaunches_and_cancels_workflows(client):
    assert client.ping() == {"message": "pong"}
    assert {d["fullname"] for d in client.definitions()} >= {"example.SIMPLE_GROUP", "demo.PRICES"}

    # Trigger, and follow it to its end.
    started = client.run("demo", "PRICES", {"prices": [3, 4.5]}, comment="from a script")
    assert (started["status"], started["comment"]) == ("pending", "from a script")
    done = client.wait(started["id"])
    assert done["status"] == "success"
    assert done["tasks"][-1]["result"] == {"total": 7.5, "workflow_id": started["id"]}

    # Relaunch it: a new workflow with the same payload and comment, which succeeds as well.
    again = client.relaunch(started["id"])
    assert again["id"] != started["id"]
    assert (again["payload"], again["comment"]) == ({"prices": [3, 4.5]}, "from a script")
    assert client.wait(again["id"])["status"] == "success"

    # Cancel one while its task runs.
    slow = client.run("example", "DELAY_TASK", {})
    assert client.wait(slow["id"], until=("progress",))["tasks"][0]["status"] == "progress"
    assert client.cancel(slow["id"])["status"] == "canceled"
    assert [task["status"] for task in client.wait(slow["id"])["tasks"]] == ["canceled"]
    with pytest.raises(DirectorError) as ended:
        client.cancel(slow["id"])
    assert ended.value.status_code == 409

    # The list, newest first, a page at a time.
    listed = client.workflows(per_page=2, with_payload=False)
    assert [w["id"] for w in listed] == [slow["id"], again["id"]]
    assert "payload" not in listed[0]
    assert [w["id"] for w in client.workflows(page=2, per_page=2)] == [started["id"]]

    # Errors come as celery-director gives them.
    with pytest.raises(DirectorError) as unknown:
        client.run("example", "NOPE", {})
    assert (unknown.value.status_code, unknown.value.body) == (404, {"error": "Workflow example.NOPE not found"})
    with pytest.raises(DirectorError) as wrong_password:
        Director(str(client.http.base_url), "script", "wrong").workflows()
    assert wrong_password.value.status_code == 401
