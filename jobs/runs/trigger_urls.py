"""Trigger URLs: a job type's URLs with random tokens, that anyone holding one
may POST a JSON body to, without an account, to run the job type with that
body as params (docs/guide.md#trigger-urls, docs/security.md#trigger-urls).

A token is `secrets.token_urlsafe(32)` (256 random bits), shown once when its
URL is created; only its SHA-256 is stored, so the database (or a backup of
it) gives no one a working URL. A run through a URL goes through `run_create`
like every other trigger, with trigger `url` and the URL it came through.
"""

import hashlib
import secrets
from typing import Any

from django.db import transaction

from jobs import audit
from jobs.core.errors import InvalidInput
from jobs.models import JobType, Run, TriggerUrl
from jobs.runs.trigger import run_create

# The longest Idempotency-Key taken: with its scope (trigger-url-<id>:) it fits a run's key.
IDEMPOTENCY_KEY_CHARS = 150


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def trigger_url_create(*, job_type: JobType, by: audit.Author, label: str = "") -> tuple[TriggerUrl, str]:
    """Make a trigger URL for `job_type`; returns it and its token, which
    exists nowhere else once the caller has shown it."""
    label_limit = TriggerUrl._meta.get_field("label").max_length
    if not isinstance(label, str) or len(label) > label_limit:
        raise InvalidInput({"label": [f"Give a label of at most {label_limit} characters."]})
    token = secrets.token_urlsafe(32)
    created_by = by.user if by.user is not None and by.user.is_authenticated else None
    with transaction.atomic():
        trigger_url = TriggerUrl.objects.create(
            job_type=job_type,
            label=label,
            token_hash=token_hash(token),
            prefix=token[: TriggerUrl.PREFIX_CHARS],
            created_by=created_by,
        )
        audit.log_note(job_type, by=by, message=f"Added trigger URL {trigger_url.prefix}… {by.via}.")
    return trigger_url, token


def trigger_url_revoke(*, trigger_url: TriggerUrl, by: audit.Author) -> TriggerUrl:
    """Revoke a trigger URL: from now on it answers 404. Revoking it again changes nothing."""
    with transaction.atomic():
        if trigger_url.mark_revoked():
            audit.log_note(trigger_url.job_type, by=by, message=f"Revoked trigger URL {trigger_url.prefix}… {by.via}.")
    return trigger_url


def trigger_url_for_token(token: str) -> TriggerUrl | None:
    """The live trigger URL of `token`; None for a token that is unknown or revoked."""
    return (
        TriggerUrl.objects.select_related("job_type")
        .filter(token_hash=token_hash(token), revoked_at__isnull=True)
        .first()
    )


def trigger_url_run(*, trigger_url: TriggerUrl, params: Any, idempotency_key: str | None = None) -> tuple[Run, bool]:
    """Run the trigger URL's job type with `params` (the POSTed body), as
    `run_create` does (same checks, same idempotency, with keys of this URL's
    own). Returns the run and whether it was created (False: the key's first run)."""
    if idempotency_key is not None:
        # Scoped to the URL: its holder cannot reach runs started through the API or
        # another URL by guessing their keys (the run's own key shows the scope).
        if len(idempotency_key) > IDEMPOTENCY_KEY_CHARS:
            raise InvalidInput({"Idempotency-Key": [f"Give a key of at most {IDEMPOTENCY_KEY_CHARS} characters."]})
        idempotency_key = f"trigger-url-{trigger_url.pk}:{idempotency_key}"
    run, created = run_create(
        job_type=trigger_url.job_type,
        params=params,
        trigger=Run.Trigger.URL,
        trigger_url=trigger_url,
        idempotency_key=idempotency_key,
    )
    trigger_url.mark_used()
    return run, created
