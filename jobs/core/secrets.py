"""Named secrets: their encryption at rest, `{{ secrets.NAME }}` references, and masking.

A secret's value is stored as a Fernet token (AES-128-CBC with HMAC-SHA256,
cryptography's `Fernet`) made with the first of the keys in
`JOBS_SECRETS_KEYS`; any of the keys decrypts, so a new key is put first, the
tokens are made again with it (`manage.py rotate_secrets`), and the old key is
then dropped (docs/security.md, "Secrets").

Job types refer to secrets by name, `{{ secrets.NAME }}`, in an `http` job
type's URL, header values and body, in a `command`'s `env` values, and in a
webhook URL. The reference is what is stored, shown and exported; the value
is put in on the worker just before the request or the command
(`substitute`), and every value put in is masked out of what the run or the
notification reports (`mask`). The other `{{ … }}` placeholders (workflow step
params, jobs/core/placeholders.py) never resolve secrets: params are shown to
everyone who may see a run.
"""

import json
import re
from collections.abc import Iterable, Iterator
from typing import Any
from urllib.parse import quote, quote_plus

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings

from jobs.core.redaction import MASK, SECRET_NAME_PATTERN, SECRET_REFERENCE

# Names as environment variables have them, so that they read the same everywhere.
NAME_PATTERN = SECRET_NAME_PATTERN
NAME = re.compile(NAME_PATTERN)
NAME_HELP = "letters, digits and underscores, not starting with a digit, at most 100 characters (e.g. API_TOKEN)"
REFERENCE = SECRET_REFERENCE
# Anything that looks meant as a secret reference, to name a malformed one (a dash, a space...).
_LOOSE_REFERENCE = re.compile(r"\{\{\s*secrets\.([^{}]*?)\s*\}\}")
# A value this short would be masked out of every word of every result.
MIN_VALUE_LENGTH = 4
KEYS_SETTING = "JOBS_SECRETS_KEYS"
KEY_HELP = 'make one with: python3 -c "from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())"'


class SecretsError(Exception):
    """A secret cannot be encrypted or decrypted: no key, or the key that made it is gone."""


def parse_keys(text: str) -> list[str]:
    """The Fernet keys in a comma-separated setting; ValueError naming the bad one."""
    keys = [part.strip() for part in text.split(",") if part.strip()]
    for position, key in enumerate(keys, start=1):
        try:
            Fernet(key)
        except (ValueError, TypeError):
            raise ValueError(
                f"key {position} is not a Fernet key (32 bytes in url-safe base64, 44 characters): {KEY_HELP}"
            ) from None
    return keys


def _fernet() -> MultiFernet:
    keys = getattr(settings, KEYS_SETTING, [])
    if not keys:
        raise SecretsError(f"{KEYS_SETTING} is not set on this process, so secrets cannot be used: {KEY_HELP}")
    return MultiFernet([Fernet(key) for key in keys])


def encrypt(value: str) -> str:
    return _fernet().encrypt(value.encode()).decode()


def decrypt(token: str) -> str:
    try:
        return _fernet().decrypt(token.encode()).decode()
    except InvalidToken:
        raise SecretsError(
            f"a secret was encrypted with a key that is not in {KEYS_SETTING} any more: "
            "put the old key back (after the new one) and run manage.py rotate_secrets"
        ) from None


def rotate(token: str) -> str:
    """`token` encrypted again with the first key (MultiFernet.rotate)."""
    try:
        return _fernet().rotate(token.encode()).decode()
    except InvalidToken:
        raise SecretsError(
            f"a secret was encrypted with a key that is not in {KEYS_SETTING}: put that key back and run it again"
        ) from None


# --- References ---------------------------------------------------------------------------


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(key)
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def names_in(value: Any) -> set[str]:
    """The names of the secrets that the strings of a JSON value refer to."""
    return {match.group(1) for text in _strings(value) for match in REFERENCE.finditer(text)}


def malformed_in(value: Any) -> list[str]:
    """References to secrets that are not written as `{{ secrets.NAME }}` with a valid NAME."""
    return [
        match.group(0)
        for text in _strings(value)
        for match in _LOOSE_REFERENCE.finditer(text)
        if not NAME.fullmatch(match.group(1))
    ]


def substitute(value: Any, values: dict[str, str]) -> Any:
    """`value` with each `{{ secrets.NAME }}` in its strings replaced by `values[NAME]`
    (object keys are left as they are)."""
    if isinstance(value, str):
        return REFERENCE.sub(lambda match: values[match.group(1)], value)
    if isinstance(value, dict):
        return {key: substitute(item, values) for key, item in value.items()}
    if isinstance(value, list):
        return [substitute(item, values) for item in value]
    return value


# --- Masking what a run or a notification reports ----------------------------------------------


def _forms(values: Iterable[str]) -> list[str]:
    """Each value as it may appear in a report: as it is, percent-encoded (in a
    URL), and escaped as in JSON text; longest first, so that a value holding
    another is masked whole."""
    forms = set()
    for value in values:
        if not value:
            continue
        forms |= {
            value,
            quote(value, safe=""),
            quote_plus(value, safe=""),
            # As an HTTP client leaves it in a URL's path or query: RFC 3986's sub-delims kept.
            quote(value, safe="!$&'()*+,;=:@/?~"),
            json.dumps(value)[1:-1],
            json.dumps(value, ensure_ascii=False)[1:-1],
        }
    return sorted(forms, key=len, reverse=True)


class Masker:
    """Replaces the given secret values with `MASK` in texts and JSON values."""

    def __init__(self, values: Iterable[str]):
        forms = _forms(values)
        self._pattern = re.compile("|".join(map(re.escape, forms))) if forms else None

    def text(self, text: str) -> str:
        return self._pattern.sub(MASK, text) if self._pattern and isinstance(text, str) else text

    def __call__(self, value: Any) -> Any:
        if self._pattern is None:
            return value
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {self(key): self(item) for key, item in value.items()}
        if isinstance(value, (list, tuple)):
            return [self(item) for item in value]
        return value

    def reveals(self, text: str) -> bool:
        return bool(self._pattern and isinstance(text, str) and self._pattern.search(text))
