"""GET /metrics: who may scrape it, and what Prometheus reads there, parsed
with prometheus-client's own parser after runs on the real worker."""

import json
import re
import socket
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from jobs import notifications
from jobs.models import Run, RunToCount
from jobs.runs.metrics import FOLD_BATCH
from tests.conftest import wait_for_run
from tests.e2e.test_execution import define, trigger
from tests.factories import JobTypeFactory, RunFactory
from tests.test_security_settings import run_python

pytestmark = pytest.mark.postgres  # run on PostgreSQL too (see pyproject.toml)

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "a-metrics-token-for-tests-0123456789abcdef"
FAMILIES = {
    "jobsite_runs": "counter",
    "jobsite_run_duration_seconds": "histogram",
    "jobsite_run_queue_wait_seconds": "histogram",
    "jobsite_schedule_lateness_seconds": "histogram",
    "jobsite_runs_active": "gauge",
    "jobsite_runs_queued": "gauge",
    "jobsite_queue_length": "gauge",
    "jobsite_workers_online": "gauge",
    "jobsite_broker_up": "gauge",
    "jobsite_notification_failures": "counter",
}


def scrape(client, **headers) -> dict[str, dict[tuple, float]]:
    """The families of /metrics: {family: {(sample name, (label, value)…): value}}, with their types checked."""
    response = client.get("/metrics", **headers)
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain; version=0.0.4")
    families = {}
    for family in text_string_to_metric_families(response.content.decode()):
        assert FAMILIES.get(family.name) == family.type, (family.name, family.type)
        families[family.name] = {(s.name, *sorted(s.labels.items())): s.value for s in family.samples}
    return families


def job(name: str) -> tuple:
    return (("job_type", name),)


def test_every_family_is_there_with_the_values_of_runs_that_ended_on_the_real_worker(worker, api, staff_client):
    define(api, name="echo", kind="task", task="jobs.builtin.echo")
    define(api, name="boom", kind="task", task="jobs.builtin.fail")
    runs = [trigger(api, "echo"), trigger(api, "echo"), trigger(api, "boom")]
    for run in runs:
        wait_for_run(run)
    assert [run.status for run in runs] == ["succeeded", "succeeded", "failed"]
    # Waiting on a queue no worker consumes: counted per queue, and its length in Redis.
    stuck = JobTypeFactory(name="stuck", queue="nobody-takes-this")
    RunFactory(job_type=stuck, status=Run.Status.QUEUED)

    metrics = scrape(staff_client)

    assert set(metrics) == set(FAMILIES)
    assert metrics["jobsite_runs"] == {
        ("jobsite_runs_total", ("job_type", "echo"), ("status", "succeeded")): 2,
        ("jobsite_runs_total", ("job_type", "boom"), ("status", "failed")): 1,
    }
    durations = metrics["jobsite_run_duration_seconds"]
    waits = metrics["jobsite_run_queue_wait_seconds"]
    for name, count in (("echo", 2), ("boom", 1)):
        assert durations[("jobsite_run_duration_seconds_count", *job(name))] == count
        assert durations[("jobsite_run_duration_seconds_bucket", *job(name), ("le", "+Inf"))] == count
        assert waits[("jobsite_run_queue_wait_seconds_count", *job(name))] == count
        # An echo task on an idle worker takes well under 5 s, and waits well under 5 s to start.
        assert durations[("jobsite_run_duration_seconds_bucket", *job(name), ("le", "5.0"))] == count
        assert waits[("jobsite_run_queue_wait_seconds_bucket", *job(name), ("le", "5.0"))] == count
        ran = [run for run in runs if run.job_type.name == name]
        took = sum((run.finished_at - run.started_at).total_seconds() for run in ran)
        assert durations[("jobsite_run_duration_seconds_sum", *job(name))] == pytest.approx(took, abs=1e-3)
    assert metrics["jobsite_workers_online"][("jobsite_workers_online",)] >= 1
    assert metrics["jobsite_broker_up"] == {("jobsite_broker_up",): 1}
    assert metrics["jobsite_runs_queued"][("jobsite_runs_queued", ("queue", "nobody-takes-this"))] == 1
    assert metrics["jobsite_runs_queued"][("jobsite_runs_queued", ("queue", "celery"))] == 0
    assert metrics["jobsite_runs_active"][("jobsite_runs_active", ("queue", "celery"))] == 0
    assert metrics["jobsite_queue_length"][("jobsite_queue_length", ("queue", "celery"))] == 0
    assert metrics["jobsite_schedule_lateness_seconds"] == {}  # no schedule fired
    assert metrics["jobsite_notification_failures"] == {}


