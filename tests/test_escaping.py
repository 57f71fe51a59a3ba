"""User text with HTML and script in it is shown as text on every page and in
the notification email: job type names and descriptions, step and schedule
names, params, results, errors and tracebacks, and the audit log's entries.

The API and the admin accept only slugs as names; rows written some other way
(an import, a migration, the shell) must still be shown safely, so the test
writes them with the ORM. Runs go through a real worker, so their results,
errors and tracebacks are the worker's, and the email is the one it sends.
"""

from urllib.parse import urlencode

import pytest
from django.urls import reverse
from django.utils import timezone

from jobs import audit
from jobs.models import JobType, Run, Schedule, Workflow
from jobs.runs.trigger import run_create
from tests.conftest import wait_for_notification, wait_for_run
from tests.servers import html_part, text_part

PAYLOAD = '"><script>alert("xss")</script><img src=x onerror=alert(1)>'
RAW = ("<script>alert(", "<img src=x onerror")
ESCAPED = "&lt;script&gt;alert("


def assert_shown_as_text(body: str, where: str) -> None:
    for raw in RAW:
        assert raw not in body, f"{where}: {raw!r} is in the page unescaped"
    assert ESCAPED in body, f"{where}: the text is not shown at all"


@pytest.fixture
def hostile(worker, mailbox, admin_user):
    """Job types, a workflow, a schedule and runs, full of HTML."""
    sleeper = JobType.objects.create(
        name=PAYLOAD,
        kind="task",
        task="tests.sleep_echo",
        description=PAYLOAD,
        default_params={"note": PAYLOAD},
        notify_on="completion",
        notify_emails=["ops@example.com"],
    )
    failing = JobType.objects.create(name=PAYLOAD + "-fails", kind="task", task="jobs.builtin.fail")
    flow = Workflow.objects.create(name="flow", description=PAYLOAD)
    flow.steps.create(name=PAYLOAD, job_type=sleeper, params={"note": PAYLOAD})
    schedule = Schedule.objects.create(name=PAYLOAD, job_type=sleeper, params={"note": PAYLOAD}, interval_seconds=3600)
    now = timezone.now()
    workflow_run = Run.objects.create(
        job_type=flow, trigger="api", status="succeeded", started_at=now, finished_at=now, result={PAYLOAD: PAYLOAD}
    )
    Run.objects.create(
        job_type=sleeper,
        parent=workflow_run,
        step_name=PAYLOAD,
        trigger="workflow",
        status="succeeded",
        params={"note": PAYLOAD},
        result={"note": PAYLOAD},
    )
    failed, _ = run_create(job_type=failing, params={"message": PAYLOAD}, trigger="api", requested_by=admin_user)
    sleeping, _ = run_create(job_type=sleeper, params={"seconds": 2}, trigger="api", schedule=schedule)
    # The audit log and the History pages name what changed.
    by = audit.Author(admin_user, audit.API)
    for obj in (sleeper, flow, schedule):
        audit.log_addition(obj, by=by)
    return {"sleeper": sleeper, "flow": flow, "schedule": schedule, "workflow_run": workflow_run}, failed, sleeping


def test_every_page_and_the_email_show_html_in_user_data_as_text(hostile, client, admin_user, mailbox):
    objects, failed, sleeping = hostile
    client.force_login(admin_user)
    wait_for_run(sleeping, "running")
    # The workers page lists what the workers run right now.
    assert_shown_as_text(client.get("/monitor/workers/").content.decode(), "/monitor/workers/")
    assert wait_for_run(failed).status == "failed" and PAYLOAD in failed.error and PAYLOAD in failed.traceback
    assert wait_for_run(sleeping).result == {"note": PAYLOAD}

    sleeper, flow, schedule = objects["sleeper"], objects["flow"], objects["schedule"]
    pages = [
        "/monitor/",
        "/monitor/live/",
        "/monitor/runs/",
        f"/monitor/runs/?job_type={sleeper.name}",
        f"/monitor/runs/{failed.pk}/",
        f"/monitor/runs/{failed.pk}/live/",
        f"/monitor/runs/{sleeping.pk}/",
        f"/monitor/runs/{objects['workflow_run'].pk}/",
        f"/monitor/runs/{objects['workflow_run'].pk}/steps/",
        f"/monitor/runs/?{urlencode({'schedule': schedule.name})}",
        "/monitor/schedules/",
        "/monitor/audit/",
        f"/monitor/audit/?{urlencode({'name': PAYLOAD})}",
        "/monitor/job-types/",
        reverse("monitor:job-type", args=[sleeper.name]),
        reverse("admin:jobs_jobtype_changelist"),
        reverse("admin:jobs_jobtype_change", args=[sleeper.pk]),
        reverse("admin:jobs_jobtype_run", args=[sleeper.pk]),
        reverse("admin:jobs_jobtype_history", args=[sleeper.pk]),
        reverse("admin:jobs_workflow_changelist"),
        reverse("admin:jobs_workflow_change", args=[flow.pk]),
        reverse("admin:jobs_run_changelist"),
        reverse("admin:jobs_run_change", args=[failed.pk]),
        reverse("admin:jobs_run_change", args=[sleeping.pk]),
        reverse("admin:jobs_run_change", args=[objects["workflow_run"].pk]),
        reverse("admin:jobs_schedule_changelist"),
        reverse("admin:jobs_schedule_change", args=[schedule.pk]),
        reverse("admin:jobs_schedule_history", args=[schedule.pk]),
        reverse("admin:django_celery_results_taskresult_change", args=[_task_result_pk(failed)]),
    ]
    for page in pages:
        response = client.get(page)
        assert response.status_code == 200, page
        assert_shown_as_text(response.content.decode(), page)

    # The admin's own messages name the job type.
    action = {"action": "run_now", "_selected_action": [sleeper.pk]}
    response = client.post(reverse("admin:jobs_jobtype_changelist"), action, follow=True)
    assert "Started run" in response.content.decode()
    assert_shown_as_text(response.content.decode(), "the run now action's message")

    # The email the worker sent about the sleeping run: HTML escaped, the text part plain text.
    wait_for_notification(sleeping)
    # The run the action started may have ended and been told about too.
    [message] = [m for m in mailbox.wait_for(1) if m["X-Jobsite-Run"] == str(sleeping.pk)]
    assert_shown_as_text(html_part(message), "the email's HTML")
    assert PAYLOAD in text_part(message)  # text/plain: shown as typed, nothing to escape
    assert message["Subject"] == f"[Jobsite] {PAYLOAD} succeeded"


def _task_result_pk(run: Run) -> int:
    from django_celery_results.models import TaskResult

    return TaskResult.objects.get(task_id=str(run.pk)).pk
