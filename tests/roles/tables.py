"""Who gets what answer where: the tables the matrix tests walk. A row lists
the status codes of anonymous, viewer, operator, editor and admin, in that order."""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.contrib.admin.utils import quote
from django.contrib.auth.models import User
from django.contrib.contenttypes.models import ContentType
from django.core import mail
from django.urls import reverse
from django_celery_beat.models import IntervalSchedule, PeriodicTask
from drf_spectacular.generators import SchemaGenerator

from jobs.models import JobType, Run, Schedule, Secret, Workflow
from tests.roles.conftest import HOOK_TOKEN, USERS, Row, World

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
        ("POST", "/api/v1/job-types/{name}/runs/bulk/"): [
            Row(
                "POST",
                f"{jt}/echo/runs/bulk/",
                OPERATE.format(ok=201),
                {"params": [{}, {}]},
                lambda r: Run.objects.count() == runs_before + 2,
                at_least("operator"),
            ),
        ],
        ("GET", "/api/v1/runs/"): [Row("GET", f"{run}/", READ)],
        ("GET", "/api/v1/runs/{id}/"): [Row("GET", f"{run}/{w.finished.pk}/", READ)],
        ("GET", "/api/v1/runs/{id}/logs/"): [Row("GET", f"{run}/{w.finished.pk}/logs/", READ)],
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
        ("GET", "/api/v1/job-types/{name}/revisions/"): [Row("GET", f"{jt}/echo/revisions/", READ)],
        ("GET", "/api/v1/job-types/{name}/revisions/{revision_id}/"): [
            Row("GET", f"{jt}/echo/revisions/{revision_of(w.echo)}/", READ)
        ],
        ("POST", "/api/v1/job-types/{name}/revisions/{revision_id}/restore/"): [
            Row(
                "POST",
                f"{jt}/echo/revisions/{revision_of(w.echo)}/restore/",
                EDIT.format(ok=200),
                None,
                restored(w.echo),
                at_least("editor"),
            )
        ],
        ("GET", "/api/v1/schedules/{id}/revisions/"): [Row("GET", f"{schedule}/{w.schedule.pk}/revisions/", READ)],
        ("GET", "/api/v1/schedules/{id}/revisions/{revision_id}/"): [
            Row("GET", f"{schedule}/{w.schedule.pk}/revisions/{revision_of(w.schedule)}/", READ)
        ],
        ("POST", "/api/v1/schedules/{id}/revisions/{revision_id}/restore/"): [
            Row(
                "POST",
                f"{schedule}/{w.schedule.pk}/revisions/{revision_of(w.schedule)}/restore/",
                OPERATE.format(ok=200),
                None,
                restored(w.schedule),
                at_least("operator"),
            )
        ],
        ("GET", "/api/v1/secrets/"): [Row("GET", "/api/v1/secrets/", READ)],
        ("POST", "/api/v1/secrets/"): [
            Row(
                "POST",
                "/api/v1/secrets/",
                EDIT.format(ok=201),
                {"name": "NEW_TOKEN", "value": "n3w-value"},
                lambda r: Secret.objects.filter(name="NEW_TOKEN").exists(),
                at_least("editor"),
            )
        ],
        ("GET", "/api/v1/secrets/{name}/"): [Row("GET", "/api/v1/secrets/API_TOKEN/", READ)],
        ("PUT", "/api/v1/secrets/{name}/"): [
            Row(
                "PUT",
                "/api/v1/secrets/API_TOKEN/",
                EDIT.format(ok=200),
                {"value": "an0ther-value", "description": "changed"},
                lambda r: Secret.objects.get(name="API_TOKEN").description == "changed",
                at_least("editor"),
            )
        ],
        ("PATCH", "/api/v1/secrets/{name}/"): [
            Row(
                "PATCH",
                "/api/v1/secrets/API_TOKEN/",
                EDIT.format(ok=200),
                {"description": "patched"},
                lambda r: Secret.objects.get(name="API_TOKEN").description == "patched",
                at_least("editor"),
            )
        ],
        ("DELETE", "/api/v1/secrets/{name}/"): [
            Row(
                "DELETE",
                "/api/v1/secrets/API_TOKEN/",
                EDIT.format(ok=204),
                None,
                lambda r: not Secret.objects.filter(name="API_TOKEN").exists(),
                at_least("editor"),
            )
        ],
        # Trigger URLs: seen by all roles (never their tokens), made and revoked by Editors.
        ("GET", "/api/v1/job-types/{name}/trigger-urls/"): [Row("GET", f"{jt}/echo/trigger-urls/", READ)],
        ("POST", "/api/v1/job-types/{name}/trigger-urls/"): [
            Row(
                "POST",
                f"{jt}/echo/trigger-urls/",
                EDIT.format(ok=201),
                {"label": "new"},
                lambda r: w.echo.trigger_urls.filter(label="new").exists(),
                at_least("editor"),
            )
        ],
        ("DELETE", "/api/v1/job-types/{name}/trigger-urls/{id}/"): [
            Row(
                "DELETE",
                f"{jt}/echo/trigger-urls/{w.trigger_url.pk}/",
                EDIT.format(ok=204),
                None,
                lambda r: w.echo.trigger_urls.get().is_revoked,
                at_least("editor"),
            )
        ],
        # The trigger URL itself: its token is the credential, whoever sends it (the only write without a login).
        ("POST", "/hooks/{token}/"): [
            Row(
                "POST",
                f"/hooks/{HOOK_TOKEN}/",
                "201 201 201 201 201",
                {"n": 1},
                lambda r: Run.objects.filter(trigger_url=w.trigger_url).count() == 2,
                " ".join(USERS),
            ),
            Row("POST", "/hooks/not-the-token/", "404 404 404 404 404", {"n": 1}),
        ],
        ("GET", "/hooks/{token}/runs/{run_id}/"): [
            Row("GET", f"/hooks/{HOOK_TOKEN}/runs/{w.hook_run.pk}/", "200 200 200 200 200"),
            Row("GET", f"/hooks/{HOOK_TOKEN}/runs/{w.finished.pk}/", "404 404 404 404 404"),  # not through it
        ],
        ("POST", "/api/v1/schedules/{id}/backfill/"): [
            Row(
                "POST",
                f"{schedule}/{w.schedule.pk}/backfill/",
                OPERATE.format(ok=201),
                {"start": "2026-01-01T00:00:00Z", "end": "2026-01-03T00:00:00Z"},
                lambda r: Run.objects.filter(schedule=w.schedule, trigger="backfill").count() == 2,
                at_least("operator"),
            )
        ],
        ("GET", "/api/v1/schedules/{id}/backfills/"): [Row("GET", f"{schedule}/{w.schedule.pk}/backfills/", READ)],
        ("POST", "/api/v1/schedules/{id}/backfills/{backfill_id}/cancel/"): [
            Row(
                "POST",
                f"{schedule}/{w.schedule.pk}/backfills/{w.backfill.pk}/cancel/",
                OPERATE.format(ok=200),
                None,
                lambda r: Run.objects.get(backfill=w.backfill).status == Run.Status.CANCELLED,
                at_least("operator"),
            )
        ],
        ("GET", "/api/v1/tasks/"): [Row("GET", "/api/v1/tasks/", READ)],
        ("GET", "/api/v1/workers/"): [Row("GET", "/api/v1/workers/", READ)],
    }


