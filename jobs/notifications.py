"""Telling people that a run ended: one email and one signed webhook call.

When a run reaches a terminal state that its job type's `notify_on` asks to be
told about, the UPDATE that ends the run also marks its notification pending
(`Run.mark_*(notify=True)`), and the `jobsite.notify_run` task is sent once that
commits. The task (`run_notify`) takes the notification for one attempt with a
conditional UPDATE, sends what has not been sent yet, and records the outcome
once (`notified_at`). A redelivered or duplicated task finds it taken or done
and sends nothing; a failed attempt is tried again with backoff; a task lost on
the way is sent again by `notification_sweep`.

Delivery is at least once: a worker that dies between a send and its record
sends again on the next attempt. So each notification carries an id that is
the same on every send (`Notification.delivery_id`): the email's Message-ID and
the webhook's `webhook-id`, by which a receiver drops a repeat. Webhook calls
are signed as jobs/core/signatures.py says.
"""

import json
import logging
import time
from dataclasses import dataclass
from datetime import timedelta
from functools import cached_property
from typing import Any
from urllib.parse import urlsplit

import httpx
from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.core.mail.utils import DNS_NAME
from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction
from django.db.models import Q
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone

from jobs.core import net, secrets, signatures
from jobs.core.backoff import backoff
from jobs.core.errors import Conflict
from jobs.core.kinds import NotifyOn, NotifyStatus, clean_emails
from jobs.core.redaction import redact_url, redact_urls
from jobs.models import JobType, Run, RunLogLine, Secret
from jobsite.celery import app

logger = logging.getLogger(__name__)

NOTIFY_TASK = "jobsite.notify_run"
SIGNATURE_HEADER = "X-Jobsite-Signature"
# A pending notification untouched this long lost its task: the sweeper sends it again.
SWEEP_AFTER = timedelta(minutes=5)


# --- Who is told, when ---------------------------------------------------------


def notify_on_for(run: Run) -> str:
    """The `notify_on` rule that applies to `run`.

    A workflow's step (a run with a parent) is reported by its workflow run,
    never on its own. `parent_id` is read from the instance, without a query.
    """
    if run.parent_id is not None:
        return NotifyOn.NEVER
    return run.job_type.notify_on


def wants_notification(notify_on: str, status: str) -> bool:
    """Whether a run that ended with `status` is notified under `notify_on`.

    `failure` means failed (not cancelled: someone chose that); `completion`
    means any end.
    """
    if notify_on == NotifyOn.COMPLETION:
        return status in Run.TERMINAL_STATUSES
    if notify_on == NotifyOn.FAILURE:
        return status == Run.Status.FAILED
    return False


def recipients(run: Run) -> list[str]:
    """The job type's addresses and the run's own, each once."""
    return clean_emails([*run.job_type.notify_emails, *run.notify_emails])


# --- Sending the task ---------------------------------------------------------------


def notification_enqueue(run_id) -> None:
    """Send the notify task; if the broker is down, the sweeper sends it later."""
    try:
        app.send_task(NOTIFY_TASK, args=[str(run_id)], task_id=f"notify-{run_id}")
    except Exception:
        logger.warning("Could not queue the notification of run %s; the sweeper will", run_id, exc_info=True)


def notify_later(run_id) -> None:
    transaction.on_commit(lambda: notification_enqueue(run_id))


def notification_sweep(*, limit: int = 500) -> int:
    """Queue again the pending notifications whose task was lost; how many."""
    cutoff = timezone.now() - SWEEP_AFTER
    stale = Run.objects.filter(notify_status=NotifyStatus.PENDING).filter(
        Q(notify_locked_until__isnull=True, finished_at__lte=cutoff) | Q(notify_locked_until__lte=cutoff)
    )
    run_ids = list(stale.values_list("pk", flat=True)[:limit])
    for run_id in run_ids:
        notification_enqueue(run_id)
    if run_ids:
        logger.warning("Queued %d notifications again whose task was lost", len(run_ids))
    return len(run_ids)


# --- What is said -------------------------------------------------------------------


