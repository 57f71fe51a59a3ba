"""The histogram buckets of the counts Jobsite keeps of ended runs (RunTally
in jobs/models.py, filled by jobs/runs/metrics.py), read by GET /metrics
(jobs/monitor/metrics.py).

A histogram is stored as one count per bucket (not cumulative: a run adds 1 to
one row) plus its sum; the endpoint adds the buckets up as Prometheus wants
them. The bounds are part of the stored data: change them and the old rows
are folded into the new bucket above them, so keep them stable.
"""

import math

from prometheus_client.utils import floatToGoString

INF = "+Inf"
SUM = "sum"

# Seconds. Runs last from milliseconds (a task) to hours (a nightly export).
DURATION_BUCKETS = (0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 1800, 3600, 3 * 3600, 6 * 3600, 24 * 3600)
# From due (triggered, or released at its time) to the first attempt's start.
QUEUE_WAIT_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600)
# From a schedule's tick to the run's release: the dispatcher's lateness.
LATENESS_BUCKETS = (0.1, 0.5, 1, 2, 5, 10, 30, 60, 300)


def bound_key(bound: float) -> str:
    """How a bucket's upper bound is written, in the table and in `le` (as Prometheus writes it: 5.0, +Inf)."""
    return floatToGoString(bound)


def bucket_key(seconds: float, bounds: tuple[float, ...]) -> str:
    """The bucket a value falls in: the smallest bound at or above it."""
    for bound in bounds:
        if seconds <= bound:
            return bound_key(bound)
    return INF


def cumulative(counts: dict[str, float], bounds: tuple[float, ...]) -> list[tuple[str, float]]:
    """Per-bucket counts (keys as bound_key writes them) as Prometheus's
    cumulative buckets, `+Inf` last; a key that is no bound any more counts in
    the bucket above it."""
    edges = [float(bound) for bound in bounds] + [math.inf]
    per_edge = [0.0] * len(edges)
    for key, count in counts.items():
        value = math.inf if key == INF else float(key)
        per_edge[next(i for i, edge in enumerate(edges) if value <= edge)] += count
    total, buckets = 0.0, []
    for edge, count in zip(edges, per_edge, strict=True):
        total += count
        buckets.append((bound_key(edge), total))
    return buckets
