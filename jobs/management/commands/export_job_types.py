from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from jobs.core.yaml_lines import dump
from jobs.importexport.job_files import export_definitions

HEADER = (
    "# Jobsite job types, workflows and schedules; read back with: manage.py import_job_types FILE\n"
    "# Credentials show as ********: importing them keeps the stored values; a new job type needs the real ones.\n"
)


class Command(BaseCommand):
    help = "Write every job type, workflow and schedule as YAML, which import_job_types reads back unchanged."

    def add_arguments(self, parser):
        parser.add_argument("--output", "-o", help="File to write (default: standard output).")

    def handle(self, *args, output, **options):
        text = HEADER + dump(export_definitions())
        if output:
            try:
                Path(output).write_text(text, encoding="utf-8")
            except OSError as exc:
                raise CommandError(f"Cannot write {output}: {exc.strerror}") from None
            self.stderr.write(f"Wrote {output}")
        else:
            self.stdout.write(text, ending="")
