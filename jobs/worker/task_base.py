"""The base class of every Celery task on Jobsite's app (jobsite/celery.py sets
it as the app's `task_cls`, so users' `@shared_task`s get it too).

A Celery signal handler cannot stop the task it was called for; this class
can. jobs/worker/signals.py decides, when a run's task is received, whether it starts
(run_started in jobs/runs/tracking.py) and leaves the answer on the request; `before_start`
acts on it: a task whose run has ended, or that another message already runs,
is dropped, and one whose job type is at max_concurrency is published again a
little later. A task with a `base` class of its own that does not derive from
this one runs regardless (see docs/operations.md, "max_concurrency").
"""

import logging

from celery import Task
from celery.exceptions import Ignore, Reject

logger = logging.getLogger(__name__)

START_ATTRIBUTE = "jobsite_start"


class RunTask(Task):
    def before_start(self, task_id, args, kwargs):
        start = getattr(self.request, START_ATTRIBUTE, None)
        if start is None or start.go:
            return
        if start.wait_for_slot is not None:
            from jobs.runs.executors import WAITS_HEADER
            from jobs.runs.tracking import run_wait_for_slot

            request = self.request
            waits = request.get(WAITS_HEADER) or (request.headers or {}).get(WAITS_HEADER) or 0
            try:
                run_wait_for_slot(run=start.wait_for_slot, waits=int(waits))
            except Exception as exc:
                # Not published again: put this very message back instead.
                logger.warning("Could not publish run %s again; giving its message back", task_id, exc_info=True)
                raise Reject(exc, requeue=True) from None
        # Acknowledged without a result: the run's row says what happened.
        raise Ignore()
