"""Deadlines: runs still not ended at their job type's deadline, and schedule
ticks whose run did not succeed in time. Checked by the dispatcher every second.

- A run gets `deadline_at` when it is created (jobs/runs/trigger.py, the
  dispatcher's planning): its job type's `deadline_seconds` after it was
  triggered, or after it was due for a run-later or a schedule's tick. Past it,
  and neither ended nor found late yet, the run is claimed: `late_at` is set in
  the claiming transaction, and once that commits a `run.late` alert is sent.
- A schedule with `must_succeed_within_seconds` watches one tick at a time
  (`watch_tick`, due at `watch_due_at`). When that time comes, a tick whose run
  has not succeeded by then (missed, failed, still running) gets a
  `schedule.late` alert; the watch moves on to the next tick in the same
  transaction. Ticks that went by while nothing dispatched are not each told:
  the watch moves on to the first tick whose time is still running.

Claims lock their rows skipping those another dispatcher holds (PostgreSQL) or
run in SQLite's IMMEDIATE transaction, and their UPDATEs are conditional, so
with several dispatchers each late run and each tick is claimed, and told, once.
Both queries read partial indexes holding only what may become late.

An alert is one email to the job type's recipients (and a run's own) and one
signed webhook call, whatever `notify_on` says, sent by the `jobsite.notify_late`
task. Its delivery id (`run.late.<run id>`, `schedule.late.<schedule id>.<tick>`)
is the same on every send; a channel that failed is tried again with the
notifications' backoff, one that went out is not sent again. An alert whose
task could not be queued (broker down at that moment) is lost: the mark stays.
See docs/guide.md, "Deadlines".
"""

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.db import transaction
from django.db.models import QuerySet
from django.template.loader import render_to_string
from django.urls import reverse

from jobs import notifications
from jobs.core.claims import claim
from jobs.core.kinds import clean_emails
from jobs.models import JobType, Run, Schedule
from jobsite.celery import app

logger = logging.getLogger(__name__)

LATE_TASK = "jobsite.notify_late"
RUN_LATE = "run.late"
SCHEDULE_LATE = "schedule.late"
BATCH_SIZE = 500


# --- Finding what is late (the dispatcher) -------------------------------------------


def deadlines_check(now: datetime) -> tuple[int, int]:
    """Mark the runs now late and check the ticks now due, batch by batch, and
    queue an alert for each; how many late runs and late ticks."""
    late_runs = late_ticks = 0
    while batch := runs_mark_late(now):
        alerts_enqueue(RUN_LATE, [{"run_id": str(run_id)} for run_id in batch])
        late_runs += len(batch)
        if len(batch) < BATCH_SIZE:
            break
    while (batch := schedule_ticks_check(now)) is not None:
        alerts_enqueue(SCHEDULE_LATE, batch)
        late_ticks += len(batch)
    return late_runs, late_ticks


def runs_due(now: datetime) -> QuerySet:
    """The runs past their deadline, neither ended nor found late yet, oldest deadline first:
    the partial index run_deadline_due holds just the runs that may become late."""
    return Run.objects.filter(deadline_at__lte=now, late_at__isnull=True, finished_at__isnull=True).order_by(
        "deadline_at"
    )


def ticks_due(now: datetime) -> QuerySet:
    """The schedules whose watched tick's time to succeed is over (partial index schedule_watch_due)."""
    return Schedule.objects.filter(watch_due_at__lte=now).order_by("watch_due_at")


def runs_mark_late(now: datetime, *, limit: int = BATCH_SIZE) -> list:
    """Claim up to `limit` runs past their deadline, neither ended nor late yet,
    and set their `late_at`; their ids (each claimed by one caller only)."""
    due = runs_due(now)
    if not due.exists():  # the usual answer, without a write transaction
        return []
    with transaction.atomic():
        run_ids = list(claim(due).values_list("pk", flat=True)[:limit])
        if run_ids:
            Run.objects.filter(pk__in=run_ids, late_at__isnull=True).update(late_at=now)
    return run_ids


