"""Bulk triggers end to end: API → Redis → real workers → the database, the
publish's pipelining seen at the Redis client, and a Redis that refuses writes
in the middle of a bulk publish (with a real beat, whose sweeper publishes
again what Redis did not take)."""

import contextlib

import pytest
import redis

from jobs.models import Run
from tests.conftest import WORKFLOW_QUEUE
from tests.e2e.test_execution import define
from tests.e2e.test_faults import wait_for_runs
from tests.tasks import calls

pytestmark = pytest.mark.postgres  # run on PostgreSQL too (see pyproject.toml)


def bulk(api, name: str, params: list[dict]) -> list[dict]:
    response = api.post(f"/api/v1/job-types/{name}/runs/bulk/", {"params": params}, format="json")
    assert response.status_code == 201, response.data
    assert response.data["count"] == len(params)
    return response.data["runs"]


def runs_of(answer: list[dict]) -> list[Run]:
    ids = [run["id"] for run in answer]
    by_id = {str(run.pk): run for run in Run.objects.filter(pk__in=ids)}
    return [by_id[pk] for pk in ids]


class Pipelines:
    """The pipelines this process sends to Redis that carry messages (LPUSHes
    to a queue), each as its number of messages (`sizes`); `before(number)`, if
    set, is called before the real send of each (a test's fault). Redis' own
    Pipeline.execute does the sending. (kombu declares a queue the first time it
    publishes to it, in pipelines of its own: those are not counted.)"""

    def __init__(self, monkeypatch):
        self.sizes: list[int] = []
        self.before = None
        real = redis.client.Pipeline.execute

        def execute(pipeline, *args, **kwargs):
            commands = [str(command_args[0]).upper() for command_args, _ in pipeline.command_stack]
            if "LPUSH" in commands:
                self.sizes.append(commands.count("LPUSH"))
                if self.before:
                    self.before(len(self.sizes))
            return real(pipeline, *args, **kwargs)

        monkeypatch.setattr(redis.client.Pipeline, "execute", execute)


@pytest.fixture
def pipelines(monkeypatch) -> Pipelines:
    return Pipelines(monkeypatch)


@pytest.fixture
def broker(redis_server):
    client = redis.Redis.from_url(redis_server)
    yield client
    client.config_set("maxmemory", 0)  # whatever the test did


def test_runs_of_a_bulk_trigger_all_run_on_the_worker_once_and_succeed(worker, api):
    define(api, name="counted", kind="task", task="tests.count_calls")
    runs = runs_of(bulk(api, "counted", [{"i": i} for i in range(40)]))
    runs = wait_for_runs(runs, timeout=60)
    assert {run.status for run in runs} == {"succeeded"}
    assert [run.result["i"] for run in runs] == list(range(40))
    assert [calls(run.pk) for run in runs] == [1] * 40
    assert {(run.trigger, run.attempts) for run in runs} == {("api", 1)}


def test_workflow_runs_of_a_bulk_trigger_each_run_their_steps(workflow_worker, api):
    define(api, name="counted", kind="task", task="tests.count_calls")
    define(api, name="echo", kind="task", task="jobs.builtin.echo")
    define(
        api,
        name="pair",
        kind="workflow",
        queue=WORKFLOW_QUEUE,
        steps=[
            {"name": "a", "job_type": "counted", "params": {"n": "{{ params.n }}"}},
            {"name": "b", "job_type": "echo", "params": {"from_a": "{{ steps.a.result.n }}"}, "depends_on": ["a"]},
        ],
    )
    runs = wait_for_runs(runs_of(bulk(api, "pair", [{"n": n} for n in range(5)])), timeout=60)
    assert {run.status for run in runs} == {"succeeded"}
    for n, run in enumerate(runs):
        steps = {step.step_name: step for step in run.children.all()}
        assert calls(steps["a"].pk) == 1
        assert steps["b"].result == {"from_a": n}


def test_a_bulk_publish_sends_a_small_chunk_first_then_chunks_of_the_batch_size(
    transactional_db, api, broker, pipelines, settings
):
    settings.JOBS_PUBLISH_BATCH_SIZE = 100
    queue = "bulk-nobody-listens"  # the messages stay in Redis, to be counted
    define(api, name="parked", kind="task", task="tests.count_calls", queue=queue)
    try:
        pipelines.sizes.clear()
        answer = bulk(api, "parked", [{"i": i} for i in range(300)])
        # One round trip a chunk: 32 messages first (the workers start on them while
        # the rest are built), then twice as many each time, up to JOBS_PUBLISH_BATCH_SIZE.
        assert pipelines.sizes == [32, 64, 100, 100, 4]
        messages = broker.lrange(queue, 0, -1)
        assert len(messages) == 300
        assert {run["status"] for run in answer} == {"queued"}
        assert Run.objects.filter(status="queued").count() == 300
    finally:
        broker.delete(queue)


def test_a_redis_outage_in_the_middle_of_a_bulk_publish_loses_no_run_and_runs_none_twice(
    start_beat, start_worker, api, broker, pipelines, settings
):
    settings.JOBS_PUBLISH_BATCH_SIZE = 10
    queue = "bulk-outage"  # its worker starts once Redis takes writes again
    start_beat()  # its sweeper publishes again the runs Redis did not take
    define(api, name="counted", kind="task", task="tests.count_calls", queue=queue)

    def refuse_writes_from_the_third(number: int) -> None:
        if number == 3:  # a real Redis out of memory: it refuses every write (noeviction)
            broker.config_set("maxmemory-policy", "noeviction")
            broker.config_set("maxmemory", 1)

    pipelines.before = refuse_writes_from_the_third
    pipelines.sizes.clear()
    with contextlib.ExitStack() as restore:
        restore.callback(broker.config_set, "maxmemory", 0)
        answer = bulk(api, "counted", [{"i": i} for i in range(50)])
        pipelines.before = None
        # Two chunks reached Redis; the third failed, and the rest were not tried.
        assert [run["status"] for run in answer] == ["queued"] * 20 + ["pending"] * 30
        assert broker.llen(queue) == 20
    assert Run.objects.filter(status="pending").count() == 30

    start_worker(2, queue)
    runs = wait_for_runs(runs_of(answer), timeout=90)
    assert {run.status for run in runs} == {"succeeded"}
    assert sorted(run.result["i"] for run in runs) == list(range(50))
    assert [calls(run.pk) for run in runs] == [1] * 50
