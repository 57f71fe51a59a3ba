import copy

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import models, transaction
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from jobs import workflows
from jobs.models import JobType, NotifyStatus, Run, Schedule
from jobs.workflow_graph import StepSpec, steps_errors


class BooleanField(serializers.BooleanField):
    """JSON `true` or `false` only, as the schema says: DRF's own also takes
    1, "yes", "on" and more, which came from HTML forms (the API reads JSON only)."""

    def to_internal_value(self, data):
        if isinstance(data, bool):
            return data
        self.fail("invalid", input=data)


class ModelSerializer(serializers.ModelSerializer):
    serializer_field_mapping = {
        **serializers.ModelSerializer.serializer_field_mapping,
        models.BooleanField: BooleanField,
    }


class ModelCleanMixin:
    """Validate with the model's clean(), so the admin and the API apply the same rules."""

    def build_candidate(self, attrs):
        candidate = copy.copy(self.instance) if self.instance else self.Meta.model()
        for field, value in attrs.items():
            setattr(candidate, field, value)
        return candidate

    @staticmethod
    def clean_errors(candidate) -> dict[str, list[str]]:
        try:
            candidate.clean()
        except DjangoValidationError as exc:
            return exc.message_dict
        return {}

    def validate(self, attrs):
        errors = self.clean_errors(self.build_candidate(attrs))
        if errors:
            raise serializers.ValidationError(errors)
        return attrs


class WorkflowStepSerializer(serializers.Serializer):
    """One step of a workflow. The rules across steps (names, job types,
    dependencies, cycles, placeholders) are checked on the whole list by
    jobs.workflow_graph, as in the admin and the import commands."""

    name = serializers.CharField(max_length=100, help_text="A slug, unique in the workflow.")
    job_type = serializers.CharField(max_length=100, help_text="Name of the job type the step runs (not a workflow).")
    params = serializers.JSONField(
        required=False,
        default=dict,
        help_text="May hold {{ params.KEY }} and {{ steps.NAME.result }} placeholders, resolved at dispatch.",
    )
    depends_on = serializers.ListField(
        child=serializers.CharField(), required=False, default=list, help_text="Names of the steps this one waits for."
    )

    def to_representation(self, step):
        return {
            "name": step.name,
            "job_type": step.job_type.name,
            "params": step.params,
            "depends_on": step.depends_on,
        }


class JobTypeSerializer(ModelCleanMixin, ModelSerializer):
    steps = WorkflowStepSerializer(
        many=True, required=False, help_text="Kind workflow: its steps; they replace the current ones."
    )
    on_failure = serializers.SlugRelatedField(
        slug_field="name",
        queryset=JobType.objects.all(),
        allow_null=True,
        required=False,
        help_text="Name of a job type to run when a run of this one fails.",
    )

    class Meta:
        model = JobType
        fields = [
            "name",
            "description",
            "kind",
            "task",
            "http",
            "command",
            "params_schema",
            "default_params",
            "queue",
            "priority",
            "timeout_seconds",
            "max_retries",
            "retry_backoff_seconds",
            "max_concurrency",
            "notify_on",
            "notify_emails",
            "webhook_url",
            "webhook_secret",
            "on_failure",
            "enabled",
            "steps",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["created_at", "updated_at"]
        # Written, never read back: it signs the webhook requests.
        extra_kwargs = {"webhook_secret": {"write_only": True}}

    def validate(self, attrs):
        # The model's clean() and workflow_graph hold the rules, so the admin,
        # the API and the import commands agree.
        steps = attrs.pop("steps", None)
        candidate = self.build_candidate(attrs)
        errors = self.clean_errors(candidate)
        step_errors, self._steps = self._check_steps(candidate, steps)
        if step_errors:
            errors["steps"] = step_errors
        if errors:
            raise serializers.ValidationError(errors)
        return attrs

    def _check_steps(self, candidate: JobType, steps: list[dict] | None) -> tuple[list[str], list[StepSpec] | None]:
        """Errors in the steps, and the steps to save (None: leave them as they are)."""
        was_workflow = self.instance is not None and self.instance.kind == JobType.Kind.WORKFLOW
        if candidate.kind != JobType.Kind.WORKFLOW:
            if steps:
                return [f"Only for kind 'workflow': leave it empty for kind '{candidate.kind}'."], None
            return [], [] if was_workflow else None
        if steps is None:
            specs = workflows.step_specs(self.instance) if was_workflow else []
        else:
            job_types = {jt.name: jt for jt in JobType.objects.filter(name__in=[s["job_type"] for s in steps])}
            specs = [
                StepSpec(
                    name=s["name"],
                    job_type=job_types.get(s["job_type"]),
                    params=s.get("params", {}),
                    depends_on=s.get("depends_on", []),
                    job_type_name=s["job_type"],
                )
                for s in steps
            ]
        return steps_errors(specs, params_schema=candidate.params_schema), (specs if steps is not None else None)

    def create(self, validated_data):
        with transaction.atomic():
            job_type = super().create(validated_data)
            if self._steps is not None:
                workflows.replace_steps(workflow=job_type, steps=self._steps)
        return job_type

    def update(self, instance, validated_data):
        with transaction.atomic():
            job_type = super().update(instance, validated_data)
            if self._steps is not None:
                workflows.replace_steps(workflow=job_type, steps=self._steps)
        return job_type


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
            "scheduled_for",
            "created_at",
            "released_at",
            "queued_at",
            "started_at",
            "finished_at",
            "duration_seconds",
            "attempts",
            "worker",
            "result",
            "error",
            "traceback",
            "notify_emails",
            "notification",
            "url",
        ]
        read_only_fields = fields

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

    class Meta(RunSerializer.Meta):
        fields = [*RunSerializer.Meta.fields, "attempt_history", "steps"]
        read_only_fields = fields

    @extend_schema_field(StepRunSerializer(many=True, allow_null=True))
    def get_steps(self, run: Run) -> list | None:
        """A workflow run: its steps in topological order. Other runs: null."""
        if run.job_type.kind != JobType.Kind.WORKFLOW:
            return None
        return StepRunSerializer(workflows.step_runs(run), many=True).data


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


class TaskNameSerializer(serializers.Serializer):
    name = serializers.CharField()


class LastRunSerializer(serializers.ModelSerializer):
    class Meta:
        model = Run
        fields = ["id", "status", "created_at", "finished_at"]
        read_only_fields = fields


class ScheduleSerializer(ModelCleanMixin, ModelSerializer):
    job_type = serializers.SlugRelatedField(slug_field="name", queryset=JobType.objects.all())
    timing = serializers.CharField(source="timing_display", read_only=True)
    last_run = serializers.SerializerMethodField()

    class Meta:
        model = Schedule
        fields = [
            "id",
            "name",
            "job_type",
            "params",
            "cron",
            "timezone",
            "interval_seconds",
            "timing",
            "enabled",
            "overlap",
            "start_at",
            "end_at",
            "next_run_at",
            "last_run",
            "skipped_ticks",
            "last_skipped_at",
            "last_skip_reason",
            "created_at",
            "updated_at",
        ]
        read_only_fields = [
            "next_run_at",
            "skipped_ticks",
            "last_skipped_at",
            "last_skip_reason",
            "created_at",
            "updated_at",
        ]

    @extend_schema_field(LastRunSerializer(allow_null=True))
    def get_last_run(self, schedule: Schedule):
        run = schedule.last_run
        return LastRunSerializer(run).data if run else None
