from pathlib import Path

from django.core.management.base import BaseCommand
from django.db import transaction

from jobs.core.yaml_lines import FileError, line_of
from jobs.importexport.job_files import import_definitions, import_schedules
from jobs.management.commands._files import command_author, file_error, read_yaml

KEYS = ("job_types", "schedules")


class Command(BaseCommand):
    help = (
        "Create or update job types, workflows and schedules from a file written by export_job_types. All or nothing."
    )

    def add_arguments(self, parser):
        parser.add_argument("file", help="A YAML file from export_job_types.")
        parser.add_argument(
            "--user",
            help="Username the changes are recorded under in the admin's history "
            "(default: an inactive account named 'system').",
        )

    def handle(self, *args, file, user, **options):
        path = Path(file)
        document = read_yaml(path)
        try:
            if not isinstance(document, dict) or "job_types" not in document:
                raise FileError(line_of(document), "expected a mapping with 'job_types' (as export_job_types writes)")
            for key in document:
                if key not in KEYS:
                    raise FileError(line_of(document, key), f"unknown key '{key}'; the file has {', '.join(KEYS)}")
            entries = document["job_types"]
            if not isinstance(entries, list):
                raise FileError(line_of(document, "job_types"), "job_types must be a list of job types")
            schedule_entries = document.get("schedules") or []
            if not isinstance(schedule_entries, list):
                raise FileError(line_of(document, "schedules"), "schedules must be a list of schedules")
            with transaction.atomic():  # all or nothing, schedules and their record included
                by = command_author("import_job_types", path, user)
                summary = import_definitions(entries, by=by)
                schedules = import_schedules(schedule_entries, by=by)
        except FileError as exc:
            raise file_error(path, exc) from None
        self.stdout.write(str(summary))
        self.stdout.write(str(schedules))
