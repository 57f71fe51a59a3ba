import json
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from django.utils.html import escape

from jobs.models import JobType, Schedule
from tests.factories import JobTypeFactory, RunFactory

URL = "/api/v1/schedules/"


@pytest.fixture
def report(db):
    return JobTypeFactory(
        name="report", params_schema={"type": "object", "properties": {"day": {"type": "string"}}, "required": ["day"]}
    )


def test_it_creates_a_cron_schedule_with_its_next_fire(api, report):
    body = {
        "name": "monday-report",
        "job_type": "report",
        "params": {"day": "mon"},
        "cron": "0 5 * * 1",
        "timezone": "Europe/Berlin",
    }
    response = api.post(URL, body, format="json")
    assert response.status_code == 201, response.data
    assert response.data["timing"] == "At 05:00, only on Monday (Europe/Berlin)"
    schedule = Schedule.objects.get(name="monday-report")
    assert schedule.next_run_at > timezone.now()
    assert schedule.next_run_at.astimezone(timezone.get_default_timezone()).weekday() in (0, 6)
    assert response.data["last_run"] is None


def test_an_interval_schedule_fires_first_one_interval_after_creation(api, report):
    response = api.post(
        URL, {"name": "often", "job_type": "report", "params": {"day": "x"}, "interval_seconds": 90}, format="json"
    )
    assert response.status_code == 201, response.data
    schedule = Schedule.objects.get(name="often")
    assert schedule.next_run_at == schedule.created_at + timedelta(seconds=90)


def test_it_shows_the_last_run(api, report):
    schedule = Schedule.objects.create(name="s", job_type=report, params={"day": "x"}, interval_seconds=60)
    RunFactory(job_type=report, schedule=schedule, status="failed")
    newest = RunFactory(job_type=report, schedule=schedule, status="succeeded")
    data = api.get(f"{URL}{schedule.pk}/").data
    assert data["last_run"]["id"] == str(newest.pk)
    assert data["last_run"]["status"] == "succeeded"


def test_changing_the_timing_moves_the_next_fire_but_editing_params_does_not(api, report):
    schedule = Schedule.objects.create(name="s", job_type=report, params={"day": "x"}, interval_seconds=3600)
    before = schedule.next_run_at
    api.patch(f"{URL}{schedule.pk}/", {"params": {"day": "y"}}, format="json")
    schedule.refresh_from_db()
    assert (schedule.params, schedule.next_run_at) == ({"day": "y"}, before)
    api.patch(f"{URL}{schedule.pk}/", {"interval_seconds": None, "cron": "*/5 * * * *"}, format="json")
    schedule.refresh_from_db()
    assert schedule.next_run_at != before
    assert schedule.next_run_at.minute % 5 == 0


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"cron": "61 * * * *"}, "cron", "cron '61 * * * *': minute must be 0-59, not 61"),
        ({"cron": "0 5 * * 1", "timezone": "Mars/Olympus"}, "timezone", "Unknown time zone 'Mars/Olympus'"),
        ({"cron": "0 5 * * 1", "interval_seconds": 60}, "cron", "Give either cron or interval_seconds, not both."),
        ({}, "cron", "Give cron (e.g. '0 5 * * 1') or interval_seconds (e.g. 300)."),
        ({"interval_seconds": 0}, "interval_seconds", "Must be at least 1 second (JOBS_MIN_SCHEDULE_INTERVAL_SECONDS)"),
        ({"interval_seconds": -5}, "interval_seconds", "greater than or equal to 0"),
        (
            {"interval_seconds": 60, "start_at": "2030-01-02T00:00:00Z", "end_at": "2030-01-01T00:00:00Z"},
            "end_at",
            "Must be after start_at.",
        ),
        ({"interval_seconds": 60, "params": {"day": 3}}, "params", "day: 3 is not of type 'string'"),
        ({"interval_seconds": 60, "params": {}}, "params", "'day' is a required property"),
        ({"interval_seconds": 60, "job_type": "ghost"}, "job_type", "Object with name=ghost does not exist."),
        ({"interval_seconds": 60, "overlap": "sometimes"}, "overlap", '"sometimes" is not a valid choice.'),
    ],
)
def test_bad_schedules_get_a_400_naming_the_field_and_write_nothing(api, report, changes, field, message):
    body = {"name": "bad", "job_type": "report", "params": {"day": "mon"}, **changes}
    response = api.post(URL, body, format="json")
    assert response.status_code == 400
    assert message in " ".join(str(m) for m in response.data[field]), response.data
    assert not Schedule.objects.exists()


def test_the_admin_shows_the_same_errors_and_lists_schedules(client, admin_user, report):
    client.force_login(admin_user)
    response = client.post(
        reverse("admin:jobs_schedule_add"),
        {
            "name": "bad",
            "job_type": report.pk,
            "params": '{"day": "mon"}',
            "cron": "61 * * * *",
            "timezone": "UTC",
            "overlap": "allow",
            "enabled": "on",
        },
    )
    assert response.status_code == 200
    assert "minute must be 0-59, not 61" in response.content.decode()
    assert not Schedule.objects.exists()
    Schedule.objects.create(name="weekly", job_type=report, params={"day": "x"}, cron="0 5 * * 1")
    page = client.get(reverse("admin:jobs_schedule_changelist")).content.decode()
    assert "At 05:00, only on Monday (UTC)" in page


