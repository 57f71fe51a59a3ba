"""The monitoring pages: dashboard, run history, a run, a job type, workers.

Every list is bounded (see queries.py); the parts that change while a page is
open are partial templates, which the page re-fetches every few seconds.
"""

import json
from datetime import timedelta

from django.conf import settings
from django.contrib import messages
from django.contrib.admin.models import LogEntry
from django.contrib.auth.decorators import login_required, permission_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from jobs import audit
from jobs.core import errors
from jobs.core.limits import is_truncated_result
from jobs.models import Backfill, JobType, Run, Schedule
from jobs.monitor.charts import duration_chart, step_timeline
from jobs.monitor.flower import may_see_flower
from jobs.monitor.forms import AuditFilterForm, RunFilterForm, RunNowForm
from jobs.monitor.logs import log_context
from jobs.monitor.queries import (
    AUDIT_PAGES,
    NEWEST_FIRST,
    RUN_PAGES,
    count_in_statuses,
    newest_in_statuses,
    runs,
    schedules,
    status_counts_since,
    upcoming_fires,
    upcoming_scheduled_runs,
)
from jobs.monitor.revisions import run_revision
from jobs.runs import broker, trigger
from jobs.schedules.backfill import backfill_cancel, backfills_progress
from jobs.worker.cluster import active_runs, cluster_status, known_queues
from jobs.workflows.steps import step_runs
from jobs.workflows.svg import workflow_svg

ACTIVE_LIMIT = 50
RECENT_LIMIT = 10
PAGE_SIZE = 50
JOB_TYPE_WINDOW = 100  # runs a job type page reads for its rate and chart
JOB_TYPE_LIST_LIMIT = 200
UPCOMING_LIMIT = 10
SUGGESTIONS = 200  # names offered in a filter's list; any other name can be typed
SCHEDULE_PAGE_SIZE = 50
REFRESH_SECONDS = 3
RERUNS_LIMIT = 10  # reruns of one run listed on its page
AUDIT_PAGE_SIZE = 50
BACKFILLS_SHOWN = 20  # a schedule's latest backfills on its page


def needs(*permissions: str):
    """Signed in (else the login page), with every one of `permissions` (else 403)."""

    def decorate(view):
        return login_required(permission_required(permissions, raise_exception=True)(view))

    return decorate


def pretty_json(value) -> str:
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str)


# --- Schedules, workflows, notifications -----------------------------------------


def upcoming_context() -> dict:
    """Upcoming scheduled runs and schedule fires for the dashboard."""
    return {
        "upcoming": {
            "runs": upcoming_scheduled_runs(UPCOMING_LIMIT),
            "fires": upcoming_fires(UPCOMING_LIMIT),
            "limit": UPCOMING_LIMIT,
        }
    }


def workflow_context(run: Run) -> dict:
    """The steps of a workflow run, as a timeline and as a dependency graph, for its pages."""
    if run.job_type.kind != JobType.Kind.WORKFLOW:
        return {}
    steps = step_runs(run)
    graph = workflow_svg(
        [(step.step_name, step.job_type.name, step.depends_on) for step in steps],
        statuses={step.step_name: step.status for step in steps},
        urls={step.step_name: step.get_absolute_url() for step in steps},
    )
    return {
        "steps": {
            "runs": steps,
            "timeline": step_timeline(steps, now=timezone.now()),
            "graph": graph if steps else None,
            "live": not run.is_terminal or any(not step.is_terminal for step in steps),
        },
        "refresh_seconds": REFRESH_SECONDS,
    }


def notification_outcome(run: Run) -> dict | None:
    """What the run's notification did (Run.notification), with each channel's result in a list."""
    outcome = run.notification
    if outcome is None:
        return None
    channels = []
    for name in ("email", "webhook"):
        result = outcome.get(name)
        if isinstance(result, dict):
            at = result.get("at")
            result = {**result, "name": name, "at": parse_datetime(at) if isinstance(at, str) else at}
            channels.append(result)
    return {**outcome, "channels": channels}


# --- Dashboard -------------------------------------------------------------------


