from jobs.core.params import check_schema, params_errors, params_with_defaults

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
