"""The API's serializers of runs and requests; those of definitions (job types,
schedules) are jobs/definitions/serializers.py, shared with Jobsite's files."""

from django.conf import settings
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from jobs.definitions.serializers import BooleanField
from jobs.models import JobType, NotifyStatus, Run
from jobs.runs import broker
from jobs.runs.executors import queue_of
from jobs.workflows import steps as workflow_steps


class DurationMixin(serializers.Serializer):
    duration_seconds = serializers.SerializerMethodField()

    @extend_schema_field(serializers.FloatField(allow_null=True))
    def get_duration_seconds(self, run: Run) -> float | None:
        return run.duration.total_seconds() if run.duration else None


class NotificationChannelSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=["sent", "failed"])
    detail = serializers.CharField(required=False, help_text="Sent: to whom, or the webhook's answer.")
    error = serializers.CharField(required=False, help_text="Failed: why (the last attempt's reason).")
    at = serializers.DateTimeField()


class NotificationSerializer(serializers.Serializer):
    """The outcome of a run's notification (Run.notification): null when it has none."""

    status = serializers.ChoiceField(choices=NotifyStatus.choices)
    notified_at = serializers.DateTimeField(allow_null=True, help_text="When the final outcome was recorded.")
    attempts = serializers.IntegerField()
    next_attempt_at = serializers.DateTimeField(allow_null=True, help_text="Pending: when it is tried again.")
    email = NotificationChannelSerializer(required=False)
    webhook = NotificationChannelSerializer(required=False)
    error = serializers.CharField(required=False)


class RunSerializer(DurationMixin, serializers.ModelSerializer):
    job_type = serializers.SlugRelatedField(slug_field="name", read_only=True)
    requested_by = serializers.SlugRelatedField(
        slug_field="username",
        read_only=True,
        allow_null=True,
        help_text="Who triggered it (a rerun: who asked for the rerun).",
    )
    cancelled_by = serializers.SlugRelatedField(
        slug_field="username",
        read_only=True,
        allow_null=True,
        help_text="Who cancelled it; null on a cancelled run means Jobsite did (its workflow run ended).",
    )
    schedule = serializers.SlugRelatedField(slug_field="name", read_only=True, allow_null=True)
    notification = serializers.SerializerMethodField()
    step = serializers.SerializerMethodField()
    url = serializers.SerializerMethodField()

    class Meta:
        model = Run
        fields = [
            "id",
            "job_type",
            "status",
            "params",
            "trigger",
            "parent",
            "step",
            "rerun_of",
            "schedule",
            "requested_by",
            "cancelled_by",
            "cancelled_at",
            "idempotency_key",
            "comment",
            "scheduled_for",
            "created_at",
            "released_at",
            "queued_at",
            "started_at",
            "finished_at",
            "deadline_at",
            "late_at",
            "duration_seconds",
            "attempts",
            "worker",
            "result",
            "error",
            "traceback",
            "notify_emails",
            "notification",
            "url",
            "trigger_url",
            "backfill",
            "job_type_revision",
        ]
        read_only_fields = fields
        extra_kwargs = {
            "trigger_url": {"help_text": "Trigger `url`: the id of the trigger URL it came through."},
            "backfill": {"help_text": "Trigger `backfill`: the id of the backfill that created it."},
            "job_type_revision": {
                "help_text": "The id of its job type's revision it ran "
                "(GET /api/v1/job-types/{name}/revisions/{id}/); null for runs from before revisions were kept."
            },
        }

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_step(self, run: Run) -> str | None:
        """A workflow step's run: the step's name."""
        return run.step_name or None

    @extend_schema_field(NotificationSerializer(allow_null=True))
    def get_notification(self, run: Run) -> dict | None:
        outcome = run.notification
        return None if outcome is None else NotificationSerializer(outcome).data

    @extend_schema_field(serializers.URLField())
    def get_url(self, run: Run) -> str:
        request = self.context.get("request")
        path = run.get_absolute_url()
        return request.build_absolute_uri(path) if request else path


class StepRunSerializer(DurationMixin, serializers.ModelSerializer):
    """One step of a workflow run, as the workflow run's detail lists it."""

    name = serializers.CharField(source="step_name")
    run = serializers.UUIDField(source="id")
    job_type = serializers.SlugRelatedField(slug_field="name", read_only=True)
    reused_from = serializers.UUIDField(
        source="rerun_of_id", allow_null=True, help_text="Rerun from failed: the run whose result this step reused."
    )

    class Meta:
        model = Run
        fields = [
            "name",
            "run",
            "job_type",
            "status",
            "depends_on",
            "queued_at",
            "started_at",
            "finished_at",
            "duration_seconds",
            "attempts",
            "params",
            "result",
            "error",
            "reused_from",
        ]
        read_only_fields = fields


class AttemptSerializer(serializers.Serializer):
    """One attempt of a run; the last one is the run's own start, end and error."""

    attempt = serializers.IntegerField()
    status = serializers.ChoiceField(choices=Run.Status.choices, help_text="Earlier attempts all failed.")
    started_at = serializers.DateTimeField(allow_null=True)
    ended_at = serializers.DateTimeField(allow_null=True)
    worker = serializers.CharField(allow_blank=True)
    error = serializers.CharField(allow_blank=True)
    retry_at = serializers.DateTimeField(allow_null=True, help_text="When the next attempt was due.")