def revision_of(obj) -> int:
    return obj.history.latest().history_id


def restored(obj) -> Callable[[Any], bool]:
    """Whether `obj` was restored from one of its revisions (a new revision says so)."""
    return lambda response: obj.history.filter(history_change_reason="restore").exists()


def director_rows(w: World) -> list[Row]:
    """celery-director's API (/director/api/), signed in with HTTP Basic."""
    api, flow_run = "/director/api", w.flow_run.pk
    return [
        Row("GET", f"{api}/ping", "200 200 200 200 200"),
        Row("GET", f"{api}/definitions", READ),
        Row("GET", f"{api}/workflows", READ),
        Row("GET", f"{api}/workflows/{flow_run}", READ),
        Row(
            "POST",
            f"{api}/workflows",
            OPERATE.format(ok=201),
            {"project": "tests", "name": "FLOW", "payload": {}},
            lambda r: Run.objects.filter(job_type=w.flow, trigger="api").exclude(pk=flow_run).exists(),
            at_least("operator"),
        ),
        Row(
            "POST",
            f"{api}/workflows/{flow_run}/relaunch",
            OPERATE.format(ok=201),
            None,
            lambda r: Run.objects.filter(rerun_of=w.flow_run).exists(),
            at_least("operator"),
        ),
        Row(
            "POST",
            f"{api}/workflows/{flow_run}/cancel",
            OPERATE.format(ok=201),
            None,
            lambda r: Run.objects.get(pk=flow_run).status == Run.Status.CANCELLED,
            at_least("operator"),
        ),
    ]


