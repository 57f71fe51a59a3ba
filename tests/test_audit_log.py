"""Who changed job types, workflows and schedules: through the API, the admin
and the import commands, all recorded in the admin's log and shown on each
object's History page and on the audit log page."""

import getpass
from datetime import timedelta
from io import StringIO
from pathlib import Path

import pytest
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.auth.models import User
from django.contrib.contenttypes.models import ContentType
from django.core.management import call_command
from django.core.management.base import CommandError
from django.urls import reverse
from django.utils import timezone

from jobs.models import JobType, Schedule
from tests.factories import JobTypeFactory, RunFactory

FIXTURES = Path(__file__).parent / "fixtures" / "director"
ECHO = {"name": "echo", "kind": "task", "task": "jobs.builtin.echo"}


def log_of(obj_or_name) -> list[tuple[str, str]]:
    """(username, message) of the entries about an object (or object name), oldest first."""
    name = obj_or_name if isinstance(obj_or_name, str) else str(obj_or_name)
    entries = LogEntry.objects.filter(object_repr=name).order_by("id").select_related("user")
    return [(entry.user.username, entry.get_change_message()) for entry in entries]


@pytest.fixture
def editor(db):
    from tests.conftest import _user

    return _user("editor", "jobs.view_jobtype", "jobs.add_jobtype", "jobs.change_jobtype", "jobs.delete_jobtype",
                 "jobs.view_schedule", "jobs.add_schedule", "jobs.change_schedule", "jobs.delete_schedule")  # fmt: skip


def history_page(client, admin_user, url_name: str, pk) -> str:
    client.force_login(admin_user)
    response = client.get(reverse(f"admin:jobs_{url_name}_history", args=[pk]))
    assert response.status_code == 200
    return response.content.decode()


# --- Through the API ------------------------------------------------------------


def test_it_records_job_type_changes_through_the_api_with_the_fields_that_changed(editor, api_as, client, admin_user):
    api = api_as(editor)
    assert api.post("/api/v1/job-types/", ECHO, format="json").status_code == 201
    changed = {"description": "Says it back", "max_retries": 2, "webhook_secret": "s" * 32}
    assert api.patch("/api/v1/job-types/echo/", changed, format="json").status_code == 200
    assert api.patch("/api/v1/job-types/echo/", {"description": "Says it back"}, format="json").status_code == 200
    assert log_of("echo") == [
        ("editor", "Added through the API."),
        ("editor", "Changed description, max_retries and webhook_secret through the API."),
    ]
    page = history_page(client, admin_user, "jobtype", JobType.objects.get(name="echo").pk)
    assert "Changed description, max_retries and webhook_secret through the API." in page
    assert "s" * 32 not in page  # the secret's name, never its value


def test_a_refused_change_records_nothing(editor, api_as):
    JobTypeFactory(name="echo")
    response = api_as(editor).patch("/api/v1/job-types/echo/", {"task": "no.such.task"}, format="json")
    assert response.status_code == 400
    assert log_of("echo") == []


def test_it_records_deleting_a_job_type_and_disabling_one_that_has_runs(editor, api_as):
    JobTypeFactory(name="temp")
    RunFactory(job_type=JobTypeFactory(name="kept"))
    api = api_as(editor)
    assert api.delete("/api/v1/job-types/temp/").status_code == 204
    assert api.delete("/api/v1/job-types/kept/").status_code == 200
    assert log_of("temp") == [("editor", "Deleted through the API.")]
    assert log_of("kept") == [("editor", "Changed enabled through the API (asked to delete it, but it has runs).")]


def test_workflow_step_changes_through_the_api_show_on_the_workflows_history(editor, api_as, client, admin_user):
    JobTypeFactory(name="a")
    JobTypeFactory(name="b")
    flow = {"name": "flow", "kind": "workflow", "steps": [{"name": "one", "job_type": "a"}]}
    api = api_as(editor)
    assert api.post("/api/v1/job-types/", flow, format="json").status_code == 201
    steps = [{"name": "one", "job_type": "a"}, {"name": "two", "job_type": "b", "depends_on": ["one"]}]
    assert api.patch("/api/v1/job-types/flow/", {"steps": steps}, format="json").status_code == 200
    assert log_of("flow") == [("editor", "Added through the API."), ("editor", "Changed steps through the API.")]
    page = history_page(client, admin_user, "workflow", JobType.objects.get(name="flow").pk)
    assert "Changed steps through the API." in page


