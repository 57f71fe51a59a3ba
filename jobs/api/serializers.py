import copy

from django.core.exceptions import ValidationError as DjangoValidationError
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from jobs.models import JobType, NotifyStatus, Run, Schedule


class ModelCleanMixin:
    """Validate with the model's clean(), so the admin and the API apply the same rules."""

    def validate(self, attrs):
        candidate = copy.copy(self.instance) if self.instance else self.Meta.model()
        for field, value in attrs.items():
            setattr(candidate, field, value)
        try:
            candidate.clean()
        except DjangoValidationError as exc:
            raise serializers.ValidationError(exc.message_dict) from None
        return attrs


class JobTypeSerializer(ModelCleanMixin, serializers.ModelSerializer):
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
            "enabled",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["created_at", "updated_at"]
        # Written, never read back: it signs the webhook requests.
        extra_kwargs = {"webhook_secret": {"write_only": True}}


class NotificationChannelSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=["sent", "failed"])
    detail = serializers.CharField(required=False, help_text="Sent: to whom, or the webhook's answer.")
    error = serializers.CharField(required=False, help_text="Failed: why (the last attempt's reason).")
    at = serializers.DateTimeField()


class NotificationSerializer(serializers.Serializer):
    """The outcome of a run's notification: null when it has none."""

    status = serializers.ChoiceField(choices=NotifyStatus.choices)
    notified_at = serializers.DateTimeField(allow_null=True, help_text="When the final outcome was recorded.")
    attempts = serializers.IntegerField()
    next_attempt_at = serializers.DateTimeField(allow_null=True, help_text="Pending: when it is tried again.")
    email = NotificationChannelSerializer(required=False)
    webhook = NotificationChannelSerializer(required=False)
    error = serializers.CharField(required=False)

    def to_representation(self, run: Run):
        outcome = run.notify_outcome or {}
        data = {
            "status": run.notify_status,
            "notified_at": run.notified_at,
            "attempts": run.notify_attempts,
            "next_attempt_at": run.notify_locked_until if run.notify_status == NotifyStatus.PENDING else None,
            **outcome,
        }
        return super().to_representation(data)


class RunSerializer(serializers.ModelSerializer):
    job_type = serializers.SlugRelatedField(slug_field="name", read_only=True)
    requested_by = serializers.SlugRelatedField(slug_field="username", read_only=True)
    schedule = serializers.SlugRelatedField(slug_field="name", read_only=True)
    duration_seconds = serializers.SerializerMethodField()
    notification = serializers.SerializerMethodField()
    url = serializers.SerializerMethodField()

    class Meta:
        model = Run
        fields = [
            "id",
            "job_type",
            "status",
            "params",
            "trigger",
            "rerun_of",
            "schedule",
            "requested_by",
            "idempotency_key",
            "scheduled_for",
            "created_at",
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

    @extend_schema_field(serializers.FloatField(allow_null=True))
    def get_duration_seconds(self, run: Run) -> float | None:
        return run.duration.total_seconds() if run.duration else None

    @extend_schema_field(NotificationSerializer(allow_null=True))
    def get_notification(self, run: Run) -> dict | None:
        return NotificationSerializer(run).data if run.notify_status else None

    @extend_schema_field(serializers.URLField())
    def get_url(self, run: Run) -> str:
        request = self.context.get("request")
        path = run.get_absolute_url()
        return request.build_absolute_uri(path) if request else path


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


class ScheduleSerializer(ModelCleanMixin, serializers.ModelSerializer):
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
