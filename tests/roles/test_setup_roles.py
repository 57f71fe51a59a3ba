"""Roles: `manage.py setup_roles`, and who gets what answer where.

The matrix tests walk every API operation (from the OpenAPI schema), every
admin page of every registered model, every monitoring page, Flower and the
docs, as an anonymous visitor and as a user of each role, and compare each
answer with the tables below. Another test checks that these requests, taken
together, reach every route the URL resolver knows, so that a new route
cannot be left out: add it to a table.

Each request runs in a savepoint that is rolled back, so every one sees the
same data (a DELETE does not take the object away from the next user).
"""

import copy
import io
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
from django.contrib import admin
from django.contrib.admin.utils import quote
from django.contrib.auth.models import Group, User
from django.contrib.contenttypes.models import ContentType
from django.core.management import CommandError, call_command
from django.db import transaction
from django.test import Client
from django.urls import URLResolver, get_resolver, resolve, reverse
from django.utils import timezone
from django_celery_beat.models import (
    ClockedSchedule,
    CrontabSchedule,
    IntervalSchedule,
    PeriodicTask,
    SolarSchedule,
)
from django_celery_results.models import GroupResult, TaskResult
from drf_spectacular.generators import SchemaGenerator
from rest_framework.authtoken.models import Token, TokenProxy
from rest_framework.test import APIClient

from jobs.core.roles import EDITORS, OPERATORS, VIEWERS
from jobs.models import JobType, Run, Schedule, Workflow

USERS = ("anonymous", "viewer", "operator", "editor", "admin")
ROLE_OF = {"viewer": VIEWERS, "operator": OPERATORS, "editor": EDITORS}


# --- setup_roles ----------------------------------------------------------------------


def perms(group_name: str) -> set[str]:
    group = Group.objects.get(name=group_name)
    return {f"{p.content_type.app_label}.{p.codename}" for p in group.permissions.select_related("content_type")}


def test_it_creates_the_three_roles_each_with_more_than_the_last(db):
    call_command("setup_roles")
    viewers, operators, editors = perms(VIEWERS), perms(OPERATORS), perms(EDITORS)
    assert {"jobs.view_jobtype", "jobs.view_run", "jobs.view_schedule", "django_celery_results.view_taskresult"} <= (
        viewers
    )
    assert all(p.split(".")[1].startswith("view_") for p in viewers)
    assert operators - viewers == {
        "jobs.run_jobtype",
        "jobs.cancel_run",
        "jobs.add_schedule",
        "jobs.change_schedule",
        "jobs.delete_schedule",
    }
    assert editors - operators == {"jobs.add_jobtype", "jobs.change_jobtype", "jobs.delete_jobtype"}
    # Users, groups and tokens stay with superusers.
    assert not any(p.startswith(("auth.", "authtoken.")) for p in editors)


def test_running_it_again_changes_nothing_and_puts_back_what_was_changed_by_hand(db, capsys):
    call_command("setup_roles")
    before = {name: perms(name) for name in (VIEWERS, OPERATORS, EDITORS)}
    call_command("setup_roles")
    assert capsys.readouterr().out.count("up to date") == 3
    viewers = Group.objects.get(name=VIEWERS)
    viewers.permissions.remove(*viewers.permissions.filter(codename="view_run"))
    viewers.permissions.add(*Group.objects.get(name=EDITORS).permissions.filter(codename="delete_jobtype"))
    call_command("setup_roles")
    assert "Viewers: 1 permissions added, 1 removed" in capsys.readouterr().out
    assert {name: perms(name) for name in (VIEWERS, OPERATORS, EDITORS)} == before
    assert Group.objects.count() == 3


