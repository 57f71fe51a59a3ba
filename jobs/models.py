import uuid
from datetime import timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.serializers.json import DjangoJSONEncoder
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import F, Q
from django.urls import reverse
from django.utils import timezone


class JobType(models.Model):
    class Kind(models.TextChoices):
        TASK = "task", "Celery task"
        HTTP = "http", "HTTP request"
        COMMAND = "command", "Command"

    name = models.SlugField(max_length=100, unique=True, help_text="Unique slug used in the API and commands.")
    description = models.TextField(blank=True)
    kind = models.CharField(max_length=20, choices=Kind.choices)
    task = models.CharField(
        max_length=200, blank=True, help_text="Kind task: the name of a Celery task registered on the workers."
    )
    http = models.JSONField(
        default=dict,
        blank=True,
        help_text='Kind http: {"method", "url", "headers", "body", "timeout_seconds", "expected_status"}.',
    )
    command = models.JSONField(
        default=dict, blank=True, help_text='Kind command: {"argv": [...], "timeout_seconds"}. No shell.'
    )
    params_schema = models.JSONField(
        default=dict, blank=True, help_text="JSON Schema that a run's params must match. Empty: any object."
    )
    default_params = models.JSONField(default=dict, blank=True, help_text="Params applied before a run's own.")
    queue = models.CharField(max_length=100, blank=True, help_text="Celery queue. Empty: the default queue.")
    priority = models.PositiveSmallIntegerField(
        null=True, blank=True, validators=[MaxValueValidator(9)], help_text="0 (first) to 9."
    )
    timeout_seconds = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1)],
        help_text="Soft time limit; the task is killed a grace period later. Empty: the site default.",
    )
    max_retries = models.PositiveSmallIntegerField(default=0, validators=[MaxValueValidator(20)])
    retry_backoff_seconds = models.PositiveIntegerField(
        default=10, help_text="Delay before the first retry; doubles on each further one."
    )
    max_concurrency = models.PositiveIntegerField(
        null=True, blank=True, validators=[MinValueValidator(1)], help_text="Empty: no limit."
    )
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        permissions = [("run_jobtype", "Can run job type")]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        from .executors import executor_for
        from .params import check_schema

        errors = executor_for(self.kind).config_errors(self) if self.kind in self.Kind.values else {}
        for field in ("task", "http", "command"):
            if field != self.kind and getattr(self, field):
                errors.setdefault(field, []).append(f"Only for kind '{field}': leave it empty for kind '{self.kind}'.")
        schema_error = check_schema(self.params_schema)
        if schema_error:
            errors.setdefault("params_schema", []).append(schema_error)
        if not isinstance(self.default_params, dict):
            errors.setdefault("default_params", []).append("Must be a JSON object.")
        if errors:
            raise ValidationError(errors)

    @property
    def soft_time_limit(self) -> int:
        return self.timeout_seconds or settings.JOBS_DEFAULT_TIMEOUT_SECONDS

    @property
    def hard_time_limit(self) -> int:
        return self.soft_time_limit + settings.JOBS_HARD_TIMEOUT_GRACE_SECONDS

    def retry_delay(self, attempt: int) -> int:
        """Seconds to wait after failed attempt number `attempt` (1-based)."""
        delay = self.retry_backoff_seconds * 2 ** max(attempt - 1, 0)
        return min(delay, settings.JOBS_RETRY_BACKOFF_MAX_SECONDS)

    @property
    def target(self) -> str:
        """What the job runs, in one line, for lists."""
        if self.kind == self.Kind.TASK:
            return self.task
        if self.kind == self.Kind.HTTP:
            return f"{self.http.get('method', 'GET')} {self.http.get('url', '')}"
        if self.kind == self.Kind.COMMAND:
            return " ".join(str(arg) for arg in self.command.get("argv", []))
        return ""


class RunQuerySet(models.QuerySet):
    def active(self) -> "RunQuerySet":
        return self.filter(status__in=Run.ACTIVE_STATUSES)


