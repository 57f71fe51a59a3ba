"""Tasks that only the benchmarks load (JOBS_TASK_MODULES=bench.tasks)."""

import json
import os
import threading
import time
from collections import deque

import redis
from celery import shared_task
from celery.signals import after_task_publish
from django.conf import settings

_redis = None


@shared_task(name="bench.record", ignore_result=True)
def record(name: str) -> None:
    """Note when a stock beat entry fired: its name and the time it ran."""
    global _redis
    _redis = _redis or redis.Redis.from_url(settings.REDIS_URL)
    _redis.rpush("bench:fires", json.dumps([name, time.time()]))


@shared_task(name="bench.started_at")
def started_at() -> float:
    """When the worker started this task (epoch seconds): publish-to-start latency."""
    return time.time()


@shared_task(bind=True, name="bench.count", ignore_result=True)
def count(self, **_) -> None:
    """Count the executions of this run's task (bench/broker_outage.py)."""
    global _redis
    _redis = _redis or redis.Redis.from_url(settings.REDIS_URL)
    _redis.incr(f"bench:count:{self.request.id}")


PEERS_STEPS = "bench:peers:steps"


@shared_task(name="bench.peer_step")
def peer_step(tag: str = "", step: int = 1, after: int | None = None, **_) -> dict:
    """A step of bench/peers.py's workflows: notes in Redis when its body started and
    ended (epoch seconds) and returns a small dict, whose `step` the next step reads."""
    global _redis
    started = time.time()
    _redis = _redis or redis.Redis.from_url(settings.REDIS_URL)
    result = {"step": step} if after is None else {"step": step, "after": after}
    _redis.rpush(PEERS_STEPS, json.dumps([tag, step, started, time.time()]))
    return result


@shared_task(name="bench.log10")
def log10() -> dict:
    """A no-op that logs 10 lines at WARNING, as a chatty task would (bench/throughput.py --logs)."""
    import logging

    log = logging.getLogger("bench.log10")
    for number in range(10):
        log.warning("step %d of 10: %s", number + 1, "done")
    return {}


def record_publishes(by: str) -> None:
    """Note when this process published each task message (Celery's
    `after_task_publish` signal), for bench/schedules.py, which sets
    BENCH_RECORD_PUBLISH: in stock beat's process `name` (each `bench.record`
    message, by its entry's name), in Jobsite's dispatcher `id` (every message,
    by its task id: the run's id). Jobsite's `send_message` sends through
    `amqp.send_task_message` as `send_task` does, which fires the signal, so
    both modes note the same moment (in a pipelined publish, as the message
    joins its batch, flushed to Redis with the rest of it at most a few
    milliseconds later). Kept in memory and pushed to Redis twice a second by
    a thread of each process (a worker's pool forks after this module is
    imported), so that noting it adds no round trip to the publishing."""
    published: deque[str] = deque()  # appended by the publisher, emptied by the pusher: both thread-safe
    pusher_of: list[int] = []  # the process whose pusher runs

    def push() -> None:
        client = redis.Redis.from_url(settings.REDIS_URL)
        while True:
            time.sleep(0.5)
            batch = [published.popleft() for _ in range(len(published))]
            if batch:
                client.rpush("bench:published", *batch)

    @after_task_publish.connect(weak=False)
    def noted(sender=None, body=None, headers=None, **_) -> None:
        if by == "name" and sender != "bench.record":
            return
        if pusher_of != [os.getpid()]:  # the first message of this process (a fresh fork)
            pusher_of[:] = [os.getpid()]
            published.clear()
            threading.Thread(target=push, name="bench-publishes", daemon=True).start()
        key = body[1].get("name") if by == "name" else headers["id"]
        published.append(json.dumps([key, time.time()]))


if os.environ.get("BENCH_RECORD_PUBLISH") in ("name", "id"):
    record_publishes(os.environ["BENCH_RECORD_PUBLISH"])
