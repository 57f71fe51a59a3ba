"""Runs whose broker message or worker is lost, for real: messages deleted from
Redis, Redis restarted empty, workers killed; a real beat sends the checks
(every few seconds in tests/settings.py)."""

import contextlib
import json
import time
from datetime import timedelta

import pytest
import redis
from django.conf import settings
from django.core.cache import cache
from django.utils import timezone
from django.utils.html import escape

from jobs.models import Run
from jobs.runs.lost import runs_republish_lost
from jobsite.celery import app
from tests.conftest import wait_for_run, wait_until
from tests.e2e.test_execution import define, trigger
from tests.e2e.test_faults import wait_for_runs
from tests.tasks import calls, pid_of

pytestmark = pytest.mark.postgres  # run on PostgreSQL too (see pyproject.toml)


def broker() -> redis.Redis:
    return redis.Redis.from_url(settings.CELERY_BROKER_URL)


def waiting_in(queue: str) -> list[str]:
    """The task ids of the messages waiting in `queue` (its default-priority list)."""
    return [json.loads(raw)["headers"]["id"] for raw in broker().lrange(queue, 0, -1)]


def test_a_queued_run_whose_message_was_deleted_is_published_again_once_and_runs(start_beat, start_worker, api):
    queue = "lost-deleted"
    start_beat()
    define(api, name="counted", kind="task", task="tests.count_calls", queue=queue)
    kept, lost = trigger(api, "counted", {"n": 1}), trigger(api, "counted", {"n": 2})
    assert sorted(waiting_in(queue)) == sorted([str(kept.pk), str(lost.pk)])
    # Its message is gone (evicted, or deleted by mistake); the run still says `queued`.
    raw = next(raw for raw in broker().lrange(queue, 0, -1) if json.loads(raw)["headers"]["id"] == str(lost.pk))
    assert broker().lrem(queue, 1, raw) == 1

    # Queued longer than JOBS_QUEUED_CHECK_SECONDS (3 s), nowhere in Redis nor with a worker: published again.
    wait_until(lambda: str(lost.pk) in waiting_in(queue), 30, "The lost run was not published again")
    # The run whose message is there is left alone, and the lost one is published once, however many checks pass.
    time.sleep(2 * settings.JOBS_QUEUED_CHECK_SECONDS + 1)
    assert sorted(waiting_in(queue)) == sorted([str(kept.pk), str(lost.pk)])

    start_worker(1, queue)
    kept, lost = wait_for_run(kept), wait_for_run(lost)
    assert (kept.status, lost.status) == ("succeeded", "succeeded")
    assert (kept.result, lost.result) == ({"n": 1}, {"n": 2})
    assert (calls(kept.pk), calls(lost.pk)) == (1, 1)
    assert (kept.attempts, lost.attempts) == (1, 1)


def test_the_check_looks_in_every_priority_list_and_publishes_only_what_is_lost(redis_server, transactional_db, api):
    queue = "lost-priorities"
    define(api, name="urgent", kind="task", task="tests.count_calls", queue=queue, priority=9)
    define(api, name="plain", kind="task", task="tests.count_calls", queue=queue)
    urgent, plain = trigger(api, "urgent"), trigger(api, "plain")
    # kombu keeps a queue as one list per priority step.
    assert waiting_in(f"{queue}\x06\x169") == [str(urgent.pk)]
    assert waiting_in(queue) == [str(plain.pk)]
    broker().delete(queue)

    later = timezone.now() + timedelta(seconds=settings.JOBS_QUEUED_CHECK_SECONDS)
    assert runs_republish_lost(later) == 1
    assert (waiting_in(f"{queue}\x06\x169"), waiting_in(queue)) == ([str(urgent.pk)], [str(plain.pk)])
    assert runs_republish_lost(later + timedelta(minutes=1)) == 0  # both are there now
    assert Run.objects.get(pk=plain.pk).status == Run.objects.get(pk=urgent.pk).status == "queued"


def test_runs_queued_when_redis_restarts_empty_are_published_again_and_run_once(broker_outage, start_beat,
                                                                                  start_worker, api):  # fmt: skip
    queue = "lost-restart"
    start_beat()
    define(api, name="counted", kind="task", task="tests.count_calls", queue=queue)
    runs = [trigger(api, "counted", {"n": n}) for n in range(3)]
    assert len(waiting_in(queue)) == 3
    broker_outage.stop()
    broker_outage.start()  # without persistence: every message is gone
    with contextlib.suppress(redis.ConnectionError):  # this process's pooled connection finds out; the next reconnects
        app.control.ping(timeout=0.1)
    assert waiting_in(queue) == []
    assert {run.status for run in Run.objects.filter(pk__in=[run.pk for run in runs])} == {"queued"}
    # Published again before any worker of the queue is back (which would declare it again in Redis).
    wait_until(lambda: sorted(waiting_in(queue)) == sorted(str(run.pk) for run in runs), 60, "Not published again")

    start_worker(2, queue)
    runs = wait_for_runs(runs, timeout=60)
    assert {run.status for run in runs} == {"succeeded"}
    assert sorted(run.result["n"] for run in runs) == [0, 1, 2]
    assert [calls(run.pk) for run in runs] == [1, 1, 1]


