"""What is shown of values that may carry a credential (docs/security.md, "Credentials").

Two rules:

- A webhook call's outcome names only `scheme://host/…` (`redact_url`): it is
  stored so (jobs/notifications.py), and `Run.notification` redacts rows
  stored before that.
- Every read of a definition (the API, the admin, the pages, the exports)
  shows an `http` job type's credential-like header values, its URL's
  credentials and credential-like query values as `MASK`, and a webhook URL's
  credentials, path and every query value as `MASK` (`mask_http`,
  `mask_url`). The rest stays readable. An edit that sends `MASK` back keeps
  the stored value it stands for (`unmask_http`, `unmask_url`); the workers
  read the stored values.

A header or query parameter name is credential-like when, lower-cased, it is
one of `CREDENTIAL_NAMES` or contains one of `CREDENTIAL_WORDS`. A value that
is only `{{ secrets.NAME }}` references (a header's after a scheme word such as
`Bearer`) is shown as written: it names a secret and holds no credential.
"""

import re
from urllib.parse import SplitResult, unquote_plus, urlsplit

MASK = "********"
# `{{ secrets.NAME }}` (jobs/core/secrets.py): a reference, shown as it is, never a value.
SECRET_NAME_PATTERN = r"[A-Za-z_][A-Za-z0-9_]{0,99}"  # noqa: S105 -- a pattern of names, no password
SECRET_REFERENCE = re.compile(r"\{\{\s*secrets\.(" + SECRET_NAME_PATTERN + r")\s*\}\}")
_ONLY_REFERENCES = re.compile(rf"\s*(?:{SECRET_REFERENCE.pattern}\s*)+")
_SCHEME_AND_REFERENCES = re.compile(rf"\s*(?:[A-Za-z][A-Za-z0-9-]*\s+)?{_ONLY_REFERENCES.pattern}")

# Matched inside a name: "authorization", "x-api-key", "access_token", "set-cookie", ...
CREDENTIAL_WORDS = (
    "auth",
    "cookie",
    "credential",
    "key",
    "passw",
    "pwd",
    "secret",
    "session",
    "signature",
    "token",
)
# Too short to look for inside other names, so matched whole.
CREDENTIAL_NAMES = frozenset({"jwt", "pass", "pw", "sig"})

# A URL inside a text: up to the next space or quote, less the punctuation that ends a clause.
_URL_IN_TEXT = re.compile(r"""\b[a-z][a-z0-9+.-]*://[^\s'"<>]+?(?=[:;,.!?)\]]*(?:[\s'"<>]|$))""", re.IGNORECASE)


class MaskError(ValueError):
    """A value sent back holds `MASK` where there is no stored value to keep; `messages` say where."""

    def __init__(self, messages: list[str]):
        super().__init__("; ".join(messages))
        self.messages = messages


def _nothing_to_keep(what: str) -> str:
    return (
        f"{what} is {MASK}, the mask shown in place of a credential (in the API, the admin and exports), "
        "and there is no stored value for it to keep: give the real value."
    )


# --- Outcomes of webhook calls: scheme and host only -------------------------------------


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


# --- Definitions: credentials masked, the rest readable ---------------------------------------


def only_secret_references(text: object, *, scheme_word: bool = False) -> bool:
    """Whether `text` holds `{{ secrets.NAME }}` references and nothing else (but
    spaces, and, with `scheme_word`, one word before them as in 'Bearer {{
    secrets.T }}'): such a value says which secret is used and gives nothing away."""
    if not isinstance(text, str):
        return False
    # The word is followed by a space: "abc{{ secrets.T }}" may be half of a credential.
    pattern = _SCHEME_AND_REFERENCES if scheme_word else _ONLY_REFERENCES
    return pattern.fullmatch(text) is not None


def is_credential_name(name: str) -> bool:
    """Whether a header or query parameter called `name` holds a credential."""
    name = name.strip().lower()
    return name in CREDENTIAL_NAMES or any(word in name for word in CREDENTIAL_WORDS)


def _split(url: str) -> SplitResult | None:
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 -- raises ValueError on a malformed port
    except ValueError:
        return None
    return parts


def _pieces(query: str) -> list[tuple[str | None, str]]:
    """The `name=value` pieces of a query (or fragment), each with its decoded name (None: a bare value)."""
    if not query:
        return []
    return [(unquote_plus(piece.partition("=")[0]) if "=" in piece else None, piece) for piece in query.split("&")]


def _mask_query(query: str, *, every: bool) -> str:
    if not query:
        return query
    masked = []
    for name, piece in _pieces(query):
        if name is None:
            masked.append(MASK if every and piece else piece)
        elif only_secret_references(unquote_plus(piece.partition("=")[2])):
            masked.append(piece)
        elif every or is_credential_name(name):
            masked.append(f"{piece.partition('=')[0]}={MASK}")
        else:
            masked.append(piece)
    return "&".join(masked)


def mask_url(url: str, *, webhook: bool = False) -> str:
    """`url` with its credentials (`user:password@`, or a lone `token@`) and its
    credential-like query values shown as `MASK`; for a `webhook` URL, its path
    and every query value too, since a webhook's token is often in its path.
    Masking twice changes nothing."""
    if not isinstance(url, str) or not url:
        return url
    parts = _split(url)
    if parts is None:
        return MASK  # what cannot be read as a URL cannot be masked in part
    userinfo, at, hostport = parts.netloc.rpartition("@")
    netloc = parts.netloc
    if at:
        user, colon, _ = userinfo.partition(":")
        netloc = f"{user}:{MASK}@{hostport}" if colon else f"{MASK}@{hostport}"
    path = parts.path
    if webhook and path not in ("", "/"):
        path = f"/{MASK}"
    return parts._replace(
        netloc=netloc,
        path=path,
        query=_mask_query(parts.query, every=webhook),
        fragment=_mask_query(parts.fragment, every=webhook),
    ).geturl()


