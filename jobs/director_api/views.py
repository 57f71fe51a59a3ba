"""celery-director's API routes (its director/api/), on Jobsite's services: the
answers its clients expect, with Jobsite's users and roles behind them. Writes
go through the run services (jobs/runs/trigger.py) as from Jobsite's own API."""

import uuid
from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import Http404
from jsonschema import Draft7Validator
from rest_framework import exceptions, status
from rest_framework.authentication import BasicAuthentication
from rest_framework.permissions import AllowAny, BasePermission
from rest_framework.response import Response
from rest_framework.views import APIView

from jobs.core import roles
from jobs.core.errors import Conflict, InvalidInput, ServiceError
from jobs.director_api import shapes
from jobs.importexport.director import definition_of
from jobs.models import JobType, Run, Schedule
from jobs.runs.trigger import failure_hook_key, run_cancel, run_create
from jobs.workflows.steps import step_runs

# A page of the workflow list: celery-director's default size, and Jobsite's bound on it.
PER_PAGE = 1000

# The body of POST /workflows, as celery-director checks it (with a bound on the comment, its column's).
TRIGGER_BODY = Draft7Validator(
    {
        "type": "object",
        "required": ["project", "name", "payload"],
        "additionalProperties": False,
        "properties": {
            "project": {"type": "string"},
            "name": {"type": "string"},
            "payload": {"type": "object"},
            "comment": {"type": "string", "maxLength": Run._meta.get_field("comment").max_length},
        },
    }
)

UNAUTHORIZED = {"status": 401, "error": "unauthorized", "message": "Please authenticate to access this API."}


def exception_handler(exc: Exception, context: dict) -> Response | None:
    """Errors as celery-director answers them: {"error": "..."} (401: its own body)."""
    if isinstance(exc, exceptions.NotAuthenticated | exceptions.AuthenticationFailed):
        headers = {"WWW-Authenticate": exc.auth_header} if getattr(exc, "auth_header", None) else {}
        return Response(UNAUTHORIZED, status=status.HTTP_401_UNAUTHORIZED, headers=headers)
    if isinstance(exc, ServiceError):
        code = status.HTTP_409_CONFLICT if isinstance(exc, Conflict) else status.HTTP_400_BAD_REQUEST
        return Response({"error": str(exc)}, status=code)
    if isinstance(exc, Http404):
        return Response({"error": str(exc) or "Not found."}, status=status.HTTP_404_NOT_FOUND)
    if isinstance(exc, RequestDataTooBig):
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        message = f"The request body is larger than this server takes ({limit} bytes, DATA_UPLOAD_MAX_MEMORY_SIZE)."
        return Response({"error": message}, status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE)
    if isinstance(exc, exceptions.APIException):
        return Response({"error": str(exc.detail)}, status=exc.status_code)
    return None


class HasPermission(BasePermission):
    """The Jobsite permission the view names for the request's method (`permissions`)."""

    def has_permission(self, request, view) -> bool:
        method = "GET" if request.method == "HEAD" else request.method
        needed = view.permissions.get(method)
        if needed is None:  # a method the view does not take: signed in, the answer is 405
            return bool(request.user and request.user.is_authenticated)
        if request.user.has_perm(needed):
            return True
        role = roles.OPERATORS if needed in roles.OPERATE else roles.VIEWERS
        self.message = f"This needs the permission {needed}, which the {role} role has."
        return False


class DirectorView(APIView):
    authentication_classes = [BasicAuthentication]
    permission_classes = [HasPermission]
    schema = None  # celery-director's API, documented by celery-director: not in Jobsite's OpenAPI schema
    permissions: dict[str, str] = {}

    def get_exception_handler(self):
        return exception_handler


def _workflow_run(workflow_id: str) -> Run:
    """The workflow run celery-director calls `workflow_id`, or 404 as celery-director says it."""
    try:
        pk = uuid.UUID(workflow_id)
    except ValueError:
        pk = None
    run = (
        Run.objects.select_related("job_type").exclude(job_type__director_name="").filter(pk=pk).first() if pk else None
    )
    if run is None:
        raise Http404(f"Workflow {workflow_id} not found")
    return run


def _bool_arg(value: str | None, default: bool) -> bool:
    """celery-director's reading of a boolean query argument: anything it cannot read is the default."""
    if value is None:
        return default
    value = value.lower()
    if value in ("y", "yes", "t", "true", "on", "1"):
        return True
    if value in ("n", "no", "f", "false", "off", "0"):
        return False
    return default


def _int_arg(value: str | None, default: int) -> int:
    try:
        return int(value) if value is not None else default
    except ValueError:
        return default


class PingView(APIView):
    """GET /ping: open to all, as celery-director's."""

    authentication_classes: list = []
    permission_classes = [AllowAny]
    schema = None

    def get_exception_handler(self):
        return exception_handler

    def get(self, request):
        return Response({"message": "pong"})


