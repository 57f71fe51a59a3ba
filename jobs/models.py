import functools
import re
import uuid
from datetime import datetime, timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.serializers.json import DjangoJSONEncoder
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import connections, models, router, transaction
from django.db.models import F, OuterRef, Q, Subquery, Value
from django.db.models.functions import Coalesce, Least
from django.urls import reverse
from django.utils import timezone
from django.utils import timezone as django_timezone
from django.utils.dateparse import parse_datetime
from simple_history.models import HistoricalRecords
from simple_history.signals import pre_create_historical_record

from jobs.core import durability, reconnect, secrets, statements
from jobs.core.backoff import backoff
from jobs.core.cron import cron_error, describe_cron, next_cron_fire, next_interval_fire, timezone_error
from jobs.core.kinds import (
    Kind,
    NotifyOn,
    NotifyStatus,
    StepArgs,
    fixed_param_errors,
    kind_config_errors,
    notification_config_errors,
)
from jobs.core.limits import bounded_error, bounded_result, bounded_traceback, params_size_error
from jobs.core.params import check_schema, params_errors, params_with_defaults
from jobs.core.redaction import mask_url, redact_urls
from jobs.core.revision_source import current_source, current_user

__all__ = [
    "JOB_TYPE_HISTORY",
    "Backfill",
    "JobType",
    "NotifyOn",
    "NotifyStatus",
    "Run",
    "RunTally",
    "RunToCount",
    "Schedule",
    "Secret",
    "StepArgs",
    "TriggerUrl",
    "Workflow",
    "WorkflowStep",
    "latest_revision",
    "latest_revision_id",
]

# celery-director's name of a workflow: project.NAME (the project has no dot).
DIRECTOR_NAME = re.compile(r"[^.\s/]+\.[^\s/]+")

# The longest deadline (JobType.deadline_seconds, Schedule.must_succeed_within_seconds): 30 days.
MAX_DEADLINE_SECONDS = 30 * 24 * 3600


class DefinitionHistory(HistoricalRecords):
    """The revisions of a definition (job types, schedules), kept by
    django-simple-history: one row per save, by whichever path, with the user
    of the request and, as its change reason, the source
    (jobs/core/revision_source.py). A save that writes only fields the history
    leaves out (the dispatcher's bookkeeping) records nothing.
    Reading, diffing and restoring them: jobs/definitions/revisions.py."""

    def post_save(self, instance, created, using=None, update_fields=None, **kwargs):
        if not created and update_fields is not None and set(update_fields) <= set(self.excluded_fields):
            return
        super().post_save(instance, created, using=using, update_fields=update_fields, **kwargs)

    def get_history_user(self, instance):
        user = current_user()
        return user if user is not None and user.is_authenticated else super().get_history_user(instance)

    def get_change_reason_for_object(self, instance, history_type, using):
        request = getattr(self.context, "request", None)
        return current_source(getattr(request, "path", None))


class JobTypeRevision(models.Model):
    """What a job type's revision keeps besides its own fields: its workflow
    steps as they were, in the API's shape (the steps' own rows change
    under the same revision)."""

    steps = models.JSONField(default=list, blank=True)

    class Meta:
        abstract = True


# Never kept: the webhook secret (no revision may hold or return it), and the timestamps.
JOB_TYPE_HISTORY = DefinitionHistory(
    excluded_fields=["webhook_secret", "created_at", "updated_at"], bases=[JobTypeRevision]
)


class JobType(models.Model):
    Kind = Kind

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
        default=dict,
        blank=True,
        help_text='Kind command: {"argv": [...], "timeout_seconds", "env": {NAME: value}}. No shell.',
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
    deadline_seconds = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1), MaxValueValidator(MAX_DEADLINE_SECONDS)],
        help_text="A run not ended this long after it was triggered (or due, when run later) is late: it is "
        "marked so and its recipients and webhook are told once (run.late), whatever notify_on says. "
        "The run goes on. Empty: no deadline.",
    )
    notify_on = models.CharField(
        max_length=20,
        choices=NotifyOn.choices,
        default=NotifyOn.NEVER,
        help_text="When to email notify_emails and call the webhook: never, when a run fails, or whenever one ends.",
    )
    notify_emails = models.JSONField(
        default=list, blank=True, help_text="Addresses told when a run ends (see notify_on)."
    )
    webhook_url = models.CharField(
        max_length=500, blank=True, help_text="Receives a signed JSON POST when a run ends (see notify_on)."
    )
    webhook_secret = models.CharField(
        max_length=200, blank=True, help_text="Signs webhook bodies (HMAC-SHA256). Never shown again once saved."
    )
    on_failure = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="failure_hook_of",
        help_text="A job type to run when a run of this one fails (after its retries). "
        "It gets the params {run_id, job_type, error, params}.",
    )
    step_args = models.CharField(
        max_length=20,
        choices=StepArgs.choices,
        default=StepArgs.PARAMS,
        help_text="Kind workflow: how its task steps are called. params: with their params as keyword arguments. "
        "director: as celery-director calls tasks, with the result of the step they depend on (the list of "
        "their results when several, None when none) as first positional argument, and their params plus "
        "payload (the workflow run's params) and workflow_id (its id) as keyword arguments.",
    )
    director_name = models.CharField(
        max_length=255,
        blank=True,
        default="",
        help_text="Kind workflow: its celery-director name, project.NAME, under which clients of the "
        "celery-director API (/director/api/) see and start it. Empty: that API does not show it.",
    )
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    history = JOB_TYPE_HISTORY

    # How its runs execute: the admin's "Execution" fields, in the API's order.
    EXECUTION_FIELDS = (
        "queue",
        "priority",
        "timeout_seconds",
        "max_retries",
        "retry_backoff_seconds",
        "max_concurrency",
        "deadline_seconds",
    )

    class Meta:
        ordering = ["name"]
        permissions = [("run_jobtype", "Can run job type")]
        constraints = [
            models.UniqueConstraint(
                fields=["director_name"], condition=~Q(director_name=""), name="jobtype_unique_director_name"
            )
        ]

    def __str__(self) -> str:
        return self.name

    def save(self, *args, **kwargs) -> None:
        adding = self._state.adding
        with transaction.atomic():
            super().save(*args, **kwargs)
            if not adding:
                # Runs planned ahead for its schedules were checked against its
                # schema and enabled flag and hold its default params: plan
                # them again from the job type as it is now.
                Schedule.objects.filter(job_type=self).unplan()

    def step_definitions(self) -> list[dict]:
        """Its workflow steps as the API shows them (job types by name)."""
        if self.pk is None or self.kind != JobType.Kind.WORKFLOW:
            return []
        return [
            {"name": step.name, "job_type": step.job_type.name, "params": step.params, "depends_on": step.depends_on}
            for step in self.steps.select_related("job_type").order_by("position", "id")
        ]

    def clean(self) -> None:
        errors = kind_config_errors(self)
        for field in ("task", "http", "command"):
            if field != self.kind and getattr(self, field):
                errors.setdefault(field, []).append(f"Only for kind '{field}': leave it empty for kind '{self.kind}'.")
        schema_error = check_schema(self.params_schema)
        if schema_error:
            errors.setdefault("params_schema", []).append(schema_error)
        if not isinstance(self.default_params, dict):
            errors.setdefault("default_params", []).append("Must be a JSON object.")
        elif too_large := params_size_error(self.default_params):
            errors.setdefault("default_params", []).append(too_large)
        elif "http" not in errors and (fixed := fixed_param_errors(self, self.default_params)):
            errors.setdefault("default_params", []).extend(fixed)
        for field, problems in notification_config_errors(self).items():
            errors.setdefault(field, []).extend(problems)
        for field, problems in self._workflow_only_errors().items():
            errors.setdefault(field, []).extend(problems)
        if self.on_failure_id is not None and self.pk is not None and self.on_failure_id == self.pk:
            errors.setdefault("on_failure", []).append("A job type cannot be its own failure hook.")
        if self.kind == self.Kind.WORKFLOW and self.pk is not None:
            used_in = sorted(set(WorkflowStep.objects.filter(job_type=self).values_list("workflow__name", flat=True)))
            if used_in:
                errors.setdefault("kind", []).append(
                    f"'{self.name}' is a step of {', '.join(used_in)}, and a step cannot be a workflow: "
                    "remove it from those workflows first."
                )
        for field, problems in self._execution_errors().items():
            errors.setdefault(field, []).extend(problems)
        for field, problems in secret_reference_errors(self).items():
            errors.setdefault(field, []).extend(problems)
        if errors:
            raise ValidationError(errors)

    def run_params_errors(self, params: dict) -> list[str]:
        """What is wrong with a run's `params` (defaults applied) for this job type:
        its schema, and (kind http) a query parameter its url fixes."""
        return [*params_errors(self.params_schema, params), *fixed_param_errors(self, params)]

    def _workflow_only_errors(self) -> dict[str, list[str]]:
        errors: dict[str, list[str]] = {}
        if self.step_args != StepArgs.PARAMS and self.kind != self.Kind.WORKFLOW:
            errors["step_args"] = [f"Only for kind 'workflow': leave it '{StepArgs.PARAMS}' for kind '{self.kind}'."]
        if not self.director_name:
            return errors
        if self.kind != self.Kind.WORKFLOW:
            errors["director_name"] = [f"Only for kind 'workflow': leave it empty for kind '{self.kind}'."]
        elif not DIRECTOR_NAME.fullmatch(self.director_name):
            errors["director_name"] = [
                f"'{self.director_name}' is not a celery-director name: give project.NAME, e.g. 'shop.ETL' "
                "(no spaces or slashes, and a dot after the project)."
            ]
        else:
            taken = JobType.objects.filter(director_name=self.director_name).exclude(pk=self.pk)
            owner = taken.values_list("name", flat=True).first()
            if owner:
                errors["director_name"] = [f"Workflow '{owner}' has the celery-director name '{self.director_name}'."]
        return errors

    def _execution_errors(self) -> dict[str, list[str]]:
        """The queue and time limits, against the broker's settings."""
        errors: dict[str, list[str]] = {}
        if self.queue and self.queue == settings.JOBS_DISPATCH_QUEUE:
            errors["queue"] = [
                f"'{self.queue}' is Jobsite's own queue (its dispatcher's, JOBS_DISPATCH_QUEUE): runs there would "
                "delay every schedule's fire. Name another queue, or leave it empty for the default one."
            ]
        # Redis hands a task out again once it has been unacknowledged for the
        # visibility timeout, whether its worker died or still runs it; a run's
        # message is unacknowledged while it runs, and while a retry waits for
        # its time in a worker's memory.
        visibility = (settings.CELERY_BROKER_TRANSPORT_OPTIONS or {}).get("visibility_timeout")
        if self.kind == self.Kind.WORKFLOW:
            return errors  # runs no task of its own: its steps' job types have their limits
        numbers = (self.timeout_seconds or 1, self.max_retries, self.retry_backoff_seconds)
        if visibility is None or not all(isinstance(n, int) and n >= 0 for n in numbers) or self.timeout_seconds == 0:
            return errors  # the fields' own checks say what is wrong with them
        grace = settings.JOBS_HARD_TIMEOUT_GRACE_SECONDS
        wait = int(self.retry_delay(self.max_retries)) if self.max_retries else 0
        held = self.soft_time_limit + grace + wait
        if held < visibility:
            return errors
        parts = [
            f"timeout_seconds {self.timeout_seconds} s"
            if self.timeout_seconds
            else f"JOBS_DEFAULT_TIMEOUT_SECONDS {self.soft_time_limit} s (timeout_seconds is empty)",
            f"JOBS_HARD_TIMEOUT_GRACE_SECONDS {grace} s",
        ]
        if wait:
            parts.append(f"the longest wait before a retry {wait} s (retry_backoff_seconds, max_retries)")
        most = visibility - 1 - grace - wait
        fix = f"Lower timeout_seconds to at most {most}" if most >= 1 else "Lower retry_backoff_seconds or max_retries"
        errors["timeout_seconds"] = [
            f"{' + '.join(parts)} = {held} s is not under CELERY_VISIBILITY_TIMEOUT ({visibility} s): Redis would "
            f"hand the run's task to a second worker while the first still holds it. {fix}, or raise "
            "CELERY_VISIBILITY_TIMEOUT (on every process)."
        ]
        return errors

    @property
    def soft_time_limit(self) -> int:
        return self.timeout_seconds or settings.JOBS_DEFAULT_TIMEOUT_SECONDS

    @property
    def hard_time_limit(self) -> int:
        return self.soft_time_limit + settings.JOBS_HARD_TIMEOUT_GRACE_SECONDS

    def deadline_for(self, start: datetime) -> datetime | None:
        """When a run of this job type triggered (or due) at `start` becomes late, or None."""
        return start + timedelta(seconds=self.deadline_seconds) if self.deadline_seconds else None

    def retry_delay(self, attempt: int) -> int:
        """Seconds to wait after failed attempt number `attempt` (1-based)."""
        return backoff(self.retry_backoff_seconds, attempt, settings.JOBS_RETRY_BACKOFF_MAX_SECONDS)

    @property
    def target(self) -> str:
        """What the job runs, in one line, for lists (an http URL's credentials masked)."""
        if self.kind == self.Kind.TASK:
            return self.task
        if self.kind == self.Kind.HTTP:
            return f"{self.http.get('method', 'GET')} {mask_url(self.http.get('url', ''))}"
        if self.kind == self.Kind.COMMAND:
            return " ".join(str(arg) for arg in self.command.get("argv", []))
        return ""

    def usages(self) -> list[str]:
        """What refers to this job type and so keeps it from being deleted, in words."""
        uses = [
            f"a step of workflow '{name}'"
            for name in sorted(set(self.used_in_steps.values_list("workflow__name", flat=True)))
        ]
        uses += [f"the failure hook of '{name}'" for name in self.failure_hook_of.values_list("name", flat=True)]
        uses += [
            f"the job type of schedule '{name}'"
            for name in self.schedules.order_by("name").values_list("name", flat=True)
        ]
        return uses