def test_it_records_schedule_changes_through_the_api(editor, api_as, client, admin_user):
    JobTypeFactory(name="echo")
    api = api_as(editor)
    body = {"name": "nightly", "job_type": "echo", "cron": "0 3 * * *"}
    schedule_id = api.post("/api/v1/schedules/", body, format="json").data["id"]
    change = {"cron": "", "interval_seconds": 600, "params": {"x": 1}}
    assert api.patch(f"/api/v1/schedules/{schedule_id}/", change, format="json").status_code == 200
    page = history_page(client, admin_user, "schedule", schedule_id)
    assert api.delete(f"/api/v1/schedules/{schedule_id}/").status_code == 204
    assert log_of("nightly") == [
        ("editor", "Added through the API."),
        ("editor", "Changed params, cron and interval_seconds through the API."),
        ("editor", "Deleted through the API."),
    ]
    assert "Changed params, cron and interval_seconds through the API." in page


# --- Through the admin ------------------------------------------------------------


def test_the_admins_enable_and_disable_actions_are_recorded(client, admin_user):
    on, off = JobTypeFactory(name="on"), JobTypeFactory(name="off", enabled=False)
    schedule = Schedule.objects.create(name="tick", job_type=on, interval_seconds=60)
    client.force_login(admin_user)
    client.post(reverse("admin:jobs_jobtype_changelist"), {"action": "disable", "_selected_action": [on.pk, off.pk]})
    client.post(reverse("admin:jobs_schedule_changelist"), {"action": "disable", "_selected_action": [schedule.pk]})
    assert log_of("on") == [("boss", "Changed Enabled.")]
    assert log_of("off") == []  # it was disabled already
    assert log_of("tick") == [("boss", "Changed Enabled.")]


# --- Through the import commands ----------------------------------------------------


def import_job_types(path: Path, *args: str) -> str:
    out = StringIO()
    call_command("import_job_types", str(path), *args, stdout=out)
    return out.getvalue()


def write_definitions(tmp_path: Path, description: str) -> Path:
    path = tmp_path / "jobs.yaml"
    path.write_text(
        "job_types:\n"
        f"  - {{name: echo, kind: task, task: jobs.builtin.echo, description: {description}}}\n"
        "schedules:\n"
        "  - {name: nightly, job_type: echo, cron: '0 3 * * *'}\n"
    )
    return path


def test_an_import_is_recorded_under_the_given_user_and_only_what_changed(db, admin_user, tmp_path):
    path = write_definitions(tmp_path, "first")
    import_job_types(path, "--user", "boss")
    import_job_types(path, "--user", "boss")  # the same again: nothing changes, nothing recorded
    write_definitions(tmp_path, "second")
    import_job_types(path, "--user", "boss")
    assert log_of("echo") == [
        ("boss", f"Added by import_job_types from {path}."),
        ("boss", f"Changed description by import_job_types from {path}."),
    ]
    assert log_of("nightly") == [("boss", f"Added by import_job_types from {path}.")]


def test_an_import_without_user_is_recorded_under_an_inactive_system_account(db, tmp_path):
    path = write_definitions(tmp_path, "first")
    import_job_types(path)
    system = User.objects.get(username="system")
    assert (system.is_active, system.has_usable_password()) == (False, False)
    assert log_of("echo") == [
        ("system", f"Added by import_job_types from {path} (run as {getpass.getuser()}, without --user).")
    ]


def test_an_import_with_an_unknown_user_writes_nothing(db, tmp_path):
    with pytest.raises(CommandError, match="--user ghost: there is no such user"):
        import_job_types(write_definitions(tmp_path, "first"), "--user", "ghost")
    assert not JobType.objects.exists()
    assert not LogEntry.objects.exists()


def test_a_bad_file_writes_no_record_either(db, admin_user, tmp_path):
    path = tmp_path / "jobs.yaml"
    path.write_text("job_types:\n  - {name: echo, kind: task, task: jobs.builtin.echo}\n  - {name: bad, kind: nope}\n")
    with pytest.raises(CommandError):
        import_job_types(path, "--user", "boss")
    assert not LogEntry.objects.exists()


def test_import_workflows_is_recorded(db, admin_user):
    call_command("import_workflows", str(FIXTURES / "workflows.yml"), "--user", "boss", stdout=StringIO())
    assert log_of("shop-etl") == [("boss", f"Added by import_workflows from {FIXTURES / 'workflows.yml'}.")]
    entry = LogEntry.objects.get(object_repr="shop-etl")
    assert entry.content_type.model == "workflow"  # so the Workflows page's History finds it


# --- The audit log page --------------------------------------------------------------


def test_the_audit_log_needs_a_login(client):
    response = client.get("/monitor/audit/")
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