def schema_operations() -> set[tuple[str, str]]:
    paths = SchemaGenerator().get_schema(request=None, public=True)["paths"]
    return {(method.upper(), path) for path, operations in paths.items() for method in operations}


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
        # Prometheus: staff who may see runs, or its bearer token; 403 (no login redirect) for anyone else.
        Row("GET", "/metrics", "403 200 200 200 200"),
        Row("GET", "/accounts/login/", "200 200 200 200 200"),
        Row("POST", "/accounts/logout/", "302 302 302 302 302"),
        Row("GET", "/monitor/", PAGE),
        Row("GET", "/monitor/live/", PAGE),
        Row("GET", "/monitor/runs/", PAGE),
        Row("GET", f"/monitor/runs/{w.finished.pk}/", PAGE),
        Row("GET", f"/monitor/runs/{w.finished.pk}/live/", PAGE),
        Row("GET", f"/monitor/runs/{w.finished.pk}/logs/", PAGE),
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
        Row("GET", "/monitor/job-types/echo/history/", PAGE),
        Row("GET", f"/monitor/job-types/echo/history/{revision_of(w.echo)}/", PAGE),
        Row(
            "POST",
            f"/monitor/job-types/echo/history/{revision_of(w.echo)}/restore/",
            "302 403 403 302 302",
            {},
            restored(w.echo),
            at_least("editor"),
        ),
        Row("GET", "/monitor/schedules/", PAGE),
        Row("GET", f"/monitor/schedules/{w.schedule.pk}/", PAGE),
        Row(
            "POST",
            f"/monitor/schedules/{w.schedule.pk}/backfills/{w.backfill.pk}/cancel/",
            "302 403 302 302 302",
            {},
            lambda r: Run.objects.get(backfill=w.backfill).status == Run.Status.CANCELLED,
            at_least("operator"),
        ),
        Row("GET", "/monitor/workers/", PAGE),
        Row("GET", "/monitor/audit/", PAGE),
        # Flower: staff who may see runs; its controls (any POST) for superusers.
        Row("GET", "/flower/", PAGE),
        Row("GET", "/flower/tasks", PAGE),
        Row("GET", "/flower/api/workers", PAGE),  # the workers' config among it, without secrets
        Row("POST", revoke, "302 403 403 403 200"),
        # Nobody may make Flower wait for a task through Jobsite (it has five threads for that).
        Row("GET", f"/flower/api/task/result/{w.pending.pk}?timeout=30", "302 400 400 400 400"),
        Row("POST", "/flower/api/task/apply/jobs.builtin.echo", "302 403 403 403 400"),
        # The API's own pages.
        Row("GET", "/api/v1/", READ),
        Row("GET", "/api/schema/", READ),
        Row("GET", "/api/docs/", PAGE),
        Row("GET", "/api/auth/login/", "200 200 200 200 200"),
        Row("POST", "/api/auth/logout/", "302 302 302 302 302"),
    ]


