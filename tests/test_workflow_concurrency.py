"""Twenty parallel steps that end at the same moment, in four processes of
five threads each: their join step is published to the broker exactly once.

This goes below the worker (whose four processes rarely end steps at the very
same instant) to the orchestrator itself: each thread, with its own database
connection, records one step's success and advances the workflow, all twenty
released together.
"""

import json
import os
import subprocess
import sys
import uuid

import pytest
import redis
from django.conf import settings

from jobs.models import JobType, Run
from jobs.runs import trigger
from tests.conftest import ROOT, _database_url
from tests.factories import JobTypeFactory

pytestmark = pytest.mark.postgres  # run on PostgreSQL too (see pyproject.toml)

PARTS = 20
REPETITIONS = 20
PROCESSES = 4
THREADS = PARTS // PROCESSES

STEP_ENDER = """
import sys, threading
import django
django.setup()
from django.db import connection

from jobs.runs import tracking


def end(run_id, ready):
    ready.wait()
    try:
        tracking.run_succeeded(run_id=run_id, result={"by": sys.argv[1]})
    finally:
        connection.close()

for line in sys.stdin:
    run_ids = line.split()
    ready = threading.Barrier(len(run_ids))
    threads = [threading.Thread(target=end, args=(run_id, ready)) for run_id in run_ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    print("done", flush=True)
"""


def messages_for(queue: str, run_id) -> int:
    """Messages waiting in a Redis queue (no worker reads it) for this run's task."""
    broker = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    return sum(json.loads(raw)["headers"]["id"] == str(run_id) for raw in broker.lrange(queue, 0, -1))


def test_the_join_step_of_20_steps_ending_at_once_is_published_exactly_once(transactional_db, redis_server):
    queue = f"race-{uuid.uuid4().hex[:8]}"  # no worker consumes it: messages stay to be counted
    part = JobTypeFactory(name="part")
    workflow = JobType.objects.create(name="fan", kind=JobType.Kind.WORKFLOW, queue=queue)
    names = [f"p{i:02}" for i in range(PARTS)]
    for name in names:
        workflow.steps.create(name=name, job_type=part)
    workflow.steps.create(name="join", job_type=part, depends_on=names)

    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", "DATABASE_URL": _database_url()}
    enders = [
        subprocess.Popen(
            [sys.executable, "-c", STEP_ENDER, f"ender-{n}"],
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for n in range(PROCESSES)
    ]
    try:
        for repetition in range(REPETITIONS):
            run, _ = trigger.run_create(job_type=workflow, trigger=Run.Trigger.API)
            parts = list(run.children.exclude(step_name="join").order_by("step_name"))
            assert {p.status for p in parts} == {"queued"}, "the parts were not all published"
            Run.objects.filter(pk__in=[p.pk for p in parts]).update(status=Run.Status.RUNNING)
            # Release all twenty at once: each records one part's success and advances the workflow.
            for n, ender in enumerate(enders):
                ender.stdin.write(" ".join(str(p.pk) for p in parts[n * THREADS : (n + 1) * THREADS]) + "\n")
                ender.stdin.flush()
            for ender in enders:
                assert ender.stdout.readline().strip() == "done", f"a step ender failed (repetition {repetition})"
            join = run.children.get(step_name="join")
            published = messages_for(queue, join.pk)
            assert published == 1, f"repetition {repetition}: the join step was published {published} times"
            assert join.status == "queued"
            run.refresh_from_db()
            assert run.status == "queued"  # nothing reported a start; the join is still to run
    finally:
        for ender in enders:
            ender.stdin.close()
        for ender in enders:
            ender.wait(30)
        redis.Redis.from_url(settings.CELERY_BROKER_URL).delete(queue)
    assert [ender.returncode for ender in enders] == [0] * PROCESSES
