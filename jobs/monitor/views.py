"""The monitoring pages: dashboard, run history, a run, a job type, workers.

Every list is bounded (see queries.py); the parts that change while a page is
open are partial templates, which the page re-fetches every few seconds.
"""

import json
import uuid
from datetime import timedelta

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required, permission_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from jobs import services
from jobs.limits import is_truncated_result
from jobs.models import JobType, Run

from .charts import duration_chart
from .cluster import cluster_status
from .flower import may_see_flower
from .forms import RunFilterForm, RunNowForm
from .queries import NEWEST_FIRST, count_in_statuses, keyset_page, newest_in_statuses, runs, status_counts_since

ACTIVE_LIMIT = 50
RECENT_LIMIT = 10
PAGE_SIZE = 50
JOB_TYPE_WINDOW = 100  # runs a job type page reads for its rate and chart
JOB_TYPE_LIST_LIMIT = 200
REFRESH_SECONDS = 3


def known_queues() -> list[str]:
    """The default queue and every queue a job type names (job types are few)."""
    named = JobType.objects.exclude(queue="").order_by().values_list("queue", flat=True).distinct()[:100]
    return sorted({settings.CELERY_TASK_DEFAULT_QUEUE, *named})


def needs(permission: str):
    """Signed in (else the login page), with `permission` (else 403)."""

    def decorate(view):
        return login_required(permission_required(permission, raise_exception=True)(view))

    return decorate


def pretty_json(value) -> str:
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str)


# --- Places for schedules (issue 3) and workflows (issue 4) ------------------------


def upcoming_context() -> dict:
    """Upcoming scheduled runs and schedule fires for the dashboard.

    Empty until schedules land; return {"upcoming": [...]} and fill the
    `upcoming` block of monitor/dashboard.html.
    """
    return {}


def workflow_context(run: Run) -> dict:
    """The steps of a workflow run (timeline and dependency graph) for its page.

    Empty until workflows land; return {"steps": ...} and fill the
    `workflow_steps` block of monitor/run_detail.html.
    """
    return {}


def notification_outcome(run: Run):
    """What the run's notification did, once notifications (issue 5) record it."""
    return getattr(run, "notification", None)


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


@needs("jobs.view_run")
@require_GET
def run_list(request: HttpRequest) -> HttpResponse:
    form = RunFilterForm(request.GET or None)
    page = None
    if not form.is_bound:
        page = keyset_page(runs(), size=PAGE_SIZE)
    elif form.is_valid():
        data = form.cleaned_data
        page = keyset_page(form.filter(runs()), size=PAGE_SIZE, after=data["after"], before=data["before"])

    def link(**cursor) -> str:
        query = request.GET.copy()
        for key in ("after", "before"):
            query.pop(key, None)
        query.update({key: str(value) for key, value in cursor.items()})
        return f"?{query.urlencode()}"

    context = {
        "form": form,
        "page": page,
        "newest_link": link() if page and page.newer else None,
        "newer_link": link(before=page.newer) if page and page.newer else None,
        "older_link": link(after=page.older) if page and page.older else None,
        "job_type_names": JobType.objects.order_by("name").values_list("name", flat=True)[:JOB_TYPE_LIST_LIMIT],
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
        "flower_task_url": f"/flower/task/{run.pk}" if may_see_flower(user) else None,
        "notification": notification_outcome(run),
        "refresh_seconds": REFRESH_SECONDS,
    }


def _get_run(run_id) -> Run:
    return get_object_or_404(Run.objects.select_related("job_type", "requested_by", "rerun_of"), pk=run_id)


@needs("jobs.view_run")
@require_GET
def run_detail(request: HttpRequest, run_id) -> HttpResponse:
    run = _get_run(run_id)
    context = {
        **_run_context(request, run),
        **workflow_context(run),
    }
    return render(request, "monitor/run_detail.html", context)


@needs("jobs.view_run")
@require_GET
def run_live(request: HttpRequest, run_id) -> HttpResponse:
    return render(request, "monitor/_run_live.html", _run_context(request, _get_run(run_id)))


@needs("jobs.view_run")
@require_POST
def run_cancel(request: HttpRequest, run_id) -> HttpResponse:
    if not request.user.has_perm("jobs.cancel_run"):
        raise PermissionDenied("You may not cancel runs.")
    run = _get_run(run_id)
    try:
        services.run_cancel(run=run)
    except services.ServiceError as exc:
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
        new_run = services.run_rerun(run=run, requested_by=request.user)
    except services.ServiceError as exc:
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
                run, _ = services.run_create(
                    job_type=job_type, params=form.params(), trigger=Run.Trigger.ADMIN, requested_by=request.user
                )
            except services.InvalidInput as exc:
                form.add_param_errors(exc.errors.get("params", []) + exc.errors.get("detail", []))
            except services.ServiceError as exc:
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


# --- Workers ---------------------------------------------------------------------


@needs("jobs.view_run")
@require_GET
def workers(request: HttpRequest) -> HttpResponse:
    cluster = cluster_status(queues=known_queues())
    ids = []
    for task_id in cluster.active_task_ids:
        try:
            ids.append(uuid.UUID(task_id))
        except ValueError:
            continue  # not a run: some other task with an id of its own
    by_id = {str(pk): run for pk, run in runs().in_bulk(ids).items()} if ids else {}
    for worker in cluster.workers:
        for task in worker.active:
            task["run"] = by_id.get(task.get("id"))
    return render(request, "monitor/workers.html", {"cluster": cluster})
