"""Writing secrets: create, change, delete and re-encrypt, for the API, the
admin and `manage.py rotate_secrets` alike (docs/security.md, "Secrets").

A value goes in and is never given back: these services take it, encrypt it
(jobs/core/secrets.py) and record who changed what in the audit log, naming
the fields, never a value.
"""

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import DatabaseError, transaction

from jobs import audit
from jobs.core import secrets
from jobs.core.errors import Conflict, InvalidInput
from jobs.models import Secret


def _check(secret: Secret, value: str | None) -> None:
    errors: dict[str, list[str]] = {}
    try:
        secret.full_clean(exclude=["encrypted_value"])
    except ValidationError as exc:
        errors = exc.message_dict
    if value is not None and (problems := Secret.value_errors(value)):
        errors["value"] = problems
    if errors:
        raise InvalidInput(errors)
    if value is not None:
        try:
            secret.set_value(value)
        except secrets.SecretsError as exc:
            raise InvalidInput({"value": [str(exc)]}) from None


def secret_create(*, name: str, value: str, description: str = "", by: audit.Author, log: bool = True) -> Secret:
    """A new secret holding `value` encrypted. InvalidInput by field when a rule is broken.
    `log` False: the caller records the change itself (the admin does)."""
    secret = Secret(name=name, description=description, created_by=by.user, updated_by=by.user)
    _check(secret, value)
    with transaction.atomic():
        secret.save()
        if log:
            audit.log_addition(secret, by=by)
    return secret


def secret_update(
    *, secret: Secret, by: audit.Author, value: str | None = None, description: str | None = None, log: bool = True
) -> Secret:
    """Give `secret` a new value and/or description (None: keep it). Its name stays:
    job types refer to it by name."""
    changed = []
    if value is not None:
        changed.append("value")
    if description is not None and description != secret.description:
        secret.description = description
        changed.append("description")
    if not changed:
        return secret
    _check(secret, value)
    secret.updated_by = by.user
    with transaction.atomic():
        secret.save()
        if log:
            audit.log_fields_changed(secret, fields=changed, by=by)
    return secret


def secret_in_use(secret: Secret) -> str:
    """Why `secret` cannot be deleted (the job types using it), or ""."""
    users = secret.users()
    if not users:
        return ""
    return (
        f"Secret '{secret.name}' is used by job type {', '.join(users)}: "
        "take {{ secrets." + secret.name + " }} out of them first."
    )


def secret_delete(*, secret: Secret, by: audit.Author) -> None:
    """Delete `secret`; Conflict naming the job types that still use it."""
    if problem := secret_in_use(secret):
        raise Conflict(problem)
    with transaction.atomic():
        audit.log_deletion(secret, by=by)
        secret.delete()


def secrets_rotate() -> int:
    """Encrypt every secret again with the first key of JOBS_SECRETS_KEYS, so that
    the keys after it can be dropped; how many. SecretsError (nothing changed)
    if one was made with a key that is not there."""
    with transaction.atomic():
        rows = list(Secret.objects.select_for_update().only("pk", "encrypted_value"))
        for row in rows:
            row.encrypted_value = secrets.rotate(row.encrypted_value)
        Secret.objects.bulk_update(rows, ["encrypted_value"])
    return len(rows)


def secrets_key_problem() -> str | None:
    """What is wrong when secrets are stored but this process has no key to read them."""
    if settings.JOBS_SECRETS_KEYS:
        return None
    try:
        count = Secret.objects.count()
    except DatabaseError:  # not migrated yet: there is nothing to read
        return None
    if not count:
        return None
    return (
        f"JOBS_SECRETS_KEYS is not set, and the database holds {count} secret(s) that job types use: "
        "set it to the keys they were encrypted with, the same on the web and worker processes"
    )
