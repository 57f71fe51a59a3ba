"""`manage.py setup_roles`: the three roles, each with more than the last."""

import pytest
from django.contrib.auth.models import Group, User
from django.core.management import CommandError, call_command

from jobs.core.roles import EDITORS, OPERATORS, VIEWERS

# --- setup_roles ----------------------------------------------------------------------


def perms(group_name: str) -> set[str]:
    group = Group.objects.get(name=group_name)
    return {f"{p.content_type.app_label}.{p.codename}" for p in group.permissions.select_related("content_type")}


def test_it_creates_the_three_roles_each_with_more_than_the_last(db):
    call_command("setup_roles")
    viewers, operators, editors = perms(VIEWERS), perms(OPERATORS), perms(EDITORS)
    assert {"jobs.view_jobtype", "jobs.view_run", "jobs.view_schedule", "django_celery_results.view_taskresult"} <= (
        viewers
    )
    assert all(p.split(".")[1].startswith("view_") for p in viewers)
    assert operators - viewers == {
        "jobs.run_jobtype",
        "jobs.cancel_run",
        "jobs.add_schedule",
        "jobs.change_schedule",
        "jobs.delete_schedule",
    }
    assert editors - operators == {
        "jobs.add_jobtype",
        "jobs.change_jobtype",
        "jobs.delete_jobtype",
        "jobs.add_secret",
        "jobs.change_secret",
        "jobs.delete_secret",
        "jobs.add_triggerurl",
        "jobs.delete_triggerurl",
    }
    # Users, groups and tokens stay with superusers.
    assert not any(p.startswith(("auth.", "authtoken.")) for p in editors)


def test_running_it_again_changes_nothing_and_puts_back_what_was_changed_by_hand(db, capsys):
    call_command("setup_roles")
    before = {name: perms(name) for name in (VIEWERS, OPERATORS, EDITORS)}
    call_command("setup_roles")
    assert capsys.readouterr().out.count("up to date") == 3
    viewers = Group.objects.get(name=VIEWERS)
    viewers.permissions.remove(*viewers.permissions.filter(codename="view_run"))
    viewers.permissions.add(*Group.objects.get(name=EDITORS).permissions.filter(codename="delete_jobtype"))
    call_command("setup_roles")
    assert "Viewers: 1 permissions added, 1 removed" in capsys.readouterr().out
    assert {name: perms(name) for name in (VIEWERS, OPERATORS, EDITORS)} == before
    assert Group.objects.count() == 3


def test_it_leaves_users_alone_unless_told_to_add_one(db):
    ada = User.objects.create_user("ada")
    call_command("setup_roles")
    ada.refresh_from_db()
    assert not ada.is_staff and not ada.groups.exists()
    call_command("setup_roles", "--add", "ada", "operators")
    ada = User.objects.get(pk=ada.pk)
    assert ada.is_staff  # the admin needs it
    assert [g.name for g in ada.groups.all()] == [OPERATORS]
    assert ada.has_perm("jobs.cancel_run") and not ada.has_perm("jobs.change_jobtype")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--add", "nobody", "Viewers"], "No user 'nobody': create it first"),
        (["--add", "ada", "Admins"], "No role 'Admins': use one of Viewers, Operators, Editors."),
    ],
)
def test_it_refuses_an_unknown_user_or_role_and_changes_nothing(db, args, message):
    User.objects.create_user("ada")
    with pytest.raises(CommandError, match=message):
        call_command("setup_roles", *args)
    assert not Group.objects.exists()
    assert not User.objects.get(username="ada").is_staff