def test_it_leaves_users_alone_unless_told_to_add_one(db):
    ada = User.objects.create_user("ada")
    call_command("setup_roles")
    ada.refresh_from_db()
    assert not ada.is_staff and not ada.groups.exists()
    call_command("setup_roles", "--add", "ada", "operators")
    ada = User.objects.get(pk=ada.pk)
    assert ada.is_staff  # the admin needs it
    assert [g.name for g in ada.groups.all()] == [OPERATORS]
    assert ada.has_perm("jobs.cancel_run") and not ada.has_perm("jobs.change_jobtype")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--add", "nobody", "Viewers"], "No user 'nobody': create it first"),
        (["--add", "ada", "Admins"], "No role 'Admins': use one of Viewers, Operators, Editors."),
    ],
)
def test_it_refuses_an_unknown_user_or_role_and_changes_nothing(db, args, message):
    User.objects.create_user("ada")
    with pytest.raises(CommandError, match=message):
        call_command("setup_roles", *args)
    assert not Group.objects.exists()
    assert not User.objects.get(username="ada").is_staff


# --- The world every request of the matrix sees ------------------------------------------


@pytest.fixture
def users(db) -> dict[str, User | None]:
    made = {"anonymous": None}
    for name, role in ROLE_OF.items():
        User.objects.create_user(name, password="pw")
        call_command("setup_roles", "--add", name, role, stdout=io.StringIO())
        made[name] = User.objects.get(username=name)
    made["admin"] = User.objects.create_superuser("boss", password="pw")
    return made


@dataclass
class World:
    echo: JobType
    spare: JobType  # no runs: can be deleted (204)
    flow: Workflow
    pending: Run
    finished: Run
    flow_run: Run  # a workflow run: its page has steps
    schedule: Schedule
    admin_objects: dict[str, Any] = field(default_factory=dict)


@pytest.fixture
def world(users, redis_server, settings) -> World:
    settings.MONITOR_INSPECT_TIMEOUT = 0.1  # no worker answers here: pages and /healthz must not wait long
    echo = JobType.objects.create(name="echo", kind="task", task="jobs.builtin.echo")
    spare = JobType.objects.create(name="spare", kind="task", task="jobs.builtin.echo")
    flow = Workflow.objects.create(name="flow")
    flow.steps.create(name="one", job_type=echo)
    pending = Run.objects.create(job_type=echo, trigger="api")
    finished = Run.objects.create(
        job_type=echo, trigger="api", status=Run.Status.FAILED, error="boom", finished_at=timezone.now()
    )
    flow_run = Run.objects.create(job_type=flow, trigger="api", status=Run.Status.RUNNING)
    schedule = Schedule.objects.create(name="nightly", job_type=echo, cron="0 3 * * *")
    interval = IntervalSchedule.objects.create(every=10, period="seconds")
    TaskResult.objects.create(task_id=str(finished.pk), status="FAILURE")
    admin_objects = {
        "jobs.jobtype": spare,
        "jobs.workflow": flow,
        "jobs.run": finished,
        "jobs.schedule": schedule,
        "django_celery_beat.periodictask": PeriodicTask.objects.create(name="t", task="x", interval=interval),
        "django_celery_beat.intervalschedule": interval,
        "django_celery_beat.crontabschedule": CrontabSchedule.objects.create(),
        "django_celery_beat.solarschedule": SolarSchedule.objects.create(event="sunrise", latitude=1, longitude=1),
        "django_celery_beat.clockedschedule": ClockedSchedule.objects.create(clocked_time=timezone.now()),
        "django_celery_results.taskresult": TaskResult.objects.get(task_id=str(finished.pk)),
        "django_celery_results.groupresult": GroupResult.objects.create(group_id="g"),
        "auth.user": users["viewer"],
        "auth.group": Group.objects.get(name=VIEWERS),
        "authtoken.tokenproxy": TokenProxy.objects.get(pk=Token.objects.create(user=users["editor"]).pk),
    }
    return World(echo, spare, flow, pending, finished, flow_run, schedule, admin_objects)


@dataclass
class Row:
    """One request and the answer each user gets: `answers` lists the status
    codes of anonymous, viewer, operator, editor and admin, in that order.
    `changed(response)` (for requests that change something) says whether it
    happened; it must have for exactly the users in `changes`."""

    method: str
    url: str
    answers: str
    data: Any = None
    changed: Any = None
    changes: str = ""

    def expected(self) -> dict[str, int]:
        codes = self.answers.split()
        assert len(codes) == len(USERS), self
        return dict(zip(USERS, map(int, codes), strict=True))


