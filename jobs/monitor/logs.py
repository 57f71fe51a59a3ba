"""The log lines on a run's page (jobs/runs/logs.py stores them): the newest
PAGE_LINES, re-fetched with the page's live refresh while the run goes on.
All of them: `GET /api/v1/runs/{id}/logs/`."""

from django.conf import settings

from jobs.models import Run, RunLogLine

PAGE_LINES = 200


def log_context(run: Run) -> dict:
    lines = RunLogLine.tail(run.pk, PAGE_LINES)
    first = lines[0].seq if lines else None
    return {
        "log": {
            "lines": lines,
            # Within JOBS_RUN_LOG_MAX_LINES: a count over one run's few lines.
            "not_shown": RunLogLine.objects.filter(run=run, seq__lt=first).count() if first else 0,
            "lines_cut": RunLogLine.lines_cut(run.pk),
            "live": not run.is_terminal,
            "level": settings.JOBS_RUN_LOG_LEVEL,
        }
    }
