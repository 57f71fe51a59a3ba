from pathlib import Path

from django.core.management.base import BaseCommand

from jobs import director
from jobs.definitions import import_definitions
from jobs.yaml_lines import FileError

from ._files import file_error, read_yaml, report_schedules


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

    def handle(self, *args, file, schemas, **options):
        path = Path(file)
        document = read_yaml(path)
        try:
            imported = director.read(document, schemas_dir=Path(schemas) if schemas else path.parent / "schemas")
            summary = import_definitions(imported.job_types, lines=imported.lines)
        except FileError as exc:
            raise file_error(path, exc) from None
        self.stdout.write(str(summary))
        report_schedules(self, imported.schedules)
