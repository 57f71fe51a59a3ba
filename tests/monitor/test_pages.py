"""The monitoring pages as a logged-in user sees them, without a worker.

Browser tests with a real worker are in test_browser.py.
"""

import re
import uuid
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from jobs.models import Run
from tests.factories import JobTypeFactory, RunFactory


def runs_on_page(response) -> list[str]:
    """Run ids in the history table, in page order."""
    section = response.content.decode().split('id="run-history"', 1)[1]
    return re.findall(r'data-run="([0-9a-f-]{36})"', section)


def section(response, section_id: str) -> str:
    body = response.content.decode()
    start = body.index(f'id="{section_id}"')
    return body[start : body.index("</section>", start)]


def make_run(status="succeeded", ago=timedelta(minutes=1), **fields) -> Run:
    now = timezone.now()
    fields.setdefault("job_type", JobTypeFactory(name="echo"))
    if status in Run.TERMINAL_STATUSES:
        fields.setdefault("started_at", now - ago)
        fields.setdefault("finished_at", now - ago + timedelta(seconds=2))
    return RunFactory(status=status, created_at=now - ago, **fields)


# --- Dashboard ----------------------------------------------------------------------


def test_it_lists_active_runs_counts_the_last_day_and_shows_recent_failures(staff_client):
    queued, running, retrying = make_run("queued"), make_run("running"), make_run("retrying")
    done = make_run("succeeded")
    failed = make_run("failed", error="disk full")
    make_run("failed", ago=timedelta(hours=30), error="long ago")  # older than 24 h: not counted

    response = staff_client.get("/monitor/")
    assert response.status_code == 200
    active = section(response, "active-runs")
    for run in (queued, running, retrying):
        assert f'data-run="{run.pk}"' in active
    assert str(done.pk) not in active and str(failed.pk) not in active

    counts = dict(re.findall(r'data-status="(\w+)".*?<span class="n">(\d+)', section(response, "counts"), re.S))
    assert counts == {
        "scheduled": "0",
        "waiting": "0",
        "pending": "0",
        "queued": "1",
        "running": "1",
        "retrying": "1",
        "succeeded": "1",
        "failed": "1",
        "cancelled": "0",
    }
    failures = section(response, "recent-failures")
    assert "disk full" in failures and "long ago" in failures  # the newest failures, of any age


def test_the_live_part_of_the_dashboard_is_a_fragment_with_the_same_lists(staff_client):
    running = make_run("running")
    response = staff_client.get("/monitor/live/")
    assert response.status_code == 200
    body = response.content.decode()
    assert body.lstrip().startswith('<div id="dashboard-live"')
    assert "<html" not in body
    assert f'data-run="{running.pk}"' in section(response, "active-runs")


def test_the_dashboard_says_so_when_more_runs_are_active_than_it_lists(staff_client):
    job_type = JobTypeFactory(name="busy")
    now = timezone.now()
    Run.objects.bulk_create(
        Run(job_type=job_type, trigger="api", status="queued", created_at=now - timedelta(seconds=i)) for i in range(60)
    )
    active = section(staff_client.get("/monitor/"), "active-runs")
    assert "newest 50 of 60" in active
    assert active.count("data-run=") == 50


def test_no_page_counts_the_whole_run_table(staff_client):
    run = make_run("failed")
    pages = ["/monitor/", "/monitor/live/", "/monitor/runs/", f"/monitor/runs/{run.pk}/", "/monitor/job-types/echo/"]
    for page in pages:
        with CaptureQueriesContext(connection) as queries:
            assert staff_client.get(page).status_code == 200
        counts = [q["sql"] for q in queries if "COUNT(" in q["sql"].upper()]
        assert all("LIMIT" in sql.upper() for sql in counts), (page, counts)
        reads = [q["sql"] for q in queries if "jobs_run" in q["sql"] and q["sql"].lstrip().upper().startswith("SELECT")]
        assert all("LIMIT" in sql.upper() or "WHERE" in sql.upper() for sql in reads), (page, reads)


# --- Run history ---------------------------------------------------------------------


def test_the_history_lists_runs_newest_first(staff_client):
    old, new = make_run(ago=timedelta(hours=2)), make_run(ago=timedelta(minutes=5))
    assert runs_on_page(staff_client.get("/monitor/runs/")) == [str(new.pk), str(old.pk)]