# --- The admin -------------------------------------------------------------------------------

# Who may do what in the admin: the least role that may view, add, change and
# delete each registered model ("nobody": not even a superuser).
ADMIN_MODELS = {
    "jobs.jobtype": ("viewer", "editor", "editor", "editor"),
    "jobs.workflow": ("viewer", "editor", "editor", "editor"),
    "jobs.run": ("viewer", "nobody", "nobody", "admin"),  # runs change by cancel and rerun only
    "jobs.schedule": ("viewer", "operator", "operator", "operator"),
    "jobs.secret": ("viewer", "editor", "editor", "editor"),
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
    # django-axes' records of logins: read-only, for superusers.
    "axes.accessattempt": ("admin", "nobody", "admin", "admin"),
    "axes.accesslog": ("admin", "nobody", "admin", "admin"),
    "axes.accessfailurelog": ("admin", "nobody", "admin", "admin"),
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
    workflow |= {"step_args": "params"}
    workflow |= {"steps-TOTAL_FORMS": 1, "steps-INITIAL_FORMS": 0}
    workflow |= {"steps-0-name": "a", "steps-0-job_type": w.echo.pk, "steps-0-params": "{}"}
    schedule = {"name": "hourly", "job_type": w.echo.pk, "params": "{}", "cron": "0 * * * *", "timezone": "UTC"}
    schedule |= {"overlap": "allow", "enabled": "on"}

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
    ]


# --- Admin actions ---------------------------------------------------------------------------


@dataclass
class Action:
    """An admin action: the least role that may use it, the object it is tried
    on (set up inside the request's savepoint, so each user finds it the same),
    and a measure of its effect: the action happened if the measure changed."""

    least: str
    target: Callable[[World], Any]
    measure: Callable[[Any, "Outside"], Any]


@dataclass
class Outside:
    """What actions change outside the database: the broker."""

    broker: Any  # a redis.Redis on the tests' broker


BEAT_QUEUE = "roles-beat-run-tasks"  # where the beat entry of the `run_tasks` row sends its task


def fresh(obj):
    return type(obj)._default_manager.get(pk=obj.pk)


def exists(obj, outside) -> bool:
    return type(obj)._default_manager.filter(pk=obj.pk).exists()


def field(name: str) -> Callable[[Any, Outside], Any]:
    return lambda obj, outside: getattr(fresh(obj), name)


def runs_of(obj, outside) -> int:
    return Run.objects.filter(job_type_id=obj.pk, trigger="admin").count()


def emails(obj, outside) -> int:
    return len(mail.outbox)  # this process sends a test notification itself (to Django's test outbox)


def with_fields(pick: Callable[[World], Any], **values) -> Callable[[World], Any]:
    """The object `pick` chooses, saved with `values` first."""

    def target(w: World):
        obj = pick(w)
        for name, value in values.items():
            setattr(obj, name, value)
        obj.save()
        return fresh(obj)

    return target


def made(model, **fields) -> Callable[[World], Any]:
    return lambda w: model.objects.create(**fields)


def beat_entry(**fields) -> Callable[[World], Any]:
    def target(w: World):
        interval = IntervalSchedule.objects.create(every=1, period="hours")
        return PeriodicTask.objects.create(name="roles: beat entry", interval=interval, **fields)

    return target


def admin_object(label: str) -> Callable[[World], Any]:
    return lambda w: w.admin_objects[label]


