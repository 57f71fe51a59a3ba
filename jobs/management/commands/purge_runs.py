import argparse

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from jobs.runs.retention import DEFAULT_BATCH_SIZE, runs_purge


def _whole_number(minimum: int, maximum: int, what: str):
    def parse(value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            number = None
        if number is None or not minimum <= number <= maximum:
            raise argparse.ArgumentTypeError(f"{value!r}: give a whole number of {what} from {minimum} to {maximum:,}")
        return number

    return parse


class Command(BaseCommand):
    help = (
        "Delete runs that ended more than DAYS ago, with their workflow steps and their task results, "
        "in batches. Runs that have not ended are never deleted."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--older-than",
            type=_whole_number(1, 100_000, "days"),
            metavar="DAYS",
            help="Delete runs that ended more than DAYS ago (default: JOBS_RUN_RETENTION_DAYS).",
        )
        parser.add_argument("--dry-run", action="store_true", help="Count what would be deleted; delete nothing.")
        parser.add_argument(
            "--batch-size",
            type=_whole_number(1, 100_000, "runs"),
            default=DEFAULT_BATCH_SIZE,
            help=f"Runs (not counting workflow steps) deleted per transaction (default {DEFAULT_BATCH_SIZE:,}).",
        )

    def handle(self, *args, older_than, dry_run, batch_size, verbosity, **options):
        days = older_than or settings.JOBS_RUN_RETENTION_DAYS
        if not days:
            raise CommandError("Give --older-than DAYS: JOBS_RUN_RETENTION_DAYS is off (0), so there is no default.")

        def progress(summary):
            if verbosity >= 2:
                self.stdout.write(f"batch {summary.batches:,}: {summary.runs:,} runs so far")

        self.stdout.write(
            str(runs_purge(older_than_days=days, batch_size=batch_size, dry_run=dry_run, progress=progress))
        )