class WorkflowManager(models.Manager):
    def get_queryset(self):
        return super().get_queryset().filter(kind=JobType.Kind.WORKFLOW)


class Workflow(JobType):
    """The job types of kind `workflow`, for the admin's Workflows page."""

    objects = WorkflowManager()

    class Meta:
        proxy = True
        ordering = ["name"]
        # A workflow is a job type: the job type permissions cover it, and
        # permissions of its own would only be ones that do nothing.
        default_permissions = ()

    def save(self, *args, **kwargs):
        self.kind = JobType.Kind.WORKFLOW
        super().save(*args, **kwargs)


class WorkflowStep(models.Model):
    """One step of a workflow: another job type, with params that may hold
    placeholders and the names of the steps it waits for.

    `depends_on` holds step names rather than a many-to-many to steps: a whole
    workflow is then written (API, admin inline, import) in one pass, with
    steps that refer to siblings not saved yet, and it is checked as one graph
    before anything is written (jobs/workflows/graph.py).
    """

    workflow = models.ForeignKey(
        JobType, on_delete=models.CASCADE, related_name="steps", limit_choices_to={"kind": JobType.Kind.WORKFLOW}
    )
    name = models.SlugField(max_length=100, help_text="Unique in the workflow; placeholders and depends_on use it.")
    job_type = models.ForeignKey(
        JobType,
        on_delete=models.PROTECT,
        related_name="used_in_steps",
        help_text="What the step runs: any job type but a workflow.",
    )
    params = models.JSONField(
        default=dict,
        blank=True,
        help_text="Params of the step's run. Placeholders: {{ params.KEY }} (the workflow run's params) and "
        "{{ steps.NAME.result }} (an upstream step's result, optionally .path.into.it).",
    )
    depends_on = models.JSONField(default=list, blank=True, help_text="Names of the steps this one waits for.")
    position = models.PositiveIntegerField(default=0, help_text="Order in lists; execution follows depends_on.")

    class Meta:
        ordering = ["workflow", "position", "id"]
        constraints = [models.UniqueConstraint(fields=["workflow", "name"], name="workflowstep_unique_name")]
        # Steps are part of their workflow's definition: the job type permissions cover them.
        default_permissions = ()

    def __str__(self) -> str:
        return f"{self.workflow_id and self.workflow.name}.{self.name}"


def republish_deadline() -> datetime:
    """When the sweeper may publish a run that is still not handed to the broker
    (see jobs/schedules/dispatcher.py): long enough after it became `pending` that the
    first publish, if it is going to succeed, has succeeded and been recorded."""
    return timezone.now() + timedelta(seconds=settings.JOBS_PENDING_REPUBLISH_SECONDS)


# An earlier attempt keeps this much of its error; the run's own `error` is the last one's.
ATTEMPT_ERROR_CHARS = 2000


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


class RunQuerySet(models.QuerySet):
    def active(self) -> "RunQuerySet":
        return self.filter(status__in=Run.ACTIVE_STATUSES)