def test_the_history_filters_by_status_job_type_trigger_dates_and_text(staff_client):
    echo, nap = JobTypeFactory(name="echo"), JobTypeFactory(name="nap-long")
    a = make_run("failed", job_type=echo, trigger="cli", ago=timedelta(days=3))
    b = make_run("succeeded", job_type=nap, trigger="api", ago=timedelta(days=1))
    c = make_run("succeeded", job_type=echo, trigger="admin", ago=timedelta(minutes=1))

    def ids(query: str) -> set[str]:
        response = staff_client.get(f"/monitor/runs/?{query}")
        assert response.status_code == 200, response.content.decode()
        return set(runs_on_page(response))

    today = timezone.localdate()
    assert ids("status=succeeded") == {str(b.pk), str(c.pk)}
    assert ids("job_type=echo") == {str(a.pk), str(c.pk)}
    assert ids("trigger=cli") == {str(a.pk)}
    assert ids(f"created_from={today - timedelta(days=2)}") == {str(b.pk), str(c.pk)}
    assert ids(f"created_to={today - timedelta(days=2)}") == {str(a.pk)}
    assert ids("q=nap") == {str(b.pk)}
    assert ids(f"q={str(c.pk)[:8]}") == {str(c.pk)}
    assert ids(f"q={c.pk}") == {str(c.pk)}
    assert ids(f"q={str(c.pk).upper()}") == {str(c.pk)}
    assert ids("status=succeeded&job_type=echo") == {str(c.pk)}


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("job_type=ghost", "No job type is named &#x27;ghost&#x27;."),
        ("status=exploded", "Select a valid choice."),
        ("created_from=2026-05-02&created_to=2026-05-01", "Must be on or after the &#x27;From&#x27; date."),
        ("created_from=yesterday", "Enter a valid date."),
        ("after=not-a-cursor", "This page link is damaged"),
    ],
)
def test_bad_filters_get_a_400_saying_what_to_fix(staff_client, query, message):
    make_run()
    response = staff_client.get(f"/monitor/runs/?{query}")
    assert response.status_code == 400
    body = response.content.decode()
    assert message in body
    assert "Fix the filters above" in body


def test_the_history_pages_by_keyset_without_skipping_or_repeating_runs(staff_client):
    job_type = JobTypeFactory(name="echo")
    now = timezone.now()
    # 120 runs, and ten of them sharing one created_at across the first page break.
    times = [now - timedelta(seconds=i) for i in range(45)] + [now - timedelta(seconds=45)] * 10
    times += [now - timedelta(seconds=i) for i in range(56, 121)]
    Run.objects.bulk_create(
        Run(id=uuid.uuid4(), job_type=job_type, trigger="api", status="succeeded", created_at=t) for t in times
    )
    expected = [str(pk) for pk in Run.objects.order_by("-created_at", "-id").values_list("pk", flat=True)]

    seen, url, pages = [], "/monitor/runs/?status=succeeded", []
    while url:
        response = staff_client.get(url)
        assert response.status_code == 200
        pages.append(response)
        seen += runs_on_page(response)
        match = re.search(r'href="([^"]+)" rel="next"', response.content.decode())
        url = "/monitor/runs/" + match[1].replace("&amp;", "&") if match else None
    assert [len(runs_on_page(page)) for page in pages] == [50, 50, 20]
    assert seen == expected

    # And back: "Newer" from the last page shows the second page again.
    newer = re.search(r'href="([^"]+)" rel="prev"', pages[2].content.decode())[1].replace("&amp;", "&")
    assert runs_on_page(staff_client.get("/monitor/runs/" + newer)) == expected[50:100]
    assert 'rel="prev"' not in pages[0].content.decode()


# --- A run --------------------------------------------------------------------------


def test_a_run_page_shows_everything_about_the_run(staff_client):
    run = make_run(
        "failed",
        params={"message": "disk full"},
        result={"partial": [1, 2]},
        error="BuiltinTaskFailed: disk full",
        traceback="Traceback (most recent call last):\n  boom",
        attempts=3,
        worker="celery@host-1",
    )
    response = staff_client.get(f"/monitor/runs/{run.pk}/")
    assert response.status_code == 200
    body = response.content.decode()
    for text in [
        str(run.pk),
        '<span class="status failed">failed</span>',
        "&quot;message&quot;: &quot;disk full&quot;",
        "&quot;partial&quot;",
        "BuiltinTaskFailed: disk full",
        "Traceback (most recent call last)",
        "celery@host-1",
        f'href="/flower/task/{run.pk}"',
        f'href="/admin/jobs/run/{run.pk}/change/"',
    ]:
        assert text in body, text
    # A finished run does not poll for updates; an active one does.
    assert "data-refresh-url" not in body
    running = make_run("running")
    assert (
        f'data-refresh-url="/monitor/runs/{running.pk}/live/"'
        in staff_client.get(f"/monitor/runs/{running.pk}/").content.decode()
    )


