"""Capturing a run's log on the worker, without changing the task's code
(the store: jobs/runs/logs.py).

Installed once per worker process, at its first run's task (so in each pool
process of a prefork worker, after the fork):
- a logging handler on the root logger and on Celery's task logger (which
  does not propagate to the root), at JOBS_RUN_LOG_LEVEL; records of Celery's
  own loggers are left out (its "Task ... raised" line repeats the run's error);
- wrappers around sys.stdout and sys.stderr: a print is a line of the run,
  and then goes where it went before (with worker_redirect_stdouts, Celery's
  proxy logs it to the worker's log; that record is not captured twice);
- a daemon thread that writes the buffered lines every FLUSH_SECONDS.
Each adds lines to the capture of the thread it is called in, if that thread
runs a run's task; anything else passes through untouched.

When JOBS_RUN_LOG_LEVEL is below the level the worker logs at (its
--loglevel), the root logger is lowered to it and its handlers are raised to
the old level, so the worker's own log says what it said before.
"""

import logging
import os
import sys
import threading
import time

from django import db
from django.conf import settings

from jobs.runs import logs
from jobs.runs.logs import begin, end, flush_current

__all__ = ["begin", "end", "flush_current", "install"]

# Logger names whose records are Celery's account of the task, not the task's own.
CELERY_LOGGERS = ("celery", "kombu", "amqp", "billiard")

_local = threading.local()
_installed_pid: int | None = None
_install_lock = threading.Lock()


def _writing() -> bool:
    return getattr(_local, "writing", False)


class RunLogHandler(logging.Handler):
    """Adds each record to the current thread's run capture."""

    def __init__(self, level: int) -> None:
        super().__init__(level)
        self.setFormatter(logging.Formatter("%(message)s"))  # the message, and a traceback if any

    def emit(self, record: logging.LogRecord) -> None:
        capture = logs.current()
        if capture is None or _writing() or getattr(_local, "last_record", None) is record:
            return
        if record.name.split(".", 1)[0] in CELERY_LOGGERS and not record.name.startswith("celery.task."):
            return
        _local.last_record = record  # the root and the task logger may both see one record
        try:
            capture.add(record.levelname, record.name, self.format(record))
        except Exception:
            self.handleError(record)


class RunStream:
    """A stream (sys.stdout or sys.stderr) whose text is also a run's lines."""

    def __init__(self, stream, level: str) -> None:
        self._stream = stream
        self._level = level

    def write(self, text):
        capture = logs.current()
        if capture is not None and not _writing() and isinstance(text, str):
            capture.write(self._level, text)
        previous, _local.writing = _writing(), True
        try:
            return self._stream.write(text)
        finally:
            _local.writing = previous

    def writelines(self, lines) -> None:
        for line in lines:
            self.write(line)

    def __getattr__(self, name: str):
        return getattr(self._stream, name)


def install() -> None:
    """Install the capture in this process, once (again in a forked child)."""
    global _installed_pid
    if _installed_pid == os.getpid():
        return
    with _install_lock:
        if _installed_pid == os.getpid():
            return
        if _installed_pid is None:  # a forked child inherits the handler and wrappers
            level = logging.getLevelName(settings.JOBS_RUN_LOG_LEVEL)
            handler = RunLogHandler(level)
            for name in ("", "celery.task"):
                _lower_to(logging.getLogger(name), level)
                logging.getLogger(name).addHandler(handler)
            sys.stdout = RunStream(sys.stdout, "STDOUT")
            sys.stderr = RunStream(sys.stderr, "STDERR")
        threading.Thread(target=_flush_forever, name="jobsite-run-logs", daemon=True).start()
        _installed_pid = os.getpid()


def _lower_to(target: logging.Logger, level: int) -> None:
    effective = target.getEffectiveLevel()
    if level >= effective:
        return
    for handler in target.handlers:
        if handler.level < effective:
            handler.setLevel(effective)
    target.setLevel(level)


def _flush_forever() -> None:
    while True:
        time.sleep(logs.FLUSH_SECONDS)
        try:
            logs.flush_active()
        finally:
            # This thread's own connection: checked as Django checks a request's.
            if db.connection.errors_occurred:
                db.connection.close()