class Run(models.Model):
    class Status(models.TextChoices):
        SCHEDULED = "scheduled"
        WAITING = "waiting"  # a workflow step whose dependencies have not all succeeded
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
        HOOK = "hook"  # a failure hook, run because another run failed
        URL = "url"  # POSTed to a trigger URL (TriggerUrl), without an account
        BACKFILL = "backfill"  # a past tick of a schedule, run by a backfill

    TERMINAL_STATUSES = (Status.SUCCEEDED, Status.FAILED, Status.CANCELLED)
    ACTIVE_STATUSES = (Status.PENDING, Status.QUEUED, Status.RUNNING, Status.RETRYING)
    NOT_TERMINAL = (Status.SCHEDULED, Status.WAITING, *ACTIVE_STATUSES)
    # Not handed to the broker yet, so cancelling them needs no revoke.
    UNPUBLISHED = (Status.SCHEDULED, Status.WAITING)
    # A task may start a run in these; `running` only when redelivered (see run_started in jobs/runs/tracking.py).
    STARTABLE = (Status.PENDING, Status.QUEUED, Status.RETRYING)
    ATTEMPT_TIMES = ("started_at", "ended_at", "retry_at")

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # No single-column indexes on job_type, schedule and parent: the composite
    # indexes below lead with them, and every index is paid for on each insert.
    job_type = models.ForeignKey(JobType, on_delete=models.PROTECT, related_name="runs", db_index=False)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING)
    params = models.JSONField(default=dict, blank=True)
    trigger = models.CharField(max_length=20, choices=Trigger.choices)
    # Mostly NULL: indexed by the partial index below, which SQLite's planner uses.
    rerun_of = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="reruns", db_index=False
    )
    schedule = models.ForeignKey(
        "Schedule", null=True, blank=True, on_delete=models.SET_NULL, related_name="runs", db_index=False
    )
    # The fire time this run was created for: with `schedule`, unique, so a tick
    # fired twice (two beats, a restarted dispatcher) creates one run.
    schedule_tick = models.DateTimeField(null=True, blank=True)
    # The backfill that created it: it waits (`waiting`) until the dispatcher
    # releases it within the backfill's concurrency (jobs/schedules/backfill.py).
    backfill = models.ForeignKey(
        "Backfill", null=True, blank=True, on_delete=models.SET_NULL, related_name="runs", db_index=False
    )
    # A workflow step's run: its workflow run, its step, and a copy of the
    # step's name and dependencies taken when the workflow run started, so that
    # editing the workflow never changes a run in progress or its history.
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.CASCADE, related_name="children", db_index=False
    )
    step = models.ForeignKey(WorkflowStep, null=True, blank=True, on_delete=models.SET_NULL, related_name="runs")
    # Trigger `url`: the trigger URL it came through. Mostly NULL: indexed where set (see Meta).
    trigger_url = models.ForeignKey(
        "TriggerUrl", null=True, blank=True, on_delete=models.SET_NULL, related_name="runs", db_index=False
    )
    step_name = models.CharField(max_length=100, blank=True)
    depends_on = models.JSONField(default=list, blank=True)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # Who cancelled the run and when; a cancelled run without `cancelled_by` was
    # cancelled by Jobsite itself (its workflow run failed or was cancelled).
    # Indexed only where set (see Meta), so that inserts do not pay for it.
    cancelled_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+", db_index=False
    )
    cancelled_at = models.DateTimeField(null=True, blank=True)
    idempotency_key = models.CharField(max_length=200, null=True, blank=True)
    comment = models.CharField(max_length=255, blank=True, help_text="A note given when it was started.")
    scheduled_for = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    # When the run became due and was handed over to be queued (`pending`): at
    # once for a run started now, at its time for a run-later or schedule run
    # (whose row is created ahead, `scheduled`), when its dependencies succeeded
    # for a workflow step. How late a schedule fired is this minus its tick.
    released_at = models.DateTimeField(
        null=True, blank=True, editable=False, help_text="When the run became due and was handed over to be queued."
    )
    queued_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    # The attempts before the last one (which the run's own fields describe):
    # [{attempt, started_at, ended_at, worker, error, retry_at}], written in the
    # same UPDATE that ends an attempt, so a run that succeeds at once costs nothing.
    earlier_attempts = models.JSONField(default=list, blank=True, encoder=DjangoJSONEncoder)
    # A run `pending` (or `retrying` whose retry could not be published) is
    # handed to the broker by the sweeper from this time on; the sweeper moves
    # it on when it claims the run, so two dispatchers never publish it twice.
    republish_after = models.DateTimeField(null=True, blank=True, default=republish_deadline, editable=False)
    worker = models.CharField(max_length=255, blank=True)
    result = models.JSONField(null=True, blank=True, encoder=DjangoJSONEncoder)
    error = models.TextField(blank=True)
    traceback = models.TextField(blank=True)
    # Notification: `notify_status` becomes pending in the same UPDATE that ends
    # the run (when its job type wants one), and sent or failed exactly once,
    # with `notified_at`, when the outcome is known.
    notify_emails = models.JSONField(default=list, blank=True, help_text="Addresses added for this run only.")
    notify_status = models.CharField(max_length=10, choices=NotifyStatus.choices, blank=True, default="")
    notify_attempts = models.PositiveSmallIntegerField(default=0)
    notify_locked_until = models.DateTimeField(null=True, blank=True)
    notify_outcome = models.JSONField(default=dict, blank=True, encoder=DjangoJSONEncoder)
    notified_at = models.DateTimeField(null=True, blank=True)
    # Its job type's deadline (deadline_seconds after it was triggered, or was
    # due when run later or planned for a schedule's tick), set when it is
    # created; and when the dispatcher found it late, which it claims once
    # (jobs/schedules/deadlines.py).
    deadline_at = models.DateTimeField(null=True, blank=True, editable=False)
    late_at = models.DateTimeField(
        null=True, blank=True, editable=False, help_text="When it was found still not ended at its deadline."
    )
    # The revision of its job type it ran (jobs/definitions/revisions.py).
    job_type_revision = models.ForeignKey(
        "jobs.HistoricalJobType", null=True, blank=True, on_delete=models.SET_NULL, related_name="+", editable=False
    )

    objects = RunQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        permissions = [("cancel_run", "Can cancel run")]
        constraints = [
            models.UniqueConstraint(
                fields=["job_type", "idempotency_key"],
                condition=Q(idempotency_key__isnull=False),
                name="run_unique_idempotency_key",
            ),
            models.UniqueConstraint(
                fields=["schedule", "schedule_tick"],
                condition=Q(schedule__isnull=False, schedule_tick__isnull=False),
                name="run_unique_schedule_tick",
            ),
        ]
        indexes = [
            models.Index(fields=["-created_at"], name="run_created"),
            models.Index(fields=["status", "-created_at"], name="run_status_created"),
            models.Index(fields=["job_type", "-created_at"], name="run_jobtype_created"),
            # Partial where the column is mostly NULL: an index over every row
            # tells SQLite's planner that one schedule (or one workflow run) has
            # as many runs as NULL has, and it reads the whole table instead.
            models.Index(
                fields=["schedule", "-created_at"], condition=Q(schedule__isnull=False), name="run_schedule_created"
            ),
            models.Index(fields=["parent", "created_at"], condition=Q(parent__isnull=False), name="run_parent_created"),
            models.Index(
                fields=["rerun_of", "-created_at"], condition=Q(rerun_of__isnull=False), name="run_rerun_of_created"
            ),
            # The dispatcher's "scheduled runs now due" query. Not a partial index:
            # SQLite cannot use one when the status comes as a bound parameter.
            models.Index(fields=["status", "scheduled_for"], name="run_status_scheduled_for"),
            # Deleting a user clears the runs they cancelled: a lookup by user.
            models.Index(fields=["cancelled_by"], condition=Q(cancelled_by__isnull=False), name="run_cancelled_by"),
            models.Index(
                fields=["trigger_url", "-created_at"], condition=Q(trigger_url__isnull=False), name="run_trigger_url"
            ),
            # A backfill's runs by status, in tick order: what it releases next,
            # how many are active, its progress.
            models.Index(
                fields=["backfill", "status", "schedule_tick"],
                condition=Q(backfill__isnull=False),
                name="run_backfill_status",
            ),
            # The notification sweeper looks only at the few runs still pending.
            models.Index(
                fields=["notify_locked_until"], condition=Q(notify_status="pending"), name="run_notify_pending"
            ),
            # The dispatcher's "runs past their deadline" query: only runs that
            # have one and are neither ended nor found late yet are in it.
            models.Index(
                fields=["deadline_at"],
                condition=Q(deadline_at__isnull=False, late_at__isnull=True, finished_at__isnull=True),
                name="run_deadline_due",
            ),
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

    @property
    def notification(self) -> dict | None:
        """The notification's outcome as the API and the run page show it (None: the run has none):
        status, notified_at, attempts, next_attempt_at, and per channel (`email`, `webhook`)
        {status, detail or error, at}. The webhook's URL shows as `scheme://host/…`: outcomes are
        stored so, and this redacts those stored before they were."""
        if not self.notify_status:
            return None
        pending = self.notify_status == NotifyStatus.PENDING
        outcome = dict(self.notify_outcome or {})
        webhook = outcome.get("webhook")
        if isinstance(webhook, dict):
            outcome["webhook"] = {
                key: redact_urls(value) if key in ("detail", "error") and isinstance(value, str) else value
                for key, value in webhook.items()
            }
        return {
            "status": self.notify_status,
            "notified_at": self.notified_at,
            "attempts": self.notify_attempts,
            "next_attempt_at": self.notify_locked_until if pending else None,
            **outcome,
        }

    def save_new(self) -> None:
        """`save(force_insert=True)` of a new run, which records the job type's latest
        revision as of its INSERT (latest_revision: a subquery the INSERT reads), so
        that a revision saved by another process just before counts. The INSERT is
        compiled once per process (statements.insert_reading): building and compiling
        it and its subquery again was a third of a trigger's CPU. `job_type_revision_id`
        is left deferred: read from the row if asked for."""
        using = router.db_for_write(Run, instance=self)
        self._prepare_related_fields_for_save(operation_name="save")
        models.signals.pre_save.send(sender=Run, instance=self, raw=False, using=using, update_fields=None)
        revision = Run._meta.get_field("job_type_revision")
        job_type = (self.job_type_id, revision.related_model._meta.get_field("id"))
        read = (revision, latest_revision, {"job_type_id": job_type})
        statements.execute(statements.insert_reading(Run, _inserted_fields(), self, read, using=using), using=using)
        self._state.db, self._state.adding = using, False
        models.signals.post_save.send(
            sender=Run, instance=self, created=True, update_fields=None, raw=False, using=using
        )

    # State changes. Each is one conditional UPDATE, so that a signal fired twice
    # (a redelivered task) or late (after a cancel) never moves a run backwards
    # and never rewrites a terminal state. Each returns whether it applied.
    # Results, errors and tracebacks are stored within the size limits
    # (jobs/core/limits.py), whoever ends the run.

    def _transition(self, from_statuses, **changes) -> bool:
        return self._transition_query(Run.objects.filter(pk=self.pk, status__in=from_statuses), **changes)

    def _transition_query(self, query: models.QuerySet, **changes) -> bool:
        updated = query.update(**changes)
        if updated:
            self._changed(changes)
        return bool(updated)

    def _applied(self, statement: statements.Statement, changes: dict, *, using: str, send=statements.execute) -> bool:
        """Run a transition's compiled UPDATE (`changes` on this run) with `send`;
        whether it applied, its changes then set on this object too."""
        applied = send(statement, using=using) > 0
        if applied:
            self._changed(changes)
        return applied

    def _changed(self, changes: dict) -> None:
        """What an applied transition wrote, set on this object too."""
        for field, value in changes.items():
            if hasattr(value, "resolve_expression"):
                # Computed by the database: dropped here, reloaded if read.
                self.__dict__.pop(field, None)
            else:
                setattr(self, field, value)

    def mark_running(self) -> bool:
        """A workflow run: its first step started."""
        return self._transition(
            [self.Status.PENDING, self.Status.QUEUED], status=self.Status.RUNNING, started_at=timezone.now()
        )

    def mark_ready(self, *, params: dict, at: datetime) -> bool:
        """A workflow step: the steps it depends on succeeded, and its params are
        resolved. Written `queued` (at `at`) by this UPDATE, before its publish:
        see workflows/steps.py, `advance`.
        Its UPDATE is compiled once per process (statements.update_where): a step hop's last statement."""
        using = router.db_for_write(Run)
        changes = {
            "status": self.Status.QUEUED,
            "params": params,
            "released_at": at,
            "queued_at": at,
            "republish_after": republish_deadline(),
        }
        filters = {"pk": self.pk, "status__in": [self.Status.WAITING]}
        return self._applied(statements.update_where(Run, filters, changes, using=using), changes, using=using)

    def mark_started(self, *, worker: str, unlimited_only: bool = False, durable: bool = True) -> bool:
        """An attempt starts. `unlimited_only`: only if the job type has no
        max_concurrency (the others take a slot first: run_started in jobs/runs/tracking.py).
        `durable=False`: without waiting for the disk, for a run written `queued` durably.
        Its UPDATE is compiled once per process: only the run, the time and the
        worker change (statements.reused)."""
        using = router.db_for_write(Run)
        now = timezone.now()

        def start(pk, now, worker) -> statements.Statement:
            startable = _startable_unlimited() if unlimited_only else Run.objects.filter(status__in=Run.STARTABLE)
            return statements.update(startable.filter(pk=pk), Run._attempt_start(worker, now))

        inputs = {
            "pk": (self.pk, Run._meta.pk),
            "now": (now, Run._meta.get_field("started_at")),
            "worker": (worker, Run._meta.get_field("worker")),
        }
        statement = statements.reused(("start", unlimited_only), start, inputs, using=using)
        send = statements.execute if durable else durability.progress_execute
        return self._applied(statement, Run._attempt_start(worker, now), using=using, send=send)

    # A start written late, or with the run's end (run_started in jobs/runs/tracking.py):
    # this object is the run as read just before its task ran (read_for_start), and the
    # start applies only if the run is still as read (startable, on the same attempt).

    @classmethod
    def read_for_start(cls, pk) -> "Run | None":
        """The run as a worker reads it before running its task without writing
        its start first: its status, attempts, queued_at and its job type's
        max_concurrency; None if there is no such run. One SELECT, compiled
        once per process (statements.select), sent again on a new connection if
        its connection turned out dropped: a worker that ended a task under a
        second ago does not check its connection before this read
        (jobs/worker/connections.py)."""
        using = router.db_for_read(cls)
        reading = statements.select(("read for start",), _read_for_start, {"pk": (pk, cls._meta.pk)}, using=using)
        [runs] = reconnect.read_again_if_dropped(lambda: statements.read([reading], using=using), using=using)
        return runs[0] if runs else None

    def _late_start(self, *, worker: str, at: datetime) -> tuple[dict, dict]:
        """The filters and changes of the start of the attempt this object has
        read, as it was `at`: plain values, so that its UPDATE is compiled once
        (statements.update_where)."""
        filters = {"pk": self.pk, "status__in": self.STARTABLE, "attempts": self.attempts}
        queued_at = min(self.queued_at, at) if self.queued_at else at  # as _attempt_start's Least(Coalesce())
        changes = {
            "status": self.Status.RUNNING,
            "started_at": at,
            "queued_at": queued_at,
            "attempts": self.attempts + 1,
            "worker": worker,
        }
        return filters, changes

    def mark_started_late(self, *, worker: str, at: datetime) -> bool:
        """Write the start of the attempt read, which began `at`, without waiting
        for the disk (durability.progress_execute): the run was written `queued`
        durably before its publish, and Redis holds its message until the task ends."""
        using = router.db_for_write(Run)
        filters, changes = self._late_start(worker=worker, at=at)
        statement = statements.update_where(Run, filters, changes, using=using)
        return self._applied(statement, changes, using=using, send=durability.progress_execute)

    def mark_restarted(self, *, worker: str, lost_error: str) -> bool:
        """Its task was handed out again after the worker running it was lost:
        record that attempt as lost and start the next one. Applies only while
        the run is still on the attempt this object has read."""
        query = Run.objects.filter(pk=self.pk, status=self.Status.RUNNING, attempts=self.attempts)
        lost = self.attempt_record(error=lost_error, ended_at=timezone.now())
        return self._transition_query(
            query, earlier_attempts=[*self.earlier_attempts, lost], **self._attempt_start(worker)
        )

    @staticmethod
    def _attempt_start(worker: str, now: datetime | None = None) -> dict:
        now = now or timezone.now()
        return {
            "status": Run.Status.RUNNING,
            "started_at": now,
            # A worker may start the run before the web process has marked it
            # `queued` (that mark then no longer applies): it was queued by now. And
            # a mark that took its time just after this start's did not come later.
            "queued_at": Least(Coalesce(F("queued_at"), Value(now)), Value(now)),
            "attempts": F("attempts") + 1,
            "worker": worker,
        }

    def attempt_record(self, *, error: str, ended_at: datetime, retry_at: datetime | None = None) -> dict:
        """The current attempt, as an entry of `earlier_attempts`."""
        if len(error) > ATTEMPT_ERROR_CHARS:
            error = f"{error[:ATTEMPT_ERROR_CHARS]}… ({len(error) - ATTEMPT_ERROR_CHARS} more characters)"
        return {
            "attempt": self.attempts,
            "started_at": _iso(self.started_at),
            "ended_at": _iso(ended_at),
            "worker": self.worker,
            "error": error,
            "retry_at": _iso(retry_at),
        }

    def attempt_history(self) -> list[dict]:
        """Every attempt so far, oldest first: the earlier ones as recorded, then
        the last one from the run's own fields, each with its `status`."""
        history = [
            {
                **entry,
                "status": self.Status.FAILED,
                **{key: parse_datetime(entry[key]) if entry.get(key) else None for key in self.ATTEMPT_TIMES},
            }
            for entry in self.earlier_attempts
        ]
        recorded = history[-1]["attempt"] if history else 0
        if self.attempts > recorded:
            history.append(
                {
                    "attempt": self.attempts,
                    "started_at": self.started_at,
                    "ended_at": self.finished_at,
                    "worker": self.worker,
                    "error": self.error if self.status == self.Status.FAILED else "",
                    "retry_at": None,
                    "status": self.status,
                }
            )
        return history

    # The terminal ones take `notify`: the run's notification is then marked
    # pending in the same UPDATE, so a run cannot end without the record that
    # it still has to be notified.

    def _ending(self, notify: bool) -> dict:
        return {"finished_at": timezone.now(), **({"notify_status": NotifyStatus.PENDING} if notify else {})}

    def _end(self, filters: dict, *, also: statements.Statement | None = None, **changes) -> bool:
        """A terminal transition, recorded to be counted for GET /metrics (RunToCount)
        in the same transaction: one INSERT, only if it applied. `also`: a statement
        committed with it whether it applied or not (the TaskResult's upsert,
        jobs/worker/result_backend.py). On PostgreSQL all of it is one query string,
        one round trip (jobs/core/statements.py); elsewhere one statement each. Either
        way compiled once per process and shape.
        Within a caller's transaction, no savepoint of its own: a failure rolls back
        the caller's anyway. `filters`: which run, in which states (Run.objects.filter)."""
        using = router.db_for_write(Run)
        update, counted = statements.update_where(Run, filters, changes, using=using), _counted(self.pk, using)
        if statements.together(using):
            ended = statements.update_then_insert(update, counted, then=[also] if also else [], using=using)
        else:
            # The same statements, one at a time in a transaction, built before it
            # opens: SQLite's transaction holds the database's write lock from its BEGIN.
            with transaction.atomic(using=using, savepoint=False), connections[using].cursor() as cursor:
                cursor.execute(*update)
                ended = cursor.rowcount > 0
                if ended:
                    cursor.execute(*counted)
                if also:
                    cursor.execute(*also)
        if ended:
            self._changed(changes)
        return ended

    def mark_succeeded(
        self, *, result, notify: bool = False, also: statements.Statement | None = None, started: tuple | None = None
    ) -> bool:
        """`also`: a statement committed with the run's end (Run._end). `started`:
        (worker, at), the start of the attempt this object has read (read_for_start),
        not written yet: written by the same UPDATE, which then applies only if
        the run is still as read."""
        filters, start = {"pk": self.pk, "status__in": self.NOT_TERMINAL}, {}
        if started:
            worker, at = started
            filters, start = self._late_start(worker=worker, at=at)
        ending = {
            "status": self.Status.SUCCEEDED,
            "result": bounded_result(result),
            "error": "",
            "traceback": "",
            **self._ending(notify),
        }
        return self._end(filters, also=also, **{**start, **ending})

    def mark_failed(self, *, error: str, traceback: str = "", notify: bool = False, attempt: int | None = None) -> bool:
        """`attempt`: only if the run is still on that attempt (a run found lost
        must not be failed after a redelivery started it again)."""
        filters = {"pk": self.pk, "status__in": self.NOT_TERMINAL}
        if attempt is not None:
            filters["attempts"] = attempt
        return self._end(
            filters,
            status=self.Status.FAILED,
            error=bounded_error(error),
            traceback=bounded_traceback(traceback),
            **self._ending(notify),
        )

    def mark_retrying(self, *, error: str, traceback: str, retry_at) -> bool:
        """The attempt failed and another follows at `retry_at`: the attempt is
        recorded in `earlier_attempts` in the same UPDATE."""
        record = self.attempt_record(error=error, ended_at=timezone.now(), retry_at=retry_at)
        query = Run.objects.filter(pk=self.pk, status=self.Status.RUNNING, attempts=self.attempts)
        return self._transition_query(
            query,
            status=self.Status.RETRYING,
            scheduled_for=retry_at,
            error=bounded_error(error),
            traceback=bounded_traceback(traceback),
            earlier_attempts=[*self.earlier_attempts, record],
            # The retry is being published; only if that fails is it the sweeper's (jobs/runs/tracking.py).
            republish_after=None,
        )

    def mark_cancelled(self, *, cancelled_by=None, notify: bool = False) -> bool:
        """`cancelled_by`: the user who asked; None when Jobsite cancels a step itself."""
        ending = self._ending(notify)
        return self._end(
            {"pk": self.pk, "status__in": self.NOT_TERMINAL},
            status=self.Status.CANCELLED,
            cancelled_by=cancelled_by,
            cancelled_at=ending["finished_at"],
            **ending,
        )

    # Notification. One attempt at a time holds the run's notification (a lease
    # in `notify_locked_until`); the attempt number it got is its fence, so an
    # attempt that outlived its lease cannot overwrite a newer one's record.

    def _notification_update(self, attempt: int, **changes) -> bool:
        query = Run.objects.filter(pk=self.pk, notify_status=NotifyStatus.PENDING, notify_attempts=attempt)
        return self._transition_query(query, **changes)

    def claim_notification(self, *, lease_seconds: float) -> int | None:
        """Take the pending notification for one attempt; its number, or None if
        it is not pending (already sent or failed) or another attempt holds it."""
        now = timezone.now()
        hold_until = now + timedelta(seconds=lease_seconds)
        claimed = (
            Run.objects.filter(pk=self.pk, notify_status=NotifyStatus.PENDING)
            .filter(Q(notify_locked_until__isnull=True) | Q(notify_locked_until__lte=now))
            .update(notify_locked_until=hold_until, notify_attempts=F("notify_attempts") + 1)
        )
        if not claimed:
            return None
        self.refresh_from_db(fields=["notify_attempts", "notify_locked_until", "notify_outcome"])
        return self.notify_attempts

    def save_notification_progress(self, *, attempt: int, outcome: dict, retry_at=None) -> bool:
        """Record what this attempt did; with `retry_at`, hold the notification until then."""
        changes = {"notify_locked_until": retry_at} if retry_at else {}
        return self._notification_update(attempt, notify_outcome=outcome, **changes)

    def mark_notified(self, *, attempt: int, status: str, outcome: dict) -> bool:
        """Record the final outcome, once: sent, or failed with the reasons in `outcome`
        (a failure counted for GET /metrics in the same transaction)."""
        with transaction.atomic(savepoint=False):
            recorded = self._notification_update(
                attempt,
                notify_status=status,
                notify_outcome=outcome,
                notified_at=timezone.now(),
                notify_locked_until=None,
            )
            if recorded and status == NotifyStatus.FAILED:
                RunToCount.objects.create(run_id=self.pk, event=RunToCount.Event.NOTIFY_FAILED)
        return recorded


def planned_runs(schedule_ids) -> models.QuerySet:
    """The runs the dispatcher planned ahead for these schedules' next ticks
    and has not released yet (see jobs/schedules/dispatcher.py)."""
    return Run.objects.filter(schedule_id__in=schedule_ids, status=Run.Status.SCHEDULED, schedule_tick__isnull=False)


class ScheduleQuerySet(models.QuerySet):
    def with_last_run(self, *, finished_at: bool = False) -> "ScheduleQuerySet":
        """Annotated with `last_run_id`, `last_run_status` and `last_run_created_at`
        (and `last_run_finished_at` when asked, for the API): one subquery each, per
        schedule, on the (schedule, created_at) index of runs. The run planned for
        the next tick is not the last run yet."""
        last = Run.objects.filter(schedule=OuterRef("pk")).exclude(status=Run.Status.SCHEDULED).order_by("-created_at")
        fields = {"id": "pk", "status": "status", "created_at": "created_at"}
        if finished_at:
            fields["finished_at"] = "finished_at"
        return self.annotate(
            **{f"last_run_{name}": Subquery(last.values(column)[:1]) for name, column in fields.items()}
        )

    # Every way of changing or deleting schedules drops the runs planned for
    # their next ticks in the same transaction, so an edit applies to the next
    # tick however it was made: save() and delete() on a schedule, and these
    # two for querysets (the admin's bulk delete, update() in code), which
    # skip save() and delete() and send no signals that could do it instead.

    def update(self, **changes) -> int:
        if PLAN_FIELDS.isdisjoint(changes):
            return super().update(**changes)  # the dispatcher's own bookkeeping
        with transaction.atomic():
            ids = list(self.values_list("pk", flat=True))
            count = super().update(**changes)
            changed = Schedule.objects.filter(pk__in=ids)
            changed.unplan()
            if not TIMING_FIELDS.isdisjoint(changes):  # count from now, as save() does
                now = timezone.now()
                for schedule in changed:
                    schedule.next_run_at = schedule.compute_next_run(now)
                    schedule._watch(timing_changed=True)
                    changed.filter(pk=schedule.pk).update(
                        next_run_at=schedule.next_run_at,
                        watch_tick=schedule.watch_tick,
                        watch_due_at=schedule.watch_due_at,
                    )
        return count

    update.alters_data = True

    def delete(self):
        with transaction.atomic():
            self.unplan(including_due=True)
            return super().delete()

    delete.alters_data = True
    delete.queryset_only = True  # as Django's: no Schedule.objects.delete() of everything by mistake

    def unplan(self, *, including_due: bool = False) -> int:
        """Drop the runs planned for these schedules' next ticks that are still
        to come, so that the dispatcher plans those ticks again from the
        schedules as they are now. A tick whose time has come fires as planned
        (its release may be under way), unless `including_due` (the schedules
        are being deleted). A tick whose run was cancelled stays skipped (its
        run keeps the tick). How many runs were dropped."""
        ids = list(self.values_list("pk", flat=True))
        if not ids:
            return 0
        with transaction.atomic():
            planned = planned_runs(ids)
            if not including_due:
                planned = planned.filter(schedule_tick__gt=timezone.now())
            dropped, _ = planned.delete()
            Schedule.objects.filter(pk__in=ids, planned=True).update(planned=False)
        return dropped


class Schedule(models.Model):
    """A recurring trigger of a job type with fixed params.

    The dispatcher (jobs/schedules/dispatcher.py), ticked every second by celery beat,
    fires every enabled schedule whose `next_run_at` has come.
    """

    class Overlap(models.TextChoices):
        ALLOW = "allow", "Allow: fire even while the previous run is active"
        SKIP = "skip", "Skip: do not fire while the previous run is active"

    name = models.SlugField(max_length=100, unique=True)
    job_type = models.ForeignKey(JobType, on_delete=models.PROTECT, related_name="schedules")
    params = models.JSONField(default=dict, blank=True)
    cron = models.CharField(
        max_length=100, blank=True, help_text="Five fields: minute hour day-of-month month day-of-week, e.g. 0 5 * * 1."
    )
    timezone = models.CharField(max_length=64, default="UTC", help_text="IANA time zone the cron follows.")
    interval_seconds = models.PositiveIntegerField(null=True, blank=True, help_text="Instead of cron: fire every N s.")
    enabled = models.BooleanField(default=True)
    start_at = models.DateTimeField(null=True, blank=True, help_text="Fire nothing before this.")
    end_at = models.DateTimeField(null=True, blank=True, help_text="Fire nothing after this.")
    overlap = models.CharField(max_length=10, choices=Overlap.choices, default=Overlap.ALLOW)
    must_succeed_within_seconds = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1), MaxValueValidator(MAX_DEADLINE_SECONDS)],
        help_text="If no run of a tick has succeeded this long after the tick (missed, failed or still running), "
        "the job type's recipients and webhook are told once for that tick (schedule.late). Empty: no check.",
    )
    backfill_concurrency = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1)],
        help_text="How many runs of a backfill of this schedule may be active at once. "
        "Empty: the job type's max_concurrency, or JOBS_BACKFILL_CONCURRENCY.",
    )
    next_run_at = models.DateTimeField(null=True, blank=True, editable=False)
    # The run for the tick at next_run_at exists already, `scheduled` (the
    # dispatcher plans ticks ahead; jobs/schedules/dispatcher.py), or that tick was decided
    # otherwise (skipped, cancelled). next_run_at moves on once the tick is past.
    planned = models.BooleanField(default=False, editable=False)
    skipped_ticks = models.PositiveIntegerField(default=0, editable=False)
    last_skipped_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_skip_reason = models.CharField(max_length=300, blank=True, editable=False)
    # With must_succeed_within_seconds: the tick being watched and when its run
    # must have succeeded by; the dispatcher checks it then and moves on to the
    # next tick (jobs/schedules/deadlines.py).
    watch_tick = models.DateTimeField(null=True, blank=True, editable=False)
    watch_due_at = models.DateTimeField(null=True, blank=True, editable=False)
    # Also the anchor of interval fires. (`timezone` is a field in this class body.)
    created_at = models.DateTimeField(default=django_timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    TIMING_FIELDS = ("cron", "timezone", "interval_seconds", "start_at", "end_at", "enabled")
    # Written by the dispatcher: saving an edit never writes back what it read
    # before the dispatcher moved on (next_run_at only when the timing changed).
    DISPATCHER_FIELDS = (
        "next_run_at",
        "planned",
        "skipped_ticks",
        "last_skipped_at",
        "last_skip_reason",
        "watch_tick",
        "watch_due_at",
    )
    # What users see of the dispatcher's state, read-only in the admin and the API.
    STATE_FIELDS = ("next_run_at", "skipped_ticks", "last_skipped_at", "last_skip_reason")

    objects = ScheduleQuerySet.as_manager()
    history = DefinitionHistory(excluded_fields=[*DISPATCHER_FIELDS, "created_at", "updated_at"])

    class Meta:
        ordering = ["name"]
        indexes = [
            models.Index(fields=["next_run_at"], condition=Q(enabled=True), name="schedule_due"),
            # The dispatcher's "ticks to plan" and "planned ticks now past" queries.
            # Partial (not on planned, next_run_at): Django writes planned=False
            # as `NOT planned`, which SQLite does not match with an index column.
            models.Index(fields=["next_run_at"], condition=Q(enabled=True, planned=False), name="schedule_to_plan"),
            models.Index(fields=["next_run_at"], condition=Q(enabled=True, planned=True), name="schedule_planned"),
            # The dispatcher's "ticks whose time to succeed is over" query.
            models.Index(fields=["watch_due_at"], condition=Q(watch_due_at__isnull=False), name="schedule_watch_due"),
        ]

    def __str__(self) -> str:
        return self.name

    def save(self, *args, **kwargs) -> None:
        # A new schedule, or one whose timing changed, counts from now; an edit
        # of its params alone keeps the fire it was waiting for.
        adding = self._state.adding
        timing_changed = adding or self._timing_changed()
        if timing_changed:
            self.next_run_at = self.compute_next_run(timezone.now())
        if not adding:
            fields = kwargs.get("update_fields")
            if fields is None:
                fields = {f.name for f in self._meta.concrete_fields if not f.primary_key} - {*self.DISPATCHER_FIELDS}
            kwargs["update_fields"] = {
                *fields,
                "planned",
                *(["next_run_at"] if timing_changed else []),
                "watch_tick",
                "watch_due_at",
            }
            self.planned = False
        self._watch(timing_changed=adding or timing_changed)
        with transaction.atomic():
            super().save(*args, **kwargs)
            if not adding:
                # The tick planned ahead is planned again from the edited schedule.
                Schedule.objects.filter(pk=self.pk).unplan()
        self._saved_timing = self._timing()

    def _watch(self, *, timing_changed: bool) -> None:
        """Which tick must_succeed_within_seconds watches: the tick the dispatcher
        left watched (read afresh: it moves on while an edit form is open), or the
        next one when the check was off or the timing changed."""
        within = self.must_succeed_within_seconds
        if within is None:
            self.watch_tick = self.watch_due_at = None
            return
        tick = self.next_run_at
        if not timing_changed:
            row = Schedule.objects.filter(pk=self.pk).values_list("watch_tick", "next_run_at").first()
            tick = (row[0] or row[1]) if row else None
        self.watch_tick = tick
        self.watch_due_at = tick + timedelta(seconds=within) if tick else None

    def delete(self, *args, **kwargs):
        with transaction.atomic():
            Schedule.objects.filter(pk=self.pk).unplan(including_due=True)  # its runs stay, not its planned tick
            return super().delete(*args, **kwargs)

    def clean(self) -> None:
        errors: dict[str, list[str]] = {}
        if self.cron and self.interval_seconds is not None:
            errors["cron"] = ["Give either cron or interval_seconds, not both."]
        elif not self.cron and self.interval_seconds is None:
            errors["cron"] = ["Give cron (e.g. '0 5 * * 1') or interval_seconds (e.g. 300)."]
        elif self.cron:
            problem = cron_error(self.cron)
            if problem:
                errors["cron"] = [problem]
        shortest = settings.JOBS_MIN_SCHEDULE_INTERVAL_SECONDS
        if self.interval_seconds is not None and self.interval_seconds < shortest:
            errors["interval_seconds"] = [
                f"Must be at least {shortest} second{'s' if shortest != 1 else ''} "
                "(JOBS_MIN_SCHEDULE_INTERVAL_SECONDS): ask an administrator to lower it to fire more often."
            ]
        problem = timezone_error(self.timezone)
        if problem:
            errors["timezone"] = [problem]
        if self.start_at and self.end_at and self.end_at <= self.start_at:
            errors["end_at"] = ["Must be after start_at."]
        if self.job_type_id:
            problem = self._schedules_cap_error()
            if problem:
                errors["job_type"] = [problem]
            if not isinstance(self.params, dict):
                errors["params"] = ["Must be a JSON object."]
            else:
                merged = params_with_defaults(self.job_type.default_params, self.params)
                problems = self.job_type.run_params_errors(merged)
                if problems:
                    errors["params"] = problems
        if errors:
            raise ValidationError(errors)

    def _schedules_cap_error(self) -> str | None:
        """Why this schedule would be one too many for its job type, or None.
        A schedule that has it already may be edited even if the cap was lowered since."""
        cap = settings.JOBS_MAX_SCHEDULES_PER_JOB_TYPE
        others = Schedule.objects.filter(job_type_id=self.job_type_id).exclude(pk=self.pk)
        # Counts at most cap rows, however many there are.
        if others[:cap].count() < cap:
            return None
        if self.pk is not None and Schedule.objects.filter(pk=self.pk, job_type_id=self.job_type_id).exists():
            return None
        return (
            f"Job type '{self.job_type.name}' has {cap} schedules already, the most JOBS_MAX_SCHEDULES_PER_JOB_TYPE "
            "allows: delete one of them, or ask an administrator to raise it."
        )

    def compute_next_run(self, after) -> "datetime | None":
        """The first fire strictly after `after` within start_at/end_at, or None."""
        if self.start_at and after < self.start_at:
            after = self.start_at - timedelta(microseconds=1)
        if self.cron:
            fire = next_cron_fire(self.cron, self.timezone, after)
        else:
            anchor = self.start_at or self.created_at
            fire = next_interval_fire(anchor, self.interval_seconds, after)
        if self.end_at and fire > self.end_at:
            return None
        return fire

    def _timing(self) -> tuple:
        return tuple(getattr(self, field) for field in self.TIMING_FIELDS)

    def _timing_changed(self) -> bool:
        return getattr(self, "_saved_timing", None) != self._timing()

    @classmethod
    def from_db(cls, db, field_names, values):
        instance = super().from_db(db, field_names, values)
        if all(field in field_names for field in cls.TIMING_FIELDS):
            instance._saved_timing = instance._timing()
        return instance

    @property
    def timing_display(self) -> str:
        if self.cron:
            return f"{describe_cron(self.cron)} ({self.timezone})"
        return f"Every {self.interval_seconds} s" if self.interval_seconds else ""

    @property
    def last_run(self) -> "Run | None":
        """The newest run that fired (or was started by hand), not the one planned for the next tick."""
        return self.runs.exclude(status=Run.Status.SCHEDULED).order_by("-created_at").first()


# Fields whose change makes a planned run out of date (Schedule.objects.update()).
PLAN_FIELDS = frozenset({"job_type", "job_type_id", "params", *Schedule.TIMING_FIELDS})
TIMING_FIELDS = frozenset(Schedule.TIMING_FIELDS)


class RunLogLine(models.Model):
    """One line that a run's task logged or printed, or that its command wrote
    (captured on the worker: jobs/runs/logs.py). Kept per run within
    JOBS_RUN_LOG_MAX_LINES and JOBS_RUN_LOG_MAX_BYTES, the newest lines: `seq`
    counts every line the run ever had, so the lines cut are those before the
    first one kept. Deleted with the run."""

    STDOUT, STDERR = "STDOUT", "STDERR"  # `level` of a printed line

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="log_lines")
    seq = models.PositiveIntegerField()
    attempt = models.PositiveIntegerField()
    created_at = models.DateTimeField()
    level = models.CharField(max_length=10)
    logger = models.CharField(max_length=200, blank=True)
    message = models.TextField()

    class Meta:
        ordering = ["run", "seq"]
        # Also the index of every read: a run's lines in order, from a seq on.
        constraints = [models.UniqueConstraint(fields=["run", "seq"], name="runlogline_unique_seq")]

    def __str__(self) -> str:
        return f"{self.run_id} #{self.seq} {self.level} {self.message[:60]}"

    @classmethod
    def lines_cut(cls, run_id) -> int:
        """How many lines of the run were cut to keep within the limits."""
        first = cls.objects.filter(run_id=run_id).order_by("seq").values_list("seq", flat=True).first()
        return first - 1 if first else 0

    @classmethod
    def tail(cls, run_id, count: int) -> list["RunLogLine"]:
        """The run's last `count` lines, oldest first."""
        return list(reversed(cls.objects.filter(run_id=run_id).order_by("-seq")[:count]))


