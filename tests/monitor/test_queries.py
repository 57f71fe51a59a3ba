"""Every query the monitoring pages run on the run table is served by an index.

The pages' queries are captured while the pages render, then EXPLAINed on the
test database (SQLite or PostgreSQL), after ANALYZE on a table where most runs
have finished: the statistics that once led SQLite to read the whole table for
`status IN (...)` and for a join ordered by created_at. bench/monitor_scale.py
measures the same pages at a million runs.
"""

import os
import re
import uuid
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from jobs.models import JobType, Run, Schedule
from tests.factories import JobTypeFactory

pytestmark = pytest.mark.postgres  # run on PostgreSQL too (see pyproject.toml)


@pytest.fixture
def many_runs(db):
    job_types = [JobTypeFactory(name=f"job-{i}") for i in range(5)]
    now = timezone.now()
    # Few distinct statuses, most runs finished: what a planner sees in a real run table.
    statuses = ["running"] * 5 + ["failed"] * 60 + ["scheduled"] * 20
    statuses += ["succeeded"] * (3000 - len(statuses))
    # Schedules and workflow steps own a few of the runs: `schedule` and `parent`
    # are NULL on most rows, which skews a planner's idea of how many runs
    # share one schedule or one parent.
    schedules = [
        Schedule.objects.create(name=f"every-{i}-min", job_type=job_types[i], cron=f"*/{i + 1} * * * *")
        for i in range(3)
    ]
    workflow = JobTypeFactory(name="pipeline", kind=JobType.Kind.WORKFLOW, task="")
    Run.objects.bulk_create(
        Run(
            id=uuid.uuid4(),
            job_type=workflow if i == 7 else job_types[i % 5],
            trigger="schedule" if i % 300 == 0 else "api",
            schedule=schedules[1] if i % 300 == 0 else None,
            status=status,
            created_at=now - timedelta(seconds=30 * i),
            scheduled_for=now + timedelta(minutes=i) if status == "scheduled" else None,
            started_at=now - timedelta(seconds=30 * i - 1),
            finished_at=now - timedelta(seconds=30 * i - 2) if status in Run.TERMINAL_STATUSES else None,
        )
        for i, status in enumerate(statuses)
    )
    for parent in Run.objects.filter(job_type=workflow):
        Run.objects.bulk_create(
            Run(
                job_type=job_types[n],
                parent=parent,
                step_name=f"step-{n}",
                depends_on=[f"step-{n - 1}"] if n else [],
                trigger="workflow",
                status="succeeded",
                created_at=parent.created_at,
                started_at=parent.created_at + timedelta(seconds=n),
                finished_at=parent.created_at + timedelta(seconds=n + 1),
            )
            for n in range(3)
        )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    return Run.objects.filter(parent=None).exclude(job_type=workflow).order_by("-created_at")[1500]


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


# A query that names one schedule or one workflow run reads that one's index,
# whatever else it filters on: a few runs, not every run of a status.
OWN_INDEX = {'"schedule_id" = ': "run_schedule_created", '"parent_id" = ': "run_parent_created"}


def test_every_run_query_of_the_pages_is_served_by_an_index(staff_client, many_runs):
    sample = many_runs
    workflow_run = Run.objects.filter(job_type__name="pipeline").first()
    step_run = workflow_run.children.last()
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
        "/monitor/schedules/",
        "/monitor/runs/?schedule=every-1-min",
        "/monitor/runs/?schedule=every-1-min&status=succeeded",
        f"/monitor/runs/{workflow_run.pk}/",
        f"/monitor/runs/{workflow_run.pk}/steps/",
        f"/monitor/runs/{step_run.pk}/",
    ]
    checked = 0
    own_index_checked = set()
    for page in pages:
        with CaptureQueriesContext(connection) as queries:
            assert staff_client.get(page).status_code == 200, page
        for query in queries:
            sql = query["sql"]
            if '"jobs_run"' in sql and sql.lstrip().upper().startswith("SELECT"):
                plan = explain(sql)
                if os.environ.get("SHOW_PLANS"):
                    print(f"\n{page}\n{sql}\n{plan}")
                assert not reads_whole_run_table(sql, plan), f"{page}\n{sql}\n{plan}"
                for condition, index in OWN_INDEX.items():
                    if condition in sql.partition(" WHERE ")[2]:
                        assert index in plan, f"{page}\n{sql}\n{plan}"
                        own_index_checked.add(index)
                checked += 1
    assert checked >= 30
    assert own_index_checked == set(OWN_INDEX.values())


def reads_whole_schedule_table(plan: str) -> bool:
    if connection.vendor == "postgresql":
        return "Seq Scan on jobs_schedule" in plan
    return any(
        re.match(r"SCAN jobs_schedule\b(?! USING (COVERING )?INDEX)", line.strip()) for line in plan.splitlines()
    )


def test_the_schedule_queries_of_the_pages_are_served_by_an_index(staff_client, db):
    job_type = JobTypeFactory(name="echo")
    now = timezone.now()
    # Thousands of schedules, a fifth of them disabled: bulk_create, so next_run_at is set here.
    Schedule.objects.bulk_create(
        Schedule(
            name=f"every-{i}",
            job_type=job_type,
            interval_seconds=60 + i,
            enabled=i % 5 != 0,
            next_run_at=now + timedelta(seconds=60 + i),
        )
        for i in range(3000)
    )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    checked = 0
    for page in ["/monitor/", "/monitor/schedules/", "/monitor/schedules/?page=30"]:
        with CaptureQueriesContext(connection) as queries:
            assert staff_client.get(page).status_code == 200, page
        for query in queries:
            sql = query["sql"]
            if sql.lstrip().upper().startswith("SELECT") and '"jobs_schedule"' in sql.partition(" WHERE ")[0]:
                if "COUNT(*)" in sql:
                    continue  # the schedules page's count: a few thousand rows, once per page
                plan = explain(sql)
                if os.environ.get("SHOW_PLANS"):
                    print(f"\n{page}\n{sql}\n{plan}")
                assert not reads_whole_schedule_table(plan), f"{page}\n{sql}\n{plan}"
                checked += 1
    assert checked >= 3
