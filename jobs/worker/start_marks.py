"""Starts written a moment late: run_started's `defer` (jobs/runs/tracking.py).

Most tasks are short. Their run's start is written by the UPDATE that ends the
run (run_succeeded's `late_start`): one write and one commit per run where
there were two, and on SQLite one take of the database's write lock where
there were two. A task still running JOBS_START_MARK_DELAY_SECONDS after it
began has its start written then (within a quarter of the delay more), by a
thread of the pool process running it, so that the pages show it running. A
failure writes it before anything else (`flush`), so that the attempt counts
for the run's retries as any start does, and so does the end of a task that
neither succeeded nor failed (postrun).
What a run `queued` while its task runs means for the rest of Jobsite:
docs/architecture.md, "The hot path".
"""

import logging
import os
import threading
import time

from django import db
from django.conf import settings

from jobs.runs.tracking import LateStart

logger = logging.getLogger(__name__)

# A start the thread could not write (the database was away) is tried again this much later.
RETRY_SECONDS = 5.0


class StartMarks:
    """The starts of the tasks this process runs, not written yet, by run id;
    a thread writes each once it is due."""

    def __init__(self):
        self._reset()

    def _reset(self) -> None:
        """Nothing deferred, no thread; in a forked child too (os.register_at_fork):
        none of the parent's starts, nor its thread, nor its lock."""
        self._lock = threading.Condition()
        self._due: dict[str, tuple[float, LateStart]] = {}
        self._writing: set[str] = set()
        self._thread: threading.Thread | None = None
        self._period = 0.0  # how long the thread waits between looks

    def defer(self, run_id: str, start: LateStart) -> None:
        """Write `start` in JOBS_START_MARK_DELAY_SECONDS, unless taken before.
        The thread is not woken for it: it looks every quarter of the delay, so
        that the usual task, which ends first, costs it nothing (waking it for
        each task cost more CPU than the write it saves)."""
        delay = settings.JOBS_START_MARK_DELAY_SECONDS
        with self._lock:
            self._due[run_id] = (time.monotonic() + delay, start)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._write_due, name="jobsite-start-marks", daemon=True)
                self._thread.start()
            elif delay / 4 < self._period:  # the delay was shortened since it began to wait
                self._lock.notify_all()

    def take(self, run_id: str) -> LateStart | None:
        """The run's start if it is still not written, which is then the caller's
        to write; None if it was written (a write under way is waited for) or
        was never deferred."""
        with self._lock:
            while run_id in self._writing:
                self._lock.wait()
            due = self._due.pop(run_id, None)
        return due[1] if due else None

    def flush(self, run_id: str) -> None:
        """Write the run's start now if it is still not written."""
        start = self.take(run_id)
        if start is not None:
            start.write()

    def _write_due(self) -> None:
        while True:
            with self._lock:
                now = time.monotonic()
                due = [run_id for run_id, (at, _) in self._due.items() if at <= now]
                if not due:
                    self._period = settings.JOBS_START_MARK_DELAY_SECONDS / 4
                    self._lock.wait(self._period)
                    continue
                starts = {run_id: self._due.pop(run_id)[1] for run_id in due}
                self._writing.update(starts)
            unwritten = {}
            try:
                db.close_old_connections()  # this thread's connection, as the task's is checked
                for run_id, start in starts.items():
                    try:
                        start.write()
                    except Exception:  # the database was away: with the end, or tried again
                        logger.warning("Could not record the start of run %s yet", run_id, exc_info=True)
                        unwritten[run_id] = start
            finally:
                with self._lock:
                    self._writing.difference_update(starts)
                    retry_at = time.monotonic() + RETRY_SECONDS
                    self._due.update({run_id: (retry_at, start) for run_id, start in unwritten.items()})
                    self._lock.notify_all()


marks = StartMarks()
os.register_at_fork(after_in_child=marks._reset)
