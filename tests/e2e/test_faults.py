"""Faults, for real: Redis stopped, workers killed or stopped, runs whose worker is gone.

Every test here goes through a real Redis, real workers and (where the
sweeper or the stuck check must act) a real beat. Timeouts are shortened in
tests/settings.py and in the environment of the workers started here.
"""

import json
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
import redis
from django import db
from django.conf import settings
from django.utils import timezone

from jobs.models import Run
from jobsite.celery import app
from tests.conftest import ROOT, _database_url, answered_once_back, wait_for_ping, wait_for_run, wait_until
from tests.e2e.test_execution import define, trigger
from tests.factories import JobTypeFactory
from tests.tasks import calls, pid_of

pytestmark = pytest.mark.postgres  # run on PostgreSQL too (see pyproject.toml)


def wait_for_runs(runs: list[Run], timeout: float) -> list[Run]:
    """Until every run has ended; the runs, fresh, in the same order."""
    deadline = time.monotonic() + timeout
    unfinished = Run.objects.filter(pk__in=[run.pk for run in runs]).exclude(status__in=Run.TERMINAL_STATUSES)
    while unfinished.exists():
        if time.monotonic() > deadline:
            left = dict(unfinished.values_list("pk", "status"))
            raise AssertionError(f"{len(left)} runs not finished after {timeout} s: {left}")
        time.sleep(0.2)
    fresh = Run.objects.in_bulk([run.pk for run in runs])
    return [fresh[run.pk] for run in runs]


def trigger_concurrently(api_client, name: str, count: int, clients: int = 5) -> list[tuple[int, dict, float]]:
    """POST `count` runs of `name` from `clients` threads at once; each answer's
    status, body and duration."""

    def post(i: int) -> tuple[int, dict, float]:
        started = time.monotonic()
        try:
            response = api_client.post(f"/api/v1/job-types/{name}/run/", {"params": {"i": i}}, format="json")
            return response.status_code, response.data, time.monotonic() - started
        finally:
            db.connections.close_all()  # this thread's

    with ThreadPoolExecutor(clients) as pool:
        return list(pool.map(post, range(count)))


def test_runs_triggered_while_redis_is_down_are_accepted_then_run_once_when_it_is_back(broker_outage, start_beat, api):
    start_beat()
    define(api, name="counted", kind="task", task="tests.count_calls")
    broker_outage.stop()
    answers = trigger_concurrently(api, "counted", 50)
    assert [(status, data["status"]) for status, data, _ in answers] == [(201, "pending")] * 50
    # A figure for the report, not a check: the machine is shared.
    print(f"trigger with Redis down: slowest {max(took for *_, took in answers):.2f} s")
    runs = list(Run.objects.filter(pk__in=[data["id"] for _, data, _ in answers]))
    assert Run.objects.filter(status="pending").count() == 50  # nothing published, nothing lost

    broker_outage.start()
    back = time.monotonic()
    runs = wait_for_runs(runs, timeout=60)
    print(f"all 50 succeeded {time.monotonic() - back:.1f} s after Redis came back")
    assert {run.status for run in runs} == {"succeeded"}
    assert sorted(run.result["i"] for run in runs) == list(range(50))
    assert [calls(run.pk) for run in runs] == [1] * 50
    assert {run.attempts for run in runs} == {1}


def test_a_worker_holding_a_countdowns_message_rides_out_a_redis_restart(broker_outage, celery_worker, api):
    # A task with a countdown waits in the worker, its message unacknowledged.
    # kombu 5.7.0 stopped such a worker when Redis went away (jobsite/redis_transport.py).
    held = app.send_task("jobs.builtin.echo", kwargs={}, countdown=600)
    try:
        wait_until(lambda: held.id in scheduled_ids(), 30, "the worker never took the countdown's message")
        broker_outage.stop()
        broker_outage.start()
        answered_once_back(lambda: wait_for_ping(celery_worker))  # fails at once if the worker died
        assert celery_worker.process.poll() is None
        define(api, name="after-restart", kind="task", task="jobs.builtin.echo")
        run = wait_for_run(trigger(api, "after-restart", {"back": True}))
        assert (run.status, run.result) == ("succeeded", {"back": True})
    finally:
        app.control.revoke(held.id)


