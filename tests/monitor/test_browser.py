"""The monitoring pages in headless Chromium, against a live server, a real
worker and a real Flower. Each test saves screenshots to .run/screenshots/.

Chromium is Debian's (`make test` installs it); Playwright never downloads one.
"""

import os
import re
from datetime import timedelta
from pathlib import Path

import pytest
from django.db import connection
from django.utils import timezone
from playwright.sync_api import expect, sync_playwright

from jobs.models import JobType, Run, Schedule
from jobs.runs.trigger import run_create
from tests.conftest import ROOT, wait_for_run
from tests.factories import JobTypeFactory
from tests.tasks import release

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOTS = ROOT / ".run" / "screenshots"
LIVE_TIMEOUT_MS = 20_000  # a few refreshes of the live parts (every 3 s)

pytestmark = pytest.mark.worker


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: run `make test` (it installs it) or apt-get install chromium")
    # Playwright's sync API keeps an event loop in this thread, and Django
    # refuses ORM calls from a thread with a running loop. The tests' own ORM
    # calls are plain synchronous code between browser steps, so allow them.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            yield browser
            browser.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture
def page(browser, live_server, admin_user, flower, worker):
    """A browser tab; the test fails if any page it opened broke the
    Content-Security-Policy (Chromium logs each refusal to the console)."""
    context = browser.new_context(viewport={"width": 1360, "height": 900}, base_url=live_server.url)
    page = context.new_page()
    page.set_default_timeout(LIVE_TIMEOUT_MS)
    violations = []

    def on_console(message) -> None:
        if CSP in message.text:
            violations.append(f"{page.url}: {message.text}")

    page.on("console", on_console)
    yield page
    context.close()
    assert not violations, "\n".join(violations)


CSP = "Content Security Policy"


def log_in(page, next_path="/monitor/"):
    page.goto(next_path)
    expect(page).to_have_url(re.compile(r"/accounts/login/\?next="))
    page.fill("#id_username", "boss")
    page.fill("#id_password", "pw")
    page.click("button[type=submit]")
    expect(page).to_have_url(re.compile(re.escape(next_path) + "$"))


def screenshot(page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SCREENSHOTS / f"{connection.vendor}-{name}.png", full_page=True)


def start(job_type, **params) -> Run:
    run, _ = run_create(job_type=job_type, params=params, trigger=Run.Trigger.API)
    return run


def test_it_logs_in_and_opens_every_page(page, worker):
    echo = JobTypeFactory(name="echo", description="Returns its params.")
    greet = JobTypeFactory(
        name="greet",
        params_schema={
            "type": "object",
            "properties": {"name": {"type": "string"}, "times": {"type": "integer"}, "loud": {"type": "boolean"}},
            "required": ["name"],
        },
        default_params={"times": 1},
    )
    doomed = JobTypeFactory(name="doomed", task="jobs.builtin.fail")
    done = [wait_for_run(start(echo, n=i)) for i in range(3)]
    wait_for_run(start(greet, name="Ada"))
    failed = wait_for_run(start(doomed, message="disk full"))
    assert failed.status == "failed"

    page.goto("/")
    expect(page).to_have_url(re.compile(r"/accounts/login/"))
    screenshot(page, "login")
    log_in(page)
    expect(page.locator("h1")).to_have_text("Dashboard")
    expect(page.locator("#recent-failures")).to_contain_text("disk full")
    expect(page.locator("#cluster")).to_contain_text(worker.hostname)
    screenshot(page, "dashboard")

    page.click("header >> text=Runs")
    expect(page.locator("#run-history tbody tr")).to_have_count(5)
    page.select_option("#id_status", "failed")
    page.click("#run-filters button[type=submit]")
    expect(page.locator("#run-history tbody tr")).to_have_count(1)
    expect(page.locator("#run-history")).to_contain_text("doomed")
    screenshot(page, "runs-filtered")

    page.click(f'#run-history a[href="/monitor/runs/{failed.pk}/"]')
    expect(page.locator("#run-status")).to_have_text("failed")
    expect(page.locator("#error")).to_contain_text("BuiltinTaskFailed: disk full")
    expect(page.locator("#error")).to_contain_text("Traceback (most recent call last)")
    screenshot(page, "run-failed")

    page.goto(f"/monitor/runs/{done[0].pk}/")
    expect(page.locator("#result")).to_contain_text('"n": 0')
    screenshot(page, "run-succeeded")

    page.click("header >> text=Job types")
    screenshot(page, "job-types")
    page.click("text=greet")
    expect(page.locator("#success-rate")).to_have_text("100%")
    expect(page.locator("#duration-chart rect.bar")).to_have_count(1)
    screenshot(page, "job-type")

    page.click("header >> text=Workers")
    expect(page.locator(f'[data-worker="{worker.hostname}"]')).to_be_visible()
    expect(page.locator("#cluster")).to_contain_text("celery")
    screenshot(page, "workers")