@contextmanager
def rolled_back():
    with transaction.atomic():
        yield
        transaction.set_rollback(True)


def walk(rows: list[Row], clients: dict[str, Any], *, json: bool = False) -> list[str]:
    """Send every row as every user; the answers that differ from the table."""
    wrong = []
    for row in rows:
        for user, expected in row.expected().items():
            client = clients[user]
            cookies = copy.deepcopy(client.cookies)  # a logout must not sign out the next request
            with rolled_back():
                kwargs = {"format": "json"} if json and row.data is not None else {}
                response = getattr(client, row.method.lower())(row.url, row.data, **kwargs)
                happened = row.changed(response) if row.changed else None
            client.cookies = cookies
            if response.status_code != expected:
                body = response.content[:200].decode(errors="replace").strip()
                wrong.append(f"{row.method} {row.url} as {user}: {response.status_code}, expected {expected} {body!r}")
            should = user in row.changes.split()
            if row.changed and happened != should:
                wrong.append(f"{row.method} {row.url} as {user}: changed={happened}, expected {should}")
    return wrong


def api_client(user: User | None) -> APIClient:
    """The API as `user`, with a token (anonymous: without)."""
    client = APIClient()
    if user is not None:
        client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.get_or_create(user=user)[0].key}")
    return client


def page_client(user: User | None) -> Client:
    """The site as `user`, signed in (anonymous: not)."""
    client = Client()
    if user is not None:
        client.force_login(user)
    return client


@pytest.fixture
def api_clients(users) -> dict[str, APIClient]:
    return {name: api_client(user) for name, user in users.items()}


@pytest.fixture
def page_clients(users) -> dict[str, Client]:
    return {name: page_client(user) for name, user in users.items()}


# --- The API -----------------------------------------------------------------------------

READ = "401 200 200 200 200"
OPERATE = "401 403 {ok} {ok} {ok}"
EDIT = "401 403 403 {ok} {ok}"


