"""How a URL that may carry a secret is shown: `scheme://host/…`; and which
HTTP header names carry credentials (`is_credential_header`).

A webhook URL's credentials, path or query may hold a token, and a run's
notification outcome is read by anyone who may see the run. So the outcome is
stored with its URLs redacted (jobs/notifications.py), and `Run.notification`
redacts rows stored before that; every display reads one of those two.
"""

import re
from urllib.parse import urlsplit

# A URL inside a text: up to the next space or quote, less the punctuation that ends a clause.
_URL_IN_TEXT = re.compile(r"""\b[a-z][a-z0-9+.-]*://[^\s'"<>]+?(?=[:;,.!?)\]]*(?:[\s'"<>]|$))""", re.IGNORECASE)


def redact_url(url: str) -> str:
    """`url` without its credentials, port, path, query or fragment: `scheme://host/…`."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
    except ValueError:  # a malformed authority ("http://[oops/")
        host = ""
    if not host:
        return "…"  # nothing of what cannot be read as a URL is shown
    if ":" in host:  # IPv6
        host = f"[{host}]"
    return f"{parts.scheme}://{host}/…"


def redact_urls(text: str) -> str:
    """`text` with every URL in it redacted (`redact_url`); redacting twice changes nothing."""
    return _URL_IN_TEXT.sub(lambda match: redact_url(match.group(0)), text)


# Header names that carry credentials by their standard...
CREDENTIAL_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie", "set-cookie"})
# ...and the words that mark a service's own ("X-Api-Key", "X-Auth-Token",
# "Private-Token", "X-Amz-Security-Token", "X-Hub-Signature"). Erring on the
# side of a credential: a header taken for one by mistake is only left out of
# a redirect to another origin, or masked where it is shown.
CREDENTIAL_WORDS = (
    "auth", "token", "secret", "password", "passwd", "key", "session", "cookie", "credential", "signature",
)  # fmt: skip


def is_credential_header(name: str) -> bool:
    """Whether an HTTP header of this name may carry a credential (case-insensitive)."""
    name = name.lower()
    return name in CREDENTIAL_HEADERS or any(word in name for word in CREDENTIAL_WORDS)
