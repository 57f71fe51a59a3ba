"""Schedule backfill end to end: API → database ← beat's dispatcher → Redis → worker."""

import time
import uuid
from collections import Counter

import pytest

from jobs.models import Run
from tests.conftest import WORKFLOW_QUEUE, wait_until
from tests.e2e.test_execution import define
from tests.tasks import concurrency_seen

pytestmark = pytest.mark.postgres  # run on PostgreSQL too (see pyproject.toml)


def statuses(backfill_id: int) -> Counter:
    return Counter(Run.objects.filter(backfill_id=backfill_id).values_list("status", flat=True))


def test_a_backfill_runs_every_tick_never_more_at_once_than_its_concurrency_and_cancels(
    workflow_worker, start_beat, api
):
    # The worker has four processes; the backfill allows two runs at once.
    define(api, name="probe", kind="task", task="tests.concurrency_probe", queue=WORKFLOW_QUEUE)
    probe = uuid.uuid4().hex
    response = api.post("/api/v1/schedules/", {"name": "yearly", "job_type": "probe", "cron": "0 0 1 1 *",
                        "params": {"probe": probe, "seconds": 0.5}}, format="json")  # fmt: skip
    assert response.status_code == 201, response.data
    url = f"/api/v1/schedules/{response.data['id']}"
    start_beat()

    backfill = api.post(f"{url}/backfill/", {"start": "2018-01-01T00:00:00Z", "end": "2026-01-01T00:00:00Z",
                        "backfill_concurrency": 2}, format="json").data  # fmt: skip
    assert backfill["total"] == 8, backfill
    most_active, deadline = 0, time.monotonic() + 60
    while (seen := statuses(backfill["id"]))["succeeded"] < 8 and time.monotonic() < deadline:
        most_active = max(most_active, sum(seen[status] for status in Run.ACTIVE_STATUSES))
        time.sleep(0.05)
    assert seen == {"succeeded": 8}
    assert most_active == 2
    started = concurrency_seen(probe)  # as each task started, how many of them were executing
    assert (len(started), max(started)) == (8, 2)
    runs = list(Run.objects.filter(backfill_id=backfill["id"]).order_by("schedule_tick"))
    assert [run.schedule_tick.year for run in runs] == list(range(2018, 2026))
    assert [run.released_at for run in runs] == sorted(run.released_at for run in runs)  # oldest tick first
    done = wait_until(
        lambda: (data := api.get(f"{url}/backfills/").data[0])["released_all_at"] and data, 10, "never done"
    )
    assert done["progress"]["done"] == 8

    # Cancelled while its first run runs: that one ends, the others never start.
    response = api.post("/api/v1/schedules/", {"name": "yearly-slow", "job_type": "probe", "cron": "0 0 1 1 *",
                        "params": {"probe": probe, "seconds": 2}}, format="json")  # fmt: skip
    url = f"/api/v1/schedules/{response.data['id']}"
    slow = api.post(f"{url}/backfill/", {"start": "2010-01-01T00:00:00Z", "end": "2014-01-01T00:00:00Z",
                    "backfill_concurrency": 1}, format="json").data  # fmt: skip
    wait_until(lambda: statuses(slow["id"])["running"], 10, "the backfill's first run did not start")
    cancelled = api.post(f"{url}/backfills/{slow['id']}/cancel/").data
    assert cancelled["progress"]["cancelled"] == 3, cancelled
    wait_until(lambda: statuses(slow["id"]) == {"succeeded": 1, "cancelled": 3}, 10, "the running one did not end")
    time.sleep(1.5)  # a dispatch or two later, still nothing else started
    assert statuses(slow["id"]) == {"succeeded": 1, "cancelled": 3}
    assert len(concurrency_seen(probe)) == 9