def _live_dashboard_context() -> dict:
    now = timezone.now()
    return {
        "active_runs": newest_in_statuses(Run.ACTIVE_STATUSES, ACTIVE_LIMIT),
        "active_total": count_in_statuses(Run.ACTIVE_STATUSES),
        "active_limit": ACTIVE_LIMIT,
        "recent_runs": list(runs().order_by(*NEWEST_FIRST)[:RECENT_LIMIT]),
        "recent_failures": newest_in_statuses([Run.Status.FAILED], RECENT_LIMIT),
        "counts": status_counts_since(now - timedelta(hours=24)),
        "refreshed_at": now,
        "refresh_seconds": REFRESH_SECONDS,
    }


@needs("jobs.view_run")
@require_GET
def dashboard(request: HttpRequest) -> HttpResponse:
    context = {
        **_live_dashboard_context(),
        "cluster": cluster_status(queues=known_queues()),
        **upcoming_context(),
    }
    return render(request, "monitor/dashboard.html", context)


@needs("jobs.view_run")
@require_GET
def dashboard_live(request: HttpRequest) -> HttpResponse:
    return render(request, "monitor/_dashboard_live.html", _live_dashboard_context())


# --- Runs ------------------------------------------------------------------------


def _page_link(request: HttpRequest, **cursor) -> str:
    """This page's address with its filters and another page's cursor (`after` or `before`)."""
    query = request.GET.copy()
    for key in ("after", "before"):
        query.pop(key, None)
    query.update({key: str(value) for key, value in cursor.items()})
    return f"?{query.urlencode()}"


@needs("jobs.view_run")
@require_GET
def run_list(request: HttpRequest) -> HttpResponse:
    form = RunFilterForm(request.GET or None)
    page = None
    if not form.is_bound:
        page = RUN_PAGES.page(runs(), size=PAGE_SIZE)
    elif form.is_valid():
        data = form.cleaned_data
        page = RUN_PAGES.page(form.filter(runs()), size=PAGE_SIZE, after=data["after"], before=data["before"])

    context = {
        "form": form,
        "page": page,
        "newest_link": _page_link(request) if page and page.newer else None,
        "newer_link": _page_link(request, before=page.newer) if page and page.newer else None,
        "older_link": _page_link(request, after=page.older) if page and page.older else None,
        "job_type_names": JobType.objects.order_by("name").values_list("name", flat=True)[:SUGGESTIONS],
        "schedule_names": Schedule.objects.order_by("name").values_list("name", flat=True)[:SUGGESTIONS],
    }
    return render(request, "monitor/run_list.html", context, status=400 if page is None else 200)


def _run_context(request: HttpRequest, run: Run) -> dict:
    user = request.user
    return {
        "run": run,
        "params_json": pretty_json(run.params),
        "result_json": None if run.result is None else pretty_json(run.result),
        # A result over JOBS_RESULT_MAX_BYTES: its size, and the beginning that was kept.
        "result_cut": run.result if is_truncated_result(run.result) else None,
        "can_cancel": not run.is_terminal and user.has_perm("jobs.cancel_run"),
        "can_rerun": run.is_terminal and user.has_perm("jobs.run_jobtype"),
        "can_rerun_failed": run.status == Run.Status.FAILED and run.job_type.kind == JobType.Kind.WORKFLOW,
        # Flower knows a task only from its events: without them the link would be a 404.
        "flower_task_url": (
            f"/flower/task/{run.pk}" if may_see_flower(user) and settings.CELERY_WORKER_SEND_TASK_EVENTS else None
        ),
        "notification": notification_outcome(run),
        # Only a run that was tried more than once has a history worth a table.
        "attempt_history": run.attempt_history() if run.earlier_attempts else [],
        "queue_warning": broker.queue_warning(run),
        "refresh_seconds": REFRESH_SECONDS,
    }


def _get_run(run_id) -> Run:
    related = ("job_type", "requested_by", "cancelled_by", "rerun_of", "schedule", "parent__job_type", "trigger_url")
    return get_object_or_404(Run.objects.select_related(*related), pk=run_id)


@needs("jobs.view_run")
@require_GET
def run_detail(request: HttpRequest, run_id) -> HttpResponse:
    run = _get_run(run_id)
    context = {
        **_run_context(request, run),
        **workflow_context(run),
        **(log_context(run) if run.job_type.kind != JobType.Kind.WORKFLOW else {}),
        "reruns": list(
            run.reruns.filter(trigger=Run.Trigger.RERUN)
            .select_related("requested_by")
            .order_by(*NEWEST_FIRST)[: RERUNS_LIMIT + 1]
        ),
        "reruns_limit": RERUNS_LIMIT,
        "revision": run_revision(run),
    }
    return render(request, "monitor/run_detail.html", context)


