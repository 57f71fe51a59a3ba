"""A job type's history pages: its revisions with what each changed, one
revision with what changed since (a run's page links there), and restoring
one, for Editors (the `change` permission). Credentials masked, as in the API
(jobs/definitions/revisions.py)."""

import json

from django.contrib import messages
from django.contrib.auth.decorators import login_required, permission_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST

from jobs.core.errors import ServiceError
from jobs.definitions import revisions
from jobs.models import JobType, Run

PAGE_SIZE = 20


def VIEW(view):
    return login_required(permission_required("jobs.view_jobtype", raise_exception=True)(view))


def _shown(value) -> str:
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str)


def _rows(changes: list[dict]) -> list[dict]:
    return [{**change, "old": _shown(change["old"]), "new": _shown(change["new"])} for change in changes]


def _history(job_type: JobType):
    return job_type.history.select_related("history_user").order_by("-history_date", "-history_id")


def run_revision(run: Run) -> dict | None:
    """For a run's page: the revision it ran, and whether its job type changed since."""
    if run.job_type_revision_id is None:
        return None
    record = run.job_type.history.filter(history_id=run.job_type_revision_id).first()
    latest = run.job_type.history.order_by("-history_date", "-history_id").first()
    if record is None or latest is None:
        return None
    return {"id": record.history_id, "changed": bool(revisions.changes(latest, record))}


@VIEW
@require_GET
def job_type_history(request: HttpRequest, name: str) -> HttpResponse:
    job_type = get_object_or_404(JobType, name=name)
    page = Paginator(_history(job_type), PAGE_SIZE).get_page(request.GET.get("page"))
    records = list(page.object_list)
    older = revisions.revision_before(records[-1]) if records else None
    entries = [
        {"record": record, "changes": _rows(changes)} for record, changes in revisions.with_changes(records, older)
    ]
    context = {
        "job_type": job_type,
        "entries": entries,
        "page": page,
        "can_restore": request.user.has_perm("jobs.change_jobtype"),
    }
    return render(request, "monitor/job_type_history.html", context)


@VIEW
@require_GET
def job_type_revision(request: HttpRequest, name: str, revision_id: int) -> HttpResponse:
    job_type = get_object_or_404(JobType, name=name)
    record = get_object_or_404(_history(job_type), history_id=revision_id)
    latest = _history(job_type).first()
    context = {
        "job_type": job_type,
        "record": record,
        "is_latest": latest.history_id == record.history_id,
        # From this revision to today's definition: what a run of it would now do differently.
        "since": _rows(revisions.changes(latest, record)),
        "own_changes": _rows(revisions.changes(record, revisions.revision_before(record))),
        "definition": _shown(revisions.definition(record)),
        "can_restore": request.user.has_perm("jobs.change_jobtype"),
    }
    return render(request, "monitor/job_type_revision.html", context)


@VIEW
@require_POST
def job_type_restore(request: HttpRequest, name: str, revision_id: int) -> HttpResponse:
    if not request.user.has_perm("jobs.change_jobtype"):
        raise PermissionDenied("You may not change job types.")
    job_type = get_object_or_404(JobType, name=name)
    record = get_object_or_404(job_type.history, history_id=revision_id)
    try:
        restored = revisions.job_type_restore(job_type=job_type, record=record, user=request.user)
    except ServiceError as exc:
        for message in exc.messages:
            messages.error(request, message)
        return redirect("monitor:job-type-revision", job_type.name, record.history_id)
    messages.success(request, f"Revision {record.history_id} restored: it is the job type's definition again.")
    return redirect("monitor:job-type-history", restored.name)