def schedule_ticks_check(now: datetime, *, limit: int = BATCH_SIZE) -> list[dict] | None:
    """Claim up to `limit` schedules whose watched tick's time to succeed is
    over, and move each watch on to its next tick. What to tell, one dict per
    tick that did not succeed in time; None when no schedule was due."""
    due = ticks_due(now)
    if not due.exists():
        return None
    timing = ("cron", "timezone", "interval_seconds", "start_at", "end_at", "created_at", "enabled")
    with transaction.atomic():
        fields = (*timing, "job_type_id", "must_succeed_within_seconds", "watch_tick", "watch_due_at")
        schedules = list(claim(due).only(*fields)[:limit])
        if not schedules:
            return None
        watched = {schedule.pk: schedule.watch_tick for schedule in schedules}
        tick_runs = Run.objects.filter(schedule_id__in=watched, schedule_tick__in=set(watched.values()))
        runs = {
            row["schedule_id"]: row
            for row in tick_runs.values("pk", "schedule_id", "schedule_tick", "status", "finished_at")
            if watched[row["schedule_id"]] == row["schedule_tick"]
        }
        late, moves = [], {}
        for schedule in schedules:
            run = runs.get(schedule.pk)
            succeeded = run and run["status"] == Run.Status.SUCCEEDED and run["finished_at"] <= schedule.watch_due_at
            # A disabled schedule has no ticks to miss; enabling it again watches anew (Schedule._watch).
            if schedule.enabled and not succeeded:
                late.append(
                    {
                        "schedule_id": schedule.pk,
                        "job_type_id": schedule.job_type_id,
                        "tick": schedule.watch_tick.isoformat(),
                        "due_at": schedule.watch_due_at.isoformat(),
                        "run_id": str(run["pk"]) if run else None,
                        "run_status": run["status"] if run else None,
                    }
                )
            following = due_at = None
            if schedule.enabled and schedule.must_succeed_within_seconds:
                within = timedelta(seconds=schedule.must_succeed_within_seconds)
                following = schedule.compute_next_run(max(schedule.watch_tick, now - within))
                due_at = following + within if following else None
            moves.setdefault((following, due_at), []).append(schedule.pk)
        # One UPDATE per distinct next watch: schedules on the same timing share it.
        for (following, due_at), pks in moves.items():
            Schedule.objects.filter(pk__in=pks).update(watch_tick=following, watch_due_at=due_at)
    return late


def alerts_enqueue(event: str, subjects: list[dict]) -> None:
    """Queue one alert task per subject; a broker that is down loses them (logged)."""
    for about in subjects:
        delivery_id = delivery_id_for(event, about)
        try:
            app.send_task(LATE_TASK, args=[event, about], task_id=delivery_id)
        except Exception:
            logger.warning("Could not queue the %s alert %s", event, delivery_id, exc_info=True)


def delivery_id_for(event: str, about: dict) -> str:
    if event == RUN_LATE:
        return f"{RUN_LATE}.{about['run_id']}"
    return f"{SCHEDULE_LATE}.{about['schedule_id']}.{about['tick']}"


# --- Telling (the jobsite.notify_late task) ------------------------------------------


@dataclass
class Alert:
    """What is said about a late run or tick, in the email and in the webhook's body."""

    event: str
    delivery_id: str
    job_type: JobType
    to: list[str]
    about: str  # the run's id, or the schedule's: the webhook's X-Jobsite-Delivery
    payload: dict[str, Any]
    context: dict[str, Any] = field(default_factory=dict)

    def email(self) -> EmailMultiAlternatives:
        context = {**self.context, "event": self.event, "job_type": self.job_type.name}
        subject = " ".join(render_to_string("emails/late_subject.txt", context).split())
        message = EmailMultiAlternatives(
            subject=subject,
            body=render_to_string("emails/late.txt", context),
            to=self.to,
            headers={
                "Message-ID": notifications.message_id(self.delivery_id),
                "X-Jobsite-Event": self.event,
                **({"X-Jobsite-Run": str(self.context["run"].pk)} if self.event == RUN_LATE else {}),
            },
        )
        message.attach_alternative(render_to_string("emails/late.html", context), "text/html")
        return message