def test_a_run_shows_up_live_as_active_then_moves_to_the_history(page):
    nap = JobTypeFactory(name="nap", task="jobs.builtin.sleep")
    log_in(page)
    page.evaluate("window.notReloaded = true")
    run = start(nap, seconds=4)

    active_row = page.locator(f'#active-runs [data-run="{run.pk}"]')
    expect(active_row).to_be_visible()
    expect(active_row).to_contain_text(re.compile("queued|running"))
    screenshot(page, "dashboard-active")

    expect(active_row).to_have_count(0)
    expect(page.locator(f'#recent-runs [data-run="{run.pk}"]')).to_contain_text("succeeded")
    assert page.evaluate("window.notReloaded") is True  # updated in place, not by reloading
    screenshot(page, "dashboard-finished")

    page.click("header >> text=Runs")
    expect(page.locator(f'#run-history [data-run="{run.pk}"]')).to_contain_text("succeeded")


def test_a_running_run_is_cancelled_from_its_page(page):
    nap = JobTypeFactory(name="nap", task="jobs.builtin.sleep")
    run = start(nap, seconds=60)
    log_in(page, f"/monitor/runs/{run.pk}/")
    expect(page.locator("#run-status")).to_have_text("running")  # the page follows the run by itself
    screenshot(page, "run-running")

    page.once("dialog", lambda dialog: dialog.dismiss())
    page.click("#cancel-run")
    page.wait_for_timeout(500)
    run.refresh_from_db()
    assert run.status == "running"  # dismissing the confirmation posts nothing

    messages = []
    page.once("dialog", lambda dialog: (messages.append(dialog.message), dialog.accept()))
    page.click("#cancel-run")
    expect(page.locator(".message.success")).to_have_text("Run cancelled.")
    expect(page.locator("#run-status")).to_have_text("cancelled")
    expect(page.locator("#cancelled")).to_contain_text("by boss")
    assert messages == ["Cancel this run of nap?"]
    assert wait_for_run(run).status == "cancelled"
    expect(page.locator("#rerun-run")).to_be_visible()
    screenshot(page, "run-cancelled")


def test_a_running_runs_log_lines_appear_on_its_page_while_it_runs(page):
    chatty = JobTypeFactory(name="chatty", task="tests.chatty")
    run = start(chatty, lines=2, wait=True)  # logs and prints, then waits for `release`
    log_in(page, f"/monitor/runs/{run.pk}/")
    page.evaluate("window.notReloaded = true")
    log = page.locator("#run-logs")
    expect(log).to_contain_text("hello from print")
    expect(log).to_contain_text("line 2 xxxxxxxxxx")
    expect(log.locator(".log-line.warning")).to_contain_text("starting with 2 lines")
    run.refresh_from_db()
    assert run.status == "running"  # seen while it runs
    screenshot(page, "run-log-live")

    release(run.pk)
    expect(page.locator("#run-status")).to_have_text("succeeded")
    expect(log).to_contain_text("released")
    expect(log.locator(".log-line")).to_have_count(6)
    assert page.evaluate("window.notReloaded") is True  # followed in place, not by reloading
    screenshot(page, "run-log-ended")


