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

from jobs.core.limits import is_truncated_result

PLACEHOLDER = re.compile(r"\{\{(.*?)\}\}")
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
    the results of finished steps (by name). PlaceholderError says which one failed."""
    if isinstance(value, dict):
        return {key: resolve(item, params=params, results=results) for key, item in value.items()}
    if isinstance(value, list):
        return [resolve(item, params=params, results=results) for item in value]
    if not isinstance(value, str):
        return value

    def lookup(expression: str) -> Any:
        reference = parse(expression)
        try:
            if reference.step is None:
                return _dig(params, reference.path, "params")
            if reference.step not in results:
                raise PlaceholderError(f"step '{reference.step}' has no result yet")
            if is_truncated_result(results[reference.step]):
                size = results[reference.step]["size"]
                raise PlaceholderError(
                    f"the result of '{reference.step}' was {size} bytes, more than JOBS_RESULT_MAX_BYTES, "
                    "so only a preview of it was kept and it cannot be passed on"
                )
            return _dig(results[reference.step], reference.path, f"the result of '{reference.step}'")
        except PlaceholderError as exc:
            raise PlaceholderError(f"{reference.text}: {exc}") from None

    whole = PLACEHOLDER.fullmatch(value)
    if whole:
        return lookup(whole.group(1))

    def as_text(match: re.Match) -> str:
        found = lookup(match.group(1))
        return found if isinstance(found, str) else json.dumps(found)

    return PLACEHOLDER.sub(as_text, value)
