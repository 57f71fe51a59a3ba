from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from jobs.core.roles import RoleError, role_named, roles_sync


class Command(BaseCommand):
    help = (
        "Create the groups Viewers, Operators and Editors with their permissions, or bring them back to "
        "their definitions; safe to run again. With --add USER ROLE, also put a user in a role and give "
        "them staff status, which the admin requires."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--add",
            nargs=2,
            action="append",
            default=[],
            metavar=("USER", "ROLE"),
            help="Put USER (a username) in ROLE (Viewers, Operators or Editors) and let them sign in to the admin. "
            "Repeat for more users.",
        )

    def handle(self, *args, add, **options):
        User = get_user_model()
        try:
            # Check every --add before changing anything.
            additions = []
            for username, role in add:
                user = User.objects.filter(**{User.USERNAME_FIELD: username}).first()
                if user is None:
                    raise CommandError(
                        f"No user '{username}': create it first (manage.py createsuperuser makes admins; "
                        "the admin's Users page makes anyone)."
                    )
                additions.append((user, role_named(role)))
            with transaction.atomic():
                changes = roles_sync()
                for user, role in additions:
                    user.groups.add(Group.objects.get(name=role))
                    if not user.is_staff:
                        user.is_staff = True
                        user.save(update_fields=["is_staff"])
        except RoleError as exc:
            raise CommandError(str(exc)) from None
        for role, (created, added, removed) in changes.items():
            if created:
                self.stdout.write(f"{role}: created, with {added} permissions.")
            elif added or removed:
                self.stdout.write(f"{role}: {added} permissions added, {removed} removed, to match its definition.")
            else:
                self.stdout.write(f"{role}: up to date.")
        for user, role in additions:
            self.stdout.write(f"{user.get_username()} is in {role}, and may sign in to the admin.")