class RunDetailSerializer(RunSerializer):
    steps = serializers.SerializerMethodField()
    attempt_history = AttemptSerializer(many=True, read_only=True)
    queue = serializers.SerializerMethodField()
    queue_warning = serializers.SerializerMethodField()

    class Meta(RunSerializer.Meta):
        fields = [*RunSerializer.Meta.fields, "attempt_history", "steps", "queue", "queue_warning"]
        read_only_fields = fields

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_queue(self, run: Run) -> str | None:
        """The Celery queue its task is sent to; null for a workflow run (its steps have theirs)."""
        return None if run.job_type.kind == JobType.Kind.WORKFLOW else queue_of(run)

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_queue_warning(self, run: Run) -> str | None:
        """Set while the run waits on a queue that no worker answering now consumes."""
        return broker.queue_warning(run)

    @extend_schema_field(StepRunSerializer(many=True, allow_null=True))
    def get_steps(self, run: Run) -> list | None:
        """A workflow run: its steps in topological order. Other runs: null."""
        if run.job_type.kind != JobType.Kind.WORKFLOW:
            return None
        return StepRunSerializer(workflow_steps.step_runs(run), many=True).data


class RerunRequestSerializer(serializers.Serializer):
    from_failed = BooleanField(
        required=False,
        default=False,
        help_text="Workflow runs: reuse the results of the steps that succeeded and run only the rest.",
    )


class RunRequestSerializer(serializers.Serializer):
    params = serializers.JSONField(required=False, default=dict, help_text="Merged over the job type's defaults.")
    idempotency_key = serializers.CharField(
        required=False, max_length=200, help_text="Sending the same key again returns the first run."
    )
    run_at = serializers.DateTimeField(
        required=False, help_text="Run later, at this time (ISO 8601 with an offset); it must be in the future."
    )
    notify_emails = serializers.ListField(
        child=serializers.CharField(),
        required=False,
        help_text="Also tell these addresses about this run (under the job type's notify_on).",
    )

    def validate_params(self, value):
        if not isinstance(value, dict):
            raise serializers.ValidationError("Must be a JSON object.")
        return value


class BulkRunRequestSerializer(serializers.Serializer):
    """Many runs of one job type: one per item of `params`, the rest shared by all."""

    run_at = serializers.DateTimeField(
        required=False, help_text="Run them later, at this time (ISO 8601 with an offset); it must be in the future."
    )
    notify_emails = serializers.ListField(
        child=serializers.CharField(),
        required=False,
        help_text="Also tell these addresses about each run (under the job type's notify_on).",
    )
    comment = serializers.CharField(
        required=False, allow_blank=True, max_length=255, help_text="A note kept with each run."
    )

    def get_fields(self):
        # The limit is read when a request is checked (and the schema written), not at import.
        limit = settings.JOBS_BULK_MAX_RUNS
        params = serializers.ListField(
            child=serializers.DictField(),
            min_length=1,
            max_length=limit,
            error_messages={
                "min_length": "Give at least one params object.",
                "max_length": f"At most {limit} runs per request (JOBS_BULK_MAX_RUNS): split the list over "
                "several requests.",
            },
            help_text=f"One run per item: its params, merged over the job type's defaults (at most {limit}).",
        )
        return {"params": params, **super().get_fields()}


class BulkRunSerializer(serializers.ModelSerializer):
    """A run a bulk trigger created: enough to follow it (GET /api/v1/runs/{id}/)."""

    url = serializers.SerializerMethodField()

    class Meta:
        model = Run
        fields = ["id", "status", "scheduled_for", "url"]
        read_only_fields = fields

    @extend_schema_field(serializers.URLField())
    def get_url(self, run: Run) -> str:
        request = self.context.get("request")
        return request.build_absolute_uri(run.get_absolute_url()) if request else run.get_absolute_url()


class BulkRunsSerializer(serializers.Serializer):
    count = serializers.IntegerField(help_text="How many runs were created.")
    runs = BulkRunSerializer(many=True, help_text="The runs, in the order of the params given.")


class TaskNameSerializer(serializers.Serializer):
    name = serializers.CharField()


class ActiveRunSerializer(serializers.ModelSerializer):
    """A run that a worker is executing now."""

    job_type = serializers.SlugRelatedField(slug_field="name", read_only=True)

    class Meta:
        model = Run
        fields = ["id", "job_type", "status", "started_at"]
        read_only_fields = fields


class WorkerSerializer(serializers.Serializer):
    hostname = serializers.CharField(help_text="The worker's node name, e.g. celery@host.")
    queues = serializers.ListField(child=serializers.CharField(), help_text="The queues it consumes.")
    concurrency = serializers.IntegerField(allow_null=True, help_text="How many tasks it runs at once.")
    processed = serializers.IntegerField(allow_null=True, help_text="Tasks it has accepted since it started.")
    active_tasks = serializers.IntegerField(help_text="Tasks it is executing now: runs and Jobsite's own tasks.")
    active_runs = ActiveRunSerializer(many=True, help_text="The runs among them.")


class QueueDepthSerializer(serializers.Serializer):
    name = serializers.CharField()
    waiting = serializers.IntegerField(allow_null=True, help_text="Messages waiting in the broker.")


class WorkersSerializer(serializers.Serializer):
    """The workers that answered, and the queues: theirs and those job types name."""

    workers = WorkerSerializer(many=True)
    queues = QueueDepthSerializer(many=True)
    worker_error = serializers.CharField(
        allow_blank=True, help_text='Why the list is empty ("No worker answered within 1 s."), else "".'
    )
    checked_at = serializers.DateTimeField(help_text="When the workers had answered (an answer is kept 2 seconds).")
