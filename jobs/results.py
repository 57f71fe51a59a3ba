"""Jobsite's Celery result backend: django-celery-results' database backend,
except that a run's success and its TaskResult row are written in one
transaction (settings: CELERY_RESULT_BACKEND).

With the stock backend a successful run costs two commits at its end: Celery
stores the TaskResult, then the task_success signal ends the Run. A commit is
what a run costs most on a durable database (an fsync each on PostgreSQL), so
the backend ends the Run itself, with the same service the signal calls, and
tells the signal handler so (jobs/signals.py). Every other task, and every
other state, is stored exactly as django-celery-results stores it; with any
other result backend the signal handler ends runs on its own.
"""

from celery import states
from django_celery_results.backends.database import DatabaseBackend

from . import services
from .executors import NOTIFY_HEADER, PARENT_HEADER, RUN_HEADER

# Set on a task's request once its run's success is recorded with its result.
RECORDED_ATTRIBUTE = "jobsite_success_recorded"


def request_header(request, name: str):
    """A header of a task's request: custom headers are top-level in the
    message protocol 2, under `headers` in older ones."""
    if request is None:
        return None
    return getattr(request, name, None) or (getattr(request, "headers", None) or {}).get(name)


class RunResultBackend(DatabaseBackend):
    def _store_result(self, task_id, result, status, traceback=None, request=None, using=None):
        if status != states.SUCCESS or not request_header(request, RUN_HEADER):
            return super()._store_result(task_id, result, status, traceback, request, using)
        services.run_succeeded(
            run_id=task_id,
            result=result,
            notify_on=request_header(request, NOTIFY_HEADER),
            parent_id=request_header(request, PARENT_HEADER),
            record=lambda: super(RunResultBackend, self)._store_result(
                task_id, result, status, traceback, request, using
            ),
        )
        setattr(request, RECORDED_ATTRIBUTE, True)
        return result