class Run(models.Model):
    class Status(models.TextChoices):
        SCHEDULED = "scheduled"
        PENDING = "pending"
        QUEUED = "queued"
        RUNNING = "running"
        RETRYING = "retrying"
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        CANCELLED = "cancelled"

    class Trigger(models.TextChoices):
        API = "api"
        ADMIN = "admin"
        SCHEDULE = "schedule"
        CLI = "cli"
        WORKFLOW = "workflow"
        RERUN = "rerun"

    TERMINAL_STATUSES = (Status.SUCCEEDED, Status.FAILED, Status.CANCELLED)
    ACTIVE_STATUSES = (Status.PENDING, Status.QUEUED, Status.RUNNING, Status.RETRYING)
    NOT_TERMINAL = (Status.SCHEDULED, *ACTIVE_STATUSES)

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    job_type = models.ForeignKey(JobType, on_delete=models.PROTECT, related_name="runs")
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING)
    params = models.JSONField(default=dict, blank=True)
    trigger = models.CharField(max_length=20, choices=Trigger.choices)
    rerun_of = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="reruns")
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    idempotency_key = models.CharField(max_length=200, null=True, blank=True)
    scheduled_for = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    queued_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    worker = models.CharField(max_length=255, blank=True)
    result = models.JSONField(null=True, blank=True, encoder=DjangoJSONEncoder)
    error = models.TextField(blank=True)
    traceback = models.TextField(blank=True)

    objects = RunQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        permissions = [("cancel_run", "Can cancel run")]
        constraints = [
            models.UniqueConstraint(
                fields=["job_type", "idempotency_key"],
                condition=Q(idempotency_key__isnull=False),
                name="run_unique_idempotency_key",
            )
        ]
        indexes = [
            models.Index(fields=["-created_at"], name="run_created"),
            models.Index(fields=["status", "-created_at"], name="run_status_created"),
            models.Index(fields=["job_type", "-created_at"], name="run_jobtype_created"),
        ]

    def __str__(self) -> str:
        return f"{self.job_type_id and self.job_type.name} {self.id}"

    def get_absolute_url(self) -> str:
        return reverse("monitor:run", args=[self.pk])

    @property
    def is_terminal(self) -> bool:
        return self.status in self.TERMINAL_STATUSES

    @property
    def duration(self) -> timedelta | None:
        if self.started_at and self.finished_at:
            return self.finished_at - self.started_at
        return None

    # State changes. Each is one conditional UPDATE, so that a signal fired twice
    # (a redelivered task) or late (after a cancel) never moves a run backwards
    # and never rewrites a terminal state. Each returns whether it applied.

    def _transition(self, from_statuses, **changes) -> bool:
        updated = Run.objects.filter(pk=self.pk, status__in=from_statuses).update(**changes)
        if updated:
            for field, value in changes.items():
                if hasattr(value, "resolve_expression"):
                    # Computed by the database: dropped here, reloaded if read.
                    self.__dict__.pop(field, None)
                else:
                    setattr(self, field, value)
        return bool(updated)

    def mark_queued(self) -> bool:
        return self._transition([self.Status.PENDING], status=self.Status.QUEUED, queued_at=timezone.now())

    def mark_started(self, *, worker: str) -> bool:
        # `running` is included: a task redelivered after its worker died starts again.
        return self._transition(
            [self.Status.PENDING, self.Status.QUEUED, self.Status.RETRYING, self.Status.RUNNING],
            status=self.Status.RUNNING,
            started_at=timezone.now(),
            attempts=F("attempts") + 1,
            worker=worker,
        )

    def mark_succeeded(self, *, result) -> bool:
        return self._transition(
            self.NOT_TERMINAL,
            status=self.Status.SUCCEEDED,
            finished_at=timezone.now(),
            result=result,
            error="",
            traceback="",
        )

    def mark_failed(self, *, error: str, traceback: str = "") -> bool:
        return self._transition(
            self.NOT_TERMINAL,
            status=self.Status.FAILED,
            finished_at=timezone.now(),
            error=error,
            traceback=traceback,
        )

    def mark_retrying(self, *, error: str, traceback: str, retry_at) -> bool:
        return self._transition(
            [self.Status.RUNNING],
            status=self.Status.RETRYING,
            scheduled_for=retry_at,
            error=error,
            traceback=traceback,
        )

    def mark_cancelled(self) -> bool:
        return self._transition(self.NOT_TERMINAL, status=self.Status.CANCELLED, finished_at=timezone.now())