class RunTally(models.Model):
    """Counts for GET /metrics (jobs/monitor/metrics.py), a few hundred rows
    whatever the number of runs: per job type, the runs ended by status
    (`key`), histograms of run durations, queue waits and schedule lateness
    (one row per bucket, `key` its upper bound, plus `sum`; see
    jobs/core/tallies.py), and the failed notifications by channel.

    Filled from RunToCount by jobs/runs/metrics.py. Counters only grow:
    purging runs leaves them, as Prometheus expects of a counter. Runs that
    ended before this table existed are not in it.
    """

    class Metric(models.TextChoices):
        RUNS = "runs"
        DURATION = "duration"
        QUEUE_WAIT = "queue_wait"
        LATENESS = "lateness"
        NOTIFY_FAILED = "notify_failed"

    metric = models.CharField(max_length=20, choices=Metric.choices)
    job_type = models.ForeignKey(JobType, on_delete=models.CASCADE, related_name="+", db_index=False)
    key = models.CharField(max_length=20)
    value = models.FloatField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["job_type", "metric", "key"], name="runtally_unique")]

    def __str__(self) -> str:
        return f"{self.metric} {self.job_type_id} {self.key}: {self.value:g}"

    @classmethod
    def add(cls, amounts: dict[tuple[int, str, str], float]) -> None:
        """Add to the rows {(job type id, metric, key): amount}, creating them as
        needed: one INSERT … ON CONFLICT (the same on PostgreSQL and SQLite),
        which Django's bulk_create cannot write (it sets the value; this adds to it)."""
        if not amounts:
            return
        rows = sorted(amounts.items())  # one lock order for every writer
        connection = connections[router.db_for_write(cls)]
        table, job_type, metric, key, value = map(
            connection.ops.quote_name, (cls._meta.db_table, "job_type_id", "metric", "key", "value")
        )
        placeholders = ", ".join(["(%s, %s, %s, %s)"] * len(rows))
        params = [
            field for (job_type_id, name, bucket), amount in rows for field in (job_type_id, name, bucket, amount)
        ]
        # Quoted names and placeholders only: the values are parameters.
        sql = (
            f"INSERT INTO {table} ({job_type}, {metric}, {key}, {value}) VALUES {placeholders} "  # noqa: S608
            f"ON CONFLICT ({job_type}, {metric}, {key}) DO UPDATE SET {value} = {table}.{value} + excluded.{value}"
        )
        with connection.cursor() as cursor:
            cursor.execute(sql, params)


