"""django-celery-results' database backend, within Jobsite's size limits.

The TaskResult row of a task keeps its return value (or its exception) and
its traceback; they are cut like the run's own (jobs/limits.py), so a task
returning megabytes does not store them twice.
"""

from celery import states
from django_celery_results.backends.database import DatabaseBackend as ResultsDatabaseBackend

from .limits import bounded_error, bounded_result, bounded_traceback


def _bounded_exception(result):
    """An exception as Celery stores it ({"exc_type", "exc_message": [args], ...}), its messages cut."""
    if isinstance(result, dict) and isinstance(result.get("exc_message"), list | tuple):
        messages = [bounded_error(arg) if isinstance(arg, str) else arg for arg in result["exc_message"]]
        return {**result, "exc_message": messages}
    return result


class DatabaseBackend(ResultsDatabaseBackend):
    def _store_result(self, task_id, result, status, traceback=None, request=None, using=None):
        if status == states.SUCCESS:
            result = bounded_result(result)
        elif status in states.EXCEPTION_STATES:
            result = _bounded_exception(result)
        if traceback:
            traceback = bounded_traceback(traceback)
        return super()._store_result(task_id, result, status, traceback=traceback, request=request, using=using)
