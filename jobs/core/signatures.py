"""How a webhook call is signed with its job type's `webhook_secret`.

Two signatures go with every call (docs/security.md, "Webhook signatures"):

- `X-Jobsite-Signature: sha256=<hex HMAC-SHA256 of the body>`, keyed with the
  secret's UTF-8 bytes, as before, for existing receivers;
- the Standard Webhooks headers (https://www.standardwebhooks.com/):
  `webhook-id` (the same on every send of one notification), `webhook-timestamp`
  (Unix seconds of this send) and `webhook-signature: v1,<base64 HMAC-SHA256 of
  "id.timestamp.body">`. Signing the timestamp lets a receiver refuse a replay.

The Standard Webhooks key (`signing_key`): a secret given as `whsec_<base64>`
is read as the spec's libraries read it, base64 of the key; any other secret is
its own UTF-8 bytes, which a receiver hands those libraries as
`whsec_` + base64 of the secret (`standard_secret`).
"""

import base64
import binascii
import hashlib
import hmac

STANDARD_PREFIX = "whsec_"
# The spec asks for keys of 24 to 64 bytes.
STANDARD_KEY_BYTES = (24, 64)


def legacy_signature(secret: str, body: bytes) -> str:
    """The X-Jobsite-Signature header value for `body`."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _decode_standard(secret: str) -> bytes:
    encoded = secret[len(STANDARD_PREFIX) :]
    return base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)


def standard_secret_error(secret: str) -> str | None:
    """What is wrong with a `whsec_…` secret; None for a good one or any other secret."""
    if not secret.startswith(STANDARD_PREFIX):
        return None
    try:
        key = _decode_standard(secret)
    except (binascii.Error, ValueError):
        return f"A secret starting with '{STANDARD_PREFIX}' must be followed by base64 (Standard Webhooks' format)."
    low, high = STANDARD_KEY_BYTES
    if not low <= len(key) <= high:
        return f"A '{STANDARD_PREFIX}' secret must hold a key of {low} to {high} bytes, not {len(key)}."
    return None


def _is_standard(secret: str) -> bool:
    # A `whsec_` secret saved before it was checked, and not valid, is taken as plain text.
    return secret.startswith(STANDARD_PREFIX) and standard_secret_error(secret) is None


def signing_key(secret: str) -> bytes:
    """The HMAC key of the Standard Webhooks signature for a job type's `webhook_secret`."""
    return _decode_standard(secret) if _is_standard(secret) else secret.encode()


def standard_secret(secret: str) -> str:
    """The `whsec_…` form of `secret`, to give a Standard Webhooks library."""
    return secret if _is_standard(secret) else STANDARD_PREFIX + base64.b64encode(secret.encode()).decode()


def standard_signature(secret: str, *, webhook_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` header value: `v1,<base64 HMAC-SHA256 of "id.timestamp.body">`."""
    signed = f"{webhook_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(signing_key(secret), signed, hashlib.sha256).digest()).decode()
