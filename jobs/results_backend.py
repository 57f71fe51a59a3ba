"""django-celery-results' database backend, within Jobsite's size limits.

The TaskResult row of a task keeps its return value and traceback; they are
cut like the run's own (jobs/limits.py), so a task returning megabytes does
not store them twice.
"""

from celery import states
from django_celery_results.backends.database import DatabaseBackend as ResultsDatabaseBackend

from .limits import bounded_result, bounded_traceback


class DatabaseBackend(ResultsDatabaseBackend):
    def _store_result(self, task_id, result, status, traceback=None, request=None, using=None):
        if status == states.SUCCESS:
            result = bounded_result(result)
        if traceback:
            traceback = bounded_traceback(traceback)
        return super()._store_result(task_id, result, status, traceback=traceback, request=request, using=using)
