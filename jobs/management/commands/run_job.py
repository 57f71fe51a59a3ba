import json
import sys
import time
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from jobs.core import errors
from jobs.core.kinds import split_emails
from jobs.models import JobType, Run
from jobs.runs.trigger import run_create, runs_create_many

# How many bad lines of a params file the error names by number (it names the first in full).
LINES_NAMED = 10


class Command(BaseCommand):
    help = (
        "Run a job type now and print the run id; with --wait, follow it to the end. "
        "With --params-file, one run per line of the file, all or none, and their ids."
    )

    def add_arguments(self, parser):
        parser.add_argument("name", help="The job type's name.")
        parser.add_argument("--params", default=None, help="Params as a JSON object, e.g. '{\"x\": 1}'.")
        parser.add_argument(
            "--params-file",
            default=None,
            metavar="FILE",
            help="One run per line: each line a JSON params object ('-' reads them from stdin). "
            "All of them are created, in one transaction, or none.",
        )
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

    def handle(self, *args, name, params, params_file, run_at, notify, wait, timeout, **options):
        if params_file is not None and (params is not None or wait):
            raise CommandError("--params-file gives the params of every run: leave out --params and --wait")
        if params_file is not None:
            params_list, line_numbers = read_params_file(params_file)
        else:
            try:
                params = json.loads(params or "{}")
            except ValueError as exc:
                raise CommandError(
                    f"--params is not valid JSON ({exc}): give an object such as '{{\"x\": 1}}'"
                ) from None
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
        notify_emails = [email for value in notify for email in split_emails(value)]
        if params_file is not None:
            try:
                runs = runs_create_many(
                    job_type=job_type,
                    params_list=params_list,
                    trigger=Run.Trigger.CLI,
                    run_at=run_at,
                    notify_emails=notify_emails,
                )
            except errors.InvalidInput as exc:
                raise CommandError(bad_lines_message(exc, params_file, line_numbers)) from None
            except errors.ServiceError as exc:
                raise CommandError("; ".join(exc.messages)) from None
            self.stdout.write("\n".join(str(run.pk) for run in runs))
            return
        try:
            run, _ = run_create(
                job_type=job_type,
                params=params,
                trigger=Run.Trigger.CLI,
                run_at=run_at,
                notify_emails=notify_emails,
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


def read_params_file(path: str) -> tuple[list, list[int]]:
    """The params of each non-blank line of a JSON lines file ('-': stdin), and
    each one's line number; CommandError naming the first line that is not JSON."""
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise CommandError(f"--params-file {path}: {exc.strerror}: give a readable file, or - for stdin") from None
    except UnicodeDecodeError:
        raise CommandError(f"--params-file {path} is not UTF-8 text: give JSON lines") from None
    params_list, line_numbers = [], []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            params_list.append(json.loads(line))
        except ValueError as exc:
            raise CommandError(
                f'{path}, line {number}: not valid JSON ({exc}): give one params object per line, e.g. {{"x": 1}}'
            ) from None
        line_numbers.append(number)
    if not params_list:
        raise CommandError(f'{path} has no params: give one JSON object per line, e.g. {{"x": 1}}')
    return params_list, line_numbers


def bad_lines_message(exc: errors.InvalidInput, path: str, line_numbers: list[int]) -> str:
    """One line: the first bad line of the file and what is wrong with it, then
    the numbers of the other bad lines; or what is wrong with an option."""
    by_index = exc.errors.get("params")
    if not isinstance(by_index, dict):
        return "; ".join(exc.messages)
    bad = sorted(by_index, key=int)
    first = line_numbers[int(bad[0])]
    message = f"{path}, line {first}: " + "; ".join(by_index[bad[0]])
    others = [str(line_numbers[int(index)]) for index in bad[1:]]
    if others:
        named = ", ".join(others[:LINES_NAMED]) + (", ..." if len(others) > LINES_NAMED else "")
        message += f" (and {len(others)} more bad line{'s' if len(others) > 1 else ''}: {named})"
    options = [msg for msg in exc.messages if not msg.startswith("params[")]
    return "; ".join([message, *options]) + "; nothing was created"
