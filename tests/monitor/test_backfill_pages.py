"""A schedule's page: its backfills with their progress, and their cancel button for Operators."""

from datetime import UTC, datetime

import pytest
from django.contrib.auth.models import Group, User
from django.urls import reverse

from jobs.core.roles import OPERATORS, roles_sync
from jobs.models import Run, Schedule
from jobs.schedules.backfill import backfill_create
from tests.factories import JobTypeFactory
from tests.monitor.test_pages import section

pytestmark = pytest.mark.postgres  # run on PostgreSQL too (see pyproject.toml)


@pytest.fixture
def backfilled(db, admin_user):
    schedule = Schedule.objects.create(name="daily", job_type=JobTypeFactory(name="echo"), cron="0 5 * * *")
    backfill = backfill_create(
        schedule=schedule, start=datetime(2026, 1, 1, tzinfo=UTC), end=datetime(2026, 1, 5, tzinfo=UTC),
        requested_by=admin_user,
    )  # fmt: skip
    first = Run.objects.filter(backfill=backfill).order_by("schedule_tick").first()
    Run.objects.filter(pk=first.pk).update(status=Run.Status.SUCCEEDED)
    return schedule, backfill


@pytest.fixture
def operator_client(client, db):
    """A member of the Operators role (jobs/core/roles.py): they manage schedules."""
    roles_sync()
    user = User.objects.create_user("op")
    user.groups.add(Group.objects.get(name=OPERATORS))
    client.force_login(user)
    return client


def test_the_schedule_page_shows_each_backfills_progress(viewer_client, backfilled):
    schedule, backfill = backfilled
    response = viewer_client.get(reverse("monitor:schedule", args=[schedule.pk]))
    assert response.status_code == 200
    row = section(response, "backfills")
    assert f'data-backfill="{backfill.pk}"' in row
    assert '<span class="backfill-progress">1 / 4</span>' in row
    assert "1 succeeded, 0 failed, 0 cancelled, 0 active, 3 waiting" in row
    assert "cancel-backfill" not in row  # Viewers see, and cancel nothing
    listed = viewer_client.get(reverse("monitor:schedules")).content.decode()
    assert reverse("monitor:schedule", args=[schedule.pk]) in listed


def test_an_operator_cancels_a_backfill_from_its_schedules_page(operator_client, backfilled):
    schedule, backfill = backfilled
    page = reverse("monitor:schedule", args=[schedule.pk])
    assert "cancel-backfill" in section(operator_client.get(page), "backfills")
    response = operator_client.post(reverse("monitor:backfill-cancel", args=[schedule.pk, backfill.pk]), follow=True)
    assert response.redirect_chain == [(page, 302)]
    assert "Backfill cancelled: 3 runs not started cancelled." in response.content.decode()
    row = section(response, "backfills")
    assert '<span class="backfill-progress">4 / 4</span>' in row and "cancel-backfill" not in row
    assert Run.objects.filter(backfill=backfill, status=Run.Status.CANCELLED).count() == 3


def test_a_viewer_may_not_cancel_a_backfill(viewer_client, backfilled):
    schedule, backfill = backfilled
    response = viewer_client.post(reverse("monitor:backfill-cancel", args=[schedule.pk, backfill.pk]))
    assert response.status_code == 403
    assert not Run.objects.filter(status=Run.Status.CANCELLED).exists()
