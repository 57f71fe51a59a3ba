"""A workflow run's page: its steps on a timeline and as a graph, and a step
run's page, which leads back to its workflow run. Through a real worker in
test_browser.py."""

import re
from datetime import timedelta

import pytest
from django.utils import timezone

from jobs.models import JobType, Run
from jobs.monitor.charts import step_timeline
from tests.factories import JobTypeFactory, RunFactory
from tests.monitor.test_pages import section

XSS = "<img src=x onerror=alert(1)>"


@pytest.fixture
def diamond(db):
    """A workflow run caught halfway: `fetch` succeeded, `left` runs, `right`
    waits in its queue, `merge` waits for both."""
    echo = JobTypeFactory(name="echo")
    flow = JobType.objects.create(name="diamond", kind=JobType.Kind.WORKFLOW)
    now = timezone.now()
    parent = RunFactory(
        job_type=flow, status="running", created_at=now - timedelta(seconds=60), started_at=now - timedelta(seconds=59)
    )

    def step(name, status, depends_on=(), **times):
        return RunFactory(
            job_type=echo,
            parent=parent,
            step_name=name,
            depends_on=list(depends_on),
            trigger="workflow",
            status=status,
            created_at=parent.created_at,
            **{key: now - timedelta(seconds=ago) for key, ago in times.items()},
        )

    steps = {
        "fetch": step("fetch", "succeeded", queued_at=58, started_at=57, finished_at=40),
        "left": step("left", "running", ["fetch"], queued_at=40, started_at=39),
        "right": step("right", "queued", ["fetch"], queued_at=40),
        "merge": step("merge", "waiting", ["left", "right"]),
    }
    return parent, steps


def timeline_rows(body: str) -> dict[str, str]:
    """Each step row of the timeline SVG: name → its markup."""
    svg = body[body.index('<svg class="timeline"') : body.index("</svg>", body.index('<svg class="timeline"'))]
    return dict(re.findall(r'<a href="[^"]+" class="step-row" data-step="([^"]+)"(.*?)</a>', svg, re.S))


def test_a_workflow_runs_page_draws_its_steps_on_a_timeline(staff_client, diamond):
    parent, steps = diamond
    response = staff_client.get(f"/monitor/runs/{parent.pk}/")
    assert response.status_code == 200
    body = response.content.decode()
    rows = timeline_rows(body)
    assert list(rows) == ["fetch", "left", "right", "merge"]  # topological order
    assert 'class="bar succeeded"' in rows["fetch"] and 'class="wait succeeded"' in rows["fetch"]
    assert 'class="bar running open"' in rows["left"]
    assert 'class="wait queued"' in rows["right"] and 'class="bar' not in rows["right"]
    assert 'class="note waiting"' in rows["merge"] and "waiting for left, right" in rows["merge"]
    assert 'class="bar' not in rows["merge"]
    for name, run in steps.items():
        assert f'<a href="/monitor/runs/{run.pk}/" class="step-row" data-step="{name}"' in body
    # The running step reaches "now", the right end of the axis.
    bar = re.search(r'class="bar running open" x="([\d.]+)" y="[\d.]+" width="([\d.]+)"', rows["left"])
    assert float(bar[1]) + float(bar[2]) == pytest.approx(950, abs=1)
    # Steps still going: the steps part of the page follows them.
    assert f'data-refresh-url="/monitor/runs/{parent.pk}/steps/"' in body


def test_a_workflow_runs_page_draws_its_dependency_graph_coloured_by_status(staff_client, diamond):
    parent, steps = diamond
    graph = section(staff_client.get(f"/monitor/runs/{parent.pk}/"), "step-graph")
    nodes = dict(re.findall(r'<g class="step (\w+)" data-step="(\w+)">', graph))
    assert nodes == {"succeeded": "fetch", "running": "left", "queued": "right", "waiting": "merge"}
    for run in steps.values():
        assert f'<a href="/monitor/runs/{run.pk}/">' in graph
    assert graph.count("marker-end=") == 4  # fetch→left, fetch→right, left→merge, right→merge


def test_the_steps_table_lists_each_step_with_its_status(staff_client, diamond):
    parent, _ = diamond
    table = section(staff_client.get(f"/monitor/runs/{parent.pk}/"), "step-timeline").split('<table class="steps"')[1]
    assert re.findall(r'<td><a href="/monitor/runs/[0-9a-f-]+/">(\w+)</a></td>', table) == [
        "fetch",
        "left",
        "right",
        "merge",
    ]
    assert '<span class="status waiting">waiting</span>' in table


def test_the_steps_part_is_a_fragment_that_stops_refreshing_when_all_have_ended(staff_client, diamond):
    parent, _ = diamond
    fragment = staff_client.get(f"/monitor/runs/{parent.pk}/steps/").content.decode()
    assert fragment.lstrip().startswith('<div id="workflow-steps"') and "<html" not in fragment
    now = timezone.now()
    Run.objects.filter(parent=parent, status__in=["running", "queued"]).update(status="succeeded", finished_at=now)
    Run.objects.filter(parent=parent, status="waiting").update(status="cancelled", finished_at=now)
    Run.objects.filter(pk=parent.pk).update(status="failed", finished_at=now)
    fragment = staff_client.get(f"/monitor/runs/{parent.pk}/steps/").content.decode()
    assert "data-refresh-url" not in fragment
    assert "cancelled before it started" in timeline_rows(fragment)["merge"]
    assert "running steps reach to now" not in fragment


