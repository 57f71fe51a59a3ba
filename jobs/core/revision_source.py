"""Through what a definition is being changed ("api", "admin", "import",
"restore", …) and by whom, for the revision that change records
(jobs/models.py, `DefinitionHistory`).

A request's source follows from its path, its user is the request's; the
commands and services that write definitions name theirs with
`revision_source`.
"""

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any

API, ADMIN, IMPORT, RESTORE, MONITOR, DIRECTOR, CODE = (
    "api",
    "admin",
    "import",
    "restore",
    "monitor",
    "director",
    "code",
)

_current: ContextVar[str | None] = ContextVar("revision_source", default=None)
_user: ContextVar[Any] = ContextVar("revision_user", default=None)

# The first path segment of a request, and the source it stands for.
_BY_PATH = {"api": API, "admin": ADMIN, "monitor": MONITOR, "director": DIRECTOR}


@contextlib.contextmanager
def revision_source(source: str, *, user: Any = None) -> Iterator[None]:
    """Record the changes made inside the block as made through `source`, by
    `user` when given (else the request's user, if any)."""
    token, user_token = _current.set(source), _user.set(user)
    try:
        yield
    finally:
        _current.reset(token)
        _user.reset(user_token)


def current_user() -> Any:
    """The user `revision_source` named, or None."""
    return _user.get()


def current_source(path: str | None = None) -> str:
    """The source set by `revision_source`, else the one of a request's `path`, else CODE."""
    source = _current.get()
    if source is not None:
        return source
    if path:
        return _BY_PATH.get(path.strip("/").split("/", 1)[0], CODE)
    return CODE
