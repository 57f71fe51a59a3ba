"""The queries the sweeper, the stuck check and max_concurrency's slots run
often are served by an index, on a run table where most runs have finished
(the pages' test, tests/monitor/test_queries.py, explains why and how)."""

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from jobs.models import Run
from jobs.runs import stuck, tracking
from jobs.schedules import dispatcher
from tests.monitor.test_queries import (
    explain,
    many_runs,  # noqa: F401 (the pages' fixture, registered here)
    reads_whole_run_table,
)

pytestmark = pytest.mark.postgres  # run on PostgreSQL too (see pyproject.toml)


def run_queries(action) -> list[str]:
    with CaptureQueriesContext(connection) as queries:
        action()
    return [q["sql"] for q in queries if '"jobs_run"' in q["sql"] and q["sql"].lstrip().upper().startswith("SELECT")]


def test_the_reliability_queries_are_served_by_an_index(many_runs):  # noqa: F811
    job_type = many_runs.job_type
    job_type.max_concurrency = 5
    job_type.save()
    queued = Run.objects.create(job_type=job_type, trigger="api", status="queued")
    Run.objects.create(job_type=job_type, trigger="api", status="pending", republish_after=timezone.now())
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    later = timezone.now() + timedelta(hours=1)
    queries = [
        *run_queries(lambda: tracking.run_started(run_id=str(queued.pk), worker="w")),
        *run_queries(lambda: dispatcher._republish_batch(timezone.now())),
        *run_queries(lambda: stuck.overdue_runs(later)),
    ]
    assert len(queries) >= 5
    for sql in queries:
        plan = explain(sql)
        assert not reads_whole_run_table(sql, plan), f"{sql}\n{plan}"
        if '"jobs_run"."status"' in sql and '"jobs_run"."id" =' not in sql:
            # The few runs in that status, not (say) all the runs of a job type.
            assert "(status=?)" in plan or "run_status_" in plan, f"{sql}\n{plan}"