class RunToCount(models.Model):
    """A run that ended (or whose notification failed for good) and is not in
    RunTally yet: one INSERT in the transaction that ends the run (Run._end),
    so that a run is counted exactly once, at no lock shared with other runs.
    jobs/runs/metrics.py folds these rows into RunTally and deletes them."""

    class Event(models.TextChoices):
        ENDED = "ended"
        NOTIFY_FAILED = "notify_failed"

    # Not a foreign key: deleting runs (retention) need not look here.
    run_id = models.UUIDField()
    event = models.CharField(max_length=20, choices=Event.choices)

    def __str__(self) -> str:
        return f"{self.event} {self.run_id}"


@functools.cache
def _count_statement(using: str) -> tuple[str, list[models.Field]]:
    """RunToCount's INSERT of an ended run, compiled once per database: the same
    for every run but for its id."""
    fields = [RunToCount._meta.get_field("run_id"), RunToCount._meta.get_field("event")]
    sample = RunToCount(run_id=uuid.UUID(int=0), event=RunToCount.Event.ENDED)
    return statements.insert(RunToCount, fields, sample, using=using)[0], fields


def _counted(run_id, using: str) -> statements.Statement:
    """The INSERT that counts a run's end for GET /metrics, with its parameters
    prepared as Django's compiler prepares them."""
    sql, (run_field, event_field) = _count_statement(using)
    database = connections[using]
    return sql, [
        run_field.get_db_prep_save(run_id, database),
        event_field.get_db_prep_save(RunToCount.Event.ENDED.value, database),
    ]