def api_rows(w: World) -> dict[tuple[str, str], list[Row]]:
    """Every operation of the OpenAPI schema: (method, path) -> its requests."""
    jt, run, schedule = "/api/v1/job-types", "/api/v1/runs", "/api/v1/schedules"
    task = {"kind": "task", "task": "jobs.builtin.echo"}
    runs_before = Run.objects.count()

    def job_type_named(name, **fields):
        return lambda response: JobType.objects.filter(name=name, **fields).exists()

    return {
        ("GET", "/api/v1/job-types/"): [Row("GET", f"{jt}/", READ)],
        ("POST", "/api/v1/job-types/"): [
            Row(
                "POST",
                f"{jt}/",
                EDIT.format(ok=201),
                {"name": "new", **task},
                job_type_named("new"),
                at_least("editor"),
            ),
            Row(
                "POST",
                f"{jt}/",
                EDIT.format(ok=201),
                {"name": "new-flow", "kind": "workflow", "steps": [{"name": "a", "job_type": "echo"}]},
                job_type_named("new-flow", kind="workflow"),
                at_least("editor"),
            ),
        ],
        ("GET", "/api/v1/job-types/{name}/"): [Row("GET", f"{jt}/spare/", READ), Row("GET", f"{jt}/flow/", READ)],
        ("PUT", "/api/v1/job-types/{name}/"): [
            Row(
                "PUT",
                f"{jt}/spare/",
                EDIT.format(ok=200),
                {"name": "spare", "description": "put", **task},
                job_type_named("spare", description="put"),
                at_least("editor"),
            )
        ],
        ("PATCH", "/api/v1/job-types/{name}/"): [
            Row(
                "PATCH",
                f"{jt}/flow/",
                EDIT.format(ok=200),
                {"description": "patched"},
                job_type_named("flow", description="patched"),
                at_least("editor"),
            )
        ],
        ("DELETE", "/api/v1/job-types/{name}/"): [
            Row(
                "DELETE",
                f"{jt}/spare/",
                EDIT.format(ok=204),
                None,
                lambda r: not job_type_named("spare")(r),
                at_least("editor"),
            )
        ],
        ("POST", "/api/v1/job-types/{name}/run/"): [
            Row(
                "POST",
                f"{jt}/echo/run/",
                OPERATE.format(ok=201),
                {"params": {}},
                lambda r: Run.objects.count() == runs_before + 1,
                at_least("operator"),
            ),
            Row(
                "POST",
                f"{jt}/flow/run/",
                OPERATE.format(ok=201),
                {},
                lambda r: Run.objects.filter(job_type=w.flow).exclude(pk=w.flow_run.pk).exists(),
                at_least("operator"),
            ),
        ],
        ("GET", "/api/v1/runs/"): [Row("GET", f"{run}/", READ)],
        ("GET", "/api/v1/runs/{id}/"): [Row("GET", f"{run}/{w.finished.pk}/", READ)],
        ("POST", "/api/v1/runs/{id}/cancel/"): [
            Row(
                "POST",
                f"{run}/{w.pending.pk}/cancel/",
                OPERATE.format(ok=200),
                None,
                lambda r: Run.objects.get(pk=w.pending.pk).status == Run.Status.CANCELLED,
                at_least("operator"),
            )
        ],
        ("POST", "/api/v1/runs/{id}/rerun/"): [
            Row(
                "POST",
                f"{run}/{w.finished.pk}/rerun/",
                OPERATE.format(ok=201),
                {},
                lambda r: Run.objects.filter(rerun_of=w.finished).exists(),
                at_least("operator"),
            )
        ],
        ("GET", "/api/v1/schedules/"): [Row("GET", f"{schedule}/", READ)],
        ("POST", "/api/v1/schedules/"): [
            Row(
                "POST",
                f"{schedule}/",
                OPERATE.format(ok=201),
                {"name": "hourly", "job_type": "echo", "cron": "0 * * * *"},
                lambda r: Schedule.objects.filter(name="hourly").exists(),
                at_least("operator"),
            )
        ],
        ("GET", "/api/v1/schedules/{id}/"): [Row("GET", f"{schedule}/{w.schedule.pk}/", READ)],
        ("PUT", "/api/v1/schedules/{id}/"): [
            Row(
                "PUT",
                f"{schedule}/{w.schedule.pk}/",
                OPERATE.format(ok=200),
                {"name": "nightly", "job_type": "echo", "cron": "0 4 * * *"},
                lambda r: Schedule.objects.get(pk=w.schedule.pk).cron == "0 4 * * *",
                at_least("operator"),
            )
        ],
        ("PATCH", "/api/v1/schedules/{id}/"): [
            Row(
                "PATCH",
                f"{schedule}/{w.schedule.pk}/",
                OPERATE.format(ok=200),
                {"enabled": False},
                lambda r: not Schedule.objects.get(pk=w.schedule.pk).enabled,
                at_least("operator"),
            )
        ],
        ("DELETE", "/api/v1/schedules/{id}/"): [
            Row(
                "DELETE",
                f"{schedule}/{w.schedule.pk}/",
                OPERATE.format(ok=204),
                None,
                lambda r: not Schedule.objects.filter(pk=w.schedule.pk).exists(),
                at_least("operator"),
            )
        ],
        ("GET", "/api/v1/tasks/"): [Row("GET", "/api/v1/tasks/", READ)],
    }


def schema_operations() -> set[tuple[str, str]]:
    paths = SchemaGenerator().get_schema(request=None, public=True)["paths"]
    return {(method.upper(), path) for path, operations in paths.items() for method in operations}


def test_every_api_operation_answers_each_role_as_the_table_says(world, api_clients):
    table = api_rows(world)
    assert set(table) == schema_operations(), "every operation of the schema needs its row here"
    wrong = walk([row for rows in table.values() for row in rows], api_clients, json=True)
    assert not wrong, "\n".join(wrong)


# --- Pages ---------------------------------------------------------------------------------

PAGE = "302 200 200 200 200"  # anonymous: to the login page


