"""Who may see what: login everywhere, staff only for Flower, user text escaped."""

import pytest
from django.urls import reverse
from django.utils import timezone

from jobs.models import JobType, Run
from tests.factories import JobTypeFactory, RunFactory

RUN_ID = "6b1f2a3c-0000-4000-8000-000000000001"
GET_URLS = [
    "/",
    "/monitor/",
    "/monitor/live/",
    "/monitor/runs/",
    "/monitor/runs/?status=failed",
    f"/monitor/runs/{RUN_ID}/",
    f"/monitor/runs/{RUN_ID}/live/",
    "/monitor/job-types/",
    "/monitor/job-types/echo/",
    "/monitor/workers/",
    "/flower/",
    "/flower/tasks",
    f"/flower/task/{RUN_ID}",
    "/flower/api/workers",
    "/flower/static/js/flower.js",
]
POST_URLS = [
    f"/monitor/runs/{RUN_ID}/cancel/",
    f"/monitor/runs/{RUN_ID}/rerun/",
    "/monitor/job-types/echo/",
    f"/flower/api/task/revoke/{RUN_ID}",
]


@pytest.fixture
def existing_run(db):
    return RunFactory(id=RUN_ID, job_type=JobTypeFactory(name="echo"))


@pytest.mark.parametrize("url", GET_URLS)
def test_it_sends_anonymous_visitors_of_every_page_to_the_login_page(client, existing_run, url):
    response = client.get(url)
    assert response.status_code == 302
    if url == "/":
        response = client.get(response["Location"])
        assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/?next=")


@pytest.mark.parametrize("url", POST_URLS)
def test_it_sends_anonymous_posts_to_the_login_page_and_changes_nothing(client, existing_run, url):
    response = client.post(url)
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/?next=")
    existing_run.refresh_from_db()
    assert existing_run.status == Run.Status.PENDING
    assert Run.objects.count() == 1


@pytest.mark.parametrize("url", ["/flower/", "/flower/tasks", f"/flower/api/task/revoke/{RUN_ID}"])
def test_it_forbids_flower_to_users_who_are_not_staff(operator_client, url):
    assert operator_client.get(url).status_code == 403
    response = operator_client.post(url)
    assert response.status_code == 403
    assert "Flower is for staff users who may see runs." in response.content.decode()


def test_it_shows_no_flower_to_users_who_are_not_staff(operator_client, existing_run):
    assert 'src="/flower/"' not in operator_client.get("/monitor/workers/").content.decode()
    assert "/flower/task/" not in operator_client.get(f"/monitor/runs/{RUN_ID}/").content.decode()
    assert 'href="/flower/"' not in operator_client.get("/monitor/").content.decode()


def test_the_login_page_leads_to_the_dashboard(client, admin_user):
    response = client.post("/accounts/login/", {"username": "boss", "password": "pw"})
    assert response.status_code == 302
    assert response["Location"] == "/monitor/"


HTML = '<script>alert("x")</script>'


def test_it_escapes_job_names_descriptions_params_results_and_errors(staff_client):
    # The API and the admin only accept slugs as names; a row written some other
    # way must still be shown as text.
    job_type = JobType.objects.create(name=HTML, kind="task", task="jobs.builtin.echo", description=HTML)
    finished = Run.objects.create(
        job_type=job_type,
        trigger="api",
        status=Run.Status.FAILED,
        params={"note": HTML},
        result={"html": HTML},
        error=HTML,
        traceback=HTML,
        started_at=timezone.now(),
        finished_at=timezone.now(),
    )
    Run.objects.create(job_type=job_type, trigger="api", status=Run.Status.RUNNING, worker=HTML)
    pages = [
        "/monitor/",
        "/monitor/live/",
        "/monitor/runs/",
        f"/monitor/runs/{finished.pk}/",
        "/monitor/job-types/",
        reverse("monitor:job-type", args=[HTML]),
        reverse("monitor:job-type-history", args=[HTML]),
        reverse("monitor:job-type-revision", args=[HTML, job_type.history.latest().history_id]),
    ]
    for page in pages:
        response = staff_client.get(page)
        assert response.status_code == 200, page
        body = response.content.decode()
        assert HTML not in body, page
        assert "&lt;script&gt;alert(" in body, page
