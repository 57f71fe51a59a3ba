"""Size limits on what a run stores: params are refused when too large, results,
errors and tracebacks are cut, and always say that they were."""

import json
from typing import Any

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder


class LenientEncoder(DjangoJSONEncoder):
    """Sizes must be measurable for any value: what JSON cannot say counts as its text."""

    def default(self, o):
        try:
            return super().default(o)
        except TypeError:
            return str(o)


def json_text(value: Any) -> str:
    """`value` as the JSON the database stores (anything JSON cannot say, as text)."""
    return json.dumps(value, cls=LenientEncoder, ensure_ascii=False, separators=(",", ":"))


def params_size_error(params: Any) -> str | None:
    """Why `params` are too large to run with, or None."""
    limit = settings.JOBS_PARAMS_MAX_BYTES
    size = len(json_text(params).encode())
    if size <= limit:
        return None
    return (
        f"The params are {size} bytes as JSON; at most {limit} are allowed (JOBS_PARAMS_MAX_BYTES). "
        "Pass large data by reference (a URL, a path, an id) instead."
    )


# Deeper JSON input is refused (the API and forms alike): Python code that walks
# a value (placeholders, schema checks) recurses once per level, and no job
# needs this many.
MAX_JSON_DEPTH = 64


def json_depth(value: Any) -> int:
    """How many containers (objects, arrays) deep `value` goes."""
    depth, level = 0, [value]
    while containers := [item for item in level if isinstance(item, dict | list)]:
        depth += 1
        level = [child for item in containers for child in (item.values() if isinstance(item, dict) else item)]
    return depth


TRUNCATED_KEYS = {"truncated", "size", "limit", "preview"}


def is_truncated_result(value: Any) -> bool:
    """Whether `value` is what bounded_result stores in place of a result too large."""
    return isinstance(value, dict) and value.get("truncated") is True and set(value) == TRUNCATED_KEYS


def bounded_result(result: Any) -> Any:
    """The result to store: itself when its JSON fits JOBS_RESULT_MAX_BYTES, else
    {"truncated": true, "size": <its size in bytes>, "limit": L, "preview": <its first L bytes of JSON>}."""
    limit = settings.JOBS_RESULT_MAX_BYTES
    encoded = json_text(result).encode()
    if len(encoded) <= limit:
        return result
    preview = encoded[:limit].decode("utf-8", errors="ignore")
    return {"truncated": True, "size": len(encoded), "limit": limit, "preview": preview}


def bounded_error(text: str) -> str:
    """An error message cut to JOBS_ERROR_MAX_CHARS, keeping its beginning."""
    limit = settings.JOBS_ERROR_MAX_CHARS
    if len(text) <= limit:
        return text
    return f"{text[:limit]}\n[… {len(text) - limit} more characters cut (JOBS_ERROR_MAX_CHARS)]"


def bounded_traceback(text: str) -> str:
    """A traceback cut to JOBS_ERROR_MAX_CHARS, keeping its end: the innermost frames and the exception."""
    limit = settings.JOBS_ERROR_MAX_CHARS
    if len(text) <= limit:
        return text
    return f"[… {len(text) - limit} earlier characters cut (JOBS_ERROR_MAX_CHARS)]\n{text[-limit:]}"
