"""Revisions of job types and schedules over the API: listing them with who,
when, through what and what changed; one revision's definition; restoring one
(and what a restore refuses); and the revisions the admin and the import
commands leave."""

import json
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.db import connection

from jobs.models import JobType, Run, Schedule, Workflow
from jobs.schedules.dispatcher import dispatch_due
from tests.credentials import HOOK_SECRET, SECRETS, fetch_job_type
from tests.factories import JobTypeFactory, job_type_form

pytestmark = pytest.mark.postgres  # run on PostgreSQL too (see pyproject.toml)

URL = "/api/v1/job-types/"


def revisions_of(api, name: str) -> list[dict]:
    response = api.get(f"{URL}{name}/revisions/")
    assert response.status_code == 200, response.data
    return response.data["results"]


@pytest.fixture
def echo(db):
    return JobTypeFactory(name="echo")


def workflow(*steps: dict) -> dict:
    return {"name": "etl", "kind": "workflow", "steps": list(steps)}


STEP_A = {"name": "a", "job_type": "echo", "params": {"n": 1}, "depends_on": []}
STEP_B = {"name": "b", "job_type": "echo", "params": {}, "depends_on": ["a"]}


def test_it_lists_revisions_newest_first_with_user_source_and_field_changes(api):
    assert (
        api.post(URL, {"name": "nightly", "kind": "task", "task": "jobs.builtin.echo"}, format="json").status_code
        == 201
    )
    assert (
        api.patch(f"{URL}nightly/", {"description": "Runs at night", "max_retries": 2}, format="json").status_code
        == 200
    )

    newest, first = revisions_of(api, "nightly")
    assert newest["id"] > first["id"] and newest["created_at"] >= first["created_at"]
    assert (newest["user"], newest["source"], newest["type"]) == ("boss", "api", "changed")
    assert newest["changes"] == [
        {"field": "description", "old": "", "new": "Runs at night"},
        {"field": "max_retries", "old": 0, "new": 2},
    ]
    assert (first["source"], first["type"]) == ("api", "created")
    assert {"field": "name", "old": None, "new": "nightly"} in first["changes"]


def test_a_workflows_revision_holds_its_steps_and_a_step_change_is_a_change(api, echo):
    assert api.post(URL, workflow(STEP_A), format="json").status_code == 201
    assert api.patch(f"{URL}etl/", {"steps": [STEP_A, STEP_B]}, format="json").status_code == 200

    newest, first = revisions_of(api, "etl")
    assert newest["changes"] == [{"field": "steps", "old": [STEP_A], "new": [STEP_A, STEP_B]}]
    detail = api.get(f"{URL}etl/revisions/{first['id']}/")
    assert detail.status_code == 200
    assert detail.data["definition"]["steps"] == [STEP_A]
    assert detail.data["definition"]["kind"] == "workflow"


def test_restoring_a_revision_brings_the_definition_back_as_a_new_revision(api, echo):
    api.post(URL, workflow(STEP_A, STEP_B), format="json")
    api.patch(f"{URL}etl/", {"description": "v2", "steps": [STEP_A]}, format="json")
    first = revisions_of(api, "etl")[-1]

    response = api.post(f"{URL}etl/revisions/{first['id']}/restore/")
    assert response.status_code == 200, response.data
    assert response.data["description"] == "" and response.data["steps"] == [STEP_A, STEP_B]
    etl = JobType.objects.get(name="etl")
    assert etl.description == "" and list(etl.steps.values_list("name", flat=True)) == ["a", "b"]
    restored = revisions_of(api, "etl")[0]
    assert (restored["source"], restored["user"]) == ("restore", "boss")
    assert restored["changes"] == [
        {"field": "description", "old": "v2", "new": ""},
        {"field": "steps", "old": [STEP_A], "new": [STEP_A, STEP_B]},
    ]


