from django.core.management.base import BaseCommand, CommandError

from jobs.core.secrets import SecretsError
from jobs.definitions.secrets import secrets_rotate


class Command(BaseCommand):
    help = (
        "Encrypt every secret again with the first key of JOBS_SECRETS_KEYS, after a new key was put first; "
        "then the old keys can be taken out of JOBS_SECRETS_KEYS on every process (docs/security.md, Secrets)."
    )

    def handle(self, *args, **options):
        try:
            count = secrets_rotate()
        except SecretsError as exc:
            raise CommandError(f"Nothing changed: {exc}") from None
        self.stdout.write(f"Encrypted {count} secret(s) again with the first key of JOBS_SECRETS_KEYS.")