def test_the_run_now_form_starts_a_run_and_its_page_follows_it(page):
    JobTypeFactory(
        name="greet",
        params_schema={"type": "object", "properties": {"name": {"type": "string"}, "times": {"type": "integer"}}},
    )
    log_in(page, "/monitor/job-types/greet/")
    page.fill("#id_p_name", "Ada")
    page.fill("#id_p_times", "2")
    screenshot(page, "job-type-form")
    page.click("#run-now-form button[type=submit]")
    expect(page).to_have_url(re.compile(r"/monitor/runs/[0-9a-f-]{36}/$"))
    expect(page.locator("#run-status")).to_have_text("succeeded")
    expect(page.locator("#result")).to_contain_text('"name": "Ada"')
    run = Run.objects.get()
    assert (run.params, run.trigger) == ({"name": "Ada", "times": 2}, "admin")


def test_flower_opens_embedded_in_the_workers_page_and_on_its_own(page, worker):
    run = wait_for_run(start(JobTypeFactory(name="echo"), hello="flower"))
    log_in(page, "/monitor/workers/")
    flower = page.frame_locator("iframe.flower")
    expect(flower.locator("body")).to_contain_text(worker.hostname)
    expect(flower.locator("#workers-refresh-status")).to_contain_text("Updated")
    screenshot(page, "workers-with-flower")

    page.goto("/flower/")
    expect(page).to_have_title("Workers · Flower")
    expect(page.locator("body")).to_contain_text(worker.hostname)
    expect(page.locator("#workers-refresh-status")).to_contain_text("Updated")
    screenshot(page, "flower")

    page.goto(f"/monitor/runs/{run.pk}/")
    page.click("#flower-task-link")
    expect(page.locator("body")).to_contain_text(str(run.pk))
    expect(page.locator("body")).to_contain_text("jobs.builtin.echo")
    screenshot(page, "flower-task")

    # Flower's other pages, under the site's Content-Security-Policy (see the `page` fixture).
    page.goto(f"/flower/worker/{worker.hostname}")
    expect(page.locator("body")).to_contain_text("task_default_queue")
    page.goto("/flower/tasks")
    expect(page.locator("#tasks-table")).to_contain_text(str(run.pk))
    page.goto("/flower/broker")
    expect(page.locator("body")).to_contain_text("celery")


def test_the_schedules_page_and_the_dashboard_show_what_comes_next(page, worker):
    echo = JobTypeFactory(name="echo")
    nightly = Schedule.objects.create(name="nightly-report", job_type=echo, cron="30 2 * * *", timezone="Europe/Paris")
    Schedule.objects.create(name="every-5-min", job_type=echo, interval_seconds=300, overlap="skip")
    Schedule.objects.create(name="paused", job_type=echo, interval_seconds=60, enabled=False)
    # What the schedule's "run now" does: a run of its job type with its params, tied to it.
    fired, _ = run_create(job_type=echo, params={"from": "nightly"}, trigger=Run.Trigger.ADMIN, schedule=nightly)
    assert wait_for_run(fired).status == "succeeded"
    later, _ = run_create(job_type=echo, params={}, trigger=Run.Trigger.API, run_at=timezone.now() + timedelta(hours=3))
    assert later.status == "scheduled"

    log_in(page)
    fires = page.locator("#upcoming-fires tbody tr")
    expect(fires).to_have_count(2)  # the disabled one never fires
    expect(fires.first).to_contain_text("every-5-min")
    expect(page.locator(f'#upcoming-runs [data-run="{later.pk}"]')).to_contain_text("in 3.0 h")
    screenshot(page, "dashboard-upcoming")

    page.click("header >> text=Schedules")
    expect(page.locator("h1")).to_have_text("Schedules")
    row = page.locator(f'#schedules [data-schedule="{nightly.pk}"]')
    expect(row).to_contain_text("At 02:30 (Europe/Paris)")
    expect(row.locator(".status")).to_have_text("succeeded")
    expect(page.locator("#schedules tbody tr", has_text="paused")).to_contain_text("(disabled)")
    screenshot(page, "schedules")

    row.locator("text=nightly-report").click()
    expect(page.locator("#id_schedule")).to_have_value("nightly-report")
    expect(page.locator("#run-history tbody tr")).to_have_count(1)
    page.click(f'#run-history a[href="/monitor/runs/{fired.pk}/"]')
    expect(page.locator("#schedule-link")).to_have_text("nightly-report")


