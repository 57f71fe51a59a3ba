"""The world the role matrix tests see: a user of each role, the objects every
request reads, and how a table row is sent as each user.

Each request runs in a savepoint that is rolled back, so every one sees the
same data (a DELETE does not take the object away from the next user).
"""

import base64
import copy
import io
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
from axes.models import AccessAttempt, AccessFailureLog, AccessLog
from django.contrib.auth.models import Group, User
from django.core.management import call_command
from django.db import transaction
from django.test import Client
from django.utils import timezone
from django_celery_beat.models import (
    ClockedSchedule,
    CrontabSchedule,
    IntervalSchedule,
    PeriodicTask,
    SolarSchedule,
)
from django_celery_results.models import GroupResult, TaskResult
from rest_framework.authtoken.models import Token, TokenProxy
from rest_framework.test import APIClient

from jobs.audit import Author
from jobs.core.roles import EDITORS, OPERATORS, VIEWERS
from jobs.definitions.secrets import secret_create
from jobs.models import Backfill, JobType, Run, Schedule, TriggerUrl, Workflow
from jobs.runs.trigger_urls import token_hash

USERS = ("anonymous", "viewer", "operator", "editor", "admin")
HOOK_TOKEN = "roles-matrix-token"
ROLE_OF = {"viewer": VIEWERS, "operator": OPERATORS, "editor": EDITORS}


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
    trigger_url: TriggerUrl | None = None  # echo's, whose token is HOOK_TOKEN
    hook_run: Run | None = None  # a run through it
    backfill: Backfill | None = None  # of `schedule`, its one run waiting


@pytest.fixture
def world(users, redis_server, settings) -> World:
    settings.MONITOR_INSPECT_TIMEOUT = 0.1  # no worker answers here: pages and /healthz must not wait long
    settings.JOBS_TRIGGER_URL_RATE = "1000/m"  # every user of every table POSTs to the same trigger URL
    echo = JobType.objects.create(name="echo", kind="task", task="jobs.builtin.echo")
    spare = JobType.objects.create(name="spare", kind="task", task="jobs.builtin.echo")
    flow = Workflow.objects.create(name="flow", director_name="tests.FLOW")
    flow.steps.create(name="one", job_type=echo)
    pending = Run.objects.create(job_type=echo, trigger="api")
    finished = Run.objects.create(
        job_type=echo, trigger="api", status=Run.Status.FAILED, error="boom", finished_at=timezone.now()
    )
    flow_run = Run.objects.create(job_type=flow, trigger="api", status=Run.Status.RUNNING)
    schedule = Schedule.objects.create(name="nightly", job_type=echo, cron="0 3 * * *")
    interval = IntervalSchedule.objects.create(every=10, period="seconds")
    TaskResult.objects.create(task_id=str(finished.pk), status="FAILURE")
    secret = secret_create(name="API_TOKEN", value="t0ken-value", by=Author(users["admin"], "in tests"))
    login = {"username": "ada", "ip_address": "192.0.2.1"}  # django-axes' records of one
    admin_objects = {
        "jobs.jobtype": spare,
        "jobs.workflow": flow,
        "jobs.run": finished,
        "jobs.schedule": schedule,
        "jobs.secret": secret,
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
        "axes.accessattempt": AccessAttempt.objects.create(**login, failures_since_start=2),
        "axes.accesslog": AccessLog.objects.create(**login),
        "axes.accessfailurelog": AccessFailureLog.objects.create(**login),
    }
    trigger_url = TriggerUrl.objects.create(job_type=echo, token_hash=token_hash(HOOK_TOKEN), prefix=HOOK_TOKEN[:6])
    hook_run = Run.objects.create(job_type=echo, trigger="url", trigger_url=trigger_url)
    backfill = Backfill.objects.create(schedule=schedule, start=timezone.now(), end=timezone.now(), concurrency=1)
    Run.objects.create(job_type=echo, trigger="backfill", status=Run.Status.WAITING, backfill=backfill)
    return World(
        echo, spare, flow, pending, finished, flow_run, schedule, admin_objects, trigger_url, hook_run, backfill
    )


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


def basic_client(user: User | None) -> APIClient:
    """celery-director's API as `user`, with HTTP Basic (anonymous: without)."""
    client = APIClient()
    if user is not None:
        client.credentials(HTTP_AUTHORIZATION="Basic " + base64.b64encode(f"{user.username}:pw".encode()).decode())
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
def basic_clients(users) -> dict[str, APIClient]:
    return {name: basic_client(user) for name, user in users.items()}


@pytest.fixture
def page_clients(users) -> dict[str, Client]:
    return {name: page_client(user) for name, user in users.items()}
