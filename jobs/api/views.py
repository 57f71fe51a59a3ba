from django.core.cache import cache
from django.db import transaction
from django.utils import timezone
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.generics import get_object_or_404
from rest_framework.response import Response
from rest_framework.views import APIView

from jobs import audit
from jobs.api import logs as run_logs
from jobs.api.backfill_serializers import BackfillRequestSerializer, BackfillSerializer
from jobs.api.filters import JobTypeFilter, RunFilter, ScheduleFilter
from jobs.api.pagination import KeysetPagination
from jobs.api.revisions import RevisionsMixin, restore_schema
from jobs.api.schema import ErrorSerializer
from jobs.api.serializers import (
    BulkRunRequestSerializer,
    BulkRunsSerializer,
    RerunRequestSerializer,
    RunDetailSerializer,
    RunRequestSerializer,
    RunSerializer,
    TaskNameSerializer,
    WorkersSerializer,
)
from jobs.core.kinds import registered_task_names
from jobs.definitions.job_types import job_type_delete
from jobs.definitions.revisions import job_type_restore, schedule_restore
from jobs.definitions.serializers import JobTypeSerializer, ScheduleSerializer
from jobs.models import Backfill, JobType, Run, Schedule
from jobs.runs.trigger import run_cancel, run_create, run_rerun, runs_create_many
from jobs.schedules.backfill import backfill_cancel, backfill_create, backfills_progress
from jobs.worker.cluster import active_runs, cluster_status, known_queues

# How many of a schedule's backfills the API and its page list.
BACKFILLS_SHOWN = 50


class AuditedMixin:
    """Records each create, update and delete in the admin's log (jobs/audit.py),
    in the same transaction as the change."""

    def author(self) -> audit.Author:
        return audit.Author(self.request.user, audit.API)

    def perform_create(self, serializer):
        audit.save_and_log(serializer, by=self.author())

    def perform_update(self, serializer):
        audit.save_and_log(serializer, by=self.author())

    def perform_destroy(self, instance):
        with transaction.atomic():
            audit.log_deletion(instance, by=self.author())
            instance.delete()


@extend_schema_view(restore=restore_schema(JobTypeSerializer))
class JobTypeViewSet(RevisionsMixin, AuditedMixin, viewsets.ModelViewSet):
    queryset = JobType.objects.select_related("on_failure").prefetch_related("steps__job_type")
    serializer_class = JobTypeSerializer
    lookup_field = "name"
    # Any name reaches the view, which answers 404 in JSON for one that does not exist.
    lookup_value_regex = "[^/]+"
    filterset_class = JobTypeFilter
    action_permissions = {"run": "jobs.run_jobtype", "run_bulk": "jobs.run_jobtype", "restore": "jobs.change_jobtype"}

    def restore_definition(self, obj, record):
        return job_type_restore(job_type=obj, record=record, user=self.request.user)

    def get_queryset(self):
        # Triggering a run reads the job type's own row; its steps and failure
        # hook are for showing it (a workflow's trigger checks its steps itself).
        return JobType.objects.all() if self.action in ("run", "run_bulk") else super().get_queryset()

    @extend_schema(
        responses={
            204: OpenApiResponse(description="Deleted."),
            200: OpenApiResponse(JobTypeSerializer, description="It has runs, so it was disabled instead."),
            409: OpenApiResponse(ErrorSerializer, description="A workflow step, a failure hook or a schedule uses it."),
        }
    )
    def destroy(self, request, *args, **kwargs):
        job_type = self.get_object()
        if job_type_delete(job_type=job_type, by=self.author()):
            return Response(status=status.HTTP_204_NO_CONTENT)
        return Response(
            {
                "detail": "The job type has runs, so it was disabled instead of deleted.",
                **self.get_serializer(job_type).data,
            }
        )

    @extend_schema(
        request=RunRequestSerializer,
        responses={
            201: OpenApiResponse(RunSerializer, description="Run created."),
            200: OpenApiResponse(RunSerializer, description="A run with this idempotency_key already exists."),
        },
    )
    @action(detail=True, methods=["post"])
    def run(self, request, name=None):
        """Trigger a run of this job type."""
        job_type = self.get_object()
        body = RunRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        run, created = run_create(
            job_type=job_type,
            params=body.validated_data["params"],
            trigger=Run.Trigger.API,
            requested_by=request.user,
            idempotency_key=body.validated_data.get("idempotency_key"),
            run_at=body.validated_data.get("run_at"),
            notify_emails=body.validated_data.get("notify_emails"),
        )
        data = RunSerializer(run, context=self.get_serializer_context()).data
        return Response(data, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)

    @extend_schema(
        request=BulkRunRequestSerializer,
        responses={
            201: OpenApiResponse(BulkRunsSerializer, description="Runs created, one per params item."),
            409: OpenApiResponse(ErrorSerializer, description="The job type is disabled, or a workflow with no steps."),
        },
    )
    @action(detail=True, methods=["post"], url_path="runs/bulk", url_name="runs-bulk")
    def run_bulk(self, request, name=None):
        """Trigger many runs of this job type at once, one per item of `params`
        (at most JOBS_BULK_MAX_RUNS): all are created, or none, and a bad item
        is named by its index."""
        job_type = self.get_object()
        body = BulkRunRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        runs = runs_create_many(
            job_type=job_type,
            params_list=body.validated_data["params"],
            trigger=Run.Trigger.API,
            requested_by=request.user,
            run_at=body.validated_data.get("run_at"),
            notify_emails=body.validated_data.get("notify_emails"),
            comment=body.validated_data.get("comment", ""),
        )
        data = BulkRunsSerializer({"count": len(runs), "runs": runs}, context=self.get_serializer_context()).data
        return Response(data, status=status.HTTP_201_CREATED)


class RunViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    queryset = Run.objects.select_related("job_type", "requested_by", "cancelled_by")
    serializer_class = RunSerializer
    filterset_class = RunFilter
    # By cursor, newest first: the run table grows without end, and a page number needs its COUNT.
    pagination_class = KeysetPagination
    lookup_value_regex = "[^/]+"
    action_permissions = {"cancel": "jobs.cancel_run", "rerun": "jobs.run_jobtype"}

    def get_queryset(self):
        if self.action != "list":
            return super().get_queryset().select_related("parent__job_type")  # a step's queue may be its workflow's
        # The same queries per page at any size: the runs, then their job types. Job types
        # are not joined: with an inner join SQLite may read every job type's runs and
        # sort them rather than walk the created_at index (as the pages, jobs/monitor/queries.py).
        return Run.objects.select_related("requested_by", "cancelled_by", "schedule").prefetch_related("job_type")

    def get_serializer_class(self):
        # One run shows its steps too.
        return RunSerializer if self.action == "list" else RunDetailSerializer

    @extend_schema(
        request=None,
        responses={200: RunDetailSerializer, 409: OpenApiResponse(ErrorSerializer, description="Already finished.")},
    )
    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        """Cancel a run that has not finished: it never starts, or is stopped."""
        run = run_cancel(run=self.get_object(), cancelled_by=request.user)
        return Response(self.get_serializer(run).data)

    @extend_schema(
        request=RerunRequestSerializer,
        responses={201: RunDetailSerializer, 409: OpenApiResponse(ErrorSerializer, description="Not finished.")},
    )
    @action(detail=True, methods=["post"])
    def rerun(self, request, pk=None):
        """Run the same job type again with the same params; a workflow run can
        reuse the results of its steps that succeeded (`from_failed`)."""
        body = RerunRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        run = run_rerun(
            run=self.get_object(), requested_by=request.user, from_failed=body.validated_data["from_failed"]
        )
        return Response(self.get_serializer(run).data, status=status.HTTP_201_CREATED)

    @run_logs.schema
    @action(detail=True, methods=["get"], pagination_class=None, filter_backends=[])
    def logs(self, request, pk=None):
        """The lines the run's task logged or printed (its command's output), oldest first."""
        return Response(run_logs.run_log_page(request, self.get_object()))