def test_a_workflow_runs_page_follows_its_steps_on_a_timeline_and_a_graph(page):
    echo = JobTypeFactory(name="echo")
    nap = JobTypeFactory(name="nap", task="jobs.builtin.sleep")
    flow = JobType.objects.create(name="nightly-etl", kind=JobType.Kind.WORKFLOW)
    flow.steps.create(name="extract", job_type=echo, params={"table": "orders"})
    flow.steps.create(name="transform", job_type=nap, params={"seconds": 4}, depends_on=["extract"], position=1)
    flow.steps.create(name="audit", job_type=echo, depends_on=["extract"], position=2)
    flow.steps.create(name="load", job_type=echo, depends_on=["transform", "audit"], position=3)
    run = start(flow)
    transform = wait_for_run(run.children.get(step_name="transform"), "running")

    log_in(page, f"/monitor/runs/{run.pk}/")
    rows = page.locator("#step-timeline svg a.step-row")
    expect(rows).to_have_count(4)
    expect(page.locator('#step-timeline [data-step="transform"] rect.bar.running.open')).to_have_count(1)
    expect(page.locator('#step-timeline [data-step="load"] text.note')).to_have_text("waiting for transform")
    expect(page.locator('#step-graph g.step.succeeded[data-step="extract"]')).to_have_count(1)
    expect(page.locator('#step-graph g.step.running[data-step="transform"]')).to_have_count(1)
    screenshot(page, "workflow-running")

    # The steps part follows the run by itself until every step has ended.
    expect(page.locator('#step-graph g.step.succeeded[data-step="load"]')).to_have_count(1, timeout=30_000)
    expect(page.locator("#run-status")).to_have_text("succeeded")
    expect(page.locator("#step-timeline rect.bar.succeeded")).to_have_count(4)
    expect(page.locator("#step-timeline rect.bar.open")).to_have_count(0)
    screenshot(page, "workflow-succeeded")

    page.locator('#step-graph g[data-step="transform"] a').click()
    expect(page).to_have_url(re.compile(f"/monitor/runs/{transform.pk}/$"))
    expect(page.locator("#step-name")).to_have_text("transform")
    screenshot(page, "workflow-step")
    page.click("#workflow-run-link")
    expect(page).to_have_url(re.compile(f"/monitor/runs/{run.pk}/$"))


def test_the_audit_log_shows_who_changed_what_and_leads_to_its_history(page, api):
    # The API takes JSON bodies only.
    job_type = {"name": "report", "kind": "task", "task": "jobs.builtin.echo"}
    assert api.post("/api/v1/job-types/", job_type, format="json").status_code == 201
    change = {"description": "Nightly", "max_retries": 1}
    assert api.patch("/api/v1/job-types/report/", change, format="json").status_code == 200
    schedule = {"name": "nightly", "job_type": "report", "cron": "0 3 * * *"}
    assert api.post("/api/v1/schedules/", schedule, format="json").status_code == 201
    log_in(page)
    page.click("header >> text=Audit log")
    rows = page.locator("#audit-entries tbody tr")
    expect(rows).to_have_count(3)
    expect(rows.nth(0)).to_contain_text("nightly")
    expect(rows.nth(1)).to_contain_text("Changed description and max_retries through the API.")
    screenshot(page, "audit-log")

    page.select_option("#id_what", "jobtype")
    page.click("#audit-filters button[type=submit]")
    expect(rows).to_have_count(2)
    rows.nth(0).locator("text=history").click()
    expect(page.locator("#change-history")).to_contain_text("Changed description and max_retries through the API.")
    expect(page.locator("#change-history")).to_contain_text("Added through the API.")
    screenshot(page, "audit-history")


