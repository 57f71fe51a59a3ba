"""The one exponential backoff (jobs/core/backoff.py) and the waits it gives each caller."""

from jobs.core.backoff import backoff
from jobs.models import JobType


def test_it_doubles_from_the_base_after_each_attempt_up_to_the_cap():
    assert [backoff(5, attempt, 60) for attempt in range(1, 7)] == [5, 10, 20, 40, 60, 60]
    assert backoff(0.2, 1, 1) == 0.2
    assert backoff(0.2, 3, 1) == 0.8


def test_attempt_zero_or_less_waits_the_base():
    assert backoff(5, 0, 60) == 5


def test_a_run_retries_after_its_job_types_backoff_capped_by_the_setting(settings):
    settings.JOBS_RETRY_BACKOFF_MAX_SECONDS = 100
    job_type = JobType(retry_backoff_seconds=30)
    assert [job_type.retry_delay(attempt) for attempt in (1, 2, 3, 4)] == [30, 60, 100, 100]
