"""Time limits, retries and max_concurrency, through the API, Redis and real workers."""

import time
import uuid
from collections import Counter
from datetime import datetime
from itertools import pairwise

import pytest

from jobs.models import Run
from tests.conftest import WORKFLOW_QUEUE, wait_for_run
from tests.e2e.test_execution import define, trigger
from tests.tasks import concurrency_seen

pytestmark = pytest.mark.postgres  # run on PostgreSQL too (see pyproject.toml)


def test_a_task_that_ignores_its_soft_time_limit_is_killed_at_the_hard_one_and_fails(worker, api):
    define(api, name="stubborn", kind="task", task="tests.stubborn_sleep", timeout_seconds=1)
    define(api, name="echo", kind="task", task="jobs.builtin.echo")
    run = wait_for_run(trigger(api, "stubborn", {"seconds": 60}), timeout=30)
    assert run.status == "failed"
    # Soft limit 1 s, hard limit 2 s later (JOBS_HARD_TIMEOUT_GRACE_SECONDS in tests/settings.py).
    assert run.error == "Timed out after 3 s: it went on past its soft time limit (1 s) and was killed at the hard one"
    assert wait_for_run(trigger(api, "echo")).status == "succeeded"  # the worker replaced the killed process


def test_each_attempt_of_a_retried_run_is_shown_with_its_error_and_times(worker, api, client, admin_user):
    define(api, name="flaky", kind="task", task="jobs.builtin.fail", max_retries=2, retry_backoff_seconds=1)
    run = wait_for_run(trigger(api, "flaky", {"message": "disk full"}), timeout=60)
    assert (run.status, run.attempts) == ("failed", 3)
    history = api.get(f"/api/v1/runs/{run.pk}/").data["attempt_history"]
    assert [(a["attempt"], a["status"], a["error"], a["worker"]) for a in history] == [
        (n, "failed", "BuiltinTaskFailed: disk full", worker.hostname) for n in (1, 2, 3)
    ]
    times = [{key: a[key] and datetime.fromisoformat(a[key]) for key in Run.ATTEMPT_TIMES} for a in history]
    # Exponential backoff: 1 s after the first failure, 2 s after the second; none after the last.
    assert [round((t["retry_at"] - t["ended_at"]).total_seconds()) for t in times[:2]] == [1, 2]
    assert times[2]["retry_at"] is None
    for before, after in pairwise(times):
        assert before["started_at"] < before["ended_at"] <= before["retry_at"] <= after["started_at"]

    client.force_login(admin_user)
    page = client.get(f"/monitor/runs/{run.pk}/").content.decode()
    attempts = page[page.index('id="attempts"') :]
    assert attempts.count("BuiltinTaskFailed: disk full") == 3
    assert attempts.count(worker.hostname) == 3


def test_max_concurrency_holds_and_the_runs_over_it_wait_queued_then_run(workflow_worker, api):
    # The worker has four processes; the job type allows two runs at once.
    define(api, name="limited", kind="task", task="tests.concurrency_probe", queue=WORKFLOW_QUEUE, max_concurrency=2)
    probe = uuid.uuid4().hex
    runs = [trigger(api, "limited", {"probe": probe, "seconds": 0.5}) for _ in range(12)]
    ids = [run.pk for run in runs]
    most_running, waited_queued = 0, False
    deadline = time.monotonic() + 60
    while True:
        statuses = Counter(Run.objects.filter(pk__in=ids).values_list("status", flat=True))
        most_running = max(most_running, statuses["running"])
        waited_queued |= statuses["running"] == 2 and statuses["queued"] > 0
        if statuses["succeeded"] == 12 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert statuses == {"succeeded": 12}
    assert most_running == 2
    assert waited_queued
    seen = concurrency_seen(probe)  # as each task started, how many of them were executing
    assert (len(seen), max(seen)) == (12, 2)
    assert set(Run.objects.filter(pk__in=ids).values_list("attempts", flat=True)) == {1}  # waiting is no attempt