def test_only_a_workflow_run_has_a_steps_part(staff_client):
    run = RunFactory(job_type=JobTypeFactory(name="echo"), status="succeeded")
    body = staff_client.get(f"/monitor/runs/{run.pk}/").content.decode()
    assert 'id="workflow-steps"' not in body
    assert staff_client.get(f"/monitor/runs/{run.pk}/steps/").status_code == 404


def test_a_step_runs_page_links_to_its_workflow_run(staff_client, diamond):
    parent, steps = diamond
    body = staff_client.get(f"/monitor/runs/{steps['left'].pk}/").content.decode()
    assert '<strong id="step-name">left</strong>' in body
    assert f'id="workflow-run-link" href="/monitor/runs/{parent.pk}/"' in body
    assert "(diamond)" in body


def test_a_step_reused_by_a_rerun_says_so_instead_of_drawing_old_times(staff_client, diamond):
    parent, steps = diamond
    rerun = RunFactory(job_type=parent.job_type, status="running", rerun_of=parent, trigger="rerun")
    reused = RunFactory(
        job_type=steps["fetch"].job_type,
        parent=rerun,
        step_name="fetch",
        trigger="workflow",
        status="succeeded",
        rerun_of=steps["fetch"],
        started_at=steps["fetch"].started_at,
        finished_at=steps["fetch"].finished_at,
    )
    rows = timeline_rows(staff_client.get(f"/monitor/runs/{rerun.pk}/").content.decode())
    assert f"reused the result of run {str(steps['fetch'].pk)[:8]}" in rows["fetch"]
    body = staff_client.get(f"/monitor/runs/{reused.pk}/").content.decode()
    assert f'reused the result of <a class="mono" href="/monitor/runs/{steps["fetch"].pk}/"' in body


def test_step_and_job_type_names_are_escaped(staff_client, diamond):
    parent, steps = diamond
    # Names are slugs when typed in the admin or the API; rows written another way are still shown safely.
    Run.objects.filter(pk=steps["merge"].pk).update(step_name=XSS, depends_on=[XSS])
    Run.objects.filter(pk=steps["right"].pk).update(depends_on=["fetch", XSS])
    JobType.objects.filter(name="echo").update(name=XSS)
    for page in [
        f"/monitor/runs/{parent.pk}/",
        f"/monitor/runs/{parent.pk}/steps/",
        f"/monitor/runs/{steps['merge'].pk}/",
    ]:
        body = staff_client.get(page).content.decode()
        assert XSS not in body, page
        assert "&lt;img src=x onerror=alert(1)&gt;" in body, page


def test_the_timeline_axis_has_round_ticks():
    now = timezone.now()
    run = Run(
        step_name="only",
        status="succeeded",
        job_type=JobType(name="echo"),
        queued_at=now - timedelta(seconds=12),
        started_at=now - timedelta(seconds=11),
        finished_at=now,
    )
    timeline = step_timeline([run], now=now)
    assert [label for _, label in timeline.ticks] == ["0", "+2 s", "+4 s", "+6 s", "+8 s", "+10 s", "+12 s"]
    assert timeline.ticks[0][0] == timeline.left


def test_a_failed_workflow_run_can_be_rerun_from_its_failed_steps(operator_client, diamond):
    parent, steps = diamond
    now = timezone.now()
    Run.objects.filter(pk=steps["left"].pk).update(status="failed", finished_at=now, error="boom")
    Run.objects.filter(pk__in=[steps["right"].pk, steps["merge"].pk]).update(status="cancelled", finished_at=now)
    Run.objects.filter(pk=parent.pk).update(status="failed", finished_at=now)
    flow = parent.job_type
    echo = steps["fetch"].job_type
    for position, name in enumerate(["fetch", "left", "right", "merge"]):
        flow.steps.create(name=name, job_type=echo, depends_on=steps[name].depends_on, position=position)

    body = operator_client.get(f"/monitor/runs/{parent.pk}/").content.decode()
    assert 'id="rerun-failed"' in body
    response = operator_client.post(f"/monitor/runs/{parent.pk}/rerun/", {"from_failed": "1"})
    rerun = Run.objects.get(rerun_of=parent, parent=None)
    assert response["Location"] == f"/monitor/runs/{rerun.pk}/"
    reused = rerun.children.get(step_name="fetch")
    assert (reused.status, reused.rerun_of) == ("succeeded", steps["fetch"])
    assert rerun.children.get(step_name="left").status in ("waiting", "pending", "queued")
    # A succeeded or plain run offers only the plain rerun.
    plain = RunFactory(job_type=echo, status="failed")
    assert 'id="rerun-failed"' not in operator_client.get(f"/monitor/runs/{plain.pk}/").content.decode()
