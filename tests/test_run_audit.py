"""Who triggered, cancelled and reran a run: recorded on the run, shown by the
API, the admin and the run's page. (Cancelling revokes through the broker, so
these tests have the tests' Redis; a real worker's cancel is in tests/e2e/.)"""

from django.urls import reverse
from django.utils import timezone

from jobs.models import JobType, Run
from jobs.runs import trigger
from tests.factories import JobTypeFactory, RunFactory


def cancel_url(run: Run) -> str:
    return f"/api/v1/runs/{run.pk}/cancel/"


def test_it_records_who_cancelled_through_the_api_and_shows_it_in_the_run_detail(
    operator, api_as, redis_server, client, admin_user
):
    run = RunFactory(status="queued", requested_by=admin_user)
    before = timezone.now()
    api = api_as(operator)
    response = api.post(cancel_url(run))
    assert response.status_code == 200, response.data
    assert (response.data["status"], response.data["cancelled_by"]) == ("cancelled", "operator")
    run.refresh_from_db()
    assert run.cancelled_by == operator
    assert before <= run.cancelled_at <= timezone.now()
    detail = api.get(f"/api/v1/runs/{run.pk}/").data
    assert (detail["requested_by"], detail["cancelled_by"]) == ("boss", "operator")
    assert detail["cancelled_at"] == run.cancelled_at.isoformat().replace("+00:00", "Z")
    listed = api.get("/api/v1/runs/").data["results"][0]
    assert listed["cancelled_by"] == "operator"

    client.force_login(admin_user)
    page = client.get(f"/monitor/runs/{run.pk}/").content.decode()
    assert f'<dd id="cancelled">{run.cancelled_at:%Y-%m-%d %H:%M:%S} by operator</dd>' in page
    assert '<dd id="trigger">api by boss</dd>' in page
    admin_page = client.get(reverse("admin:jobs_run_change", args=[run.pk])).content.decode()
    assert "Cancelled by:" in admin_page and "operator" in admin_page
    assert "Cancelled at:" in admin_page


def test_a_failed_cancel_records_nobody(operator, api_as):
    run = RunFactory(status="succeeded")
    assert api_as(operator).post(cancel_url(run)).status_code == 409
    run.refresh_from_db()
    assert (run.cancelled_by, run.cancelled_at) == (None, None)


def test_it_records_who_cancelled_from_the_run_page_and_the_admin_action(client, operator, admin_user, redis_server):
    from_page, from_admin = RunFactory(status="queued"), RunFactory(status="pending")
    client.force_login(operator)
    client.post(f"/monitor/runs/{from_page.pk}/cancel/")
    client.force_login(admin_user)
    client.post(reverse("admin:jobs_run_changelist"), {"action": "cancel", "_selected_action": [from_admin.pk]})
    from_page.refresh_from_db()
    from_admin.refresh_from_db()
    assert (from_page.status, from_page.cancelled_by) == ("cancelled", operator)
    assert (from_admin.status, from_admin.cancelled_by) == ("cancelled", admin_user)


def test_cancelling_a_workflow_run_records_the_user_on_its_steps_too(operator, redis_server):
    workflow = JobTypeFactory(name="flow", kind=JobType.Kind.WORKFLOW, task="")
    workflow.steps.create(name="a", job_type=JobTypeFactory(name="a"))
    parent = RunFactory(job_type=workflow, status="running")
    step = RunFactory(job_type=JobType.objects.get(name="a"), parent=parent, step_name="a", status="waiting")
    trigger.run_cancel(run=parent, cancelled_by=operator)
    step.refresh_from_db()
    assert (step.status, step.cancelled_by) == ("cancelled", operator)


def test_a_step_that_jobsite_cancelled_says_so_on_its_page(client, admin_user):
    parent = RunFactory(status="failed")
    step = RunFactory(parent=parent, step_name="b", status="cancelled", cancelled_at=timezone.now())
    orphan = RunFactory(status="cancelled", cancelled_at=timezone.now())
    client.force_login(admin_user)
    assert "by Jobsite, as its workflow run ended" in client.get(f"/monitor/runs/{step.pk}/").content.decode()
    assert "(no user recorded)" in client.get(f"/monitor/runs/{orphan.pk}/").content.decode()


def test_the_original_runs_page_lists_who_reran_it(client, operator, viewer, admin_user):
    run = RunFactory(status="failed", requested_by=admin_user)
    client.force_login(operator)
    client.post(f"/monitor/runs/{run.pk}/rerun/")
    rerun = Run.objects.get(rerun_of=run)
    assert (rerun.trigger, rerun.requested_by) == ("rerun", operator)
    client.force_login(viewer)
    page = client.get(f"/monitor/runs/{run.pk}/").content.decode()
    assert f'href="/monitor/runs/{rerun.pk}/"' in page
    assert "by operator" in page.split('id="reruns"')[1]
    assert '<dd id="trigger">rerun by operator</dd>' in client.get(f"/monitor/runs/{rerun.pk}/").content.decode()