def page_rows(w: World) -> list[Row]:
    run_cancelled = lambda r: Run.objects.get(pk=w.pending.pk).status == Run.Status.CANCELLED  # noqa: E731
    run_rerun = lambda r: Run.objects.filter(rerun_of=w.finished).exists()  # noqa: E731
    runs_before = Run.objects.count()
    echo_ran = lambda r: Run.objects.count() == runs_before + 1  # noqa: E731
    revoke = f"/flower/api/task/revoke/{w.pending.pk}"
    return [
        Row("GET", "/", "302 302 302 302 302"),
        Row("GET", "/healthz", "200 200 200 200 200"),
        Row("GET", "/accounts/login/", "200 200 200 200 200"),
        Row("POST", "/accounts/logout/", "302 302 302 302 302"),
        Row("GET", "/monitor/", PAGE),
        Row("GET", "/monitor/live/", PAGE),
        Row("GET", "/monitor/runs/", PAGE),
        Row("GET", f"/monitor/runs/{w.finished.pk}/", PAGE),
        Row("GET", f"/monitor/runs/{w.finished.pk}/live/", PAGE),
        Row("GET", f"/monitor/runs/{w.flow_run.pk}/", PAGE),
        Row("GET", f"/monitor/runs/{w.flow_run.pk}/steps/", PAGE),
        Row(
            "POST",
            f"/monitor/runs/{w.pending.pk}/cancel/",
            "302 403 302 302 302",
            {},
            run_cancelled,
            at_least("operator"),
        ),
        Row(
            "POST", f"/monitor/runs/{w.finished.pk}/rerun/", "302 403 302 302 302", {}, run_rerun, at_least("operator")
        ),
        Row("GET", "/monitor/job-types/", PAGE),
        Row("GET", "/monitor/job-types/echo/", PAGE),
        Row("POST", "/monitor/job-types/echo/", "302 403 302 302 302", {"extra": "{}"}, echo_ran, at_least("operator")),
        Row("GET", "/monitor/schedules/", PAGE),
        Row("GET", "/monitor/workers/", PAGE),
        Row("GET", "/monitor/audit/", PAGE),
        # Flower: staff who may see runs; its controls (any POST) for superusers.
        Row("GET", "/flower/", PAGE),
        Row("GET", "/flower/tasks", PAGE),
        Row("POST", revoke, "302 403 403 403 200"),
        # The API's own pages.
        Row("GET", "/api/v1/", READ),
        Row("GET", "/api/schema/", READ),
        Row("GET", "/api/docs/", PAGE),
        Row("GET", "/api/auth/login/", "200 200 200 200 200"),
        Row("POST", "/api/auth/logout/", "302 302 302 302 302"),
    ]


def test_every_page_answers_each_role_as_the_table_says(world, page_clients, flower):
    wrong = walk(page_rows(world), page_clients)
    assert not wrong, "\n".join(wrong)


# --- A user in no role ------------------------------------------------------------------------

# What any signed-in user may read, role or not: no data, only the way in and the API's description.
OPEN_TO_ANY_USER = {"/healthz", "/accounts/login/", "/api/auth/login/", "/api/docs/", "/api/v1/", "/api/schema/"}


def test_a_signed_in_user_in_no_role_sees_nothing_a_viewer_sees(world, flower):
    """Signing in gives nothing: every page, admin page and API read a Viewer
    gets is refused (the admin sends a user who is not staff to its login)."""
    outsider = User.objects.create_user("outsider", password="pw")
    page, api = page_client(outsider), api_client(outsider)
    api_reads = [row for rows in api_rows(world).values() for row in rows if row.method == "GET"]
    requests = [(page, row, 403) for row in page_rows(world)] + [(api, row, 403) for row in api_reads]
    requests += [(page, row, 302) for row in admin_rows(world)]
    wrong, checked = [], 0
    for client, row, refused in requests:
        if row.method != "GET" or row.expected()["viewer"] != 200:
            continue
        checked += 1
        expected = 200 if row.url in OPEN_TO_ANY_USER else refused
        status = client.get(row.url).status_code
        if status != expected:
            wrong.append(f"GET {row.url} as a user in no role: {status}, expected {expected}")
    assert checked > 50
    assert not wrong, "\n".join(wrong)