def excerpt(value: Any) -> tuple[str, bool]:
    """`value` as readable text, cut at JOBS_NOTIFY_EXCERPT_CHARS; and whether it was cut."""
    text = value if isinstance(value, str) else json.dumps(value, indent=2, ensure_ascii=False, cls=DjangoJSONEncoder)
    limit = settings.JOBS_NOTIFY_EXCERPT_CHARS
    if len(text) <= limit:
        return text, False
    return f"{text[:limit]}\n… ({len(text) - limit} more characters)", True


def _bounded(value: Any) -> tuple[Any, bool]:
    """`value` itself when its JSON fits the excerpt size, else its cut text."""
    text, cut = excerpt(value)
    return (text if cut else value), cut


def _cut_line(message: str, limit: int = 1000) -> str:
    """A log line as a notification quotes it: a long one (a traceback) is cut."""
    return message if len(message) <= limit else f"{message[:limit]}… ({len(message) - limit} more characters)"


def humane_duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


def message_id(delivery_id: str) -> str:
    """An email's Message-ID: the delivery id at the site's domain (SITE_URL)."""
    host = urlsplit(settings.SITE_URL).hostname or str(DNS_NAME)
    return f"<{delivery_id}@{f'[{host}]' if ':' in host else host}>"


@dataclass
class Notification:
    """What is said about one run, in the email and in the webhook's body."""

    run: Run
    url: str
    test: bool = False

    @property
    def event(self) -> str:
        return "test" if self.test else "run.finished"

    @property
    def delivery_id(self) -> str:
        """The same on every send of this notification (a retry, or a send again
        after a worker died before recording the first), so that a receiver can
        drop a repeat. A test notification is about a new sample run each time."""
        return f"{self.event}.{self.run.pk}"

    @property
    def message_id(self) -> str:
        return message_id(self.delivery_id)

    @cached_property
    def log_tail(self) -> list[RunLogLine]:
        """The last lines of a failed run's log (JOBS_NOTIFY_LOG_LINES), oldest first."""
        if self.run.status != Run.Status.FAILED or self.test or settings.JOBS_NOTIFY_LOG_LINES <= 0:
            return []
        return RunLogLine.tail(self.run.pk, settings.JOBS_NOTIFY_LOG_LINES)

    def payload(self) -> dict[str, Any]:
        run = self.run
        params, params_cut = _bounded(run.params)
        result, result_cut = _bounded(run.result)
        error, error_cut = excerpt(run.error)
        return {
            "event": self.event,
            "run": {
                "id": str(run.pk),
                "job_type": run.job_type.name,
                "status": run.status,
                "trigger": run.trigger,
                "requested_by": run.requested_by.get_username() if run.requested_by_id else None,
                "params": params,
                "params_truncated": params_cut,
                "result": result,
                "result_truncated": result_cut,
                "error": error,
                "error_truncated": error_cut,
                "created_at": run.created_at,
                "started_at": run.started_at,
                "finished_at": run.finished_at,
                "duration_seconds": run.duration.total_seconds() if run.duration else None,
                "attempts": run.attempts,
                "url": self.url,
                # A failed run's last log lines: what it said before it failed.
                "log_tail": [
                    {
                        "seq": line.seq,
                        "time": line.created_at,
                        "attempt": line.attempt,
                        "level": line.level,
                        "logger": line.logger,
                        "message": _cut_line(line.message),
                    }
                    for line in self.log_tail
                ],
            },
        }

    def context(self) -> dict[str, Any]:
        run = self.run
        return {
            "run": run,
            "job_type": run.job_type.name,
            "test": self.test,
            "url": self.url,
            "duration": humane_duration(run.duration.total_seconds() if run.duration else None),
            "params": excerpt(run.params)[0],
            "result": excerpt(run.result)[0] if run.status == Run.Status.SUCCEEDED and run.result is not None else "",
            "error": excerpt(run.error)[0],
            "log_tail": [
                f"{timezone.localtime(line.created_at):%H:%M:%S} {line.level} "
                f"{line.logger + ': ' if line.logger else ''}{_cut_line(line.message)}"
                for line in self.log_tail
            ],
        }

    def email(self, to: list[str]) -> EmailMultiAlternatives:
        context = self.context()
        subject = " ".join(render_to_string("emails/run_finished_subject.txt", context).split())
        message = EmailMultiAlternatives(
            subject=subject,
            body=render_to_string("emails/run_finished.txt", context),
            to=to,
            headers={"Message-ID": self.message_id, "X-Jobsite-Run": str(self.run.pk), "X-Jobsite-Event": self.event},
        )
        message.attach_alternative(render_to_string("emails/run_finished.html", context), "text/html")
        return message