def _revisions(job_type_id: int) -> models.QuerySet:
    # The historical model from the field, not from `JobType.history`: that descriptor
    # builds a manager class on every access: a sixth of a trigger's CPU.
    historical = Run._meta.get_field("job_type_revision").related_model
    return historical.objects.filter(id=job_type_id).order_by("-history_date", "-history_id")


@functools.cache
def _inserted_fields() -> list[models.Field]:
    """The columns of a new run's INSERT, as save() writes them."""
    return [field for field in Run._meta.local_concrete_fields if not field.generated]


def _read_for_start(pk) -> models.QuerySet:
    """What Run.read_for_start reads."""
    fields = ("status", "attempts", "queued_at", "job_type", "job_type__max_concurrency")
    return Run.objects.filter(pk=pk).select_related("job_type").only(*fields).order_by()


@functools.cache
def _startable_unlimited() -> models.QuerySet:
    """The runs that may start and whose job type has no max_concurrency, which
    Run.mark_started filters by id. Built once: building its subquery again was a
    third of the Python a start costs (never evaluated here, so nothing is cached
    but the query)."""
    unlimited = JobType.objects.filter(max_concurrency__isnull=True).values("pk")
    return Run.objects.filter(status__in=Run.STARTABLE, job_type_id__in=unlimited)