# --- The admin -------------------------------------------------------------------------------

# Who may do what in the admin: the least role that may view, add, change and
# delete each registered model ("nobody": not even a superuser).
ADMIN_MODELS = {
    "jobs.jobtype": ("viewer", "editor", "editor", "editor"),
    "jobs.workflow": ("viewer", "editor", "editor", "editor"),
    "jobs.run": ("viewer", "nobody", "nobody", "admin"),  # runs change by cancel and rerun only
    "jobs.schedule": ("viewer", "operator", "operator", "operator"),
    "django_celery_beat.periodictask": ("viewer", "admin", "admin", "admin"),
    "django_celery_beat.intervalschedule": ("viewer", "admin", "admin", "admin"),
    "django_celery_beat.crontabschedule": ("viewer", "admin", "admin", "admin"),
    "django_celery_beat.solarschedule": ("viewer", "admin", "admin", "admin"),
    "django_celery_beat.clockedschedule": ("viewer", "admin", "admin", "admin"),
    "django_celery_results.taskresult": ("viewer", "admin", "admin", "admin"),
    "django_celery_results.groupresult": ("viewer", "admin", "admin", "admin"),
    "auth.user": ("admin", "admin", "admin", "admin"),
    "auth.group": ("admin", "admin", "admin", "admin"),
    "authtoken.tokenproxy": ("admin", "admin", "admin", "admin"),
}
# Extra admin views: the job types' and workflows' Run… form, a user's password form.
ADMIN_EXTRA = {
    "jobs.jobtype": {"run": "operator"},
    "jobs.workflow": {"run": "operator"},
    "auth.user": {"password_change": "admin"},
}


def at_least(least: str) -> str:
    """The users with the role `least` or above, as `Row.changes` lists them."""
    return "" if least == "nobody" else " ".join(USERS[USERS.index(least) :])


def answers(least: str, ok: int = 200, *, anonymous: int = 302) -> str:
    """The answers of a page that the role `least` and those above it may see."""
    allowed = at_least(least).split()
    return " ".join([str(anonymous)] + [str(ok) if user in allowed else "403" for user in USERS[1:]])


def has_save_button(response) -> bool:
    return b'name="_save"' in response.content


def admin_rows(w: World) -> list[Row]:
    rows = []
    for label, obj in w.admin_objects.items():
        view, add, change, delete = ADMIN_MODELS[label]
        app, model = label.split(".")
        url = lambda name, *args: reverse(f"admin:{app}_{model}_{name}", args=args)  # noqa: B023, E731
        pk = quote(obj.pk)
        rows += [
            Row("GET", url("changelist"), answers(view)),
            Row("GET", url("add"), answers(add)),
            # Read-only for those who may only view: no Save button.
            Row("GET", url("change", pk), answers(view), changed=has_save_button, changes=at_least(change)),
            Row("GET", url("delete", pk), answers(delete)),
            Row("GET", url("history", pk), answers(view)),
            Row("GET", url("changelist") + f"{pk}/", "302 302 302 302 302"),  # old URL: on to the change page
        ]
        for name, least in ADMIN_EXTRA.get(label, {}).items():
            rows.append(Row("GET", url(name, pk), answers(least)))
    return rows + admin_site_rows(w) + admin_form_rows(w)


def admin_site_rows(w: World) -> list[Row]:
    on_site = reverse("admin:view_on_site", args=[ContentType.objects.get_for_model(Run).pk, w.finished.pk])
    return [
        Row("GET", reverse("admin:index"), "302 200 200 200 200"),
        Row("GET", reverse("admin:login"), "200 302 302 302 302"),
        Row("POST", reverse("admin:logout"), "302 302 302 302 302"),
        Row("GET", reverse("admin:password_change"), "302 200 200 200 200"),
        Row("GET", reverse("admin:password_change_done"), "302 200 200 200 200"),
        Row("GET", reverse("admin:jsi18n"), "302 200 200 200 200"),
        Row("GET", reverse("admin:autocomplete"), "302 403 403 403 403"),  # without its parameters
        Row("GET", reverse("admin:app_list", args=["jobs"]), "302 200 200 200 200"),
        Row("GET", reverse("admin:app_list", args=["auth"]), "302 404 404 404 200"),
        Row("GET", "/admin/no-such-page/", "302 404 404 404 404"),
        Row("GET", on_site, "302 302 302 302 302"),
    ]


