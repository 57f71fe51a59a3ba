"""`GET /api/v1/runs/{id}/logs/`: a run's lines in order, paged from `?after=`,
with the same permission as reading the run."""

import pytest
from django.utils import timezone
from drf_spectacular.generators import SchemaGenerator

from jobs.models import Run, RunLogLine
from tests.factories import RunFactory

pytestmark = pytest.mark.postgres  # run on PostgreSQL too (see pyproject.toml)


def add_lines(run: Run, seqs, attempt: int = 1) -> None:
    now = timezone.now()
    RunLogLine.objects.bulk_create(
        RunLogLine(run=run, seq=seq, attempt=attempt, created_at=now, level="WARNING", logger="app", message=f"m{seq}")
        for seq in seqs
    )


def test_it_lists_a_runs_lines_with_time_level_attempt_and_logger_and_counts_the_cut_ones(api):
    run = RunFactory(status=Run.Status.FAILED)
    add_lines(run, range(4, 7), attempt=2)
    body = api.get(f"/api/v1/runs/{run.pk}/logs/").json()
    assert body["lines_cut"] == 3
    assert body["next"] is None  # the run has ended: no more lines will come
    first = body["results"][0]
    assert set(first) == {"seq", "time", "attempt", "level", "logger", "message"}
    assert (first["seq"], first["attempt"], first["level"], first["logger"], first["message"]) == (
        4,
        2,
        "WARNING",
        "app",
        "m4",
    )
    assert [line["seq"] for line in body["results"]] == [4, 5, 6]


def test_a_client_follows_a_running_run_with_after_from_the_next_link(api):
    run = RunFactory(status=Run.Status.RUNNING)
    add_lines(run, range(1, 6))
    page = api.get(f"/api/v1/runs/{run.pk}/logs/", {"page_size": 2}).json()
    assert [line["seq"] for line in page["results"]] == [1, 2]
    page = api.get(page["next"]).json()
    assert [line["seq"] for line in page["results"]] == [3, 4]
    page = api.get(page["next"]).json()
    assert [line["seq"] for line in page["results"]] == [5]
    following = page["next"]
    assert "after=5" in following  # still running: more may come
    assert api.get(following).json()["results"] == []
    add_lines(run, [6])
    assert [line["message"] for line in api.get(following).json()["results"]] == ["m6"]


@pytest.mark.parametrize("query", [{"after": "x"}, {"after": "-1"}, {"page_size": "0"}])
def test_a_bad_after_or_page_size_is_a_400_naming_it(api, query):
    run = RunFactory()
    response = api.get(f"/api/v1/runs/{run.pk}/logs/", query)
    assert response.status_code == 400
    assert set(response.json()) == set(query)


def test_reading_a_runs_lines_needs_the_permission_to_read_the_run(api_as, viewer, django_user_model):
    run = RunFactory()
    add_lines(run, [1])
    assert api_as(viewer).get(f"/api/v1/runs/{run.pk}/logs/").status_code == 200
    outsider = django_user_model.objects.create_user("outsider", password="pw")
    assert api_as(outsider).get(f"/api/v1/runs/{run.pk}/logs/").status_code == 403
    assert api_as(None).get(f"/api/v1/runs/{run.pk}/logs/").status_code == 401


def test_an_unknown_run_has_no_lines_but_a_404(api):
    response = api.get("/api/v1/runs/3f1d3c5e-0000-4000-8000-000000000000/logs/")
    assert response.status_code == 404


def test_the_schema_documents_the_logs_route_and_its_lines(db):
    schema = SchemaGenerator().get_schema(request=None, public=True)
    operation = schema["paths"]["/api/v1/runs/{id}/logs/"]["get"]
    assert {parameter["name"] for parameter in operation["parameters"]} == {"id", "after", "page_size"}
    page = schema["components"]["schemas"]["RunLogPage"]["properties"]
    assert set(page) == {"lines_cut", "next", "results"}
    line = schema["components"]["schemas"]["RunLogLine"]["properties"]
    assert set(line) == {"seq", "time", "attempt", "level", "logger", "message"}