def test_a_runs_page_leads_to_what_changed_since_and_an_editor_restores_the_revision_it_ran(page, api):
    assert (
        api.post(
            "/api/v1/job-types/", {"name": "report", "kind": "task", "task": "jobs.builtin.echo"}, format="json"
        ).status_code
        == 201
    )
    run = wait_for_run(start(JobType.objects.get(name="report")))
    assert (
        api.patch(
            "/api/v1/job-types/report/", {"description": "Weekly now", "max_retries": 2}, format="json"
        ).status_code
        == 200
    )

    log_in(page, f"/monitor/runs/{run.pk}/")
    page.click("#changed-since-run")
    changed = page.locator("#changed-since tbody tr")
    expect(changed).to_have_count(2)
    expect(changed.nth(0)).to_contain_text("description")
    expect(changed.nth(0)).to_contain_text('"Weekly now"')
    expect(changed.nth(1)).to_contain_text("max_retries")
    screenshot(page, "revision-changed-since")

    page.click("text=all revisions")
    expect(page.locator("#revisions article")).to_have_count(2)
    expect(page.locator("#revisions article").nth(0)).to_contain_text("through api")
    page.click(f"#restore-{run.job_type_revision_id}")
    expect(page).to_have_url(re.compile(r"/monitor/job-types/report/history/$"))
    expect(page.locator(".messages")).to_contain_text(f"Revision {run.job_type_revision_id} restored")
    newest = page.locator("#revisions article").nth(0)
    expect(newest).to_contain_text("through restore")
    expect(newest.locator("[data-field=description] pre.new")).to_have_text('""')
    screenshot(page, "revision-restored")
    assert JobType.objects.get(name="report").description == ""


def test_the_pages_the_admin_and_the_browsable_api_load_with_no_console_error(page):
    """No 404 for the icon that every browser tab asks for (/favicon.ico, or the page's own icon)."""
    errors = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    log_in(page)
    for path in ("/monitor/", "/admin/", "/api/v1/"):
        page.goto(path)
        page.wait_for_load_state("networkidle")
        # Chromium fetches the icon after the page has loaded.
        page.wait_for_timeout(1000)
    assert errors == []
    icon = page.request.get("/favicon.ico")
    assert icon.status == 200
    assert icon.headers["content-type"] == "image/x-icon"
    page.goto("/monitor/")
    svg = page.request.get(page.locator("link[rel=icon][type='image/svg+xml']").get_attribute("href"))
    assert (svg.status, svg.headers["content-type"]) == (200, "image/svg+xml")


def test_the_admin_the_api_docs_and_the_browsable_api_work_under_the_content_security_policy(page):
    """Their scripts run and their styles apply, with nothing refused (see the `page` fixture)."""
    echo = JobTypeFactory(name="echo")
    log_in(page)
    page.goto("/admin/")
    expect(page.locator("#content h1")).to_have_text("Site administration")
    page.goto("/admin/jobs/jobtype/")
    page.check(f'input[name="_selected_action"][value="{echo.pk}"]')  # the actions' script counts it
    expect(page.locator(".action-counter")).to_have_text("1 of 1 selected")
    page.goto("/admin/jobs/workflow/add/")
    page.click(".add-row a")  # the inline formset's script adds a step form
    expect(page.locator("#steps-group tr.form-row.dynamic-steps")).to_have_count(2)
    screenshot(page, "admin-workflow-add")
    page.goto("/admin/django_celery_beat/periodictask/add/")
    expect(page.locator(".field-crontab_translation")).to_be_hidden()  # django-celery-beat's own script ran
    screenshot(page, "admin-periodic-task")

    page.goto("/api/docs/")
    expect(page.locator(".swagger-ui .opblock-summary-path").first).to_be_visible()
    expect(page.locator(".swagger-ui")).to_contain_text("/api/v1/job-types/")
    screenshot(page, "api-docs")
    page.goto("/api/v1/job-types/")
    expect(page.locator(".response-info")).to_contain_text('"name": "echo"')
    expect(page.locator("button", has_text="Filters")).to_have_css("float", "right")
    screenshot(page, "browsable-api")
    page.click(".navbar .dropdown-toggle")  # the user's menu: its logout is a form's button, no inline script
    with page.expect_navigation():
        page.click("#api-logout")
    log_in(page)  # logged out: sent to the login page
    page.goto("/api/auth/login/")
    expect(page.locator(".well").first).to_have_css("width", "320px")
    response = page.goto("/monitor/")
    assert "script-src 'self'" in response.headers["content-security-policy"]