def _run_alert(about: dict) -> Alert | None:
    run = Run.objects.select_related("job_type").filter(pk=about["run_id"]).first()
    if run is None:
        return None  # purged or deleted since
    url = settings.SITE_URL + run.get_absolute_url()
    payload = {
        "event": RUN_LATE,
        "run": {
            "id": str(run.pk),
            "job_type": run.job_type.name,
            "status": run.status,
            "trigger": run.trigger,
            "created_at": run.created_at,
            "scheduled_for": run.scheduled_for,
            "started_at": run.started_at,
            "deadline_at": run.deadline_at,
            "late_at": run.late_at,
            "attempts": run.attempts,
            "url": url,
        },
    }
    context = {"run": run, "url": url, "deadline_seconds": run.job_type.deadline_seconds}
    return Alert(
        RUN_LATE, delivery_id_for(RUN_LATE, about), run.job_type, notifications.recipients(run), str(run.pk), payload,
        context,
    )  # fmt: skip


def _schedule_alert(about: dict) -> Alert | None:
    job_type = JobType.objects.filter(pk=about["job_type_id"]).first()
    schedule = Schedule.objects.filter(pk=about["schedule_id"]).values("name", "must_succeed_within_seconds").first()
    if job_type is None or schedule is None:
        return None
    run_url = settings.SITE_URL + reverse("monitor:run", args=[about["run_id"]]) if about["run_id"] else None
    payload = {
        "event": SCHEDULE_LATE,
        "schedule": {
            "id": about["schedule_id"],
            "name": schedule["name"],
            "job_type": job_type.name,
            "tick": about["tick"],
            "must_succeed_within_seconds": schedule["must_succeed_within_seconds"],
            "due_at": about["due_at"],
            "url": settings.SITE_URL + reverse("monitor:schedules"),
        },
        "run": {"id": about["run_id"], "status": about["run_status"], "url": run_url} if about["run_id"] else None,
    }
    context = {"schedule": payload["schedule"], "run": payload["run"], "url": run_url or payload["schedule"]["url"]}
    return Alert(
        SCHEDULE_LATE, delivery_id_for(SCHEDULE_LATE, about), job_type, clean_emails(job_type.notify_emails),
        str(about["schedule_id"]), payload, context,
    )  # fmt: skip


@dataclass
class AlertResult:
    state: str  # sent | failed | retry | gone
    sent: list[str]
    retry_in: float | None = None


def alert_send(*, event: str, about: dict, sent: list[str], attempt: int) -> AlertResult:
    """One attempt at sending an alert through the channels not in `sent`."""
    alert = _run_alert(about) if event == RUN_LATE else _schedule_alert(about)
    if alert is None:
        return AlertResult("gone", sent)
    sent, failed = list(sent), {}
    channels = {"email": bool(alert.to), "webhook": bool(alert.job_type.webhook_url)}
    for channel in [name for name, wanted in channels.items() if wanted and name not in sent]:
        try:
            if channel == "email":
                try:
                    alert.email().send()
                except Exception as exc:  # smtplib's errors, refused or timed-out connections
                    raise notifications.DeliveryFailed(f"{type(exc).__name__}: {exc}") from None
            else:
                notifications.post_webhook(
                    alert.job_type, event=event, delivery_id=alert.delivery_id, about=alert.about, payload=alert.payload
                )
        except notifications.DeliveryFailed as exc:
            failed[channel] = str(exc)
        else:
            sent.append(channel)
    if not failed:
        return AlertResult("sent", sent)
    if attempt >= settings.JOBS_NOTIFY_MAX_ATTEMPTS:
        logger.warning("Gave up sending the %s alert %s after %d attempts: %s", event, alert.delivery_id, attempt,
                       failed)  # fmt: skip
        return AlertResult("failed", sent)
    delay = notifications.retry_delay(attempt)
    logger.info("Sending the %s alert %s failed (attempt %d), again in %s s: %s", event, alert.delivery_id, attempt,
                delay, failed)  # fmt: skip
    return AlertResult("retry", sent, retry_in=delay)
