from django.core.exceptions import ValidationError as DjangoValidationError
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from jobs.models import JobType, Run

MODEL_FIELDS = [f.name for f in JobType._meta.concrete_fields]


class JobTypeSerializer(serializers.ModelSerializer):
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
            "enabled",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["created_at", "updated_at"]

    def validate(self, attrs):
        # The model's clean() holds the rules, so the admin and the API agree.
        candidate = JobType(**{f: getattr(self.instance, f) for f in MODEL_FIELDS} if self.instance else {})
        for field, value in attrs.items():
            setattr(candidate, field, value)
        try:
            candidate.clean()
        except DjangoValidationError as exc:
            raise serializers.ValidationError(exc.message_dict) from None
        return attrs


class RunSerializer(serializers.ModelSerializer):
    job_type = serializers.SlugRelatedField(slug_field="name", read_only=True)
    requested_by = serializers.SlugRelatedField(slug_field="username", read_only=True)
    duration_seconds = serializers.SerializerMethodField()
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
            "url",
        ]
        read_only_fields = fields

    @extend_schema_field(serializers.FloatField(allow_null=True))
    def get_duration_seconds(self, run: Run) -> float | None:
        return run.duration.total_seconds() if run.duration else None

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

    def validate_params(self, value):
        if not isinstance(value, dict):
            raise serializers.ValidationError("Must be a JSON object.")
        return value


class TaskNameSerializer(serializers.Serializer):
    name = serializers.CharField()