# Every action of every admin page, Django's "Delete selected" included: (model, action) -> who
# may use it, on what, with what effect. A page's new action fails the test until it has a row.
# (DRF's token page has no actions: tokens are deleted one at a time, by superusers.)
ADMIN_ACTIONS = {
    # Job types and workflows: run (Operators), the rest (Editors).
    ("jobs.jobtype", "run_now"): Action("operator", lambda w: w.echo, runs_of),
    ("jobs.jobtype", "send_test_notification"): Action(
        "editor", with_fields(lambda w: w.spare, notify_emails=["ops@example.com"]), emails
    ),
    ("jobs.jobtype", "enable"): Action("editor", with_fields(lambda w: w.spare, enabled=False), field("enabled")),
    ("jobs.jobtype", "disable"): Action("editor", lambda w: w.spare, field("enabled")),
    ("jobs.jobtype", "delete_selected"): Action("editor", lambda w: w.spare, exists),
    ("jobs.secret", "delete_selected"): Action("editor", lambda w: w.admin_objects["jobs.secret"], exists),
    ("jobs.workflow", "run_now"): Action("operator", lambda w: w.flow, runs_of),
    ("jobs.workflow", "send_test_notification"): Action(
        "editor", with_fields(lambda w: w.flow, notify_emails=["ops@example.com"]), emails
    ),
    ("jobs.workflow", "enable"): Action("editor", with_fields(lambda w: w.flow, enabled=False), field("enabled")),
    ("jobs.workflow", "disable"): Action("editor", lambda w: w.flow, field("enabled")),
    ("jobs.workflow", "delete_selected"): Action("editor", made(Workflow, name="spare-flow"), exists),
    # Runs: cancel and rerun (Operators); deleting a run's record is for superusers.
    ("jobs.run", "cancel"): Action("operator", lambda w: w.pending, field("status")),
    ("jobs.run", "rerun"): Action("operator", lambda w: w.finished, lambda obj, o: obj.reruns.count()),
    ("jobs.run", "delete_selected"): Action("admin", lambda w: w.finished, exists),
    # Schedules: Operators.
    ("jobs.schedule", "enable"): Action("operator", with_fields(lambda w: w.schedule, enabled=False), field("enabled")),
    ("jobs.schedule", "disable"): Action("operator", lambda w: w.schedule, field("enabled")),
    ("jobs.schedule", "run_now"): Action("operator", lambda w: w.schedule, lambda obj, o: obj.runs.count()),
    ("jobs.schedule", "delete_selected"): Action("operator", lambda w: w.schedule, exists),
    # Celery beat's own records: superusers (its enable, disable, toggle and run above all:
    # disabling `jobsite.dispatch` stops every schedule).
    ("django_celery_beat.periodictask", "enable_tasks"): Action(
        "admin", beat_entry(task="jobsite.dispatch", enabled=False), field("enabled")
    ),
    ("django_celery_beat.periodictask", "disable_tasks"): Action(
        "admin", beat_entry(task="jobsite.dispatch"), field("enabled")
    ),
    ("django_celery_beat.periodictask", "toggle_tasks"): Action(
        "admin", beat_entry(task="jobsite.dispatch"), field("enabled")
    ),
    ("django_celery_beat.periodictask", "run_tasks"): Action(
        "admin",
        beat_entry(task="tests.count_calls", queue=BEAT_QUEUE),
        lambda obj, outside: outside.broker.llen(BEAT_QUEUE),
    ),
    ("django_celery_beat.periodictask", "delete_selected"): Action(
        "admin", admin_object("django_celery_beat.periodictask"), exists
    ),
    **{
        (label, "delete_selected"): Action("admin", admin_object(label), exists)
        for label in (
            "django_celery_beat.intervalschedule",
            "django_celery_beat.crontabschedule",
            "django_celery_beat.solarschedule",
            "django_celery_beat.clockedschedule",
            "django_celery_results.taskresult",
            "django_celery_results.groupresult",
            "auth.group",
        )
    },
    ("auth.user", "delete_selected"): Action("admin", made(User, username="leaving"), exists),
    # django-axes' records of failed logins: deleting one unlocks its username and address.
    ("axes.accessattempt", "delete_selected"): Action("admin", admin_object("axes.accessattempt"), exists),
    ("axes.accesslog", "delete_selected"): Action("admin", admin_object("axes.accesslog"), exists),
    ("axes.accessfailurelog", "delete_selected"): Action("admin", admin_object("axes.accessfailurelog"), exists),
}