class DefinitionListView(DirectorView):
    """GET /definitions: the enabled workflows that have a celery-director name, as workflows.yml entries."""

    permissions = {"GET": "jobs.view_jobtype"}

    def get(self, request):
        workflows = (
            JobType.objects.exclude(director_name="")
            .filter(enabled=True)
            .select_related("on_failure")
            .prefetch_related("steps__job_type")
        )
        schedules: dict[int, Schedule] = {}
        for schedule in Schedule.objects.filter(job_type__in=workflows, enabled=True).order_by("name"):
            schedules.setdefault(schedule.job_type_id, schedule)
        listed = []
        for workflow in sorted(workflows, key=lambda job_type: job_type.director_name):
            project, name = shapes.split_name(workflow.director_name)
            definition = definition_of(workflow, schedules.get(workflow.pk))
            listed.append({"fullname": workflow.director_name, "project": project, "name": name, **definition})
        return Response(listed)


class WorkflowListView(DirectorView):
    """GET /workflows (newest first, `page`, `per_page`, `with_payload`) and POST /workflows (start one)."""

    permissions = {"GET": "jobs.view_run", "POST": "jobs.run_jobtype"}

    def get(self, request):
        page = _int_arg(request.query_params.get("page"), 1)
        per_page = _int_arg(request.query_params.get("per_page"), PER_PAGE)
        with_payload = _bool_arg(request.query_params.get("with_payload"), True)
        if page < 1 or per_page < 0:
            raise Http404("page counts from 1, and per_page cannot be negative")
        if per_page > PER_PAGE:
            raise exceptions.ParseError(f"per_page {per_page} is more than {PER_PAGE}, the most a page holds.")
        runs = list(
            Run.objects.filter(job_type__in=JobType.objects.exclude(director_name=""))
            .select_related("job_type")
            .order_by("-created_at", "-id")[(page - 1) * per_page : page * per_page]
        )
        if not runs and page != 1:
            raise Http404(f"There is no page {page} of {per_page} workflows.")
        return Response([shapes.workflow(run, with_payload=with_payload) for run in runs])

    def post(self, request):
        body = request.data
        if hasattr(body, "dict"):
            body = body.dict()  # no body at all: DRF gives an empty form
        problems = [error.message for error in TRIGGER_BODY.iter_errors(body)]
        if problems:
            body = {"error": "Error validating against schema", "errors": problems}
            return Response(body, status=status.HTTP_400_BAD_REQUEST)
        fullname = f"{body['project']}.{body['name']}"
        job_type = JobType.objects.filter(director_name=fullname).first()
        if job_type is None:
            raise Http404(f"Workflow {fullname} not found")
        return _start(request, job_type=job_type, payload=body["payload"], comment=body.get("comment", ""))


def _start(request, *, job_type: JobType, payload: dict, comment: str, relaunch_of: Run | None = None) -> Response:
    try:
        run, _ = run_create(
            job_type=job_type,
            params=payload,
            trigger=Run.Trigger.RERUN if relaunch_of else Run.Trigger.API,
            requested_by=request.user,
            rerun_of=relaunch_of,
            comment=comment,
        )
    except InvalidInput as exc:
        errors: Any = exc.errors.get("params") or exc.messages
        return Response({"error": "Payload is not valid", "errors": errors}, status=status.HTTP_400_BAD_REQUEST)
    return Response(shapes.workflow(run), status=status.HTTP_201_CREATED)


class WorkflowDetailView(DirectorView):
    """GET /workflows/<id>: a workflow run with its `tasks`."""

    permissions = {"GET": "jobs.view_run"}

    def get(self, request, workflow_id: str):
        run = _workflow_run(workflow_id)
        hook = None
        if run.job_type.on_failure_id is not None:
            hook = (
                Run.objects.select_related("job_type")
                .filter(job_type_id=run.job_type.on_failure_id, idempotency_key=failure_hook_key(run))
                .first()
            )
        return Response({**shapes.workflow(run), "tasks": shapes.tasks(step_runs(run), hook)})


class RelaunchView(DirectorView):
    """POST /workflows/<id>/relaunch: the same workflow again, with the same payload and comment."""

    permissions = {"POST": "jobs.run_jobtype"}

    def post(self, request, workflow_id: str):
        run = _workflow_run(workflow_id)
        return _start(request, job_type=run.job_type, payload=run.params, comment=run.comment, relaunch_of=run)


class CancelView(DirectorView):
    """POST /workflows/<id>/cancel: cancel a workflow run and its unfinished steps (409 once it has ended)."""

    permissions = {"POST": "jobs.cancel_run"}

    def post(self, request, workflow_id: str):
        run = run_cancel(run=_workflow_run(workflow_id), cancelled_by=request.user)
        return Response(shapes.workflow(run), status=status.HTTP_201_CREATED)