def test_with_task_events_off_a_run_page_does_not_link_to_flower(staff_client, settings):
    # Flower learns of tasks from their events only: the link would lead to its 404.
    settings.CELERY_WORKER_SEND_TASK_EVENTS = False
    run = make_run("running")
    for url in (f"/monitor/runs/{run.pk}/", f"/monitor/runs/{run.pk}/live/"):
        body = staff_client.get(url).content.decode()
        assert f'<span class="mono">{run.pk}</span>' in body, url
        assert "/flower/task/" not in body and "in Flower" not in body, url
    # Flower's worker pages need no task events: the menu still leads there.
    assert '<a href="/flower/">Flower</a>' in staff_client.get(f"/monitor/runs/{run.pk}/").content.decode()


def test_an_unknown_run_is_a_404(staff_client):
    assert staff_client.get(f"/monitor/runs/{uuid.uuid4()}/").status_code == 404
    assert staff_client.get("/monitor/runs/not-a-uuid/").status_code == 404


def test_the_run_url_of_the_api_is_its_monitor_page(api):
    run = make_run()
    assert run.get_absolute_url() == f"/monitor/runs/{run.pk}/"
    assert api.get(f"/api/v1/runs/{run.pk}/").data["url"] == f"http://testserver/monitor/runs/{run.pk}/"


def test_cancel_and_rerun_buttons_show_only_with_the_permission(operator_client):
    active, finished = make_run("queued"), make_run("failed")
    operator_active = operator_client.get(f"/monitor/runs/{active.pk}/").content.decode()
    operator_finished = operator_client.get(f"/monitor/runs/{finished.pk}/").content.decode()
    assert 'id="cancel-run"' in operator_active and 'id="rerun-run"' not in operator_active
    assert 'id="rerun-run"' in operator_finished and 'id="cancel-run"' not in operator_finished


def test_viewers_see_no_buttons_and_are_refused_the_actions(viewer_client):
    active, finished = make_run("queued"), make_run("failed")
    body = viewer_client.get(f"/monitor/runs/{active.pk}/").content.decode()
    assert 'id="cancel-run"' not in body
    assert viewer_client.post(f"/monitor/runs/{active.pk}/cancel/").status_code == 403
    assert viewer_client.post(f"/monitor/runs/{finished.pk}/rerun/").status_code == 403
    active.refresh_from_db()
    assert active.status == "queued"
    assert Run.objects.count() == 2


def test_cancelling_a_queued_run_from_its_page(operator_client, redis_server):
    run = make_run("queued")
    response = operator_client.post(f"/monitor/runs/{run.pk}/cancel/", follow=True)
    assert response.redirect_chain == [(f"/monitor/runs/{run.pk}/", 302)]
    assert "Run cancelled." in response.content.decode()
    run.refresh_from_db()
    assert run.status == "cancelled"


def test_cancelling_a_finished_run_says_why_not(operator_client):
    run = make_run("succeeded")
    response = operator_client.post(f"/monitor/runs/{run.pk}/cancel/", follow=True)
    assert "is already succeeded: only runs that have not finished can be cancelled" in response.content.decode()
    run.refresh_from_db()
    assert run.status == "succeeded"


def test_the_actions_are_posts_with_a_csrf_token(operator, redis_server):
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    client.force_login(operator)
    run = make_run("queued")
    assert client.get(f"/monitor/runs/{run.pk}/cancel/").status_code == 405
    assert client.post(f"/monitor/runs/{run.pk}/cancel/").status_code == 403
    run.refresh_from_db()
    assert run.status == "queued"


def test_rerunning_a_failed_run_opens_the_new_run(operator_client, operator):
    run = make_run("failed", params={"n": 1})
    response = operator_client.post(f"/monitor/runs/{run.pk}/rerun/")
    new_run = Run.objects.exclude(pk=run.pk).get()
    assert response.status_code == 302
    assert response["Location"] == f"/monitor/runs/{new_run.pk}/"
    assert (new_run.rerun_of, new_run.trigger, new_run.params, new_run.requested_by) == (
        run,
        "rerun",
        {"n": 1},
        operator,
    )
    assert f'href="/monitor/runs/{run.pk}/"' in operator_client.get(f"/monitor/runs/{new_run.pk}/").content.decode()


def test_rerunning_an_active_run_says_why_not(operator_client):
    run = make_run("running")
    response = operator_client.post(f"/monitor/runs/{run.pk}/rerun/", follow=True)
    assert "is still running: wait for it to finish or cancel it first" in response.content.decode()
    assert Run.objects.count() == 1