def test_a_restore_names_a_step_job_type_deleted_since_and_writes_nothing(api, echo):
    JobTypeFactory(name="gone")
    api.post(URL, workflow(STEP_A, {"name": "b", "job_type": "gone"}), format="json")
    api.patch(f"{URL}etl/", {"steps": [STEP_A]}, format="json")
    assert api.delete(f"{URL}gone/").status_code == 204
    first = revisions_of(api, "etl")[-1]
    count = len(revisions_of(api, "etl"))

    response = api.post(f"{URL}etl/revisions/{first['id']}/restore/")
    assert response.status_code == 400
    assert "gone" in json.dumps(response.data["steps"])
    assert f"Revision {first['id']} cannot be restored" in response.data["detail"][0]
    assert list(JobType.objects.get(name="etl").steps.values_list("name", flat=True)) == ["a"]
    assert len(revisions_of(api, "etl")) == count


def test_revisions_mask_credentials_and_never_keep_the_webhook_secret(api):
    fetch_job_type()
    api.patch(
        f"{URL}fetch/", {"description": "with credentials", "webhook_secret": "another-long-secret"}, format="json"
    )
    listed = api.get(f"{URL}fetch/revisions/")
    revision_id = listed.data["results"][-1]["id"]
    detail = api.get(f"{URL}fetch/revisions/{revision_id}/")
    for response in (listed, detail):
        text = response.content.decode()
        assert not [secret for secret in (*SECRETS, HOOK_SECRET, "another-long-secret") if secret in text]
    assert detail.data["definition"]["http"]["headers"]["Authorization"] == "********"
    columns = [
        c.name for c in connection.introspection.get_table_description(connection.cursor(), "jobs_historicaljobtype")
    ]
    assert "webhook_secret" not in columns
    # A restore keeps the stored secret and credentials.
    assert api.post(f"{URL}fetch/revisions/{revision_id}/restore/").status_code == 200
    fetch = JobType.objects.get(name="fetch")
    assert fetch.webhook_secret == "another-long-secret"
    assert fetch.http["headers"]["Authorization"] == "Bearer s3cr3t-bearer"


def test_viewers_read_revisions_and_only_editors_restore(api_as, viewer, operator, job_type):
    revision = job_type.history.latest()
    as_viewer, as_operator = api_as(viewer), api_as(operator)
    assert as_viewer.get(f"{URL}{job_type.name}/revisions/").status_code == 200
    assert as_viewer.get(f"{URL}{job_type.name}/revisions/{revision.history_id}/").status_code == 200
    for client in (as_viewer, as_operator):
        assert client.post(f"{URL}{job_type.name}/revisions/{revision.history_id}/restore/").status_code == 403


def test_an_unknown_revision_or_another_job_types_is_404(api, job_type):
    other = JobTypeFactory(name="other").history.latest()
    assert api.get(f"{URL}{job_type.name}/revisions/{other.history_id}/").status_code == 404
    assert api.post(f"{URL}{job_type.name}/revisions/999999/restore/").status_code == 404


def test_schedules_have_revisions_and_a_restore_names_a_job_type_deleted_since(api, echo):
    JobTypeFactory(name="weekly")
    created = api.post(
        "/api/v1/schedules/", {"name": "nightly", "job_type": "weekly", "cron": "0 3 * * *"}, format="json"
    )
    url = f"/api/v1/schedules/{created.data['id']}/revisions/"
    api.patch(f"/api/v1/schedules/{created.data['id']}/", {"job_type": "echo", "cron": "0 4 * * *"}, format="json")
    newest, first = api.get(url).data["results"]
    assert (newest["user"], newest["source"]) == ("boss", "api")
    assert newest["changes"] == [
        {"field": "job_type", "old": "weekly", "new": "echo"},
        {"field": "cron", "old": "0 3 * * *", "new": "0 4 * * *"},
    ]
    assert api.get(f"{url}{first['id']}/").data["definition"]["job_type"] == "weekly"

    api.delete("/api/v1/job-types/weekly/")
    response = api.post(f"{url}{first['id']}/restore/")
    assert response.status_code == 400
    assert "job_type" in response.data and "deleted job type" in json.dumps(response.data["job_type"])
    assert Schedule.objects.get(name="nightly").cron == "0 4 * * *"

    api.patch(f"/api/v1/schedules/{created.data['id']}/", {"cron": "0 5 * * *"}, format="json")
    assert api.post(f"{url}{newest['id']}/restore/").status_code == 200
    assert Schedule.objects.get(name="nightly").cron == "0 4 * * *"
    assert api.get(url).data["results"][0]["source"] == "restore"