def test_the_admin_enable_and_disable_actions(client, admin_user, report):
    client.force_login(admin_user)
    schedule = Schedule.objects.create(name="s", job_type=report, params={"day": "x"}, interval_seconds=60)
    url = reverse("admin:jobs_schedule_changelist")
    client.post(url, {"action": "disable", "_selected_action": [schedule.pk]})
    schedule.refresh_from_db()
    assert schedule.enabled is False
    client.post(url, {"action": "enable", "_selected_action": [schedule.pk]})
    schedule.refresh_from_db()
    assert schedule.enabled is True
    assert schedule.next_run_at > timezone.now()


def test_viewers_cannot_change_schedules(viewer, api_as, report):
    from django.contrib.auth.models import Permission

    viewer.user_permissions.add(Permission.objects.get(codename="view_schedule"))
    client = api_as(viewer)
    assert client.get(URL).status_code == 200
    assert (
        client.post(URL, {"name": "s", "job_type": "report", "interval_seconds": 5}, format="json").status_code == 403
    )


@pytest.mark.parametrize("count", [2, 20])
def test_the_list_reads_every_schedules_last_run_in_the_same_query(api, report, count):
    for i in range(count):
        schedule = Schedule.objects.create(name=f"s-{i:02d}", job_type=report, params={"day": "x"}, interval_seconds=60)
        RunFactory(job_type=report, schedule=schedule, status="failed")
        RunFactory(job_type=report, schedule=schedule, status="succeeded")
    with CaptureQueriesContext(connection) as queries:
        response = api.get(URL)
    assert response.status_code == 200
    assert [row["last_run"]["status"] for row in response.data["results"]] == ["succeeded"] * count
    # The token's user, the page's COUNT, then the schedules with their job types and last runs:
    # 23 queries for 20 schedules when each last run was a query of its own.
    assert len(queries) == 3, [query["sql"] for query in queries.captured_queries]


# --- Limits on what schedules may make the system do ---------------------------------


def assert_refused_by_the_api_and_the_admin(api, admin, body: dict, field: str, message: str) -> None:
    """The schedule `body` (an interval schedule of job type 'report') gets `message` on `field`
    from the API (400) and as a form error from the admin's add form; neither writes it."""
    response = api.post(URL, body, format="json")
    assert response.status_code == 400
    assert response.data[field] == [message]
    form = {**body, "job_type": JobType.objects.get(name=body["job_type"]).pk, "params": json.dumps(body["params"])}
    form |= {"timezone": "UTC", "overlap": "allow", "enabled": "on"}
    response = admin.post(reverse("admin:jobs_schedule_add"), form)
    assert response.status_code == 200
    assert escape(message) in response.content.decode()
    assert not Schedule.objects.filter(name=body["name"]).exists()


def test_an_interval_under_jobs_min_schedule_interval_seconds_is_refused_by_the_api_and_the_admin(
    api, client, admin_user, report, settings
):
    settings.JOBS_MIN_SCHEDULE_INTERVAL_SECONDS = 10  # the default (the tests lower it for tests/e2e)
    message = (
        "Must be at least 10 seconds (JOBS_MIN_SCHEDULE_INTERVAL_SECONDS): "
        "ask an administrator to lower it to fire more often."
    )
    body = {"name": "hasty", "job_type": "report", "params": {"day": "x"}, "interval_seconds": 5}
    client.force_login(admin_user)
    assert_refused_by_the_api_and_the_admin(api, client, body, "interval_seconds", message)
    assert not Schedule.objects.exists()
    assert api.post(URL, body | {"interval_seconds": 10}, format="json").status_code == 201


def test_a_schedule_over_jobs_max_schedules_per_job_type_is_refused_by_the_api_and_the_admin(
    api, client, admin_user, report, settings
):
    settings.JOBS_MAX_SCHEDULES_PER_JOB_TYPE = 2
    first, _ = (
        Schedule.objects.create(name=f"s{i}", job_type=report, params={"day": "x"}, interval_seconds=60)
        for i in range(2)
    )
    message = (
        "Job type 'report' has 2 schedules already, the most JOBS_MAX_SCHEDULES_PER_JOB_TYPE allows: "
        "delete one of them, or ask an administrator to raise it."
    )
    body = {"name": "third", "job_type": "report", "params": {"day": "x"}, "interval_seconds": 60}
    client.force_login(admin_user)
    assert_refused_by_the_api_and_the_admin(api, client, body, "job_type", message)
    # Another job type has room; a schedule that has the job type already can still be edited.
    JobTypeFactory(name="other")
    assert api.post(URL, body | {"job_type": "other"}, format="json").status_code == 201
    assert api.patch(f"{URL}{first.pk}/", {"interval_seconds": 120}, format="json").status_code == 200
    response = api.patch(f"{URL}{Schedule.objects.get(name='third').pk}/", {"job_type": "report"}, format="json")
    assert response.status_code == 400 and response.data["job_type"] == [message]
    assert Schedule.objects.filter(job_type=report).count() == 2
