from pathlib import Path

from django.core.management.base import BaseCommand
from django.db import transaction

from jobs.core.yaml_lines import FileError
from jobs.importexport import director
from jobs.importexport.job_files import import_definitions, import_schedules
from jobs.management.commands._files import command_author, file_error, read_yaml


class Command(BaseCommand):
    help = (
        "Import a celery-director workflows.yml: a task job type per task, a workflow per entry "
        "(chains, groups, queues, hooks, schema), and its periodic entries. Importing it again changes nothing."
    )

    def add_arguments(self, parser):
        parser.add_argument("file", help="The workflows.yml to read.")
        parser.add_argument(
            "--schemas", help="Folder of the JSON schemas that 'schema:' names (default: schemas/ next to the file)."
        )
        parser.add_argument(
            "--user",
            help="Username the changes are recorded under in the admin's history "
            "(default: an inactive account named 'system').",
        )

    def handle(self, *args, file, schemas, user, **options):
        path = Path(file)
        document = read_yaml(path)
        try:
            imported = director.read(document, schemas_dir=Path(schemas) if schemas else path.parent / "schemas")
            with transaction.atomic():  # all or nothing, schedules and their record included
                by = command_author("import_workflows", path, user)
                summary = import_definitions(imported.job_types, lines=imported.lines, by=by)
                schedules = import_schedules(imported.schedules, lines=imported.schedule_lines, by=by)
        except FileError as exc:
            raise file_error(path, exc) from None
        self.stdout.write(str(summary))
        self.stdout.write(str(schedules))
