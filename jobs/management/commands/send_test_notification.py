from django.core.management.base import BaseCommand, CommandError

from jobs import notifications
from jobs.core import errors
from jobs.models import JobType, NotifyOn


class Command(BaseCommand):
    help = "Send a sample notification to a job type's notify_emails and webhook now, to check them."

    def add_arguments(self, parser):
        parser.add_argument("job_type", help="The job type's name.")

    def handle(self, *args, job_type, **options):
        found = JobType.objects.filter(name=job_type).first()
        if found is None:
            raise CommandError(
                f"No job type named '{job_type}': list them with the API (/api/v1/job-types/) or the admin"
            )
        try:
            outcome = notifications.notification_send_test(job_type=found)
        except errors.ServiceError as exc:
            raise CommandError(str(exc)) from None
        for channel, result in outcome.items():
            if result["status"] == "sent":
                self.stdout.write(f"{channel}: sent {result['detail']}")
            else:
                self.stderr.write(f"{channel}: failed: {result['error']}")
        if found.notify_on == NotifyOn.NEVER:
            self.stdout.write(f"Note: notify_on is 'never', so runs of {found.name} notify nobody until you change it.")
        if any(result["status"] != "sent" for result in outcome.values()):
            raise SystemExit(1)
