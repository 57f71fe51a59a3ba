"""Every admin action of every registered model, as each role.

Each action is POSTed to its model's list as the admin's own form sends it (the
"Go" button; "Delete selected" as its confirmation page sends it), by an
anonymous visitor and by a user of each role, and its effect is measured. A
user the table allows must see it happen; anyone else must see nothing happen,
and either a 403 or a list that does not offer the action. The table
(tables.ADMIN_ACTIONS) must name every action the admin has: a newly
registered action fails the first test until it has a row.
"""

import copy

import pytest
import redis
from django.conf import settings
from django.contrib import admin
from django.contrib.auth.models import User
from django.test import RequestFactory
from django.urls import reverse
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from tests.roles.conftest import USERS, rolled_back
from tests.roles.tables import ADMIN_ACTIONS, BEAT_QUEUE, Outside, at_least


def offered_actions(user: User) -> set[tuple[str, str]]:
    """(model, action) for every action the admin offers `user` on any list."""
    request = RequestFactory().get("/admin/")
    request.user = user
    return {
        (model._meta.label_lower, name)
        for model, model_admin in admin.site._registry.items()
        for name in model_admin.get_actions(request)
    }


def test_the_table_names_every_admin_action_there_is(users):
    assert offered_actions(users["admin"]) == set(ADMIN_ACTIONS), "every admin action needs its row in ADMIN_ACTIONS"


@pytest.fixture
def outside(redis_server):
    broker = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    yield Outside(broker=broker)
    broker.delete(BEAT_QUEUE)


def post_action(client, url: str, action: str, pk) -> object:
    if action == "delete_selected":
        return client.post(url, {"action": action, "_selected_action": [pk], "post": "yes"})
    return client.post(url, {"action": action, "index": 0, "_selected_action": [pk]})


def test_every_admin_action_does_its_work_for_the_roles_allowed_and_nothing_for_the_others(
    world, page_clients, outside
):
    wrong = []
    for (label, action), row in ADMIN_ACTIONS.items():
        url = reverse("admin:{}_{}_changelist".format(*label.split(".")))
        allowed = at_least(row.least).split()
        for user in USERS:
            client = page_clients[user]
            cookies = copy.deepcopy(client.cookies)
            with rolled_back():
                target = row.target(world)
                page = client.get(url)
                offered = page.status_code == 200 and f'<option value="{action}">'.encode() in page.content
                before = row.measure(target, outside)
                response = post_action(client, url, action, target.pk)
                happened = row.measure(target, outside) != before
            client.cookies = cookies
            where = f"{label} {action} as {user}"
            if user in allowed:
                if not happened:
                    wrong.append(f"{where}: nothing happened ({response.status_code})")
                if response.status_code != 302 or not offered:
                    wrong.append(f"{where}: {response.status_code}, offered={offered}; expected 302, offered")
            else:
                if happened:
                    wrong.append(f"{where}: it happened, and it should not have")
                if user == "anonymous":
                    if response.status_code != 302 or "/admin/login/" not in response["Location"]:
                        wrong.append(f"{where}: {response.status_code}, expected 302 to the admin's login")
                elif response.status_code != 403 and offered:
                    wrong.append(f"{where}: the action is offered ({response.status_code}), expected it not to be")
    assert not wrong, "\n".join(wrong)


def test_a_viewer_cannot_disable_the_dispatcher_from_the_admin_but_a_superuser_can(world, page_clients):
    """The beat entry that fires every schedule: django-celery-beat offers its
    actions to anyone who may see the list, Jobsite only to superusers."""
    dispatch = beat_dispatch_entry()
    url = reverse("admin:django_celery_beat_periodictask_changelist")
    for user in ("viewer", "operator", "editor"):
        page = page_clients[user].get(url)
        assert page.status_code == 200 and b"jobsite: fire due schedules" in page.content
        assert b'<option value="disable_tasks">' not in page.content
        for action in ("disable_tasks", "toggle_tasks"):
            post_action(page_clients[user], url, action, dispatch.pk)
            dispatch.refresh_from_db()
            assert dispatch.enabled, f"{user} could {action} the dispatcher"
    post_action(page_clients["admin"], url, "disable_tasks", dispatch.pk)
    dispatch.refresh_from_db()
    assert not dispatch.enabled


def beat_dispatch_entry() -> PeriodicTask:
    every_second = IntervalSchedule.objects.create(every=1, period="seconds")
    return PeriodicTask.objects.create(
        name="jobsite: fire due schedules and scheduled runs", task="jobsite.dispatch", interval=every_second
    )