def test_the_audit_log_lists_changes_from_everywhere_newest_first(client, viewer, editor, api_as, admin_user, tmp_path):
    api_as(editor).post("/api/v1/job-types/", ECHO, format="json")
    import_job_types(write_definitions(tmp_path, "imported"), "--user", "boss")
    client.force_login(admin_user)
    echo = JobType.objects.get(name="echo")
    client.post(reverse("admin:jobs_jobtype_changelist"), {"action": "disable", "_selected_action": [echo.pk]})
    client.force_login(viewer)
    response = client.get("/monitor/audit/")
    assert response.status_code == 200
    rows = response.content.decode().split("<tr data-entry=")[1:]
    assert len(rows) == 4
    assert "boss" in rows[0] and "Changed Enabled." in rows[0]
    assert "boss" in rows[1] and "nightly" in rows[1] and "Added by import_job_types" in rows[1]
    assert "boss" in rows[2] and "Changed description by import_job_types" in rows[2]
    assert "editor" in rows[3] and "Added through the API." in rows[3]
    assert reverse("admin:jobs_jobtype_history", args=[echo.pk]) in rows[3]
    assert 'href="/monitor/audit/"' in response.content.decode()  # in the navigation


def test_the_audit_log_filters_by_what_name_and_user(client, viewer, editor, api_as, tmp_path):
    api_as(editor).post("/api/v1/job-types/", ECHO, format="json")
    import_job_types(write_definitions(tmp_path, "imported"), "--user", "editor")
    client.force_login(viewer)

    def names(query: str) -> list[str]:
        response = client.get(f"/monitor/audit/?{query}")
        assert response.status_code == 200
        return [
            row.split("</a>")[0].rsplit(">", 1)[1] for row in response.content.decode().split("<tr data-entry=")[1:]
        ]

    assert names("what=schedule") == ["nightly"]
    job_type_page = client.get("/monitor/job-types/echo/").content.decode()
    assert '<a href="/monitor/audit/?name=echo" id="job-type-changes">' in job_type_page
    assert names("name=echo") == ["echo", "echo"]
    assert names("user=editor&what=jobtype") == ["echo", "echo"]
    response = client.get("/monitor/audit/?user=ghost")
    assert response.status_code == 400
    assert "No user is named &#x27;ghost&#x27;." in response.content.decode()
    assert client.get("/monitor/audit/?after=abc").status_code == 400


def test_the_audit_log_pages_by_fifty(client, viewer, editor, api_as):
    api = api_as(editor)
    JobTypeFactory(name="echo")
    for n in range(120):
        api.patch("/api/v1/job-types/echo/", {"max_retries": 2 + n % 2}, format="json")
    assert LogEntry.objects.count() == 120
    client.force_login(viewer)
    seen, url = [], "/monitor/audit/"
    while url:
        response = client.get(url)
        body = response.content.decode()
        seen.append(body.count("<tr data-entry="))
        older = [part for part in body.split('href="') if 'rel="next"' in part.split(">")[0]]
        url = "/monitor/audit/" + older[0].split('"')[0].replace("&amp;", "&") if older else None
    assert seen == [50, 50, 20]
    assert 'rel="prev"' in body and "Newest" in body


def test_the_audit_log_pages_back_to_the_newest_with_its_filters_and_entries_of_the_same_instant(client, viewer):
    echo, other = JobTypeFactory(name="echo"), JobTypeFactory(name="other")
    # 260 entries, half about another job type; those about echo come three at the same instant,
    # so that the pages (of 50) break between entries of one instant.
    at = timezone.now()
    LogEntry.objects.bulk_create(
        LogEntry(
            action_time=at - timedelta(seconds=i // 6),
            user=viewer,
            content_type=ContentType.objects.get_for_model(JobType),
            object_id=str((echo if i % 2 else other).pk),
            object_repr=(echo if i % 2 else other).name,
            action_flag=CHANGE,
            change_message=f"change {i}",
        )
        for i in range(260)
    )
    expected = [
        f'"{pk}"'
        for pk in LogEntry.objects.filter(object_repr="echo")
        .order_by("-action_time", "-id")
        .values_list("pk", flat=True)
    ]
    client.force_login(viewer)

    def link(body: str, rel: str) -> str | None:
        found = [part for part in body.split('href="') if f'rel="{rel}"' in part.split(">")[0]]
        return "/monitor/audit/" + found[0].split('"')[0].replace("&amp;", "&") if found else None

    def walk(url: str, rel: str) -> tuple[list[list[str]], str]:
        """The entry ids of each page following `rel` links from `url`, and the last page."""
        pages = []
        while url:
            body = client.get(url).content.decode()
            pages.append([row.split(">")[0] for row in body.split("<tr data-entry=")[1:]])
            url = link(body, rel)
            assert url is None or "name=echo" in url
        return pages, body

    forward, last = walk("/monitor/audit/?name=echo", "next")
    assert [len(page) for page in forward] == [50, 50, 30]
    assert [entry for page in forward for entry in page] == expected
    # "Newer" from the last page leads back through the same pages to the newest.
    backward, first = walk(link(last, "prev"), "prev")
    assert backward == forward[1::-1]
    assert link(first, "prev") is None
