"""manage.py purge_runs: old finished runs go, with their steps and TaskResult
rows, in batches; nothing unfinished ever does."""

import importlib
import os
from datetime import timedelta
from io import StringIO

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone
from django_celery_results.models import TaskResult

from jobs.models import JobType, Run
from tests.factories import JobTypeFactory

pytestmark = pytest.mark.postgres  # run on PostgreSQL too (see pyproject.toml)

OLD, RECENT = timedelta(days=100), timedelta(days=10)


def make_runs(job_type, count: int, *, status: str, age: timedelta, ended: timedelta | None = None, **fields):
    """`count` runs created `age` ago (and ended `ended` ago, default the same),
    each with its TaskResult row, as a worker leaves them."""
    created = timezone.now() - age
    finished = timezone.now() - (ended or age) if status in Run.TERMINAL_STATUSES else None
    runs = Run.objects.bulk_create(
        [
            Run(job_type=job_type, trigger="api", status=status, created_at=created, finished_at=finished, **fields)
            for _ in range(count)
        ]
    )
    TaskResult.objects.bulk_create([TaskResult(task_id=str(run.pk), status="SUCCESS") for run in runs])
    return runs


@pytest.fixture
def history(db):
    """About 2,600 runs of every kind; what a 90-day purge must delete and keep."""
    echo = JobTypeFactory(name="echo")
    flow = JobType.objects.create(name="flow", kind=JobType.Kind.WORKFLOW)
    old_done = []
    for status in Run.TERMINAL_STATUSES:
        old_done += make_runs(echo, 400, status=status, age=OLD)
    old_unfinished = []
    for status in ("scheduled", "pending", "queued", "running", "retrying"):
        old_unfinished += make_runs(echo, 40, status=status, age=OLD)
    recent = make_runs(echo, 500, status="succeeded", age=RECENT)
    ended_lately = make_runs(echo, 100, status="failed", age=OLD, ended=timedelta(days=5))
    old_flows = make_runs(flow, 200, status="failed", age=OLD)
    old_steps = []
    for parent in old_flows:
        old_steps += make_runs(echo, 3, status="succeeded", age=OLD, parent=parent)
    busy_flows = make_runs(flow, 10, status="failed", age=OLD)
    busy_steps = [make_runs(echo, 1, status="running", age=OLD, parent=parent)[0] for parent in busy_flows]
    rerun = make_runs(echo, 1, status="succeeded", age=RECENT, rerun_of=old_done[0])[0]
    TaskResult.objects.create(task_id="a-notification-task", status="SUCCESS")
    return {
        "deleted": old_done + old_flows + old_steps,
        "kept": old_unfinished + recent + ended_lately + busy_flows + busy_steps + [rerun],
        "rerun": rerun,
        "steps": old_steps,
    }


def purge(*args: str) -> str:
    out = StringIO()
    call_command("purge_runs", *args, stdout=out)
    return out.getvalue().strip()


def test_it_deletes_old_finished_runs_with_their_steps_and_task_results_in_batches(history):
    total, task_results = Run.objects.count(), TaskResult.objects.count()
    deleted, kept = history["deleted"], history["kept"]
    assert total == len(deleted) + len(kept) > 2500

    said = purge("--older-than", "90", "--batch-size", "150", "--dry-run")
    assert said.startswith(f"Would delete {len(deleted):,} runs (600 of them workflow steps) and {len(deleted):,} task")
    assert (Run.objects.count(), TaskResult.objects.count()) == (total, task_results)

    said = purge("--older-than", "90", "--batch-size", "150")
    # 1,200 single runs and 200 workflow runs, 150 a batch; the busy ones are read, then kept.
    assert said.startswith(f"Deleted {len(deleted):,} runs (600 of them workflow steps) and {len(deleted):,} task")
    assert "older than 90 days), in 10 batches. Kept 10 old workflow run(s) with a step still going." in said
    assert set(Run.objects.values_list("pk", flat=True)) == {run.pk for run in kept}
    assert not TaskResult.objects.filter(task_id__in=[str(run.pk) for run in deleted]).exists()
    assert TaskResult.objects.count() == len(kept) + 1  # the notification task's row stays too
    history["rerun"].refresh_from_db()
    assert history["rerun"].rerun_of is None

    assert purge("--older-than", "90").startswith("Deleted 0 runs and 0 task results")


def test_it_takes_the_retention_from_the_settings(history, settings):
    settings.JOBS_RUN_RETENTION_DAYS = 200
    assert purge().startswith("Deleted 0 runs")
    settings.JOBS_RUN_RETENTION_DAYS = 0
    with pytest.raises(CommandError, match="Give --older-than DAYS: JOBS_RUN_RETENTION_DAYS is off"):
        purge()
    assert purge("--older-than", "50", "--dry-run").startswith(f"Would delete {len(history['deleted']):,} runs")


@pytest.mark.parametrize("value", ["0", "-3", "soon", "1.5"])
def test_a_bad_age_is_refused_and_deletes_nothing(db, value):
    make_runs(JobTypeFactory(), 3, status="succeeded", age=OLD)
    before = Run.objects.count()
    with pytest.raises(CommandError, match=f"'{value}': give a whole number of days from 1 to 100,000"):
        purge(f"--older-than={value}")
    assert Run.objects.count() == before


def site_settings(monkeypatch, retention: str | None):
    """jobsite/settings.py evaluated again with this JOBS_RUN_RETENTION_DAYS."""
    import jobsite.settings

    if retention is None:
        monkeypatch.delenv("JOBS_RUN_RETENTION_DAYS", raising=False)
    else:
        monkeypatch.setenv("JOBS_RUN_RETENTION_DAYS", retention)
    return importlib.reload(jobsite.settings)


def test_the_daily_purge_is_on_by_default_and_off_with_0_or_empty(monkeypatch):
    try:
        for retention, days, scheduled in [(None, 90, True), ("30", 30, True), ("0", 0, False), ("", 0, False)]:
            loaded = site_settings(monkeypatch, retention)
            entry = loaded.CELERY_BEAT_SCHEDULE.get("jobsite: delete old runs")
            assert (loaded.JOBS_RUN_RETENTION_DAYS, entry is not None) == (days, scheduled)
            if scheduled:
                assert entry["task"] == "jobsite.purge_runs"
        with pytest.raises(ImproperlyConfigured, match="JOBS_RUN_RETENTION_DAYS=-1: give a number of days, or 0"):
            site_settings(monkeypatch, "-1")
    finally:
        monkeypatch.undo()
        site_settings(monkeypatch, os.environ.get("JOBS_RUN_RETENTION_DAYS"))
