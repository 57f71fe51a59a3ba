"""Where a run's message is, and which queues the workers consume, asked with
short timeouts.

A message Jobsite published is either waiting in Redis, in its queue's lists,
or delivered to a worker: with Redis, a delivered message stays in the
`unacked` hash (its delivery time in `unacked_index`) until the worker
acknowledges it, and the worker also holds it in memory (reserved, scheduled
for a countdown, or active). The key names are kombu's Redis transport's own,
read from its channel: a queue is one list per priority step
(`_q_for_pri`). With another broker nothing here can tell, and says so (None).
Used by the lost-message check (jobs/runs/lost.py), the stuck check
(jobs/runs/stuck.py) and the run pages and API (queues no worker consumes).
"""

import json
import logging
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from django.conf import settings
from django.core.cache import cache

from jobs.models import JobType, Run
from jobs.runs.executors import queue_of
from jobsite.celery import app

logger = logging.getLogger(__name__)

# Messages read from Redis at a time, and at most per queue and per look: a
# queue with a longer backlog is not looked through (its runs count as found).
SCAN_CHUNK = 1000
SCAN_LIMIT = 100_000
CONSUMERS_CACHE_KEY = "jobsite:queue-consumers"
CONSUMERS_CACHE_SECONDS = 10


def _message_id(raw: bytes | str) -> str | None:
    """The task id of a message as Redis keeps it: in a queue's list the
    message itself, in the unacked hash [message, exchange, routing key]."""
    try:
        payload = json.loads(raw)
        if isinstance(payload, list):
            payload = payload[0]
        return payload["headers"]["id"]
    except (ValueError, TypeError, LookupError):
        return None  # not a Celery task message (protocol 2)


@contextmanager
def _connection(read_timeout: float) -> Iterator:
    """A broker connection that gives up after MONITOR_INSPECT_TIMEOUT when the
    broker does not accept it (raises), and after `read_timeout` when it does not answer."""
    timeout = settings.MONITOR_INSPECT_TIMEOUT
    options = {
        **(app.conf.broker_transport_options or {}),
        "socket_connect_timeout": timeout,
        "socket_timeout": read_timeout,
    }
    with app.connection_for_read(transport_options=options, connect_timeout=timeout) as conn:
        conn.ensure_connection(max_retries=0, timeout=timeout)
        yield conn


@contextmanager
def _redis_channel() -> Iterator:
    """A channel of kombu's Redis transport, or None when the broker is another one."""
    # Reading a long list takes longer than a page may wait.
    with _connection(read_timeout=max(settings.MONITOR_INSPECT_TIMEOUT, 5)) as conn:
        yield conn.default_channel if conn.transport.driver_type == "redis" else None


def _queue_keys(channel, queue: str) -> list[str]:
    """The lists of `queue`, one per priority step (kombu's Redis transport names them)."""
    return list(dict.fromkeys(channel._q_for_pri(queue, step) for step in channel.priority_steps))


def _ids_in_list(client, key: str, wanted: set[str]) -> set[str] | None:
    """Which of `wanted` have a message in a list; None if it is longer than SCAN_LIMIT."""
    if not wanted:
        return set()
    if client.llen(key) > SCAN_LIMIT:
        return None
    found: set[str] = set()
    # Newer messages are pushed on the left, which moves the ones not read yet
    # further right: read left to right, a message is seen twice rather than
    # missed. (Workers pop on the right: a message popped before it is read is
    # in the unacked hash, read after the lists.)
    for start in range(0, SCAN_LIMIT, SCAN_CHUNK):
        chunk = client.lrange(key, start, start + SCAN_CHUNK - 1)
        found.update(task_id for task_id in map(_message_id, chunk) if task_id in wanted)
        if len(chunk) < SCAN_CHUNK or found == wanted:
            break
    return found


