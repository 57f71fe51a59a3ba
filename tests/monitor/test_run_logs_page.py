"""A run's log on its page (templates/monitor/_run_logs.html): the newest
lines, escaped, the cut mark, and a live region while the run goes on."""

import pytest
from django.utils import timezone

from jobs.models import JobType, Run, RunLogLine
from tests.factories import JobTypeFactory, RunFactory

pytestmark = pytest.mark.postgres  # run on PostgreSQL too (see pyproject.toml)


def add_lines(run: Run, seqs, message: str = "m{}") -> None:
    text = message.format
    now = timezone.now()
    RunLogLine.objects.bulk_create(
        RunLogLine(run=run, seq=seq, attempt=1, created_at=now, level="ERROR", logger="app", message=text(seq))
        for seq in seqs
    )


def test_a_running_runs_page_shows_its_newest_lines_and_follows_them(viewer_client):
    run = RunFactory(status=Run.Status.RUNNING)
    add_lines(run, range(51, 301))  # 50 cut, 250 kept
    page = viewer_client.get(run.get_absolute_url()).content.decode()
    assert "50 earlier lines cut" in page
    assert "50 earlier lines not shown here" in page and f"/api/v1/runs/{run.pk}/logs/" in page
    assert "m101" in page and "m300" in page and "m100<" not in page
    assert f'data-refresh-url="/monitor/runs/{run.pk}/logs/"' in page
    live = viewer_client.get(f"/monitor/runs/{run.pk}/logs/").content.decode()
    assert live.strip().startswith('<section class="card" id="run-logs"') and "m300" in live


def test_a_finished_runs_log_is_not_followed_and_its_lines_are_escaped(viewer_client):
    run = RunFactory(status=Run.Status.FAILED)
    add_lines(run, [1], message="<script>alert({})</script>")
    page = viewer_client.get(run.get_absolute_url()).content.decode()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "<script>alert(1)" not in page
    assert f"/monitor/runs/{run.pk}/logs/" not in page
    assert "earlier lines cut" not in page


def test_a_workflow_runs_page_has_no_log_of_its_own(viewer_client):
    flow = JobTypeFactory(name="flow", kind=JobType.Kind.WORKFLOW, task="")
    run = RunFactory(job_type=flow, status=Run.Status.SUCCEEDED)
    assert 'id="run-logs"' not in viewer_client.get(run.get_absolute_url()).content.decode()
