"""The daily purge: beat holds its entry, and a real worker runs it."""

import time

from django_celery_beat.models import PeriodicTask
from django_celery_results.models import TaskResult

from jobs.models import Run
from jobsite.celery import app
from tests.factories import JobTypeFactory
from tests.test_purge_runs import OLD, RECENT, make_runs


def wait_for(condition, timeout: float = 30):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"still not true after {timeout} s")
        time.sleep(0.2)


def test_beat_holds_the_daily_purge_and_a_worker_runs_it(worker, start_beat):
    start_beat()
    wait_for(lambda: PeriodicTask.objects.filter(name="jobsite: delete old runs").exists())
    entry = PeriodicTask.objects.select_related("crontab").get(name="jobsite: delete old runs")
    assert (entry.task, entry.enabled, entry.crontab.minute, entry.crontab.hour) == (
        "jobsite.purge_runs",
        True,
        "30",
        "3",
    )

    echo = JobTypeFactory(name="echo")
    old = make_runs(echo, 50, status="succeeded", age=OLD)
    kept = make_runs(echo, 5, status="succeeded", age=RECENT) + make_runs(echo, 5, status="running", age=OLD)
    app.send_task(entry.task)  # what beat sends at 03:30, now
    wait_for(lambda: Run.objects.count() == len(kept))
    assert set(Run.objects.values_list("pk", flat=True)) == {run.pk for run in kept}
    assert not TaskResult.objects.filter(task_id__in=[str(run.pk) for run in old]).exists()