def test_an_overlap_skip_schedule_whose_run_lost_its_message_fires_again_once_it_has_run(start_beat, start_worker,
                                                                                        api):  # fmt: skip
    queue = "lost-schedule"
    start_beat()
    define(api, name="counted", kind="task", task="tests.count_calls", queue=queue)
    response = api.post("/api/v1/schedules/", {"name": "every-2s", "job_type": "counted", "interval_seconds": 2,
                                               "overlap": "skip"}, format="json")  # fmt: skip
    assert response.status_code == 201, response.data
    schedule = response.data["id"]
    first = wait_until(
        lambda: Run.objects.filter(schedule_id=schedule, status="queued").first(), 15, "The schedule did not fire"
    )
    broker().delete(queue)  # its message is gone: the schedule now skips every tick behind it

    start_worker(1, queue)
    assert wait_for_run(first, timeout=30).status == "succeeded"
    # The schedule fires again: its next run starts and succeeds too.
    later = wait_until(
        lambda: Run.objects.filter(schedule_id=schedule, status="succeeded").exclude(pk=first.pk).first(),
        15,
        "The schedule did not fire again",
    )
    assert calls(first.pk) == calls(later.pk) == 1


def test_a_workflow_whose_step_lost_its_message_goes_on_once_the_step_is_published_again(start_beat, start_worker,
                                                                                        api):  # fmt: skip
    queue = "lost-workflow"  # the workflow's: its steps go there
    start_beat()
    define(api, name="counted", kind="task", task="tests.count_calls")
    second = {"name": "second", "job_type": "counted", "params": {"n": "{{ steps.first.result.n }}"},
              "depends_on": ["first"]}  # fmt: skip
    define(api, name="pair", kind="workflow", queue=queue,
           steps=[{"name": "first", "job_type": "counted", "params": {"n": 1}}, second])  # fmt: skip
    run = trigger(api, "pair")
    step = Run.objects.get(parent=run, step_name="first")
    assert (step.status, waiting_in(queue)) == ("queued", [str(step.pk)])
    broker().delete(queue)

    start_worker(1, queue)
    run = wait_for_run(run, timeout=30)
    assert run.status == "succeeded", run.error
    assert [calls(child.pk) for child in Run.objects.filter(parent=run)] == [1, 1]


def test_a_run_waiting_on_a_queue_no_worker_consumes_says_so_on_its_page_and_in_the_api(worker, start_worker, api,
                                                                                       client, admin_user):  # fmt: skip
    cache.clear()  # what the workers consumed, as an earlier test saw it
    define(api, name="unheard", kind="task", task="tests.count_calls", queue="nobody-listens")
    run = trigger(api, "unheard")
    warning = (
        "No worker consumes queue 'nobody-listens': the run waits until one does "
        "(start a worker with `celery -A jobsite worker -Q nobody-listens`, or add the queue to one)."
    )
    data = api.get(f"/api/v1/runs/{run.pk}/").data
    assert (data["status"], data["queue"], data["queue_warning"]) == ("queued", "nobody-listens", warning)
    client.force_login(admin_user)
    assert escape(warning) in client.get(f"/monitor/runs/{run.pk}/").content.decode()

    # Waiting behind another run on a queue a worker consumes is no cause for a warning.
    define(api, name="busy", kind="task", task="tests.sleep_echo", queue="lost-busy")
    start_worker(1, "lost-busy")
    cache.clear()
    first, second = trigger(api, "busy", {"seconds": 3}), trigger(api, "busy")
    wait_for_run(first, "running")
    data = api.get(f"/api/v1/runs/{second.pk}/").data
    assert (data["status"], data["queue"], data["queue_warning"]) == ("queued", "lost-busy", None)
    assert 'id="queue-warning"' not in client.get(f"/monitor/runs/{second.pk}/").content.decode()
    wait_for_run(second)


def unacked_ids() -> list[str]:
    """The task ids of the messages Redis holds as delivered to a worker and not acknowledged."""
    return [json.loads(raw)[0]["headers"]["id"] for raw in broker().hvals("unacked")]


def test_a_run_whose_worker_is_gone_is_retried_by_the_stuck_check_while_it_has_retries(start_beat, start_worker, api):
    queue = "lost-worker"
    start_beat()
    first = start_worker(1, queue)  # the default visibility timeout: Redis does not hand its task out again soon
    define(api, name="slow", kind="task", task="tests.slow_count", queue=queue, timeout_seconds=5, max_retries=1,
           retry_backoff_seconds=1)  # fmt: skip
    run = wait_for_run(trigger(api, "slow", {"seconds": 60, "first_attempt_only": True}), "running")
    wait_until(lambda: pid_of(run.pk), 10, "The task did not start")
    first.kill()  # the whole worker, as when its machine dies: nothing tells Jobsite
    assert str(run.pk) in unacked_ids()
    second = start_worker(1, queue)

    # Hard limit 5 + 2 s and a margin of 1 s later the stuck check finds it lost: attempt 1 of 2, so it is retried.
    run = wait_for_run(run, timeout=40)
    assert (run.status, run.attempts, run.worker) == ("succeeded", 2, second.hostname)
    assert calls(run.pk) == 2
    lost = api.get(f"/api/v1/runs/{run.pk}/").data["attempt_history"][0]
    assert (lost["attempt"], lost["status"], lost["worker"]) == (1, "failed", first.hostname)
    assert lost["error"].startswith(f"Worker lost: {first.hostname} no longer runs it.")
    # The lost attempt's message is gone from Redis: it cannot be handed out again later.
    assert str(run.pk) not in unacked_ids()