def latest_revision(job_type_id: int) -> Subquery:
    """The id of a job type's latest revision, as a subquery: a run records the
    revision it runs (`Run.job_type_revision`) in its own INSERT."""
    return Subquery(_revisions(job_type_id).values("history_id")[:1])


def latest_revision_id(job_type_id: int) -> int | None:
    """The id of a job type's latest revision, read now: for many runs of one job
    type written at once (a bulk trigger), one query instead of a subquery per row,
    which Django builds and compiles run by run (most of a 1,000-run INSERT's time)."""
    return _revisions(job_type_id).values_list("history_id", flat=True).first()


def _keep_steps(sender, instance, history_instance, **kwargs) -> None:
    # A job type's revision holds its steps as they are when it is recorded
    # (the save service records it once the steps are written).
    if isinstance(instance, JobType):
        history_instance.steps = instance.step_definitions()


pre_create_historical_record.connect(_keep_steps, dispatch_uid="jobs.revision_steps")
# The admin saves and deletes workflows as the proxy model: its signals name it, not JobType.
models.signals.post_save.connect(JOB_TYPE_HISTORY.post_save, sender=Workflow, weak=False)
models.signals.post_delete.connect(JOB_TYPE_HISTORY.post_delete, sender=Workflow, weak=False)


class Secret(models.Model):
    """A named value that job types use as `{{ secrets.NAME }}` (jobs/core/secrets.py).

    Its value is stored encrypted and is never read back by anyone: only the
    workers decrypt it, at the moment a run or a webhook call uses it.
    """

    name = models.CharField(
        max_length=100,
        unique=True,
        validators=[RegexValidator(f"^{secrets.NAME_PATTERN}$", f"Give a name of {secrets.NAME_HELP}.")],
        help_text="Used as {{ secrets.NAME }} in job types: " + secrets.NAME_HELP + ".",
    )
    # A Fernet token. Not editable: no form, serializer or export sees it.
    encrypted_value = models.TextField(editable=False)
    description = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+", editable=False
    )
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+", editable=False
    )

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def set_value(self, value: str) -> None:
        """Encrypt `value` as this secret's new value (SecretsError without a key)."""
        self.encrypted_value = secrets.encrypt(value)

    @staticmethod
    def value_errors(value: object) -> list[str]:
        if not isinstance(value, str) or len(value) < secrets.MIN_VALUE_LENGTH:
            return [
                f"Give a value of at least {secrets.MIN_VALUE_LENGTH} characters: a shorter one would be masked "
                "out of every result and error that holds those characters."
            ]
        return []

    @classmethod
    def values_for(cls, names: set[str]) -> dict[str, str]:
        """The decrypted values of the secrets called `names` (for a worker about to use
        them); SecretsError naming those that do not exist (deleted since) or cannot be read."""
        if not names:
            return {}
        tokens = dict(cls.objects.filter(name__in=names).values_list("name", "encrypted_value"))
        missing = sorted(names - set(tokens))
        if missing:
            raise secrets.SecretsError(f"no secret called {', '.join(missing)} (deleted since the job type was saved)")
        return {name: secrets.decrypt(token) for name, token in tokens.items()}

    def users(self) -> list[str]:
        """The job types that refer to this secret, by name."""
        return [job_type.name for job_type in JobType.objects.all() if self.name in secret_names(job_type)]