def messages_in_redis(ids_by_queue: dict[str, set[str]]) -> set[str] | None:
    """Which of these task ids (by the queue each was published to) have a
    message in Redis: waiting in the queue (any priority), or delivered to a
    worker and not acknowledged yet. None when the broker is not Redis or did
    not answer. The ids in a queue too long to look through count as found.

    Lists first, the unacked hash second: a message that a worker takes
    meanwhile moves from the first to the second, so it is not missed.
    """
    wanted = set().union(*ids_by_queue.values()) if ids_by_queue else set()
    if not wanted:
        return set()
    try:
        with _redis_channel() as channel:
            if channel is None:
                return None
            client = channel.client
            found: set[str] = set()
            for queue, ids in ids_by_queue.items():
                for key in _queue_keys(channel, queue):
                    in_list = _ids_in_list(client, key, ids - found)
                    if in_list is None:
                        logger.warning("Queue %r holds more than %d messages: not looking for lost ones in it",
                                       queue, SCAN_LIMIT)  # fmt: skip
                        found |= ids
                        break
                    found |= in_list
            for _, raw in client.hscan_iter(channel.unacked_key, count=SCAN_CHUNK):
                if found == wanted:
                    break
                task_id = _message_id(raw)
                if task_id in wanted:
                    found.add(task_id)
            return found
    except Exception:
        logger.warning("Could not read the messages in Redis", exc_info=True)
        return None


def forget_delivered(task_id: str) -> int:
    """Drop the messages of `task_id` that Redis holds as delivered to a worker
    and not acknowledged (a worker that is gone), so that Redis does not hand
    them out again once CELERY_VISIBILITY_TIMEOUT has passed. How many were
    dropped; 0 when the broker is not Redis or did not answer."""
    try:
        with _redis_channel() as channel:
            if channel is None:
                return 0
            client = channel.client
            tags = [tag for tag, raw in client.hscan_iter(channel.unacked_key, count=SCAN_CHUNK)
                    if _message_id(raw) == task_id]  # fmt: skip
            if tags:
                # As kombu acknowledges a message: out of the index and the hash.
                client.pipeline().zrem(channel.unacked_index_key, *tags).hdel(channel.unacked_key, *tags).execute()
            return len(tags)
    except Exception:
        logger.warning("Could not drop the unacknowledged messages of %s", task_id, exc_info=True)
        return 0


def held_by_workers(task_ids: Iterable[str]) -> set[str] | None:
    """Which of these tasks a worker that answers holds (reserved, scheduled for
    a countdown, or active); None if the workers could not be asked."""
    task_ids = list(task_ids)
    if not task_ids:
        return set()
    try:
        replies = app.control.inspect(timeout=settings.MONITOR_INSPECT_TIMEOUT).query_task(*task_ids) or {}
    except Exception:
        logger.warning("Could not ask the workers which tasks they hold", exc_info=True)
        return None
    return {task_id for tasks in replies.values() for task_id in tasks or {}}


def queue_consumers() -> set[str] | None:
    """The queues that the workers that answer consume, as asked at most every
    CONSUMERS_CACHE_SECONDS; None when the broker could not be asked. Asking
    waits MONITOR_INSPECT_TIMEOUT for the workers' answers, as the workers page does."""
    consumers = cache.get(CONSUMERS_CACHE_KEY)
    if consumers is not None:
        return set(consumers)
    timeout = settings.MONITOR_INSPECT_TIMEOUT
    try:
        with _connection(read_timeout=timeout) as conn:
            replies = app.control.inspect(timeout=timeout, connection=conn).active_queues() or {}
    except Exception:
        logger.warning("Could not ask the workers which queues they consume", exc_info=True)
        return None
    consumers = sorted({queue["name"] for queues in replies.values() for queue in queues or [] if queue.get("name")})
    cache.set(CONSUMERS_CACHE_KEY, consumers, CONSUMERS_CACHE_SECONDS)
    return set(consumers)


# A run in these waits for a worker to take its message.
WAITING_FOR_A_WORKER = (Run.Status.PENDING, Run.Status.QUEUED, Run.Status.RETRYING)


def queue_warning(run: Run) -> str | None:
    """What to tell about a run that waits on a queue no worker consumes, or
    None (it does not wait for a worker, or the workers could not be asked).
    Reads `run.parent.job_type` for a workflow's step."""
    if run.status not in WAITING_FOR_A_WORKER or run.job_type.kind == JobType.Kind.WORKFLOW:
        return None
    consumers = queue_consumers()
    queue = queue_of(run)
    if consumers is None or queue in consumers:
        return None
    return (
        f"No worker consumes queue '{queue}': the run waits until one does "
        f"(start a worker with `celery -A jobsite worker -Q {queue}`, or add the queue to one)."
    )