# --- A job type ----------------------------------------------------------------------

SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "description": "Who to greet", "pattern": "^[A-Z]"},
        "count": {"type": "integer", "minimum": 1},
        "ratio": {"type": "number"},
        "loud": {"type": "boolean"},
        "colour": {"enum": ["red", "green", 3]},
        "tags": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["name", "count"],
}


@pytest.fixture
def greet(db):
    return JobTypeFactory(name="greet", params_schema=SCHEMA, default_params={"count": 2})


def test_a_job_type_page_shows_its_success_rate_and_a_duration_chart(staff_client, greet):
    for i, status in enumerate(["succeeded", "succeeded", "succeeded", "failed", "running"]):
        make_run(status, job_type=greet, ago=timedelta(minutes=10 - i))
    response = staff_client.get("/monitor/job-types/greet/")
    assert response.status_code == 200
    body = response.content.decode()
    assert '<strong id="success-rate">75%</strong> succeeded of the last 4 finished runs' in body
    chart = section(response, "stats")
    assert chart.count('<rect class="bar') == 4
    assert chart.count('<rect class="bar failed"') == 1
    assert len(re.findall(r'data-run="', section(response, "recent-runs"))) == 5


def test_the_run_now_form_has_a_field_per_simple_param_and_json_for_the_rest(staff_client, greet):
    body = section(staff_client.get("/monitor/job-types/greet/"), "run-now")
    assert 'name="p_name"' in body and 'type="text"' in body
    assert re.search(r'type="number" name="p_count" value="2" min="1"', body)
    assert 'name="p_ratio"' in body and 'step="any"' in body
    assert '<select name="p_loud"' in body
    assert '<select name="p_colour"' in body and '<option value="3">3</option>' in body
    assert 'name="p_tags"' not in body
    assert '<textarea name="extra"' in body and "Other params (JSON)" in body
    assert "Who to greet" in body
    # Required params come first, whatever order the database keeps the schema's keys in.
    assert body.index('name="p_name"') < body.index('name="p_count"') < body.index('name="p_ratio"')


def test_running_from_the_form_creates_a_run_with_typed_params(operator_client, operator, greet):
    response = operator_client.post(
        "/monitor/job-types/greet/",
        {
            "p_name": "Ada",
            "p_count": "3",
            "p_ratio": "0.5",
            "p_loud": "true",
            "p_colour": "3",
            "extra": '{"tags": ["a"]}',
        },
    )
    run = Run.objects.get()
    assert response.status_code == 302
    assert response["Location"] == f"/monitor/runs/{run.pk}/"
    assert run.params == {"name": "Ada", "count": 3, "ratio": 0.5, "loud": True, "colour": 3, "tags": ["a"]}
    assert (run.trigger, run.requested_by, run.status) == ("admin", operator, "queued")


def test_fields_left_empty_take_the_job_types_defaults(operator_client, greet):
    operator_client.post("/monitor/job-types/greet/", {"p_name": "Ada", "p_count": "", "p_loud": "", "extra": ""})
    assert Run.objects.get().params == {"name": "Ada", "count": 2}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"p_count": "3"}, "This field is required."),
        ({"p_name": "Ada", "p_count": "0"}, "Ensure this value is greater than or equal to 1."),
        ({"p_name": "Ada", "p_count": "three"}, "Enter a whole number."),
        ({"p_name": "Ada", "extra": "[1, 2]"}, "Must be a JSON object"),
        ({"p_name": "Ada", "extra": "{nope"}, "Enter a valid JSON."),
        ({"p_name": "Ada", "extra": '{"tags": "a"}'}, "tags: &#x27;a&#x27; is not of type &#x27;array&#x27;"),
    ],
)
def test_bad_params_get_a_400_with_the_problem_and_no_run(operator_client, greet, data, message):
    response = operator_client.post("/monitor/job-types/greet/", data)
    assert response.status_code == 400
    assert message in response.content.decode()
    assert not Run.objects.exists()


def test_a_schema_error_is_shown_on_the_field_it_names(operator_client, greet):
    # The form does not check patterns; the service's schema check does, and names the param.
    response = operator_client.post("/monitor/job-types/greet/", {"p_name": "ada", "p_count": "3"})
    assert response.status_code == 400
    field = section(response, "run-now").split('name="p_name"', 1)[1].split("</div>", 2)[:2]
    assert "&#x27;ada&#x27; does not match &#x27;^[A-Z]&#x27;" in "".join(field)
    assert not Run.objects.exists()


