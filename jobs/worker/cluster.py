"""What the broker and the workers say, asked with short timeouts: the monitoring
pages (dashboard, workers) and `GET /api/v1/workers/` read the same answer.

A page or an API call that shows workers or queues must still answer, quickly,
when no worker answers or the broker is down, and say so. Celery's own calls
would retry a dead broker for several seconds and wait a full second per
`inspect` command, so this module checks the broker first with a short connect
timeout (MONITOR_INSPECT_TIMEOUT), asks all workers once (`stats`), then asks
only the workers that answered, returning as soon as each of them has.
"""

import logging
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field

from django.conf import settings

from jobs.models import JobType, Run
from jobsite.celery import app

logger = logging.getLogger(__name__)


@dataclass
class WorkerStatus:
    name: str
    concurrency: int | None = None
    processed: int | None = None
    queues: list[str] = field(default_factory=list)
    active: list[dict] = field(default_factory=list)  # Celery's `inspect active` entries


@dataclass
class ClusterStatus:
    workers: list[WorkerStatus] = field(default_factory=list)
    queue_depths: dict[str, int | None] = field(default_factory=dict)
    broker_error: str = ""
    worker_error: str = ""

    @property
    def broker_ok(self) -> bool:
        return not self.broker_error

    @property
    def no_worker_answered(self) -> bool:
        return self.broker_ok and not self.workers

    @property
    def active_task_ids(self) -> list[str]:
        return [task["id"] for worker in self.workers for task in worker.active if task.get("id")]


def known_queues() -> list[str]:
    """The default queue and every queue a job type names (job types are few)."""
    named = JobType.objects.exclude(queue="").order_by().values_list("queue", flat=True).distinct()[:100]
    return sorted({settings.CELERY_TASK_DEFAULT_QUEUE, *named})


def active_runs(status: ClusterStatus) -> dict[str, Run]:
    """The runs among the workers' active tasks, by task id (a run's task has
    the run's id), with their job types. Other tasks have no entry."""
    ids = []
    for task_id in status.active_task_ids:
        try:
            ids.append(uuid.UUID(task_id))
        except ValueError:
            continue  # not a run: some other task with an id of its own
    if not ids:
        return {}
    return {str(pk): run for pk, run in Run.objects.prefetch_related("job_type").in_bulk(ids).items()}


def _connection(timeout: float):
    options = {
        **(app.conf.broker_transport_options or {}),
        "socket_connect_timeout": timeout,
        "socket_timeout": timeout,
    }
    return app.connection_for_read(transport_options=options, connect_timeout=timeout)


def _queue_depth(conn, queue: str) -> int | None:
    """Messages waiting in `queue` (with Redis, summed over its priority lists)."""
    # A channel per queue: on AMQP a failed passive declare closes its channel.
    with conn.channel() as channel:
        try:
            return channel.queue_declare(queue=queue, passive=True).message_count
        except conn.channel_errors:
            return 0  # never declared, or empty (Redis drops empty lists)


def cluster_status(*, queues: Iterable[str] = (), with_workers: bool = True) -> ClusterStatus:
    """Workers (name, concurrency, queues, active tasks) and the depth of `queues`
    plus every queue a worker consumes. Never raises: problems end up in
    `broker_error` / `worker_error`."""
    timeout = settings.MONITOR_INSPECT_TIMEOUT
    status = ClusterStatus()
    try:
        with _connection(timeout) as conn:
            try:
                conn.ensure_connection(max_retries=0, timeout=timeout)
            except Exception as exc:
                status.broker_error = f"Broker unreachable: {exc}"
                return status
            if with_workers:
                _ask_workers(conn, status, timeout)
            names = sorted({*queues, *(q for worker in status.workers for q in worker.queues)})
            for queue in names:
                status.queue_depths[queue] = _queue_depth(conn, queue)
    except Exception as exc:  # the broker went away half-way
        logger.warning("Could not read the cluster status", exc_info=True)
        status.broker_error = f"Broker unreachable: {exc}"
    return status


def _ask_workers(conn, status: ClusterStatus, timeout: float) -> None:
    stats = app.control.inspect(timeout=timeout, connection=conn).stats() or {}
    if not stats:
        status.worker_error = f"No worker answered within {timeout:g} s."
        return
    names = sorted(stats)
    # Only the workers that answered, and no longer than it takes them all to.
    targeted = app.control.inspect(timeout=timeout, connection=conn, destination=names, limit=len(names))
    queues = targeted.active_queues() or {}
    active = targeted.active() or {}
    for name in names:
        worker_stats = stats[name] or {}
        pool = worker_stats.get("pool") or {}
        total = worker_stats.get("total") or {}
        status.workers.append(
            WorkerStatus(
                name=name,
                concurrency=pool.get("max-concurrency"),
                processed=sum(total.values()) if isinstance(total, dict) else None,
                queues=sorted(q["name"] for q in queues.get(name) or [] if q.get("name")),
                active=list(active.get(name) or []),
            )
        )