def notification_for(run: Run) -> Notification:
    return Notification(run=run, url=settings.SITE_URL + run.get_absolute_url())


# --- How it is sent: one transport per channel -------------------------------------------


class DeliveryFailed(Exception):
    pass


class EmailTransport:
    channel = "email"

    def wanted(self, run: Run) -> bool:
        return bool(recipients(run))

    def notify(self, notification: Notification) -> str:
        to = recipients(notification.run)
        try:
            notification.email(to).send()
        except Exception as exc:  # smtplib's errors, refused or timed-out connections
            raise DeliveryFailed(f"{type(exc).__name__}: {exc}") from None
        return f"to {', '.join(to)}"


class WebhookTransport:
    channel = "webhook"

    def wanted(self, run: Run) -> bool:
        return bool(run.job_type.webhook_url)

    def notify(self, notification: Notification) -> str:
        return post_webhook(
            notification.run.job_type,
            event=notification.event,
            delivery_id=notification.delivery_id,
            about=str(notification.run.pk),
            payload=notification.payload(),
        )


def post_webhook(job_type: JobType, *, event: str, delivery_id: str, about: str, payload: dict[str, Any]) -> str:
    """POST `payload` to the job type's webhook, signed; what happened, or DeliveryFailed.
    `about`: the id of what it is about (X-Jobsite-Delivery), `delivery_id` the same on every send."""
    body = json.dumps(payload, cls=DjangoJSONEncoder, separators=(",", ":")).encode()
    webhook_id, timestamp = delivery_id, int(time.time())
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "Jobsite-Webhook",
        "X-Jobsite-Event": event,
        "X-Jobsite-Delivery": about,
        SIGNATURE_HEADER: signatures.legacy_signature(job_type.webhook_secret, body),
        # Standard Webhooks: the id is the same on every send, the timestamp is this send's.
        "webhook-id": webhook_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signatures.standard_signature(
            job_type.webhook_secret, webhook_id=webhook_id, timestamp=timestamp, body=body
        ),
    }
    # Its {{ secrets.NAME }} are put in now, on the worker (jobs/core/secrets.py).
    try:
        values = Secret.values_for(secrets.names_in(job_type.webhook_url))
    except secrets.SecretsError as exc:
        raise DeliveryFailed(f"Not sent: {exc}") from None
    url = secrets.substitute(job_type.webhook_url, values)
    masked = secrets.Masker(values.values()).text
    # What is said here is stored and shown to anyone who may see the run:
    # the URL's credentials, path and query (a token, often) are left out.
    try:
        with httpx.Client(timeout=settings.JOBS_WEBHOOK_TIMEOUT_SECONDS, follow_redirects=False) as client:
            answer = net.send_pinned(client, "POST", url, headers=headers, content=body, max_body_bytes=500)
    except net.RequestFailed as exc:
        raise DeliveryFailed(masked(redact_urls(str(exc)))) from None
    status = answer.response.status_code
    said = f"HTTP {status} from {masked(redact_url(url))}"
    if not 200 <= status < 300:
        text = answer.body.decode("utf-8", errors="replace")
        raise DeliveryFailed(said + (f": {masked(redact_urls(text))}" if text else ""))
    return said


TRANSPORTS = (EmailTransport(), WebhookTransport())