def test_a_disabled_job_type_cannot_be_run(operator_client):
    JobTypeFactory(name="off", enabled=False)
    response = operator_client.post("/monitor/job-types/off/", {"extra": "{}"})
    assert response.status_code == 400
    assert "Job type &#x27;off&#x27; is disabled: enable it before running it." in response.content.decode()
    assert not Run.objects.exists()


def test_running_needs_the_permission(viewer_client, greet):
    assert "You may not run jobs" in section(viewer_client.get("/monitor/job-types/greet/"), "run-now")
    assert viewer_client.post("/monitor/job-types/greet/", {"p_name": "Ada"}).status_code == 403
    assert not Run.objects.exists()


def test_a_job_type_without_a_schema_gets_a_json_box_with_its_defaults(staff_client):
    JobTypeFactory(name="plain", default_params={"a": 1})
    body = section(staff_client.get("/monitor/job-types/plain/"), "run-now")
    assert "Params (JSON)" in body
    assert "{&quot;a&quot;: 1}" in body


def test_the_job_type_list_links_every_job_type(staff_client):
    JobTypeFactory(name="alpha")
    JobTypeFactory(name="beta")
    body = staff_client.get("/monitor/job-types/").content.decode()
    assert 'href="/monitor/job-types/alpha/"' in body and 'href="/monitor/job-types/beta/"' in body
    assert staff_client.get("/monitor/job-types/ghost/").status_code == 404


# --- A run's notification ------------------------------------------------------------


def notification_part(response) -> str:
    body = response.content.decode()
    start = body.index('<dd id="notification">')
    return body[start : body.index("</dd>", start)]


def test_a_run_without_a_notification_shows_none(staff_client):
    run = make_run("succeeded")
    assert 'id="notification"' not in staff_client.get(f"/monitor/runs/{run.pk}/").content.decode()


def test_a_run_page_shows_a_sent_notification_per_channel(staff_client):
    hook = JobTypeFactory(name="hooked", notify_on="completion", webhook_url="https://hooks.example.com/t/n3w")
    run = make_run(
        "succeeded",
        job_type=hook,
        notify_status="sent",
        notify_attempts=1,
        notified_at=timezone.now(),
        notify_outcome={
            "email": {"status": "sent", "detail": "to ops@example.com", "at": "2026-05-01T10:00:01+00:00"},
            "webhook": {
                "status": "sent",
                # Sent before the URL was changed: the URL in the outcome is not the job type's any more.
                "detail": "HTTP 204 from https://hooks.example.com/t/s3cr3t?sig=1",
                "at": "2026-05-01T10:00:02+00:00",
            },
        },
    )
    part = notification_part(staff_client.get(f"/monitor/runs/{run.pk}/"))
    assert '<span class="status sent">sent</span>' in part
    assert "1 attempt" in part and "1 attempts" not in part
    assert re.search(r'data-channel="email">email: <span class="status sent">sent</span>\s*to ops@example.com', part)
    # Anyone logged in reads run pages: the webhook's path (which may hold a token) is not shown.
    assert "HTTP 204 from https://hooks.example.com/…" in part
    assert "s3cr3t" not in part


def test_a_run_page_shows_a_pending_notifications_next_attempt_and_follows_it(staff_client):
    run = make_run(
        "failed",
        notify_status="pending",
        notify_attempts=2,
        notify_locked_until=timezone.now() + timedelta(seconds=30),
        notify_outcome={"email": {"status": "failed", "error": "<b>SMTP</b> refused", "at": "2026-05-01T10:00:01Z"}},
    )
    response = staff_client.get(f"/monitor/runs/{run.pk}/")
    part = notification_part(response)
    assert '<span class="status pending">pending</span>' in part
    assert "2 attempts · next attempt" in part
    assert "&lt;b&gt;SMTP&lt;/b&gt; refused" in part  # what a mail server says is escaped
    # A finished run whose notification is still pending keeps refreshing.
    assert f'data-refresh-url="/monitor/runs/{run.pk}/live/"' in response.content.decode()


def test_a_run_page_shows_why_a_notification_failed(staff_client):
    run = make_run(
        "failed",
        notify_status="failed",
        notify_attempts=11,
        notified_at=timezone.now(),
        notify_outcome={"error": "Nobody to notify: the job type has no notify_emails or webhook_url."},
    )
    response = staff_client.get(f"/monitor/runs/{run.pk}/")
    part = notification_part(response)
    assert '<span class="status failed">failed</span>' in part and "11 attempts" in part
    assert "Nobody to notify: the job type has no notify_emails or webhook_url." in part
    assert "data-refresh-url" not in response.content.decode()