@needs("jobs.view_run")
@require_GET
def run_live(request: HttpRequest, run_id) -> HttpResponse:
    return render(request, "monitor/_run_live.html", _run_context(request, _get_run(run_id)))


@needs("jobs.view_run")
@require_GET
def run_logs_live(request: HttpRequest, run_id) -> HttpResponse:
    run = get_object_or_404(Run.objects.select_related("job_type"), pk=run_id)
    context = {"run": run, "refresh_seconds": REFRESH_SECONDS, **log_context(run)}
    return render(request, "monitor/_run_logs.html", context)


@needs("jobs.view_run")
@require_GET
def run_steps_live(request: HttpRequest, run_id) -> HttpResponse:
    run = _get_run(run_id)
    context = workflow_context(run)
    if not context:
        raise Http404("Only a workflow run has steps.")
    return render(request, "monitor/_workflow_steps.html", {"run": run, **context})


@needs("jobs.view_run")
@require_POST
def run_cancel(request: HttpRequest, run_id) -> HttpResponse:
    if not request.user.has_perm("jobs.cancel_run"):
        raise PermissionDenied("You may not cancel runs.")
    run = _get_run(run_id)
    try:
        trigger.run_cancel(run=run, cancelled_by=request.user)
    except errors.ServiceError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, "Run cancelled.")
    return redirect("monitor:run", run.pk)


@needs("jobs.view_run")
@require_POST
def run_rerun(request: HttpRequest, run_id) -> HttpResponse:
    if not request.user.has_perm("jobs.run_jobtype"):
        raise PermissionDenied("You may not run jobs.")
    run = _get_run(run_id)
    try:
        new_run = trigger.run_rerun(run=run, requested_by=request.user, from_failed="from_failed" in request.POST)
    except errors.ServiceError as exc:
        messages.error(request, str(exc))
        return redirect("monitor:run", run.pk)
    messages.success(request, f"Rerun of {run.pk} started.")
    return redirect("monitor:run", new_run.pk)


# --- Job types -------------------------------------------------------------------


@needs("jobs.view_jobtype")
@require_GET
def job_type_list(request: HttpRequest) -> HttpResponse:
    job_types = list(JobType.objects.order_by("name")[: JOB_TYPE_LIST_LIMIT + 1])
    context = {"job_types": job_types[:JOB_TYPE_LIST_LIMIT], "more": len(job_types) > JOB_TYPE_LIST_LIMIT}
    return render(request, "monitor/job_type_list.html", context)


@needs("jobs.view_jobtype")
@require_http_methods(["GET", "POST"])
def job_type_detail(request: HttpRequest, name: str) -> HttpResponse:
    job_type = get_object_or_404(JobType, name=name)
    can_run = request.user.has_perm("jobs.run_jobtype")
    form = RunNowForm(request.POST if request.method == "POST" else None, job_type=job_type)
    if request.method == "POST":
        if not can_run:
            raise PermissionDenied("You may not run jobs.")
        if form.is_valid():
            try:
                run, _ = trigger.run_create(
                    job_type=job_type, params=form.params(), trigger=Run.Trigger.ADMIN, requested_by=request.user
                )
            except errors.InvalidInput as exc:
                form.add_param_errors(exc.errors.get("params", []) + exc.errors.get("detail", []))
            except errors.ServiceError as exc:
                form.add_error(None, str(exc))
            else:
                messages.success(request, f"Run {run.pk} of {job_type.name} created.")
                return redirect("monitor:run", run.pk)

    window = list(Run.objects.filter(job_type=job_type).order_by(*NEWEST_FIRST)[:JOB_TYPE_WINDOW])
    for run in window:
        run.job_type = job_type  # the template's links and names need it; no query per run
    finished = [run for run in window if run.is_terminal]
    succeeded = sum(run.status == Run.Status.SUCCEEDED for run in finished)
    context = {
        "job_type": job_type,
        "recent_runs": window[:20],
        "window": len(window),
        "finished": len(finished),
        "success_rate": round(100 * succeeded / len(finished)) if finished else None,
        "chart": duration_chart(finished[:50]),
        "form": form,
        "can_run": can_run,
        "schema_json": pretty_json(job_type.params_schema),
        "default_params_json": pretty_json(job_type.default_params),
    }
    return render(request, "monitor/job_type_detail.html", context, status=400 if form.errors else 200)


