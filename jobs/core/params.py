"""Run params: defaults applied, then checked against the job type's JSON Schema.

The schema's regular expressions (`pattern`, `patternProperties`) run on RE2,
which takes time linear in the text it reads. Python's `re` backtracks: a pattern
such as ^(a+)+$ against fifty characters would hold the web process, or the
dispatcher, for days. RE2 has no lookaround and no backreferences, so a schema
that uses them is refused when it is saved. See docs/security.md, "Bad input and limits".
"""

import json
from functools import cache, lru_cache
from typing import Any

import re2
from jsonschema import FormatChecker, ValidationError, validators
from jsonschema import exceptions as jsonschema_exceptions
from jsonschema.validators import validator_for

from jobs.core.limits import params_size_error

# jsonschema's own additionalProperties, the same in every draft.
_ADDITIONAL_PROPERTIES = validators.Draft202012Validator.VALIDATORS["additionalProperties"]
_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False  # a bad pattern is the schema author's to fix, told in the answer


@lru_cache(maxsize=256)
def _regex(pattern: str) -> Any:
    """`pattern` compiled by RE2, or the message saying why it cannot be."""
    try:
        return re2.compile(pattern, _RE2_OPTIONS)
    except re2.error as exc:
        reason = exc.args[0].decode(errors="replace") if exc.args and isinstance(exc.args[0], bytes) else str(exc)
        return (
            f"pattern {pattern!r} cannot be used: {reason}. Patterns are matched with RE2, which runs in time "
            "linear in the text and so has no lookaround and no backreferences."
        )


def _pattern(validator, pattern, instance, schema):
    if not validator.is_type(instance, "string"):
        return
    regex = _regex(pattern)
    if isinstance(regex, str):
        yield ValidationError(regex)
    elif not regex.search(instance):
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


def _pattern_properties(validator, patterns, instance, schema):
    if not validator.is_type(instance, "object"):
        return
    for pattern, subschema in patterns.items():
        regex = _regex(pattern)
        if isinstance(regex, str):
            yield ValidationError(regex)
            continue
        for key, value in instance.items():
            if regex.search(key):
                yield from validator.descend(value, subschema, path=key, schema_path=pattern)


def _additional_properties(validator, additional, instance, schema):
    """jsonschema's own rule, with the keys that patternProperties cover found by RE2."""
    if "patternProperties" not in schema or not validator.is_type(instance, "object"):
        yield from _ADDITIONAL_PROPERTIES(validator, additional, instance, schema)
        return
    patterns = sorted(schema["patternProperties"])
    regexes = [regex for regex in map(_regex, patterns) if not isinstance(regex, str)]
    properties = schema.get("properties", {})
    extras = sorted(
        key for key in instance if key not in properties and not any(regex.search(key) for regex in regexes)
    )
    if validator.is_type(additional, "object"):
        for extra in extras:
            yield from validator.descend(instance[extra], additional, path=extra)
    elif not additional and extras:
        verb = "does" if len(extras) == 1 else "do"
        listed = ", ".join(map(repr, extras))
        yield ValidationError(f"{listed} {verb} not match any of the regexes: {', '.join(map(repr, patterns))}")


_RE2_KEYWORDS = {
    "pattern": _pattern,
    "patternProperties": _pattern_properties,
    "additionalProperties": _additional_properties,
}


@cache
def _with_re2(base: type) -> type:
    """The validator class of a JSON Schema draft, with its patterns on RE2."""
    return validators.extend(base, {k: v for k, v in _RE2_KEYWORDS.items() if k in base.VALIDATORS})


def _checks_regex(instance: Any) -> bool:
    return not isinstance(instance, str) or not isinstance(_regex(instance), str)


# The schema of schemas says which strings are patterns ("format": "regex"):
# they must be patterns RE2 can run, not merely ones Python's `re` can.
_SCHEMA_FORMATS = FormatChecker()
_SCHEMA_FORMATS.checks("regex")(_checks_regex)


def _walk_problem(schema: Any) -> str | None:
    """What the checks against the schema of schemas leave out: the keys of
    patternProperties in drafts that do not mark them as patterns, and
    unevaluatedProperties, which matches patternProperties with Python's `re`
    inside jsonschema, where RE2 cannot be put (the two together are refused)."""
    seen = set()
    nodes = [schema]
    while nodes:
        node = nodes.pop()
        if isinstance(node, dict):
            patterns = node.get("patternProperties")
            for pattern in patterns if isinstance(patterns, dict) else ():
                if isinstance(regex := _regex(pattern), str):
                    return regex
            seen.update(key for key in ("patternProperties", "unevaluatedProperties") if key in node)
            nodes.extend(node.values())
        elif isinstance(node, list):
            nodes.extend(node)
    if len(seen) == 2:
        return (
            "Use additionalProperties rather than unevaluatedProperties in a schema with patternProperties: "
            "Jobsite cannot check that combination in bounded time."
        )
    return None


def check_schema(schema: Any) -> str | None:
    """The problem with a params schema, or None when it is a usable JSON Schema."""
    if not isinstance(schema, dict):
        return "Must be a JSON object (a JSON Schema)."
    try:
        validator_for(schema).check_schema(schema, format_checker=_SCHEMA_FORMATS)
    except jsonschema_exceptions.SchemaError as exc:
        if exc.validator == "format" and exc.validator_value == "regex" and isinstance(exc.instance, str):
            return str(_regex(exc.instance))
        return f"Not a valid JSON Schema: {exc.message}"
    return _walk_problem(schema)


def params_errors(schema: dict, params: Any) -> list[str]:
    """Every way `params` breaks `schema`, each naming where: "count: 'x' is not of type 'integer'";
    or that they are too large (JOBS_PARAMS_MAX_BYTES)."""
    if not isinstance(params, dict):
        return ["Params must be a JSON object."]
    too_large = params_size_error(params)
    if too_large:
        return [too_large]
    validator = _validator(json.dumps(schema, sort_keys=True))
    if isinstance(validator, str):
        return [validator]
    messages = []
    for error in sorted(validator.iter_errors(params), key=lambda e: list(e.absolute_path)):
        where = ".".join(str(part) for part in error.absolute_path)
        messages.append(f"{where}: {error.message}" if where else error.message)
    return messages


def params_with_defaults(defaults: dict, params: dict | None) -> dict:
    return {**(defaults or {}), **(params or {})}


@lru_cache(maxsize=256)
def _validator(schema_json: str) -> Any:
    """A compiled validator per schema (keyed by its JSON text, so an edited
    schema gets a new one): the dispatcher checks thousands of params a tick.
    For a schema saved before its patterns were checked as they are now, the
    message saying what to change in it."""
    schema = json.loads(schema_json)
    problem = _walk_problem(schema)
    if problem:
        return f"The job type's params_schema cannot be checked: {problem}"
    return _with_re2(validator_for(schema))(schema)
