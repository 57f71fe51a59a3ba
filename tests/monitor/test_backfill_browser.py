"""A schedule's backfills on its page, in headless Chromium (fixtures of test_browser.py)."""

from datetime import UTC, datetime

import pytest
from playwright.sync_api import expect

from jobs.models import Run, Schedule
from jobs.schedules.backfill import backfill_create
from tests.factories import JobTypeFactory
from tests.monitor.test_browser import browser, log_in, page, screenshot  # noqa: F401 (fixtures)

pytestmark = pytest.mark.worker


def test_a_backfill_shows_its_progress_on_the_schedules_page_and_is_cancelled_there(page):  # noqa: F811
    schedule = Schedule.objects.create(name="daily-report", job_type=JobTypeFactory(name="echo"), cron="0 5 * * *")
    backfill = backfill_create(
        schedule=schedule, start=datetime(2026, 1, 1, tzinfo=UTC), end=datetime(2026, 1, 4, tzinfo=UTC)
    )
    log_in(page, "/monitor/schedules/")
    page.locator(f'#schedules [data-schedule="{schedule.pk}"] >> text=backfills').click()
    expect(page.locator("h1")).to_have_text("Schedule daily-report")
    row = page.locator(f'#backfills [data-backfill="{backfill.pk}"]')
    expect(row.locator(".backfill-progress")).to_have_text("0 / 3")
    expect(row.locator(".backfill-state")).to_have_text("running")
    screenshot(page, "schedule-backfills")

    messages = []
    page.once("dialog", lambda dialog: (messages.append(dialog.message), dialog.accept()))
    row.locator(".cancel-backfill").click()
    expect(page.locator(".message.success")).to_have_text("Backfill cancelled: 3 runs not started cancelled.")
    expect(row.locator(".backfill-progress")).to_have_text("3 / 3")
    expect(row.locator(".backfill-state")).to_contain_text("cancelled")
    expect(row.locator(".cancel-backfill")).to_have_count(0)
    assert messages == ["Cancel this backfill? Its runs not started yet are cancelled."]
    assert set(Run.objects.filter(backfill=backfill).values_list("status", flat=True)) == {"cancelled"}
    screenshot(page, "schedule-backfill-cancelled")