def test_a_change_in_the_admin_is_a_revision_with_source_admin(client, admin_user):
    client.force_login(admin_user)
    response = client.post("/admin/jobs/jobtype/add/", job_type_form())
    assert response.status_code == 302
    told = JobType.objects.get(name="told")
    response = client.post(f"/admin/jobs/jobtype/{told.pk}/change/", job_type_form(description="edited"))
    assert response.status_code == 302
    newest, first = told.history.all()
    assert (newest.history_change_reason, newest.history_user, first.history_change_reason) == (
        "admin",
        admin_user,
        "admin",
    )
    assert newest.diff_against(first).changed_fields == ["description"]


def test_an_import_is_a_revision_with_source_import(admin_user, tmp_path, echo):
    path = tmp_path / "job-types.yml"
    path.write_text("job_types:\n- name: echo\n  kind: task\n  task: jobs.builtin.echo\n  description: imported\n")
    call_command("import_job_types", str(path), "--user", "boss", stdout=None)
    newest = echo.history.latest()
    assert (newest.history_change_reason, newest.history_user) == ("import", admin_user)
    assert newest.description == "imported"


def test_a_celery_director_import_is_a_revision_with_its_steps(db):
    from tests.test_import_export import WORKFLOWS_YML

    call_command("import_workflows", str(WORKFLOWS_YML), stdout=None)
    workflow = JobType.objects.filter(kind="workflow").exclude(steps=None).first()
    newest = workflow.history.latest()
    assert (newest.history_change_reason, newest.history_user.username) == ("import", "system")
    assert [step["name"] for step in newest.steps] == list(
        workflow.steps.order_by("position", "id").values_list("name", flat=True)
    )


def test_runs_record_the_revision_they_run_planned_ones_included(db):
    echo = JobTypeFactory(name="echo")
    schedule = Schedule.objects.create(name="hourly", job_type=echo, interval_seconds=3600)
    echo.description = "second revision"
    echo.save()
    dispatch_due(now=schedule.next_run_at - timedelta(seconds=5))
    planned = Run.objects.get(schedule=schedule)
    assert planned.job_type_revision == echo.history.latest()
    assert planned.job_type_revision.description == "second revision"


def test_a_runs_api_answer_names_the_revision_it_runs_and_that_revision_reads_back(api, echo, redis_server):
    assert api.patch("/api/v1/job-types/echo/", {"description": "second"}, format="json").status_code == 200
    run = api.post("/api/v1/job-types/echo/run/", {"params": {}}, format="json").data
    latest = revisions_of(api, "echo")[0]
    assert run["job_type_revision"] == latest["id"]
    assert api.get(f"/api/v1/runs/{run['id']}/").data["job_type_revision"] == latest["id"]
    revision = api.get(f"/api/v1/job-types/echo/revisions/{run['job_type_revision']}/")
    assert revision.status_code == 200
    assert revision.data["definition"]["description"] == "second"


def test_disabling_a_workflow_with_an_admin_action_is_a_revision(client, admin_user, echo):
    workflow = Workflow.objects.create(name="etl")
    client.force_login(admin_user)
    response = client.post("/admin/jobs/workflow/", {"action": "disable", "_selected_action": [workflow.pk]})
    assert response.status_code == 302
    newest, first = JobType.objects.get(name="etl").history.all()
    assert (newest.history_change_reason, newest.history_user, newest.enabled) == ("admin", admin_user, False)
    assert newest.diff_against(first).changed_fields == ["enabled"]
