"""Exponential backoff: how long to wait before trying something again.

One rule for every retry in Jobsite: a run's retries (`JobType.retry_delay`), a
run waiting for a `max_concurrency` slot (jobs/runs/tracking.py) and a
notification's retries (jobs/notifications.py).
"""


def backoff(base: float, attempt: int, cap: float) -> float:
    """The wait after failed attempt number `attempt` (1-based): `base`, doubled at
    each attempt after the first, never more than `cap`."""
    return min(base * 2 ** max(attempt - 1, 0), cap)