def secret_names(job_type: JobType) -> set[str]:
    """The secrets a job type refers to, where they are resolved."""
    names = secrets.names_in(job_type.webhook_url)
    if job_type.kind == Kind.HTTP:
        names |= secrets.names_in(job_type.http)
    if job_type.kind == Kind.COMMAND and isinstance(job_type.command, dict):
        names |= secrets.names_in(job_type.command.get("env"))
    return names


def secret_reference_errors(job_type: JobType) -> dict[str, list[str]]:
    """What is wrong with a job type's `{{ secrets.NAME }}` references: unknown
    names, malformed ones, and references where nothing resolves them."""
    errors: dict[str, list[str]] = {}
    where = {"http": job_type.http, "command": job_type.command, "webhook_url": job_type.webhook_url}
    for field, value in where.items():
        for text in secrets.malformed_in(value):
            errors.setdefault(field, []).append(
                f"'{text}' is not a secret reference: write {{{{ secrets.NAME }}}}, NAME of {secrets.NAME_HELP}."
            )
    command = job_type.command if isinstance(job_type.command, dict) else {}
    if secrets.names_in(command.get("argv")):
        errors.setdefault("command", []).append(
            "argv: secrets are not put into argv (any local user can read a process's arguments): "
            'set them in "env", e.g. {"env": {"TOKEN": "{{ secrets.TOKEN }}"}}, and read the variable.'
        )
    headers = job_type.http.get("headers") if isinstance(job_type.http, dict) else None
    if isinstance(headers, dict) and secrets.names_in(list(headers)):
        errors.setdefault("http", []).append("headers: a secret goes in a header's value, not its name.")
    used = {
        "http": secrets.names_in(job_type.http) if job_type.kind == Kind.HTTP else set(),
        "command": secrets.names_in(command.get("env")) if job_type.kind == Kind.COMMAND else set(),
        "webhook_url": secrets.names_in(job_type.webhook_url),
    }
    known = set(Secret.objects.filter(name__in=set().union(*used.values())).values_list("name", flat=True))
    for field, names in used.items():
        for name in sorted(names - known):
            errors.setdefault(field, []).append(
                f"No secret called '{name}': create it first (POST /api/v1/secrets/ or the admin's Secrets page)."
            )
    return errors


class TriggerUrl(models.Model):
    """A URL with a random token of its own that anyone holding it may POST to,
    without an account, to run its job type (jobs/runs/trigger_urls.py).

    Only the token's SHA-256 is stored: the token is shown once, when the URL
    is created, and cannot be read back. `prefix` (its first characters) tells
    URLs apart in lists. A revoked URL answers 404 like one that never existed.
    """

    PREFIX_CHARS = 6

    job_type = models.ForeignKey(JobType, on_delete=models.CASCADE, related_name="trigger_urls")
    label = models.CharField(max_length=200, blank=True, help_text="What it is for, e.g. the CI job that calls it.")
    token_hash = models.CharField(max_length=64, unique=True, editable=False)
    prefix = models.CharField(max_length=PREFIX_CHARS, editable=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=django_timezone.now, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = "trigger URL"

    def __str__(self) -> str:
        return f"{self.job_type_id and self.job_type.name} {self.prefix}…"

    @property
    def is_revoked(self) -> bool:
        return self.revoked_at is not None

    def mark_revoked(self) -> bool:
        """Revoke it; whether this call did (False: it was revoked already)."""
        now = django_timezone.now()
        done = TriggerUrl.objects.filter(pk=self.pk, revoked_at__isnull=True).update(revoked_at=now)
        if done:
            self.revoked_at = now
        return bool(done)

    def mark_used(self) -> None:
        self.last_used_at = django_timezone.now()
        TriggerUrl.objects.filter(pk=self.pk).update(last_used_at=self.last_used_at)


class Backfill(models.Model):
    """The runs of a schedule's ticks in [start, end), created at once (`waiting`)
    and released `concurrency` at a time by the dispatcher
    (jobs/schedules/backfill.py). Ticks that had a run already are `skipped`."""

    # SET_NULL: the runs of a backfill whose schedule was deleted are still released.
    schedule = models.ForeignKey(Schedule, null=True, on_delete=models.SET_NULL, related_name="backfills")
    start = models.DateTimeField()
    end = models.DateTimeField()
    concurrency = models.PositiveIntegerField(validators=[MinValueValidator(1)])
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    total = models.PositiveIntegerField(default=0, help_text="Runs created.")
    skipped = models.PositiveIntegerField(default=0, help_text="Ticks that had a run already.")
    # Every run released (or cancelled): the dispatcher is done with it.
    released_all_at = models.DateTimeField(null=True, blank=True)
    cancelled_at = models.DateTimeField(null=True, blank=True)
    cancelled_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            # The dispatcher's "backfills with runs to release", every second.
            models.Index(
                fields=["created_at"],
                condition=Q(released_all_at__isnull=True, cancelled_at__isnull=True),
                name="backfill_releasing",
            )
        ]

    def __str__(self) -> str:
        return f"{self.schedule_id and self.schedule.name} {self.start:%Y-%m-%d %H:%M} to {self.end:%Y-%m-%d %H:%M}"

    def mark_cancelled(self, *, cancelled_by=None) -> bool:
        """Cancelled once: whether this call did it."""
        now = timezone.now()
        updated = Backfill.objects.filter(pk=self.pk, cancelled_at__isnull=True).update(
            cancelled_at=now, cancelled_by=cancelled_by
        )
        if updated:
            self.cancelled_at, self.cancelled_by = now, cancelled_by
        return bool(updated)

    def mark_released_all(self) -> bool:
        updated = Backfill.objects.filter(pk=self.pk, released_all_at__isnull=True).update(
            released_all_at=timezone.now()
        )
        return bool(updated)
