"""GET /metrics: Jobsite's numbers in Prometheus's text format, for staff
sessions that may view runs, or `Authorization: Bearer <JOBS_METRICS_TOKEN>`;
403 otherwise (not a login redirect: a scraper does not follow one).

Computed at each scrape by a custom collector, cheaply whatever the number of
runs: the counters and histograms are read from RunTally (a few rows per job
type), after folding into it the runs ended since the last scrape
(jobs/runs/metrics.py); the gauges count the active runs only (the status
index); the queue lengths and workers come from the broker with
MONITOR_INSPECT_TIMEOUT (jobs/worker/cluster.py). The families are listed in
docs/operations.md ("Metrics"); docs/grafana-dashboard.json charts them.
"""

import hmac
from collections import defaultdict
from collections.abc import Iterator

from django.conf import settings
from django.db.models import Count
from django.http import HttpRequest, HttpResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

from jobs.core.tallies import DURATION_BUCKETS, LATENESS_BUCKETS, QUEUE_WAIT_BUCKETS, SUM, cumulative
from jobs.models import JobType, Run, RunTally
from jobs.runs.metrics import tallies_fold
from jobs.worker.cluster import cluster_status, known_queues

HISTOGRAMS = {
    RunTally.Metric.DURATION: (
        "jobsite_run_duration_seconds",
        "How long runs took, from their last attempt's start to their end, counted as they end.",
        DURATION_BUCKETS,
    ),
    RunTally.Metric.QUEUE_WAIT: (
        "jobsite_run_queue_wait_seconds",
        "How long runs waited from due (triggered, or released at their time) to their first attempt's start, "
        "counted as they end.",
        QUEUE_WAIT_BUCKETS,
    ),
    RunTally.Metric.LATENESS: (
        "jobsite_schedule_lateness_seconds",
        "How late schedule runs were released after their tick, counted as they end.",
        LATENESS_BUCKETS,
    ),
}


class JobsiteCollector(Collector):
    """Every family at each scrape, read from the database and the broker."""

    def collect(self) -> Iterator[Metric]:
        yield from self._tallies()
        yield from self._active_runs()
        yield from self._cluster()

    def _tallies(self) -> Iterator[Metric]:
        tallies_fold()  # the runs that ended since the last scrape
        names = dict(JobType.objects.values_list("pk", "name"))
        runs = CounterMetricFamily("jobsite_runs", "Runs ended, by job type and status.", labels=["job_type", "status"])
        failures = CounterMetricFamily(
            "jobsite_notification_failures",
            "Run notifications that failed for good, by job type and channel (none: nobody to notify).",
            labels=["job_type", "channel"],
        )
        histograms: dict[str, dict[int, dict[str, float]]] = defaultdict(lambda: defaultdict(dict))
        for metric, job_type, key, value in RunTally.objects.order_by("job_type", "metric", "key").values_list(
            "metric", "job_type_id", "key", "value"
        ):
            name = names.get(job_type, str(job_type))
            if metric == RunTally.Metric.RUNS:
                runs.add_metric([name, key], value)
            elif metric == RunTally.Metric.NOTIFY_FAILED:
                failures.add_metric([name, key], value)
            elif metric in HISTOGRAMS:
                histograms[metric][job_type][key] = value
        yield runs
        yield failures
        for metric, (family, help_text, bounds) in HISTOGRAMS.items():
            histogram = HistogramMetricFamily(family, help_text, labels=["job_type"])
            for job_type, counts in histograms[metric].items():
                total = counts.pop(SUM, 0.0)
                histogram.add_metric([names.get(job_type, str(job_type))], cumulative(counts, bounds), sum_value=total)
            yield histogram

    def _active_runs(self) -> Iterator[Metric]:
        active = GaugeMetricFamily("jobsite_runs_active", "Runs running now, by queue.", labels=["queue"])
        queued = GaugeMetricFamily(
            "jobsite_runs_queued", "Runs waiting for a worker (pending, queued, retrying), by queue.", labels=["queue"]
        )
        counts: dict[tuple[str, str], int] = defaultdict(int)
        rows = (
            Run.objects.active()
            .exclude(job_type__kind=JobType.Kind.WORKFLOW)  # a workflow run waits for its steps, on no queue
            .order_by()
            .values("job_type__queue", "parent__job_type__queue", "status")
            .annotate(n=Count("pk"))
        )
        for row in rows:
            # As jobs/runs/executors.py's queue_of: the job type's, else its workflow's, else the default.
            queue = row["job_type__queue"] or row["parent__job_type__queue"] or settings.CELERY_TASK_DEFAULT_QUEUE
            counts[queue, "active" if row["status"] == Run.Status.RUNNING else "queued"] += row["n"]
        # Every known queue, 0 when idle, so that a chart shows a line rather than a gap.
        for queue in sorted({*known_queues(), *(queue for queue, _ in counts)}):
            active.add_metric([queue], counts.get((queue, "active"), 0))
            queued.add_metric([queue], counts.get((queue, "queued"), 0))
        yield active
        yield queued

    def _cluster(self) -> Iterator[Metric]:
        status = cluster_status(queues=known_queues())
        broker = GaugeMetricFamily("jobsite_broker_up", "1 when the broker answered this scrape, else 0.")
        broker.add_metric([], 1 if status.broker_ok else 0)
        workers = GaugeMetricFamily(
            "jobsite_workers_online",
            f"Workers that answered within MONITOR_INSPECT_TIMEOUT ({settings.MONITOR_INSPECT_TIMEOUT:g} s).",
        )
        workers.add_metric([], len(status.workers))
        lengths = GaugeMetricFamily(
            "jobsite_queue_length", "Messages waiting in the broker, by queue (all priorities).", labels=["queue"]
        )
        for queue, depth in sorted(status.queue_depths.items()):
            if depth is not None:
                lengths.add_metric([queue], depth)
        yield broker
        yield workers
        yield lengths


def _allowed(request: HttpRequest) -> bool:
    user = request.user
    if user.is_active and user.is_staff and user.has_perm("jobs.view_run"):  # who may see runs, as for Flower
        return True
    token = settings.JOBS_METRICS_TOKEN
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    return bool(token) and scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


@never_cache
@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    """One scrape."""
    if not _allowed(request):
        return HttpResponse(
            "Forbidden: sign in as staff who may view runs, or send Authorization: Bearer <JOBS_METRICS_TOKEN>.\n",
            status=403,
            content_type="text/plain; charset=utf-8",
        )
    registry = CollectorRegistry(auto_describe=False)
    registry.register(JobsiteCollector())
    # The format the scraper asks for (Accept): Prometheus's text format, or OpenMetrics.
    encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
    return HttpResponse(encoder(registry), content_type=content_type)
