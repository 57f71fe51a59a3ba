"""A run's message, as Jobsite publishes it in a batch (jobs/runs/executors.py,
send_message), is the message Celery's own `app.send_task` sends for the same
arguments: compared field by field in Redis, so that a Celery upgrade that
changes what send_task does fails here, not in a worker."""

import base64
import json
import uuid

import pytest
from celery._state import _task_stack

from jobs.runs.executors import Publisher, send_message
from jobsite.celery import app

pytestmark = pytest.mark.django_db


# A task this process knows, with options of its own (a worker knows the user's
# tasks; send_task takes their options under the ones given, and their expiry).
@app.task(name="tests.publish.preset", time_limit=99, soft_time_limit=90, serializer="json", acks_late=True)
def preset():
    pass


@app.task(name="tests.publish.expiring", expires=600)
def expiring():
    pass


@pytest.fixture
def broker(redis_server, settings):
    settings.CELERY_BROKER_URL = redis_server


def waiting(queue: str) -> dict:
    """The one message waiting in a queue, its body decoded (kombu keeps one list
    per priority step: the queue's name, a separator, the step)."""
    with app.connection_for_write() as conn:
        client = conn.default_channel.client
        (name,) = [name for name in client.keys(f"{queue}*") if name.split(b"\x06")[0] == queue.encode()]
        (raw,) = client.lrange(name, 0, -1)
        client.delete(name)
    message = json.loads(raw)
    message["body"] = json.loads(base64.b64decode(message["body"]))
    return message


def comparable(message: dict, queue: str) -> dict:
    """What must be the same: all but the delivery tag, and the queue named where it was sent."""
    properties = dict(message["properties"])
    assert properties.pop("delivery_tag")
    info = properties.pop("delivery_info")
    assert info["routing_key"] == queue
    headers = dict(message["headers"])
    for timed in ("eta", "expires"):  # a countdown's, an expiry's: each timed when sent
        headers.pop(timed, None)
    properties.pop("expiration", None)
    return {**message, "headers": headers, "properties": properties}


@pytest.mark.parametrize(
    "name, options",
    [
        ("jobs.builtin.echo", {"priority": None, "countdown": None}),
        ("jobs.builtin.echo", {"priority": 7, "countdown": None}),
        ("jobs.builtin.echo", {"priority": None, "countdown": 30}),
        # As runs_publish sends a batch's: without kombu's retry of each message.
        ("jobs.builtin.echo", {"priority": None, "countdown": None, "retry": False}),
        ("jobs.builtin.echo", {"priority": None, "countdown": None, "retry": True}),
        ("tests.publish.preset", {"priority": None, "countdown": None}),
        ("tests.publish.expiring", {"priority": None, "countdown": None}),
    ],
)
def test_a_batched_message_is_the_message_send_task_sends(broker, name, options):
    task_id = str(uuid.uuid4())
    retry = options.pop("retry", None)  # the publisher's, for all its messages
    arguments = {
        "args": [],
        "kwargs": {"customer": 42, "day": "2026-12-03"},
        "time_limit": 330,
        "soft_time_limit": 300,
        "headers": {"jobsite_run": True, "jobsite_notify_on": "never", "jobsite_parent": ""},
        "argsrepr": "()",
        "kwargsrepr": "{'customer': 42, 'day': '2026-12-03'}",
        **options,
    }
    ours, celerys = f"ours-{task_id}", f"celerys-{task_id}"
    with app.producer_or_acquire() as producer:
        for queue in (ours, celerys):
            producer.maybe_declare(app.amqp.queues[queue])
        send_message(Publisher(producer, retry=retry), name, task_id=task_id, queue=ours, declare=[], **arguments)
        app.send_task(name, task_id=task_id, queue=celerys, producer=producer, declare=[], retry=retry, **arguments)
    sent, expected = waiting(ours), waiting(celerys)
    assert sent["headers"]["id"] == task_id and sent["body"][1] == arguments["kwargs"]
    assert sent["headers"]["timelimit"] == [330, 300]
    assert comparable(sent, ours) == comparable(expected, celerys)
    if options["countdown"]:
        assert sent["headers"]["eta"] and expected["headers"]["eta"]


def test_published_from_a_running_task_it_names_it_as_send_task_does(broker):
    # A workflow's next step is published by the worker that ended the last one:
    # Celery names that task as the message's parent and its root as the root.
    running = app.tasks["celery.backend_cleanup"]  # any task: the dispatcher publishes from one
    running.push_request(id="the-last-step", root_id="the-first-step", delivery_info={}, called_directly=False)
    _task_stack.push(running)
    try:
        messages = {}
        with app.producer_or_acquire() as producer:
            for queue in ("ours-in-a-task", "celerys-in-a-task"):
                producer.maybe_declare(app.amqp.queues[queue])
            task_id = str(uuid.uuid4())
            arguments = {"args": [], "kwargs": {}, "time_limit": 330, "soft_time_limit": 300, "declare": []}
            send_message(Publisher(producer), "jobs.builtin.echo", task_id=task_id, queue="ours-in-a-task", **arguments)
            app.send_task(
                "jobs.builtin.echo", task_id=task_id, queue="celerys-in-a-task", producer=producer, **arguments
            )
        for queue in ("ours-in-a-task", "celerys-in-a-task"):
            messages[queue] = comparable(waiting(queue), queue)
        # Both also added the message to the running task's children (its result's).
        assert [child.id for child in running.request.children] == [task_id, task_id]
    finally:
        _task_stack.pop()
        running.pop_request()
    assert messages["ours-in-a-task"]["headers"]["parent_id"] == "the-last-step"
    assert messages["ours-in-a-task"]["headers"]["root_id"] == "the-first-step"
    assert messages["ours-in-a-task"] == messages["celerys-in-a-task"]
