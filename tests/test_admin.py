"""The admin: every list renders, and its actions and forms call the services."""

import pytest
from django.urls import reverse

from jobs.models import JobType, Run
from tests.factories import JobTypeFactory, RunFactory, job_type_form


@pytest.fixture
def staff(client, admin_user):
    client.force_login(admin_user)
    return client


def test_each_admin_list_and_form_renders(staff):
    run = RunFactory(result={"ok": True}, error="<script>alert(1)</script>")
    pages = [
        reverse("admin:jobs_jobtype_changelist"),
        reverse("admin:jobs_jobtype_add"),
        reverse("admin:jobs_jobtype_change", args=[run.job_type.pk]),
        reverse("admin:jobs_jobtype_run", args=[run.job_type.pk]),
        reverse("admin:jobs_run_changelist"),
        reverse("admin:jobs_run_changelist") + "?status__exact=pending&q=" + run.job_type.name,
        reverse("admin:jobs_run_change", args=[run.pk]),
    ]
    for page in pages:
        response = staff.get(page)
        assert response.status_code == 200, page
    # User text is escaped.
    detail = staff.get(reverse("admin:jobs_run_change", args=[run.pk])).content.decode()
    assert "<script>alert(1)</script>" not in detail
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in detail


def test_adding_a_job_type_with_a_bad_config_shows_a_form_error(staff):
    form = job_type_form(name="bad", kind="command", task="", command='{"argv": ["rm", "-rf", "/"]}')
    response = staff.post(reverse("admin:jobs_jobtype_add"), form)
    assert response.status_code == 200
    assert "not in JOBS_COMMAND_ALLOWLIST" in response.content.decode()
    assert not JobType.objects.exists()


def test_a_job_type_whose_time_limit_the_visibility_timeout_would_cut_short_shows_a_form_error(staff):
    form = job_type_form(name="long", timeout_seconds=7200)
    response = staff.post(reverse("admin:jobs_jobtype_add"), form)
    assert response.status_code == 200
    page = response.content.decode()
    assert "timeout_seconds 7200 s + JOBS_HARD_TIMEOUT_GRACE_SECONDS 2 s = 7202 s is not under" in page
    assert "CELERY_VISIBILITY_TIMEOUT (3600 s)" in page
    response = staff.post(reverse("admin:jobs_jobtype_add"), {**form, "timeout_seconds": 60, "queue": "jobsite"})
    assert "&#x27;jobsite&#x27; is Jobsite&#x27;s own queue" in response.content.decode()
    assert not JobType.objects.exists()


def test_the_run_now_action_runs_each_selected_job_type(staff):
    a, b = JobTypeFactory(name="a"), JobTypeFactory(name="b", enabled=False)
    response = staff.post(
        reverse("admin:jobs_jobtype_changelist"),
        {"action": "run_now", "_selected_action": [a.pk, b.pk]},
        follow=True,
    )
    assert list(Run.objects.values_list("job_type__name", "trigger")) == [("a", "admin")]
    text = response.content.decode()
    assert "Started run <a href" in text and " of a." in text
    assert "Could not run b: Job type &#x27;b&#x27; is disabled" in text


def test_the_run_form_validates_params_against_the_schema(staff):
    job_type = JobTypeFactory(name="typed", params_schema={"type": "object", "properties": {"n": {"type": "integer"}}})
    url = reverse("admin:jobs_jobtype_run", args=[job_type.pk])
    response = staff.post(url, {"params": '{"n": "many"}'})
    assert response.status_code == 200
    assert "n: &#x27;many&#x27; is not of type &#x27;integer&#x27;" in response.content.decode()
    response = staff.post(url, {"params": '{"n": '})
    assert "Enter a valid JSON" in response.content.decode()
    assert not Run.objects.exists()
    response = staff.post(url, {"params": '{"n": 4}'})
    run = Run.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("admin:jobs_run_change", args=[run.pk])
    assert run.params == {"n": 4}


def test_cancel_and_rerun_actions(staff):
    finished = RunFactory(status="failed", params={"x": 1})
    queued = RunFactory(job_type=finished.job_type, status="pending")
    changelist = reverse("admin:jobs_run_changelist")
    staff.post(changelist, {"action": "rerun", "_selected_action": [finished.pk]})
    rerun = Run.objects.get(rerun_of=finished)
    assert rerun.params == {"x": 1}
    response = staff.post(changelist, {"action": "cancel", "_selected_action": [queued.pk, finished.pk]}, follow=True)
    queued.refresh_from_db()
    assert queued.status == "cancelled"
    assert "is already failed" in response.content.decode()


def test_a_viewer_sees_runs_but_gets_no_actions_or_run_form(client, viewer):
    viewer.is_staff = True
    viewer.save()
    client.force_login(viewer)
    run = RunFactory()
    response = client.get(reverse("admin:jobs_run_changelist"))
    assert response.status_code == 200
    assert 'value="cancel"' not in response.content.decode()
    assert client.get(reverse("admin:jobs_jobtype_run", args=[run.job_type.pk])).status_code == 403


def test_deleting_a_job_type_that_has_runs_disables_it_and_keeps_its_runs(staff):
    run = RunFactory()
    job_type = run.job_type
    url = reverse("admin:jobs_jobtype_delete", args=[job_type.pk])
    confirm = staff.get(url).content.decode()
    assert "it has runs, so it will be disabled instead of deleted" in confirm
    response = staff.post(url, {"post": "yes"}, follow=True)
    assert response.status_code == 200
    job_type.refresh_from_db()
    assert job_type.enabled is False
    assert Run.objects.filter(pk=run.pk).exists()
    assert "has runs, so it was disabled instead of deleted" in response.content.decode()
    history = staff.get(reverse("admin:jobs_jobtype_history", args=[job_type.pk])).content.decode()
    assert "Disabled: asked to delete it, but it has runs." in history


def test_deleting_a_job_type_without_runs_deletes_it(staff):
    job_type = JobTypeFactory(name="spare")
    response = staff.post(reverse("admin:jobs_jobtype_delete", args=[job_type.pk]), {"post": "yes"})
    assert response.status_code == 302
    assert not JobType.objects.filter(pk=job_type.pk).exists()


def test_the_delete_selected_action_disables_those_with_runs_and_deletes_the_rest(staff):
    used = RunFactory().job_type
    spare = JobTypeFactory(name="spare")
    staff.post(
        reverse("admin:jobs_jobtype_changelist"),
        {"action": "delete_selected", "_selected_action": [used.pk, spare.pk], "post": "yes"},
    )
    used.refresh_from_db()
    assert used.enabled is False
    assert not JobType.objects.filter(pk=spare.pk).exists()
