"""Jobsite's roles: three groups with the permissions each kind of user needs.

    Viewers    see everything: job types, workflows, schedules, runs, and the
               Celery beat and result records; change nothing
    Operators  also run job types and workflows, cancel and rerun runs, and
               create, change and delete schedules
    Editors    also create, change and delete job types, workflows and secrets,
               and create and revoke job types' trigger URLs

Users, groups and API tokens stay with superusers. `manage.py setup_roles`
makes the groups match these definitions (run it again after an upgrade); add
users with `manage.py setup_roles --add USER ROLE` or in the admin.
"""

from django.contrib.auth.models import Group, Permission
from django.db import transaction
from django.db.models import Q

# Apps whose records every role may see (the admin lists them).
VISIBLE_APPS = ("jobs", "django_celery_beat", "django_celery_results")

OPERATE = ["jobs.run_jobtype", "jobs.cancel_run", "jobs.add_schedule", "jobs.change_schedule", "jobs.delete_schedule"]
# Workflows are job types of kind `workflow`: the job type permissions cover them.
EDIT = [
    "jobs.add_jobtype",
    "jobs.change_jobtype",
    "jobs.delete_jobtype",
    # Secrets are what job types use: written (never read) by those who write job types.
    "jobs.add_secret",
    "jobs.change_secret",
    "jobs.delete_secret",
    # A job type's trigger URLs: created and revoked with it (Viewers see them, without tokens).
    "jobs.add_triggerurl",
    "jobs.delete_triggerurl",
]

VIEWERS, OPERATORS, EDITORS = "Viewers", "Operators", "Editors"


class RoleError(Exception):
    pass


def view_permissions() -> list[Permission]:
    return list(
        Permission.objects.filter(
            content_type__app_label__in=VISIBLE_APPS, codename__startswith="view_"
        ).select_related("content_type")
    )


def named_permissions(names: list[str]) -> list[Permission]:
    query = Q()
    for name in names:
        app_label, codename = name.split(".")
        query |= Q(content_type__app_label=app_label, codename=codename)
    found = list(Permission.objects.filter(query).select_related("content_type"))
    missing = set(names) - {f"{p.content_type.app_label}.{p.codename}" for p in found}
    if missing:
        raise RoleError(f"Permissions {', '.join(sorted(missing))} do not exist yet: run manage.py migrate first.")
    return found


def role_permissions() -> dict[str, list[Permission]]:
    view = view_permissions()
    if not any(p.content_type.app_label == "jobs" for p in view):
        raise RoleError("Jobsite's permissions do not exist yet: run manage.py migrate first.")
    operate = named_permissions(OPERATE)
    edit = named_permissions(EDIT)
    return {VIEWERS: view, OPERATORS: view + operate, EDITORS: view + operate + edit}


def roles_sync() -> dict[str, tuple[bool, int, int]]:
    """Create the role groups, or bring their permissions back to the definitions.

    Returns, per role: whether its group was created, and how many permissions
    were added to and removed from it.
    """
    changes = {}
    with transaction.atomic():
        for name, permissions in role_permissions().items():
            group, created = Group.objects.get_or_create(name=name)
            wanted = {p.pk for p in permissions}
            current = set(group.permissions.values_list("pk", flat=True))
            group.permissions.set(permissions)
            changes[name] = (created, len(wanted - current), len(current - wanted))
    return changes


def role_named(name: str) -> str:
    """The role called `name` (any case, singular or plural)."""
    for role in (VIEWERS, OPERATORS, EDITORS):
        if name.lower() in (role.lower(), role.lower().rstrip("s")):
            return role
    raise RoleError(f"No role '{name}': use one of {VIEWERS}, {OPERATORS}, {EDITORS}.")
