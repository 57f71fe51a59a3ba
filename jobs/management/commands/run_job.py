import json
import time

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from jobs.core import errors
from jobs.core.kinds import split_emails
from jobs.models import JobType, Run
from jobs.runs.trigger import run_create


class Command(BaseCommand):
    help = "Run a job type now and print the run id; with --wait, follow it to the end."

    def add_arguments(self, parser):
        parser.add_argument("name", help="The job type's name.")
        parser.add_argument("--params", default="{}", help="Params as a JSON object, e.g. '{\"x\": 1}'.")
        parser.add_argument(
            "--at", dest="run_at", default=None, help="Run later, at this ISO 8601 time (no offset: TIME_ZONE)."
        )
        parser.add_argument(
            "--notify",
            action="append",
            default=[],
            metavar="EMAIL",
            help="Also tell this address about the run (repeat, or separate with commas), under its notify_on.",
        )
        parser.add_argument("--wait", action="store_true", help="Wait for the run to end and print its outcome.")
        parser.add_argument("--timeout", type=float, default=None, help="With --wait: give up after this many seconds.")

    def handle(self, *args, name, params, run_at, notify, wait, timeout, **options):
        try:
            params = json.loads(params)
        except ValueError as exc:
            raise CommandError(f"--params is not valid JSON ({exc}): give an object such as '{{\"x\": 1}}'") from None
        if run_at is not None:
            try:
                parsed = parse_datetime(run_at)
            except ValueError:  # well-formed but impossible, e.g. month 13
                parsed = None
            if parsed is None:
                raise CommandError(f"--at '{run_at}' is not an ISO 8601 time: give one like 2030-01-31T09:30:00+01:00")
            run_at = parsed if timezone.is_aware(parsed) else timezone.make_aware(parsed)
        job_type = JobType.objects.filter(name=name).first()
        if job_type is None:
            raise CommandError(f"No job type named '{name}': list them with the API (/api/v1/job-types/) or the admin")
        try:
            run, _ = run_create(
                job_type=job_type,
                params=params,
                trigger=Run.Trigger.CLI,
                run_at=run_at,
                notify_emails=[email for value in notify for email in split_emails(value)],
            )
        except errors.ServiceError as exc:
            raise CommandError("; ".join(exc.messages)) from None
        self.stdout.write(str(run.pk))
        if not wait:
            return
        deadline = time.monotonic() + timeout if timeout else None
        while not run.is_terminal:
            if deadline and time.monotonic() > deadline:
                raise CommandError(f"Run {run.pk} is still {run.status} after {timeout:g} s")
            time.sleep(0.25)
            run.refresh_from_db()
        if run.status == Run.Status.SUCCEEDED:
            self.stdout.write(json.dumps(run.result, indent=2, default=str))
            return
        self.stderr.write(f"Run {run.status}" + (f": {run.error}" if run.error else ""))
        raise SystemExit(1)
