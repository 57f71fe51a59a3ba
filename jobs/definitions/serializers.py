"""The JSON shape of a definition (a job type with its workflow steps, a
schedule): what the API reads and writes, and what Jobsite's own files hold
(jobs/importexport/job_files.py), so a file is held to the API's rules.

Writes go through the job type save service (jobs/definitions/job_types.py);
a schedule saves itself (Schedule.save re-plans its next tick).

A job type is read with its credentials masked (an `http` job type's
credential-like headers and URL credentials, its webhook URL's credentials,
path and query values: jobs/core/redaction.py), and a write that sends a mask
back keeps the stored value it stands for, so that a read-modify-write keeps
the credentials it never saw.
"""

import copy

from django.db import models
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from jobs.core.redaction import MaskError, mask_http, mask_url, unmask_http, unmask_url
from jobs.definitions.job_types import clean_errors, job_type_errors, job_type_save
from jobs.models import JobType, Run, Schedule
from jobs.workflows.graph import StepSpec


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

    def validate(self, attrs):
        errors = clean_errors(self.build_candidate(attrs))
        if errors:
            raise serializers.ValidationError(errors)
        return attrs


class WorkflowStepSerializer(serializers.Serializer):
    """One step of a workflow. The rules across steps (names, job types,
    dependencies, cycles, placeholders) are checked on the whole list by
    jobs.workflows.graph, as in the admin and the import commands."""

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


def with_stored_credentials(attrs: dict, stored: JobType | None) -> dict:
    """`attrs` (a job type's fields as written) with each mask in `http` and
    `webhook_url` replaced by the value of `stored` it stands for.
    ValidationError, by field, for a mask with no stored value (`stored` None:
    a new job type, which has none)."""
    attrs, errors = dict(attrs), {}
    if "http" in attrs:
        try:
            attrs["http"] = unmask_http(attrs["http"], stored.http if stored else {})
        except MaskError as exc:
            errors["http"] = exc.messages
    if "webhook_url" in attrs:
        try:
            attrs["webhook_url"] = unmask_url(attrs["webhook_url"], stored.webhook_url if stored else "", webhook=True)
        except MaskError as exc:
            errors["webhook_url"] = exc.messages
    if errors:
        raise serializers.ValidationError(errors)
    return attrs


MASKED_HELP = "Credentials in it read back as ********; send ******** back to keep the stored value."


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
            *JobType.EXECUTION_FIELDS,
            "notify_on",
            "notify_emails",
            "webhook_url",
            "webhook_secret",
            "on_failure",
            "enabled",
            "step_args",
            "director_name",
            "steps",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["created_at", "updated_at"]
        extra_kwargs = {
            # Written, never read back: it signs the webhook requests.
            "webhook_secret": {"write_only": True},
            "http": {"help_text": f"{JobType._meta.get_field('http').help_text} {MASKED_HELP}"},
            "webhook_url": {"help_text": f"{JobType._meta.get_field('webhook_url').help_text} {MASKED_HELP}"},
            # Unique when given: JobType.clean says which workflow has it.
            "director_name": {"validators": []},
        }

    def to_representation(self, instance):
        data = super().to_representation(instance)
        if "http" in data:
            data["http"] = mask_http(data["http"])
        if "webhook_url" in data:
            data["webhook_url"] = mask_url(data["webhook_url"], webhook=True)
        return data

    def validate(self, attrs):
        attrs = with_stored_credentials(attrs, self.instance)
        # The save service holds the rules (the model's clean() and the
        # workflow graph's), so the admin, the API and the import commands agree.
        steps = attrs.pop("steps", None)
        self._steps = None if steps is None else self._step_specs(steps)
        errors = job_type_errors(self.build_candidate(attrs), steps=self._steps)
        if errors:
            raise serializers.ValidationError(errors)
        return attrs

    @staticmethod
    def _step_specs(steps: list[dict]) -> list[StepSpec]:
        job_types = {jt.name: jt for jt in JobType.objects.filter(name__in=[s["job_type"] for s in steps])}
        return [
            StepSpec(
                name=s["name"],
                job_type=job_types.get(s["job_type"]),
                params=s.get("params", {}),
                depends_on=s.get("depends_on", []),
                job_type_name=s["job_type"],
            )
            for s in steps
        ]

    def create(self, validated_data):
        job_type = JobType(**validated_data)
        job_type_save(job_type=job_type, steps=self._steps)
        return job_type

    def update(self, instance, validated_data):
        for field, value in validated_data.items():
            setattr(instance, field, value)
        job_type_save(job_type=instance, steps=self._steps)
        return instance


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
            "must_succeed_within_seconds",
            "backfill_concurrency",
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
        read_only_fields = [*Schedule.STATE_FIELDS, "created_at", "updated_at"]

    @extend_schema_field(LastRunSerializer(allow_null=True))
    def get_last_run(self, schedule: Schedule):
        if hasattr(schedule, "last_run_finished_at"):  # annotated: Schedule.objects.with_last_run(finished_at=True)
            if schedule.last_run_id is None:
                return None
            run = Run(
                pk=schedule.last_run_id,
                status=schedule.last_run_status,
                created_at=schedule.last_run_created_at,
                finished_at=schedule.last_run_finished_at,
            )
        else:
            run = schedule.last_run
        return LastRunSerializer(run).data if run else None
