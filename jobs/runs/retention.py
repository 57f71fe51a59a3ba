"""Deleting old runs (`manage.py purge_runs`, and daily from beat when
JOBS_RUN_RETENTION_DAYS is set).

A run is old when it ended before the cutoff. Only finished runs go: one that
has not ended, or a workflow run with a step still going, is kept whatever its
age. A workflow run goes with its steps, never a step without its workflow
run; django-celery-results' TaskResult rows go with their runs (their task_id
is the run's id).

The work is done in batches, each in its own short transaction, oldest first,
so web, workers and beat keep writing meanwhile (SQLite has one writer at a
time; a batch holds the lock for a moment, not for the whole purge).
"""

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone
from django_celery_results.models import TaskResult

from jobs.models import Run

DEFAULT_BATCH_SIZE = 1000
# A rerun created, in another transaction, of a run being deleted makes that
# batch fail on its foreign key; it is tried again, and then it clears it.
BATCH_ATTEMPTS = 3


@dataclass
class PurgeSummary:
    cutoff: datetime
    days: int
    dry_run: bool
    runs: int = 0  # every run deleted, workflow steps included
    step_runs: int = 0  # of those, workflow steps
    task_results: int = 0
    batches: int = 0
    kept_busy: int = 0  # old workflow runs kept because a step has not ended

    def __str__(self) -> str:
        verb = "Would delete" if self.dry_run else "Deleted"
        steps = f" ({self.step_runs:,} of them workflow steps)" if self.step_runs else ""
        text = (
            f"{verb} {self.runs:,} run{'s' if self.runs != 1 else ''}{steps} and {self.task_results:,} task "
            f"result{'s' if self.task_results != 1 else ''} of runs that ended before "
            f"{self.cutoff:%Y-%m-%d %H:%M %Z} (older than {self.days} day{'s' if self.days != 1 else ''}), "
            f"in {self.batches:,} batch{'es' if self.batches != 1 else ''}."
        )
        if self.kept_busy:
            text += f" Kept {self.kept_busy:,} old workflow run(s) with a step still going."
        return text


def _old_runs(cutoff: datetime, after: tuple | None):
    """Finished top-level runs that ended before `cutoff`, after the keyset
    `after` ((created_at, id) of the last one read), oldest first.

    A run ends after it is created, so `created_at < cutoff` holds for all of
    them, and the keyset is written `created_at >= t AND NOT (created_at = t
    AND id <= i)`: together one range of the created_at index, read in order
    and stopped at the LIMIT. The status is tested as NOT IN the unfinished
    ones (the same runs) so that SQLite does not pick the (status, created_at)
    index instead, which would sort the whole remaining range at every batch."""
    query = Run.objects.filter(
        Q(finished_at__lt=cutoff) | Q(finished_at__isnull=True), parent__isnull=True, created_at__lt=cutoff
    ).exclude(status__in=Run.NOT_TERMINAL)
    if after is not None:
        query = query.filter(created_at__gte=after[0]).exclude(created_at=after[0], id__lte=after[1])
    return query.order_by("created_at", "id")


def runs_purge(
    *, older_than_days: int, batch_size: int = DEFAULT_BATCH_SIZE, dry_run: bool = False, progress=None
) -> PurgeSummary:
    """Delete runs that ended more than `older_than_days` ago, with their steps
    and TaskResult rows, `batch_size` top-level runs per transaction. With
    `dry_run`, count what would go and delete nothing. `progress`, if given, is
    called with the summary after each batch."""
    cutoff = timezone.now() - timedelta(days=older_than_days)
    summary = PurgeSummary(cutoff=cutoff, days=older_than_days, dry_run=dry_run)
    after = None  # (created_at, id) of the last run read: busy ones stay behind it
    while True:
        rows = list(_old_runs(cutoff, after).values_list("created_at", "id")[:batch_size])
        if not rows:
            return summary
        after = rows[-1]
        for attempt in range(1, BATCH_ATTEMPTS + 1):
            try:
                _purge_batch([run_id for _, run_id in rows], summary, dry_run=dry_run)
                break
            except IntegrityError:
                if attempt == BATCH_ATTEMPTS:
                    raise
        summary.batches += 1
        if progress:
            progress(summary)


def _purge_batch(ids: list, summary: PurgeSummary, *, dry_run: bool) -> None:
    with transaction.atomic():
        busy = set(
            Run.objects.filter(parent_id__in=ids, status__in=Run.NOT_TERMINAL)
            .order_by()  # no sort by created_at: it would make the planner read that index whole
            .values_list("parent_id", flat=True)
            .distinct()
        )
        ids = [run_id for run_id in ids if run_id not in busy]
        step_ids = list(Run.objects.filter(parent_id__in=ids).order_by().values_list("id", flat=True))
        every_id = ids + step_ids
        task_results = TaskResult.objects.filter(task_id__in=[str(run_id) for run_id in every_id])
        if dry_run:
            task_result_count = task_results.count()
        else:
            task_result_count = task_results.delete()[0]
            # A newer run that reran one of these keeps existing; it loses the link.
            Run.objects.filter(rerun_of_id__in=every_id).exclude(id__in=every_id).order_by().update(rerun_of=None)
            # Steps first, then their workflow runs: no cascade left to look for.
            Run.objects.filter(id__in=step_ids).only("id").delete()
            Run.objects.filter(id__in=ids).only("id").delete()
    summary.kept_busy += len(busy)
    summary.runs += len(every_id)
    summary.step_runs += len(step_ids)
    summary.task_results += task_result_count