def admin_form_rows(w: World) -> list[Row]:
    """Forms and actions that change something."""
    json_fields = dict.fromkeys(("http", "command", "params_schema", "default_params"), "{}")
    job_type = {"name": "new", "kind": "task", "task": "jobs.builtin.echo", **json_fields, "max_retries": 0}
    job_type |= {"retry_backoff_seconds": 10, "notify_on": "never", "enabled": "on"}
    workflow = {"name": "new-flow", "params_schema": "{}", "default_params": "{}", "notify_on": "never"}
    workflow |= {"steps-TOTAL_FORMS": 1, "steps-INITIAL_FORMS": 0}
    workflow |= {"steps-0-name": "a", "steps-0-job_type": w.echo.pk, "steps-0-params": "{}"}
    schedule = {"name": "hourly", "job_type": w.echo.pk, "params": "{}", "cron": "0 * * * *", "timezone": "UTC"}
    schedule |= {"overlap": "allow", "enabled": "on"}
    cancel = {"action": "cancel", "_selected_action": [w.pending.pk]}

    def made(model, **fields):
        return lambda response: model.objects.filter(**fields).exists()

    return [
        Row(
            "POST",
            reverse("admin:jobs_jobtype_add"),
            answers("editor", 302),
            job_type,
            made(JobType, name="new"),
            at_least("editor"),
        ),
        Row(
            "POST",
            reverse("admin:jobs_workflow_add"),
            answers("editor", 302),
            workflow,
            made(JobType, name="new-flow", kind="workflow"),
            at_least("editor"),
        ),
        Row(
            "POST",
            reverse("admin:jobs_schedule_add"),
            answers("operator", 302),
            schedule,
            made(Schedule, name="hourly"),
            at_least("operator"),
        ),
        Row(
            "POST",
            reverse("admin:jobs_jobtype_run", args=[w.echo.pk]),
            answers("operator", 302),
            {"params": "{}"},
            made(Run, job_type=w.echo, trigger="admin"),
            at_least("operator"),
        ),
        # Viewers are offered no action, so theirs is not one: the list is shown again.
        Row(
            "POST",
            reverse("admin:jobs_run_changelist"),
            "302 200 302 302 302",
            cancel,
            made(Run, pk=w.pending.pk, status="cancelled"),
            at_least("operator"),
        ),
    ]


def test_every_admin_page_answers_each_role_as_the_table_says(world, page_clients):
    registered = {model._meta.label_lower for model in admin.site._registry}
    assert registered == set(ADMIN_MODELS), "every model in the admin needs its row in ADMIN_MODELS"
    wrong = walk(admin_rows(world), page_clients)
    assert not wrong, "\n".join(wrong)


# --- Nothing left out --------------------------------------------------------------------------


def all_routes(resolver: URLResolver | None = None, prefix: str = ""):
    """Every route the URL resolver knows, written as ResolverMatch.route writes it."""
    for pattern in (resolver or get_resolver()).url_patterns:
        route = str(pattern.pattern)
        route = prefix + route.removeprefix("^") if prefix else route
        if isinstance(pattern, URLResolver):
            yield from all_routes(pattern, route)
        else:
            yield route


def test_the_tables_reach_every_route_there_is(world):
    requested = [*page_rows(world), *admin_rows(world)]
    requested += [row for rows in api_rows(world).values() for row in rows]
    reached = {resolve(row.url.split("?")[0]).route for row in requested}
    # The API's format suffixes (/api/v1/runs.json) are its routes again, with the same views.
    routes = {route for route in all_routes() if "(?P<format>" not in route and "drf_format_suffix" not in route}
    assert routes - reached == set(), "routes no table requests: add them to a table"
