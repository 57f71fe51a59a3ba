"""Every query the monitoring pages run on the run table is served by an index.

The pages' queries are captured while the pages render, then EXPLAINed on the
test database (SQLite or PostgreSQL), after ANALYZE on a table where most runs
have finished: the statistics that once led SQLite to read the whole table for
`status IN (...)` and for a join ordered by created_at. bench/monitor_scale.py
measures the same pages at a million runs.
"""

import re
import uuid
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from jobs.models import Run
from tests.factories import JobTypeFactory


@pytest.fixture
def many_runs(db):
    job_types = [JobTypeFactory(name=f"job-{i}") for i in range(5)]
    now = timezone.now()
    # Few distinct statuses, most runs finished: what a planner sees in a real run table.
    statuses = ["running"] * 5 + ["failed"] * 60
    statuses += ["succeeded"] * (3000 - len(statuses))
    Run.objects.bulk_create(
        Run(
            id=uuid.uuid4(),
            job_type=job_types[i % 5],
            trigger="api",
            status=status,
            created_at=now - timedelta(seconds=30 * i),
            started_at=now - timedelta(seconds=30 * i - 1),
            finished_at=now - timedelta(seconds=30 * i - 2) if status in Run.TERMINAL_STATUSES else None,
        )
        for i, status in enumerate(statuses)
    )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    return Run.objects.order_by("-created_at")[1500]


def explain(sql: str) -> str:
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # On a small table a sequential scan may be the cheaper plan; what
            # matters is that an index can serve the query when the table is big.
            cursor.execute("SET enable_seqscan = off")
            try:
                cursor.execute("EXPLAIN " + sql)
                return "\n".join(row[0] for row in cursor.fetchall())
            finally:
                cursor.execute("RESET enable_seqscan")
        cursor.execute("EXPLAIN QUERY PLAN " + sql)
        return "\n".join(row[-1] for row in cursor.fetchall())


def reads_whole_run_table(sql: str, plan: str) -> bool:
    if connection.vendor == "postgresql":
        return "Seq Scan on jobs_run" in plan
    # SQLite: a SCAN reads the table, or an index, from one end. That is fine
    # only for the unfiltered history, which stops after one page; with a
    # WHERE it may read every row looking for a few matches.
    scans = [line for line in plan.splitlines() if re.match(r"SCAN jobs_run\b", line.strip())]
    return any("INDEX" not in line or " WHERE " in sql for line in scans)


def test_every_run_query_of_the_pages_is_served_by_an_index(staff_client, many_runs):
    sample = many_runs
    first_page = staff_client.get("/monitor/runs/").content.decode()
    older = re.search(r'href="\?([^"]+)" rel="next"', first_page)[1].replace("&amp;", "&")
    pages = [
        "/monitor/",
        "/monitor/live/",
        "/monitor/runs/",
        f"/monitor/runs/?{older}",
        "/monitor/runs/?status=failed",
        "/monitor/runs/?job_type=job-3",
        "/monitor/runs/?status=succeeded&job_type=job-3",
        f"/monitor/runs/?q={str(sample.pk)[:8]}",
        f"/monitor/runs/{sample.pk}/",
        f"/monitor/runs/{sample.pk}/live/",
        "/monitor/job-types/job-3/",
    ]
    checked = 0
    for page in pages:
        with CaptureQueriesContext(connection) as queries:
            assert staff_client.get(page).status_code == 200, page
        for query in queries:
            sql = query["sql"]
            if '"jobs_run"' in sql and sql.lstrip().upper().startswith("SELECT"):
                plan = explain(sql)
                assert not reads_whole_run_table(sql, plan), f"{page}\n{sql}\n{plan}"
                checked += 1
    assert checked >= 30
