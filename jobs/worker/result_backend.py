"""Jobsite's Celery result backend (settings: CELERY_RESULT_BACKEND):
django-celery-results' database backend, with two changes. A TaskResult's
result and traceback are cut like the run's own (jobs/core/limits.py). A
successful run's end is written in its TaskResult's transaction, with the
service the task_success signal calls, so it costs one commit, and the signal
handler (jobs/worker/signals.py) is told so. Everything else is stored as
django-celery-results stores it. A result that cannot be stored (not
JSON-serialisable) fails the run instead. Why: docs/architecture.md, "The hot path".
"""

from celery import states
from django.db import router
from django_celery_results.backends.database import DatabaseBackend as ResultsDatabaseBackend
from kombu.exceptions import EncodeError

from jobs.core import statements
from jobs.core.limits import bounded_error, bounded_result, bounded_traceback
from jobs.runs import tracking
from jobs.runs.executors import NOTIFY_HEADER, PARENT_HEADER, RUN_HEADER
from jobs.worker import connections, run_logs, start_marks

# Set on a task's request once its run's success is recorded with its result.
RECORDED_ATTRIBUTE = "jobsite_success_recorded"


def request_header(request, name: str):
    """A header of a task's request: custom headers are top-level in the
    message protocol 2, under `headers` in older ones."""
    if request is None:
        return None
    return getattr(request, name, None) or (getattr(request, "headers", None) or {}).get(name)


def _bounded_exception(result):
    """An exception as Celery stores it ({"exc_type", "exc_message": [args], ...}), its messages cut."""
    if isinstance(result, dict) and isinstance(result.get("exc_message"), list | tuple):
        messages = [bounded_error(arg) if isinstance(arg, str) else arg for arg in result["exc_message"]]
        return {**result, "exc_message": messages}
    return result


class DatabaseBackend(ResultsDatabaseBackend):
    """django-celery-results' backend within Jobsite's size limits."""

    def _store_result(self, task_id, result, status, traceback=None, request=None, using=None):
        connections.checkup_if_idle(request)  # the task may have left the connection idle for long
        if status == states.SUCCESS:
            result = bounded_result(result)
        elif status in states.EXCEPTION_STATES:
            result = _bounded_exception(result)
        if traceback:
            traceback = bounded_traceback(traceback)
        return super()._store_result(task_id, result, status, traceback=traceback, request=request, using=using)


class RunResultBackend(DatabaseBackend):
    """DatabaseBackend that ends a successful run in its TaskResult's transaction."""

    def _store_result(self, task_id, result, status, traceback=None, request=None, using=None):
        if status != states.SUCCESS or not request_header(request, RUN_HEADER):
            return super()._store_result(task_id, result, status, traceback, request, using)
        connections.checkup_if_idle(request)  # the task may have left the connection idle for long
        run_logs.flush_current()  # before the run's end, which its notification reads them after
        late_start = start_marks.marks.take(task_id)  # its start, if not written yet: written with its end
        # run_succeeded cuts the run's copy of the result; this, the TaskResult's.
        try:
            content = self.encode_content(bounded_result(result))
        except EncodeError as exc:
            problem = tracking.result_error_message(exc)
            tracking.run_result_unstorable(run_id=task_id, error=problem, late_start=late_start)
        else:
            problem = tracking.run_succeeded(
                run_id=task_id,
                result=result,
                notify_on=request_header(request, NOTIFY_HEADER),
                parent_id=request_header(request, PARENT_HEADER),
                record=lambda: self._success_statement(task_id, content, request, using),
                late_start=late_start,
            )
        setattr(request, RECORDED_ATTRIBUTE, True)
        if problem:
            # Celery records a task whose result cannot be encoded as failed
            # with this error (the TaskResult row, the worker's log, Flower).
            raise EncodeError(problem)
        return result

    def _success_statement(self, task_id, content: tuple, request, using) -> statements.Statement:
        """The TaskResult row that django-celery-results would store, as one
        upsert, compiled (Django's bulk_create(update_conflicts=True) statement),
        for the run's end to send with its own (Run._end): its SELECT, then INSERT
        in a savepoint, costs a run's end three more statements, and a run's task
        id seldom has a row yet (only an earlier attempt that failed leaves one,
        which this replaces). `content`: the result, encoded (encode_content)."""
        content_type, content_encoding, encoded = content
        meta = {**self._get_meta_from_request(request), "children": self.current_task_children(request)}
        fields = {
            **self._get_extended_properties(request, None),
            "status": states.SUCCESS,
            "result": encoded,
            "meta": self.encode_content(meta)[2],
            "content_type": content_type,
            "content_encoding": content_encoding,
        }
        model = self.TaskModel
        opts = model._meta
        return statements.insert(
            model,
            # What bulk_create inserts for a row without its id.
            [field for field in opts.concrete_fields if not field.generated and field is not opts.auto_field],
            model(task_id=task_id, **fields),
            using=using or router.db_for_write(model),
            update_fields=[opts.get_field(name) for name in [*fields, "date_done"]],
            unique_fields=[opts.get_field("task_id")],
        )