def scheduled_ids() -> set[str]:
    """The tasks the workers hold for a countdown or an ETA."""
    replies = app.control.inspect(timeout=1).scheduled() or {}
    return {entry["request"]["id"] for entries in replies.values() for entry in entries or []}


def wait_until_running(runs: list[Run], timeout: float = 30) -> None:
    """Until every one of `runs` is running at the same time."""
    deadline = time.monotonic() + timeout
    while Run.objects.filter(pk__in=[run.pk for run in runs], status="running").count() < len(runs):
        if time.monotonic() > deadline:
            statuses = list(Run.objects.filter(pk__in=[run.pk for run in runs]).values_list("status", flat=True))
            raise AssertionError(f"Not all {len(runs)} runs were running at once: {statuses}")
        time.sleep(0.1)


# Workers with a short visibility timeout: Redis hands out again, after 5 s, a
# task whose worker vanished without acknowledging it. (A run that takes longer
# would be handed out while it runs: docs/operations.md says to keep it longer
# than any run's hard time limit.)
SHORT_VISIBILITY = {"CELERY_VISIBILITY_TIMEOUT": "5"}


def test_runs_of_a_killed_worker_are_run_again_by_another_worker_and_all_end(start_worker, api):
    queue = "faults-killed"
    first = start_worker(20, queue, SHORT_VISIBILITY)
    define(api, name="slow", kind="task", task="tests.slow_count", queue=queue, max_retries=1)
    # Long in their first attempt, which is killed; quick in the next.
    runs = [trigger(api, "slow", {"seconds": 60, "first_attempt_only": True, "n": n}) for n in range(20)]
    wait_until_running(runs)
    first.kill()  # the worker and its pool, at once: what a dead machine or container looks like
    assert Run.objects.filter(status="running").count() == 20
    executed = [calls(run.pk) for run in runs]  # a run may have been killed before its task's first line

    second = start_worker(4, queue, SHORT_VISIBILITY)
    runs = wait_for_runs(runs, timeout=60)
    assert {run.status for run in runs} == {"succeeded"}
    assert {(run.attempts, run.worker) for run in runs} == {(2, second.hostname)}
    assert [calls(run.pk) - before for run, before in zip(runs, executed, strict=True)] == [1] * 20
    lost = api.get(f"/api/v1/runs/{runs[0].pk}/").data["attempt_history"][0]
    assert (lost["attempt"], lost["status"], lost["worker"]) == (1, "failed", first.hostname)
    assert lost["error"] == f"Worker lost: the process running attempt 1 on {first.hostname} died or was killed"


def kill_pool_process_of(run: Run) -> None:
    run = wait_for_run(run, "running")
    while pid_of(run.pk) is None:  # the task has not reached its first line yet
        time.sleep(0.05)
    os.kill(pid_of(run.pk), signal.SIGKILL)  # e.g. the kernel's out-of-memory killer


def test_a_run_whose_pool_process_is_killed_fails_with_worker_lost_when_it_has_no_retries(start_worker, api):
    queue = "faults-pool"
    lone = start_worker(1, queue)  # one pool process, so the cancel below and the last run share it
    define(api, name="slow", kind="task", task="tests.slow_count", queue=queue)  # max_retries 0
    define(api, name="nap", kind="command", command={"argv": ["/bin/sleep", "60"]}, queue=queue)
    lost = f"Worker lost: the process running attempt 1 on {lone.hostname} died or was killed"

    # Celery gives the task back to the queue (reject_on_worker_lost); when it
    # comes back no attempt is left, so the run fails and is not run again.
    first = trigger(api, "slow", {"seconds": 60})
    kill_pool_process_of(first)
    assert wait_for_run(first).error == f"{lost}; no attempts left (max_retries 0)"

    # A process that a cancel interrupted (SIGUSR1, which it survives) and that
    # dies later: billiard takes that death for a revoke and hands nothing out again.
    nap = wait_for_run(trigger(api, "nap"), "running")
    assert api.post(f"/api/v1/runs/{nap.pk}/cancel/").status_code == 200
    second = trigger(api, "slow", {"seconds": 60})
    kill_pool_process_of(second)
    assert wait_for_run(second).error == lost

    time.sleep(1)
    assert (calls(first.pk), calls(second.pk)) == (1, 1)
    assert Run.objects.get(pk=first.pk).status == Run.objects.get(pk=second.pk).status == "failed"