@extend_schema_view(restore=restore_schema(ScheduleSerializer))
class ScheduleViewSet(RevisionsMixin, AuditedMixin, viewsets.ModelViewSet):
    # The last run of each schedule in the same query, as the pages and the admin read it.
    queryset = Schedule.objects.select_related("job_type").with_last_run(finished_at=True)
    serializer_class = ScheduleSerializer
    filterset_class = ScheduleFilter
    lookup_value_regex = "[^/]+"
    # Operators manage schedules: restoring one, backfilling one or cancelling that is changing it.
    action_permissions = {
        "restore": "jobs.change_schedule",
        "backfill": "jobs.change_schedule",
        "cancel_backfill": "jobs.change_schedule",
    }

    def restore_definition(self, obj, record):
        return schedule_restore(schedule=obj, record=record, user=self.request.user)

    def _backfill_data(self, backfill: Backfill) -> dict:
        backfills_progress([backfill])
        return BackfillSerializer(backfill, context=self.get_serializer_context()).data

    @extend_schema(
        request=BackfillRequestSerializer,
        responses={
            201: OpenApiResponse(BackfillSerializer, description="Backfill created; its runs are released in turn."),
        },
    )
    @action(detail=True, methods=["post"])
    def backfill(self, request, pk=None):
        """Create the runs of the schedule's ticks in [start, end) that have none,
        released a few at a time (backfill_concurrency)."""
        schedule = self.get_object()
        body = BackfillRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        backfill = backfill_create(
            schedule=schedule,
            start=body.validated_data["start"],
            end=body.validated_data["end"],
            concurrency=body.validated_data.get("backfill_concurrency"),
            requested_by=request.user,
        )
        return Response(self._backfill_data(backfill), status=status.HTTP_201_CREATED)

    @extend_schema(request=None, responses={200: BackfillSerializer(many=True)})
    @action(detail=True, methods=["get"], pagination_class=None, filter_backends=[])
    def backfills(self, request, pk=None):
        """The schedule's latest backfills (BACKFILLS_SHOWN), newest first, with their progress."""
        schedule = self.get_object()
        backfills = list(
            schedule.backfills.select_related("requested_by", "cancelled_by").order_by("-created_at")[:BACKFILLS_SHOWN]
        )
        backfills_progress(backfills)
        return Response(BackfillSerializer(backfills, many=True, context=self.get_serializer_context()).data)

    @extend_schema(
        request=None,
        responses={200: BackfillSerializer, 409: OpenApiResponse(ErrorSerializer, description="Cancelled already.")},
    )
    @action(detail=True, methods=["post"], url_path=r"backfills/(?P<backfill_id>[^/]+)/cancel")
    def cancel_backfill(self, request, pk=None, backfill_id=None):
        """Stop a backfill: its runs not started yet are cancelled; those running go on."""
        schedule = self.get_object()
        backfill = get_object_or_404(schedule.backfills.all(), pk=backfill_id)
        backfill_cancel(backfill=backfill, cancelled_by=request.user)
        backfill.refresh_from_db()
        return Response(self._backfill_data(backfill))


class TaskListView(APIView):
    """Celery tasks that a `task` job type may name."""

    queryset = JobType.objects.none()  # Reading them needs the permission to view job types.

    @extend_schema(responses=TaskNameSerializer(many=True))
    def get(self, request):
        return Response([{"name": name} for name in registered_task_names()])


class WorkerListView(APIView):
    """The workers online (their queues, concurrency and active runs) and the
    queues' depths, as the workers page shows them: asked with short timeouts
    (MONITOR_INSPECT_TIMEOUT), and kept CACHE_SECONDS so that clients polling
    it do not each ask every worker."""

    queryset = Run.objects.none()  # Reading it needs the permission to view runs (Viewers have it).
    CACHE_SECONDS = 2
    CACHE_KEY = "jobsite:api:workers"

    @extend_schema(
        description="The Celery workers online, with their queues, concurrency and the runs they are "
        "executing, and how many messages wait in each queue. Workers are given MONITOR_INSPECT_TIMEOUT "
        "(1 s) to answer, and the answer is kept for 2 seconds.",
        responses={
            200: WorkersSerializer,
            503: OpenApiResponse(ErrorSerializer, description="The broker did not answer: workers cannot be asked."),
        },
    )
    def get(self, request):
        answer = cache.get(self.CACHE_KEY)
        if answer is None:
            answer = self.ask()
            cache.set(self.CACHE_KEY, answer, self.CACHE_SECONDS)
        status_code, body = answer
        return Response(body, status=status_code)

    @staticmethod
    def ask() -> tuple[int, dict]:
        cluster = cluster_status(queues=known_queues())
        checked_at = timezone.now()
        if not cluster.broker_ok:
            return status.HTTP_503_SERVICE_UNAVAILABLE, {"detail": cluster.broker_error}
        runs = active_runs(cluster)
        workers = [
            {
                "hostname": worker.name,
                "queues": worker.queues,
                "concurrency": worker.concurrency,
                "processed": worker.processed,
                "active_tasks": len(worker.active),
                "active_runs": [runs[task["id"]] for task in worker.active if task.get("id") in runs],
            }
            for worker in cluster.workers
        ]
        queues = [{"name": name, "waiting": depth} for name, depth in cluster.queue_depths.items()]
        body = {"workers": workers, "queues": queues, "worker_error": cluster.worker_error, "checked_at": checked_at}
        return status.HTTP_200_OK, WorkersSerializer(body).data