def test_a_schedule_runs_lateness_its_queue_wait_and_its_duration_land_in_their_buckets(db, staff_client):
    now = timezone.now()
    run = RunFactory(
        job_type=JobTypeFactory(name="nightly"),
        status=Run.Status.RUNNING,
        trigger=Run.Trigger.SCHEDULE,
        schedule_tick=now - timedelta(seconds=50),
        released_at=now - timedelta(seconds=48),  # 2 s late
        started_at=now - timedelta(seconds=40),  # after 8 s in the queue, and it ran for 40 s
    )
    assert run.mark_succeeded(result=None)

    metrics = scrape(staff_client)

    def buckets(family: str) -> dict[str, float]:
        return {dict(key[1:])["le"]: value for key, value in metrics[family].items() if key[0].endswith("_bucket")}

    assert buckets("jobsite_schedule_lateness_seconds") == {
        "0.1": 0, "0.5": 0, "1.0": 0, "2.0": 1, "5.0": 1, "10.0": 1, "30.0": 1, "60.0": 1, "300.0": 1, "+Inf": 1,
    }  # fmt: skip
    assert buckets("jobsite_run_queue_wait_seconds")["5.0"] == 0
    assert buckets("jobsite_run_queue_wait_seconds")["10.0"] == 1
    assert buckets("jobsite_run_duration_seconds")["30.0"] == 0
    assert buckets("jobsite_run_duration_seconds")["60.0"] == 1
    late = metrics["jobsite_schedule_lateness_seconds"]
    assert late[("jobsite_schedule_lateness_seconds_sum", *job("nightly"))] == pytest.approx(2)
    # Ending it again (a redelivered message) counts nothing more.
    assert not Run.objects.get(pk=run.pk).mark_failed(error="late duplicate")
    assert scrape(staff_client)["jobsite_runs"] == {
        ("jobsite_runs_total", ("job_type", "nightly"), ("status", "succeeded")): 1
    }


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_a_notification_that_fails_for_good_counts_once_per_channel(db, staff_client, settings):
    settings.JOBS_NOTIFY_MAX_ATTEMPTS = 1
    hooked = JobTypeFactory(name="hooked", notify_on="failure", webhook_url=f"http://127.0.0.1:{closed_port()}/hook")
    run = RunFactory(job_type=hooked, status=Run.Status.FAILED, notify_status="pending", finished_at=timezone.now())

    assert notifications.run_notify(run_id=str(run.pk)).state == "failed"

    assert scrape(staff_client)["jobsite_notification_failures"] == {
        ("jobsite_notification_failures_total", ("channel", "webhook"), ("job_type", "hooked")): 1
    }


def test_anonymous_users_and_users_who_are_not_staff_get_403_not_a_login_page(client, viewer, django_user_model):
    assert client.get("/metrics").status_code == 403
    client.force_login(django_user_model.objects.create_user("outsider", password="pw"))
    assert client.get("/metrics").status_code == 403
    client.force_login(viewer)  # may view runs, but is not staff
    assert client.get("/metrics").status_code == 403


def test_the_bearer_token_from_the_setting_scrapes_and_any_other_gets_403(client, db, settings):
    settings.JOBS_METRICS_TOKEN = TOKEN
    assert "jobsite_runs" in scrape(client, HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    for wrong in (f"Bearer {TOKEN[:-1]}", f"Bearer {TOKEN}x", "Bearer ", f"Token {TOKEN}", TOKEN):
        assert client.get("/metrics", HTTP_AUTHORIZATION=wrong).status_code == 403, wrong


def test_without_a_token_setting_no_bearer_gets_in(client, db, settings):
    settings.JOBS_METRICS_TOKEN = ""
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer ").status_code == 403


def test_the_grafana_dashboard_charts_every_family_of_the_endpoint_and_no_other():
    dashboard = json.loads((ROOT / "docs" / "grafana-dashboard.json").read_text())
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    used = {
        re.sub(r"_(total|bucket|sum|count)$", "", name) for expr in exprs for name in re.findall(r"jobsite_\w+", expr)
    }
    assert used == set(FAMILIES)


def test_a_metrics_token_shorter_than_32_characters_stops_start_up_with_one_line():
    done = run_python(
        ["manage.py", "check"],
        DJANGO_SETTINGS_MODULE="jobsite.settings",
        SECRET_KEY="k" * 50,
        JOBS_METRICS_TOKEN="short",
    )
    assert done.returncode == 1, done.stdout
    assert (
        done.stderr.strip()
        .splitlines()[-1]
        .startswith("manage.py: JOBS_METRICS_TOKEN is 5 characters: give at least 32")
    ), done.stderr


def test_a_scrape_counts_every_run_ended_since_the_last_batch_after_batch_and_skips_purged_ones(db, staff_client):
    many = JobTypeFactory(name="many")
    now = timezone.now()
    ended = Run.objects.bulk_create(
        Run(job_type=many, trigger="api", status="succeeded", started_at=now, finished_at=now)
        for _ in range(FOLD_BATCH + 5)
    )
    RunToCount.objects.bulk_create(RunToCount(run_id=run.pk, event=RunToCount.Event.ENDED) for run in ended)
    RunToCount.objects.create(run_id=uuid.uuid4(), event=RunToCount.Event.ENDED)  # its run purged meanwhile

    assert scrape(staff_client)["jobsite_runs"] == {
        ("jobsite_runs_total", ("job_type", "many"), ("status", "succeeded")): FOLD_BATCH + 5
    }
    assert not RunToCount.objects.exists()
