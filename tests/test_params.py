import pytest
from jsonschema import Draft202012Validator

from jobs.core.params import check_schema, params_errors, params_with_defaults

pytestmark = pytest.mark.postgres  # run on PostgreSQL too (see pyproject.toml)

SCHEMA = {
    "type": "object",
    "properties": {"count": {"type": "integer", "minimum": 1}, "tags": {"type": "array", "items": {"type": "string"}}},
    "required": ["count"],
    "additionalProperties": False,
}


def test_it_accepts_params_that_match_the_schema():
    assert params_errors(SCHEMA, {"count": 2, "tags": ["a"]}) == []


def test_it_names_where_params_break_the_schema():
    errors = params_errors(SCHEMA, {"count": "two", "tags": ["a", 3]})
    assert errors == ["count: 'two' is not of type 'integer'", "tags.1: 3 is not of type 'string'"]


def test_it_reports_missing_and_extra_keys():
    errors = params_errors(SCHEMA, {"colour": "red"})
    assert "'count' is a required property" in errors
    assert any("colour" in e and "not allowed" in e for e in errors)


def test_an_empty_schema_accepts_any_object_but_not_other_json():
    assert params_errors({}, {"anything": [1, 2]}) == []
    assert params_errors({}, [1, 2]) == ["Params must be a JSON object."]


def test_run_params_override_defaults():
    assert params_with_defaults({"a": 1, "b": 2}, {"b": 3}) == {"a": 1, "b": 3}
    assert params_with_defaults({"a": 1}, None) == {"a": 1}


def test_it_refuses_a_schema_that_is_not_json_schema():
    assert check_schema({"type": "object"}) is None
    assert "Not a valid JSON Schema" in check_schema({"type": "no-such-type"})
    assert check_schema(["not", "an", "object"]) == "Must be a JSON object (a JSON Schema)."


PATTERNED = {
    "type": "object",
    "properties": {"code": {"type": "string", "pattern": "^[A-Z]{3}-\\d+$"}},
    "patternProperties": {"^x_": {"type": "integer"}, "^y_": {"type": "string"}},
    "additionalProperties": False,
}


@pytest.mark.parametrize(
    "params",
    [
        {"code": "ABC-12", "x_a": 1, "y_b": "b"},
        {"code": "abc"},
        {"x_a": "one", "y_b": 2},
        {"stray": 1},
        {"stray": 1, "other": 2, "x_ok": 3},
    ],
)
def test_patterns_run_on_re2_say_what_jsonschema_says(params):
    stock = Draft202012Validator(PATTERNED)
    expected = sorted(
        (".".join(map(str, e.absolute_path)) + ": " if e.absolute_path else "") + e.message
        for e in stock.iter_errors(params)
    )
    assert sorted(params_errors(PATTERNED, params)) == expected


def test_additional_properties_that_is_a_schema_applies_to_keys_no_pattern_covers():
    schema = {"patternProperties": {"^n_": {"type": "integer"}}, "additionalProperties": {"type": "string"}}
    assert params_errors(schema, {"n_a": 1, "label": "x"}) == []
    assert params_errors(schema, {"n_a": "1", "label": 2}) == [
        "label: 2 is not of type 'string'",
        "n_a: '1' is not of type 'integer'",
    ]


def test_a_pattern_re2_cannot_run_is_refused_and_a_schema_saved_with_one_before_is_reported_not_run():
    # Drafts 3 and 4 do not mark patternProperties' keys as patterns: the walk over the schema does.
    schema = {"$schema": "http://json-schema.org/draft-04/schema#", "patternProperties": {"(?=a)": {}}}
    assert check_schema(schema).startswith("pattern '(?=a)' cannot be used: invalid perl operator: (?=.")
    [message] = params_errors(schema, {"a": 1})
    assert message.startswith("The job type's params_schema cannot be checked: pattern '(?=a)' cannot be used")
