"""Run params: defaults applied, then checked against the job type's JSON Schema."""

import json
from functools import lru_cache
from typing import Any

from jsonschema import exceptions as jsonschema_exceptions
from jsonschema.validators import validator_for

from jobs.core.limits import params_size_error


def check_schema(schema: Any) -> str | None:
    """The problem with a params schema, or None when it is a usable JSON Schema."""
    if not isinstance(schema, dict):
        return "Must be a JSON object (a JSON Schema)."
    try:
        validator_for(schema).check_schema(schema)
    except jsonschema_exceptions.SchemaError as exc:
        return f"Not a valid JSON Schema: {exc.message}"
    return None


def params_errors(schema: dict, params: Any) -> list[str]:
    """Every way `params` breaks `schema`, each naming where: "count: 'x' is not of type 'integer'";
    or that they are too large (JOBS_PARAMS_MAX_BYTES)."""
    if not isinstance(params, dict):
        return ["Params must be a JSON object."]
    too_large = params_size_error(params)
    if too_large:
        return [too_large]
    validator = _validator(json.dumps(schema, sort_keys=True))
    messages = []
    for error in sorted(validator.iter_errors(params), key=lambda e: list(e.absolute_path)):
        where = ".".join(str(part) for part in error.absolute_path)
        messages.append(f"{where}: {error.message}" if where else error.message)
    return messages


def params_with_defaults(defaults: dict, params: dict | None) -> dict:
    return {**(defaults or {}), **(params or {})}


@lru_cache(maxsize=256)
def _validator(schema_json: str):
    """A compiled validator per schema (keyed by its JSON text, so an edited
    schema gets a new one): the dispatcher checks thousands of params a tick."""
    schema = json.loads(schema_json)
    return validator_for(schema)(schema)