def mask_urls(text: str) -> str:
    """`text` with every URL in it masked (`mask_url`), e.g. in an error message."""
    return _URL_IN_TEXT.sub(lambda match: mask_url(match.group(0)), text)


def mask_headers(headers: dict) -> dict:
    """A copy of `headers` with the values of credential-like ones shown as `MASK`."""
    return {
        name: MASK
        if isinstance(name, str) and is_credential_name(name) and not only_secret_references(value, scheme_word=True)
        else value
        for name, value in headers.items()
    }


def mask_http(config: dict) -> dict:
    """A copy of an `http` job type's config with its URL and headers masked."""
    if not isinstance(config, dict):
        return config
    masked = dict(config)
    if isinstance(config.get("url"), str):
        masked["url"] = mask_url(config["url"])
    if isinstance(config.get("headers"), dict):
        masked["headers"] = mask_headers(config["headers"])
    return masked


# --- Edits that send the mask back --------------------------------------------------------------


def _unmask_query(query: str, stored: str, what: str, problems: list[str]) -> str:
    """`query` (or a fragment) with each masked value given the stored value of
    the same name: the n-th of that name for the n-th."""
    if MASK not in query:
        return query
    kept: dict[str | None, list[str]] = {}
    for name, piece in _pieces(stored):
        kept.setdefault(name, []).append(piece)
    seen: dict[str | None, int] = {}
    merged = []
    for name, piece in _pieces(query):
        index = seen[name] = seen.get(name, -1) + 1
        masked = piece == MASK if name is None else piece.partition("=")[2] == MASK
        if not masked:
            merged.append(piece)
        elif index < len(kept.get(name, [])):
            merged.append(kept[name][index])
        else:
            problems.append(_nothing_to_keep(f"{what} {name!r}" if name is not None else f"a {what}"))
            merged.append(piece)
    return "&".join(merged)


def unmask_url(url: str, stored: str, *, webhook: bool = False) -> str:
    """`url` as sent back, with each `MASK` that `mask_url(stored)` put there
    replaced by the stored value: the password (or lone user name), a query
    value of the same name, a webhook's path. What is not masked is taken as
    sent, so a new host or a new query value replaces the stored one.
    MaskError when a `MASK` has no stored value to stand for (a new job type,
    a parameter that was not there)."""
    if not isinstance(url, str) or MASK not in url:
        return url
    stored = stored if isinstance(stored, str) else ""
    if url == MASK:
        if stored:
            return stored
        raise MaskError([_nothing_to_keep("the URL")])
    parts, old = _split(url), _split(stored) or urlsplit("")
    if parts is None:
        return url  # not a URL: its own check says so
    problems: list[str] = []
    userinfo, at, hostport = parts.netloc.rpartition("@")
    netloc = parts.netloc
    if at and MASK in userinfo:
        old_userinfo, old_at, _ = old.netloc.rpartition("@")
        _, old_colon, old_password = old_userinfo.partition(":")
        user, colon, password = userinfo.partition(":")
        if not colon:  # a lone user name, often a token
            user = old_userinfo if old_at and not old_colon else None
        elif password == MASK:
            password = old_password if old_colon else None
        if user is None or password is None:
            problems.append(_nothing_to_keep("the password (before '@')"))
        else:
            netloc = f"{user}{colon}{password}@{hostport}"
    path = parts.path
    if webhook and path == f"/{MASK}":
        if old.path in ("", "/"):
            problems.append(_nothing_to_keep("the path"))
        else:
            path = old.path
    query = _unmask_query(parts.query, old.query, "query parameter", problems)
    fragment = _unmask_query(parts.fragment, old.fragment, "fragment parameter", problems)
    if problems:
        raise MaskError(problems)
    return parts._replace(netloc=netloc, path=path, query=query, fragment=fragment).geturl()


def unmask_headers(headers: dict, stored: dict) -> dict:
    """`headers` as sent back, each one whose value is `MASK` given its stored
    value (names compared case-insensitively, as HTTP does); one left out is
    removed. MaskError when a masked one was not stored."""
    if not isinstance(headers, dict):
        return headers
    kept = {name.lower(): value for name, value in stored.items() if isinstance(name, str)}
    problems, merged = [], {}
    for name, value in headers.items():
        if value == MASK:
            if isinstance(name, str) and name.lower() in kept:
                value = kept[name.lower()]
            else:
                problems.append(_nothing_to_keep(repr(name)))
        merged[name] = value
    if problems:
        raise MaskError(problems)
    return merged


def unmask_http(config: dict, stored: dict) -> dict:
    """An `http` config as sent back, with the masks in its `url` and `headers`
    replaced by the stored values (`unmask_url`, `unmask_headers`). MaskError
    naming every mask that has no stored value, as "url: ..." and "headers: ..."."""
    if not isinstance(config, dict):
        return config
    stored = stored if isinstance(stored, dict) else {}
    merged, problems = dict(config), []
    if "url" in config:
        try:
            merged["url"] = unmask_url(config["url"], stored.get("url"))
        except MaskError as exc:
            problems += [f"url: {message}" for message in exc.messages]
    if "headers" in config:
        stored_headers = stored.get("headers")
        try:
            merged["headers"] = unmask_headers(
                config["headers"], stored_headers if isinstance(stored_headers, dict) else {}
            )
        except MaskError as exc:
            problems += [f"headers: {message}" for message in exc.messages]
    if problems:
        raise MaskError(problems)
    return merged
