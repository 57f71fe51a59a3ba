"""Placeholders in workflow step params, resolved when the step is dispatched.

    {{ params }}                    the workflow run's params (the whole object)
    {{ params.KEY }}                one of them (optionally .path.into.it)
    {{ steps.NAME.result }}         the result of step NAME (optionally .path.into.it)

A string that is exactly one placeholder becomes that JSON value; placeholders
inside a longer string are interpolated as text (strings as they are, anything
else as JSON).
"""

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from django.conf import settings

from jobs.core.limits import is_truncated_result, json_text

# No braces inside: "{{ params.a }}{{ params.b }}" is two placeholders, not one from end to end.
PLACEHOLDER = re.compile(r"\{\{([^{}]*)\}\}")
_PARAMS = re.compile(r"params((?:\.[^.\s]+)*)")
_STEPS = re.compile(r"steps\.([A-Za-z0-9_-]+)\.result((?:\.[^.\s]+)*)")
SYNTAX_HELP = "use {{ params }}, {{ params.KEY }} or {{ steps.NAME.result }} (optionally .path.into.it)"


class PlaceholderError(Exception):
    pass


@dataclass(frozen=True)
class Reference:
    text: str  # the placeholder as written, for messages
    step: str | None  # None: the workflow run's params
    path: tuple[str, ...]


def parse(expression: str) -> Reference:
    """The reference in `{{ expression }}`, or PlaceholderError naming what is wrong."""
    inner = expression.strip()
    text = "{{ " + inner + " }}"
    if match := _PARAMS.fullmatch(inner):
        return Reference(text, None, _split(match.group(1)))
    if match := _STEPS.fullmatch(inner):
        return Reference(text, match.group(1), _split(match.group(2)))
    if inner.startswith("secrets."):
        # Params are shown to everyone who may see a run: a secret never goes into them.
        raise PlaceholderError(
            f"'{text}': secrets are not put into params; use them in an http job type's url, headers or body, "
            "a command's env, or a webhook url (jobs/core/secrets.py)."
        )
    raise PlaceholderError(f"'{text}' is not a placeholder Jobsite knows: {SYNTAX_HELP}.")


def _split(path: str) -> tuple[str, ...]:
    return tuple(part for part in path.split(".") if part)


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def references(value: Any) -> Iterator[Reference | PlaceholderError]:
    """Every placeholder in the strings of a JSON value, parsed (or the error it has)."""
    for string in _strings(value):
        for match in PLACEHOLDER.finditer(string):
            try:
                yield parse(match.group(1))
            except PlaceholderError as exc:
                yield exc


def _dig(value: Any, path: tuple[str, ...], what: str) -> Any:
    for depth, key in enumerate(path):
        if isinstance(value, dict) and key in value:
            value = value[key]
        elif isinstance(value, list) and key.isdigit() and int(key) < len(value):
            value = value[int(key)]
        else:
            raise PlaceholderError(f"{what} has no '{'.'.join(path[: depth + 1])}'")
    return value


def resolve(value: Any, *, params: dict, results: dict[str, Any]) -> Any:
    """`value` with its placeholders replaced, from the workflow run's params and
    the results of finished steps (by name). PlaceholderError says which one failed,
    or that what they put in is more than JOBS_PARAMS_MAX_BYTES: resolving stops
    there, before a few placeholders repeated many times build a huge value."""
    return _Resolver(params, results).resolve(value)


class _Resolver:
    def __init__(self, params: dict, results: dict[str, Any]):
        self.params = params
        self.results = results
        self.limit = settings.JOBS_PARAMS_MAX_BYTES
        self.added = 0  # bytes of JSON the placeholders have put in so far

    def resolve(self, value: Any) -> Any:
        if isinstance(value, dict):
            return {key: self.resolve(item) for key, item in value.items()}
        if isinstance(value, list):
            return [self.resolve(item) for item in value]
        if not isinstance(value, str):
            return value
        whole = PLACEHOLDER.fullmatch(value)
        if whole:
            found = self.lookup(whole.group(1))
            self.add(json_text(found))
            return found
        return PLACEHOLDER.sub(self.as_text, value)

    def as_text(self, match: re.Match) -> str:
        found = self.lookup(match.group(1))
        text = found if isinstance(found, str) else json.dumps(found)
        self.add(text)
        return text

    def add(self, text: str) -> None:
        # What a placeholder put in is at least this long in the params' JSON,
        # so once the sum is over the limit, the params would be too.
        self.added += len(text.encode())
        if self.added > self.limit:
            raise PlaceholderError(
                f"once resolved, the params would be more than {self.limit} bytes as JSON "
                "(JOBS_PARAMS_MAX_BYTES): pass large data by reference (a URL, a path, an id) instead"
            )

    def lookup(self, expression: str) -> Any:
        reference = parse(expression)
        try:
            if reference.step is None:
                return _dig(self.params, reference.path, "params")
            if reference.step not in self.results:
                raise PlaceholderError(f"step '{reference.step}' has no result yet")
            result = self.results[reference.step]
            if is_truncated_result(result):
                raise PlaceholderError(
                    f"the result of '{reference.step}' was {result['size']} bytes, more than JOBS_RESULT_MAX_BYTES, "
                    "so only a preview of it was kept and it cannot be passed on"
                )
            return _dig(result, reference.path, f"the result of '{reference.step}'")
        except PlaceholderError as exc:
            raise PlaceholderError(f"{reference.text}: {exc}") from None
