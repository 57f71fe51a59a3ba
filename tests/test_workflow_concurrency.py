"""Twenty parallel steps that end at the same moment, in twenty processes:
their join step is published to the broker exactly once.

This goes below the worker (whose four processes rarely end steps at the very
same instant) to the orchestrator itself: each process records one step's
success and advances the workflow, all released together.
"""

import json
import os
import subprocess
import sys
import uuid

import redis
from django.conf import settings

from jobs import services
from jobs.models import JobType, Run
from tests.conftest import ROOT, _database_url
from tests.factories import JobTypeFactory

PARTS = 20
REPETITIONS = 20

STEP_ENDER = """
import sys
import django
django.setup()
from jobs import services
for line in sys.stdin:
    services.run_succeeded(run_id=line.strip(), result={"by": sys.argv[1]})
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
        for n in range(PARTS)
    ]
    try:
        for repetition in range(REPETITIONS):
            run, _ = services.run_create(job_type=workflow, trigger=Run.Trigger.API)
            parts = list(run.children.exclude(step_name="join").order_by("step_name"))
            assert {p.status for p in parts} == {"queued"}, "the parts were not all published"
            Run.objects.filter(pk__in=[p.pk for p in parts]).update(status=Run.Status.RUNNING)
            # Release all twenty at once: each records one part's success and advances the workflow.
            for ender, part_run in zip(enders, parts, strict=True):
                ender.stdin.write(f"{part_run.pk}\n")
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
    assert [ender.returncode for ender in enders] == [0] * PARTS