# --- Schedules -------------------------------------------------------------------


@needs("jobs.view_schedule")
@require_GET
def schedule_list(request: HttpRequest) -> HttpResponse:
    # Schedules number thousands at most, so a page number (and its COUNT) is fine here.
    page = Paginator(Schedule.objects.order_by("name").only("pk"), SCHEDULE_PAGE_SIZE).get_page(request.GET.get("page"))
    # Their last runs only for the page: PostgreSQL would look them up for the rows OFFSET skips too.
    page.object_list = list(schedules().filter(pk__in=[schedule.pk for schedule in page.object_list]))
    return render(request, "monitor/schedule_list.html", {"page": page})


@needs("jobs.view_schedule")
@require_GET
def schedule_detail(request: HttpRequest, schedule_id: int) -> HttpResponse:
    """A schedule, and its latest backfills with their progress (runs done / total)."""
    schedule = get_object_or_404(schedules(), pk=schedule_id)
    backfills = list(
        schedule.backfills.select_related("requested_by", "cancelled_by").order_by("-created_at")[:BACKFILLS_SHOWN]
    )
    backfills_progress(backfills)
    context = {
        "schedule": schedule,
        "backfills": backfills,
        "can_cancel": request.user.has_perm("jobs.change_schedule"),
    }
    return render(request, "monitor/schedule_detail.html", context)


@needs("jobs.view_schedule")
@require_POST
def backfill_cancel_view(request: HttpRequest, schedule_id: int, backfill_id: int) -> HttpResponse:
    if not request.user.has_perm("jobs.change_schedule"):
        raise PermissionDenied("You may not change schedules.")
    backfill = get_object_or_404(Backfill, pk=backfill_id, schedule_id=schedule_id)
    try:
        cancelled = backfill_cancel(backfill=backfill, cancelled_by=request.user)
    except errors.ServiceError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(
            request, f"Backfill cancelled: {cancelled} run{'s' if cancelled != 1 else ''} not started cancelled."
        )
    return redirect("monitor:schedule", schedule_id)


# --- Workers ---------------------------------------------------------------------


@needs("jobs.view_run")
@require_GET
def workers(request: HttpRequest) -> HttpResponse:
    cluster = cluster_status(queues=known_queues())
    by_id = active_runs(cluster)
    for worker in cluster.workers:
        for task in worker.active:
            task["run"] = by_id.get(task.get("id"))
    return render(request, "monitor/workers.html", {"cluster": cluster})


# --- Audit log -------------------------------------------------------------------


# Viewers and up: the log names every job type, workflow and schedule, and who changed it.
@needs("jobs.view_jobtype", "jobs.view_schedule")
@require_GET
def audit_log(request: HttpRequest) -> HttpResponse:
    """Who changed which job type, workflow or schedule, newest first: the
    admin's log entries, which the API and the import commands write too
    (jobs/audit.py). Paged by keyset on (action_time, id), as the run history
    is (jobs/core/keyset.py): a page never counts the table, and `after` leads
    to older entries, `before` to newer ones."""
    form = AuditFilterForm(request.GET or None)
    page = None
    if not form.is_bound or form.is_valid():
        data = form.cleaned_data if form.is_bound else {}
        queryset = LogEntry.objects.filter(content_type__in=audit.audited_content_types())
        queryset = form.filter(queryset) if form.is_bound else queryset
        queryset = queryset.select_related("user", "content_type")
        page = AUDIT_PAGES.page(queryset, size=AUDIT_PAGE_SIZE, after=data.get("after"), before=data.get("before"))
        for entry in page.rows:
            entry.history_url = reverse(
                f"admin:{entry.content_type.app_label}_{entry.content_type.model}_history", args=[entry.object_id]
            )
    context = {
        "form": form,
        "entries": page.rows if page else None,
        "newest_link": _page_link(request) if page and page.newer else None,
        "newer_link": _page_link(request, before=page.newer) if page and page.newer else None,
        "older_link": _page_link(request, after=page.older) if page and page.older else None,
    }
    return render(request, "monitor/audit_log.html", context, status=400 if page is None else 200)