def test_a_worker_stopped_with_sigterm_finishes_its_runs_and_loses_none_it_holds(start_worker, api):
    queue = "faults-stopped"
    first = start_worker(2, queue)
    define(api, name="slow", kind="task", task="tests.slow_count", queue=queue)
    define(api, name="flaky", kind="task", task="tests.fail_once", queue=queue, max_retries=1, retry_backoff_seconds=2)
    # A retry waits in the worker's memory until its time: the worker holds its message.
    flaky = wait_for_run(trigger(api, "flaky"), "retrying")
    runs = [trigger(api, "slow", {"seconds": 1.5, "n": n}) for n in range(6)]
    wait_until_running(runs[:2])
    first.process.send_signal(signal.SIGTERM)  # warm shutdown
    start_worker(2, queue)  # takes what the first one gives back
    first.process.wait(30)
    assert Run.objects.get(pk=runs[0].pk).status == "succeeded"  # it finished what it had started
    runs = wait_for_runs([*runs, flaky], timeout=60)
    assert {run.status for run in runs} == {"succeeded"}
    assert [calls(run.pk) for run in runs] == [1] * 6 + [2]  # each slow run once; flaky failed once, then passed


def test_a_run_whose_worker_is_gone_is_failed_by_the_stuck_check_and_frees_its_slot(start_worker, start_beat, api):
    queue = "faults-stuck"
    start_beat()
    lone = start_worker(1, queue)  # the default visibility timeout: nothing hands its task out again soon
    define(
        api, name="lone", kind="task", task="tests.stubborn_sleep", queue=queue, timeout_seconds=1, max_concurrency=1
    )
    run = wait_for_run(trigger(api, "lone", {"seconds": 60}), "running")
    lone.kill()
    start_worker(1, queue)
    # The lost run holds the job type's only slot, so the next one waits.
    after = trigger(api, "lone", {"seconds": 0})
    # Hard limit 1 + 2 s (tests/settings.py), a margin of 1 s, a check every 2 s.
    run = wait_for_run(run, timeout=30)
    assert run.status == "failed"
    assert run.error.startswith(f"Worker lost: {lone.hostname} no longer runs it. Still running ")
    assert "past the hard time limit of 3 s, and no worker reports it as active" in run.error
    after = wait_for_run(after, timeout=30)
    assert after.status == "succeeded"
    assert after.started_at > run.finished_at  # it got the slot once the lost run was failed


SWEEPER = """
import django
django.setup()
from jobs.schedules.dispatcher import dispatch_due
print(dispatch_due()["republished"])
"""


def test_dispatchers_running_at_once_publish_each_pending_run_once(worker):
    job_type = JobTypeFactory(name="noop", queue="faults-nobody-listens")
    now = timezone.now()
    waiting = Run.objects.bulk_create(
        Run(job_type=job_type, trigger="api", status="pending", republish_after=now) for _ in range(100)
    )
    # Pending for less than the grace period: its first publish may still be under way.
    (in_flight,) = Run.objects.bulk_create(
        [Run(job_type=job_type, trigger="api", status="pending", republish_after=now + timedelta(minutes=1))]
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", "DATABASE_URL": _database_url()}
    dispatchers = [
        subprocess.Popen([sys.executable, "-c", SWEEPER], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    republished = [int(d.communicate(timeout=120)[0].strip().splitlines()[-1]) for d in dispatchers]
    assert sum(republished) == 100, republished
    broker = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    messages = [json.loads(raw)["headers"]["id"] for raw in broker.lrange("faults-nobody-listens", 0, -1)]
    assert sorted(messages) == sorted(str(run.pk) for run in waiting)
    assert Run.objects.filter(status="queued").count() == 100
    assert Run.objects.get(pk=in_flight.pk).status == "pending"
