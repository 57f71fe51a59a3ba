"""The OpenAPI schema says what the API answers: nullable fields typed as
nullable, and JSON (never an HTML page) for any id or name that is not found."""

import pytest
from drf_spectacular.generators import SchemaGenerator

from jobs.models import Run
from tests.factories import RunFactory


@pytest.fixture(scope="module")
def components() -> dict:
    return SchemaGenerator().get_schema(request=None, public=True)["components"]["schemas"]


@pytest.mark.parametrize("field", ["requested_by", "cancelled_by", "schedule"])
def test_a_runs_optional_relations_are_nullable_strings_in_the_schema(components, field):
    for serializer in ("Run", "RunDetail"):
        assert components[serializer]["properties"][field]["type"] == "string"
        assert components[serializer]["properties"][field]["nullable"] is True


def test_a_run_nobody_requested_answers_null_for_them(api):
    run = RunFactory(requested_by=None, schedule=None)
    body = api.get(f"/api/v1/runs/{run.pk}/").json()
    assert (body["requested_by"], body["cancelled_by"], body["schedule"]) == (None, None, None)


def test_the_two_status_choices_have_names_of_their_own(components):
    assert components["RunStatusEnum"]["enum"] == Run.Status.values
    # A run's status refers to it by name; a notification's status, another set of choices, is named apart.
    assert components["Run"]["properties"]["status"]["allOf"] == [{"$ref": "#/components/schemas/RunStatusEnum"}]


@pytest.mark.parametrize("url", ["/api/v1/job-types/no.such/", "/api/v1/runs/a.b/", "/api/v1/schedules/1.5/"])
def test_an_id_or_name_with_a_dot_gets_a_json_404(api, url):
    response = api.get(url)
    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert "detail" in response.json()