def deliver(notification: Notification, outcome: dict[str, dict], on_sent=None) -> dict[str, dict]:
    """Send through every wanted channel not already sent in `outcome`; the new outcome."""
    outcome = dict(outcome)
    for transport in TRANSPORTS:
        channel = transport.channel
        if not transport.wanted(notification.run) or outcome.get(channel, {}).get("status") == "sent":
            continue
        try:
            detail = transport.notify(notification)
        except DeliveryFailed as exc:
            outcome[channel] = {"status": "failed", "error": str(exc), "at": timezone.now()}
        else:
            outcome[channel] = {"status": "sent", "detail": detail, "at": timezone.now()}
            if on_sent:
                on_sent(outcome)
    return outcome


# --- The task's work ---------------------------------------------------------------------


@dataclass
class NotifyResult:
    state: str  # sent | failed | retry | busy | done
    retry_in: float | None = None


def retry_delay(attempt: int) -> float:
    return backoff(settings.JOBS_NOTIFY_RETRY_BACKOFF_SECONDS, attempt, settings.JOBS_NOTIFY_RETRY_BACKOFF_MAX_SECONDS)


def run_notify(*, run_id: str) -> NotifyResult:
    """One attempt at notifying `run_id`; says whether and when to try again."""
    attempt = Run(pk=run_id).claim_notification(lease_seconds=settings.JOBS_NOTIFY_LEASE_SECONDS)
    if attempt is None:
        row = Run.objects.filter(pk=run_id).values("notify_status", "notify_locked_until").first()
        if row is None or row["notify_status"] != NotifyStatus.PENDING:
            return NotifyResult("done")  # sent or failed already: a redelivered or duplicate task
        # Another attempt holds it. Come back when its hold ends, to take over
        # if its worker died; by then it has usually finished.
        wait = (row["notify_locked_until"] - timezone.now()).total_seconds() if row["notify_locked_until"] else 0
        return NotifyResult("busy", retry_in=max(wait, 0) + 1)
    run = Run.objects.select_related("job_type", "requested_by").get(pk=run_id)

    def record_sent(outcome):  # at once, so a later retry does not send it again
        run.save_notification_progress(attempt=attempt, outcome=outcome)

    outcome = deliver(notification_for(run), run.notify_outcome, on_sent=record_sent)
    if not outcome:
        outcome = {
            "error": "Nobody to notify: the job type has no notify_emails or webhook_url, "
            "and the run added no notify_emails."
        }
        run.mark_notified(attempt=attempt, status=NotifyStatus.FAILED, outcome=outcome)
        return NotifyResult("failed")
    failed = {channel: o["error"] for channel, o in outcome.items() if o["status"] != "sent"}
    if not failed:
        run.mark_notified(attempt=attempt, status=NotifyStatus.SENT, outcome=outcome)
        return NotifyResult("sent")
    if attempt >= settings.JOBS_NOTIFY_MAX_ATTEMPTS:
        run.mark_notified(attempt=attempt, status=NotifyStatus.FAILED, outcome=outcome)
        logger.warning("Gave up notifying run %s after %d attempts: %s", run_id, attempt, failed)
        return NotifyResult("failed")
    delay = retry_delay(attempt)
    run.save_notification_progress(attempt=attempt, outcome=outcome, retry_at=timezone.now() + timedelta(seconds=delay))
    logger.info("Notifying run %s failed (attempt %d), again in %s s: %s", run_id, attempt, delay, failed)
    return NotifyResult("retry", retry_in=delay)


def notification_send_test(*, job_type: JobType) -> dict[str, dict]:
    """Send a sample notification to the job type's recipients and webhook now,
    whatever its notify_on; what each channel did."""
    if not job_type.notify_emails and not job_type.webhook_url:
        raise Conflict(
            f"Job type '{job_type.name}' has no notify_emails and no webhook_url: there is nobody to send to."
        )
    now = timezone.now()
    sample = Run(
        job_type=job_type,
        status=Run.Status.SUCCEEDED,
        params=job_type.default_params,
        trigger=Run.Trigger.ADMIN,
        created_at=now - timedelta(seconds=3),
        started_at=now - timedelta(seconds=2),
        finished_at=now,
        attempts=1,
        result={"sample": True, "message": "A run's result appears here."},
    )
    url = settings.SITE_URL + reverse("admin:jobs_jobtype_change", args=[job_type.pk])
    return deliver(Notification(run=sample, url=url, test=True), {})
