import os
import secrets

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = (
        "Create the admin user once: from DJANGO_SUPERUSER_USERNAME and DJANGO_SUPERUSER_PASSWORD "
        "when set, otherwise 'admin' with a random password printed this one time."
    )

    def handle(self, *args, **options):
        User = get_user_model()
        username = os.environ.get("DJANGO_SUPERUSER_USERNAME") or "admin"
        password = os.environ.get("DJANGO_SUPERUSER_PASSWORD")
        if User.objects.filter(username=username).exists():
            self.stdout.write(f"Admin user '{username}' already exists.")
            return
        if not password and User.objects.filter(is_superuser=True).exists():
            self.stdout.write("A superuser already exists.")
            return
        generated = not password
        password = password or secrets.token_urlsafe(12)
        User.objects.create_superuser(username=username, email="", password=password)
        if generated:
            self.stdout.write(f"Created admin user '{username}' with password: {password}")
            self.stdout.write("It is shown only this once; change it with: manage.py changepassword " + username)
        else:
            self.stdout.write(f"Created admin user '{username}' from DJANGO_SUPERUSER_USERNAME/PASSWORD.")
