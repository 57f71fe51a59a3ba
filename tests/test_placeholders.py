import pytest

from jobs.core.placeholders import PlaceholderError, resolve

PARAMS = {"day": "mon", "limits": {"rows": 10}}
RESULTS = {"extract": {"rows": [{"id": 7}, {"id": 8}], "count": 2}, "flag": True}


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{{ params.day }}", "mon"),
        ("{{params.limits}}", {"rows": 10}),
        ("{{ params.limits.rows }}", 10),
        ("{{ params }}", PARAMS),
        ("{{ steps.extract.result }}", RESULTS["extract"]),
        ("{{ steps.extract.result.count }}", 2),
        ("{{ steps.extract.result.rows.1.id }}", 8),
        ("{{ steps.flag.result }}", True),
        ("day={{ params.day }}, rows={{ steps.extract.result.count }}", "day=mon, rows=2"),
        ("{{ params.day }}{{ steps.extract.result.count }}", "mon2"),
        ("first: {{ steps.extract.result.rows.0 }}", 'first: {"id": 7}'),
        ("no placeholder", "no placeholder"),
        ({"nested": ["{{ params.day }}", 3, None]}, {"nested": ["mon", 3, None]}),
    ],
)
def test_it_resolves_exact_placeholders_to_json_and_embedded_ones_to_text(template, expected):
    assert resolve(template, params=PARAMS, results=RESULTS) == expected


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("{{ params.month }}", "{{ params.month }}: params has no 'month'"),
        (
            "{{ steps.extract.result.rows.5 }}",
            "{{ steps.extract.result.rows.5 }}: the result of 'extract' has no 'rows.5'",
        ),
        ("{{ steps.load.result }}", "{{ steps.load.result }}: step 'load' has no result yet"),
        ("x {{ nonsense }}", "'{{ nonsense }}' is not a placeholder Jobsite knows"),
    ],
)
def test_it_says_which_placeholder_cannot_be_resolved(template, message):
    with pytest.raises(PlaceholderError) as error:
        resolve(template, params=PARAMS, results=RESULTS)
    assert str(error.value).startswith(message)
