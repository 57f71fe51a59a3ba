"""A run's log: the lines its task logs or prints, and its command's output,
captured on the worker per attempt and stored as RunLogLine rows.

The worker (jobs/worker/run_logs.py) begins a capture when a run's task
starts, in the thread that runs it, and ends it when the task ends; meanwhile
its logging handler and stream wrappers, and the command executor, add lines
to `current()`. Lines are buffered and written in batches (one INSERT per
batch, never one per line): every FLUSH_SECONDS by the worker's flusher
thread, and when the task ends, before its end is recorded, so that the
run's notification finds them.

Bounded per run by JOBS_RUN_LOG_MAX_LINES and JOBS_RUN_LOG_MAX_BYTES (UTF-8
bytes of the messages), across attempts: the newest lines are kept. `seq`
numbers every line the run ever had, cut ones included, so the number of
lines cut is the first kept line's seq less one (RunLogLine.lines_cut).
See docs/guide.md, "Run logs".
"""

import logging
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.db import transaction
from django.db.models import OuterRef, Subquery
from django.utils import timezone

from jobs.core.durability import progress_commit
from jobs.core.redaction import mask_urls
from jobs.models import Run, RunLogLine

logger = logging.getLogger(__name__)

FLUSH_SECONDS = 0.5
# One line longer than this is cut: a log is for reading, not for data.
LINE_MAX_CHARS = 8 * 1024
LOGGER_MAX_CHARS = RunLogLine._meta.get_field("logger").max_length


def _size(message: str) -> int:
    return len(message.encode("utf-8", errors="replace"))


def _bounded_line(message: str) -> str:
    if len(message) <= LINE_MAX_CHARS:
        return message
    return f"{message[:LINE_MAX_CHARS]}… ({len(message) - LINE_MAX_CHARS} more characters)"


@dataclass
class _Line:
    number: int  # in this attempt, from 1; its seq is the run's base + number
    at: datetime
    level: str
    logger: str
    message: str
    size: int


class RunLogCapture:
    """The lines of one attempt of one run, on their way to the database.

    Thread-safe: lines come from the task's thread, flushes from the worker's
    flusher thread too."""

    def __init__(self, run_id: str, attempt: int | None = None) -> None:
        """`attempt`: its number, if the run's row may not count it yet (a start
        written with the run's end, jobs/worker/start_marks.py); else read."""
        self.run_id = str(run_id)
        self._given_attempt = attempt
        self.max_lines = settings.JOBS_RUN_LOG_MAX_LINES
        self.max_bytes = settings.JOBS_RUN_LOG_MAX_BYTES
        self._buffer: deque[_Line] = deque()
        self._buffer_bytes = 0
        self._count = 0  # lines added in this attempt, cut ones included
        self._partial: dict[str, str] = {}  # a stream's text after its last newline
        self._buffer_lock = threading.Lock()  # held for a moment: adding never waits for the database
        self._flush_lock = threading.Lock()  # one flush at a time, in order
        # Known at the first flush with lines: a run that logs nothing costs no query.
        self._base: int | None = None
        self._attempt = 0
        self._stored: deque[tuple[int, int]] = deque()  # (seq, size) of the run's lines in the database
        self._stored_bytes = 0
        self._masks: list[Callable[[str], str]] = []

    def mask_also(self, mask: Callable[[str], str]) -> None:
        """Pass every line added from now on through `mask` too: the run's
        secrets' values (jobs/core/secrets.py), as soon as its executor has them."""
        self._masks.append(mask)

    # --- Adding lines ------------------------------------------------------------------

    def add(self, level: str, logger_name: str, message: str) -> None:
        """One line (a log record, or a line of a stream). Credentials in URLs
        are masked: a run's log is read by all who may read the run."""
        message = mask_urls(_bounded_line(message))
        for mask in self._masks:
            message = mask(message)
        with self._buffer_lock:
            self._count += 1
            line = _Line(self._count, timezone.now(), level, logger_name[:LOGGER_MAX_CHARS], message, _size(message))
            self._buffer.append(line)
            self._buffer_bytes += line.size
            # Only the newest lines can be kept: drop the oldest ones now, so
            # a task that writes faster than the flushes costs bounded memory.
            while self._buffer and (len(self._buffer) > self.max_lines or self._buffer_bytes > self.max_bytes):
                self._buffer_bytes -= self._buffer.popleft().size

    def write(self, level: str, text: str, logger_name: str = "") -> None:
        """Text written to a stream (stdout, stderr, a command's output): each
        complete line is a line; the rest waits for its newline or the end."""
        if not text:
            return
        with self._buffer_lock:
            text = self._partial.pop(level, "") + text
            *lines, rest = text.split("\n")
            if rest:
                if len(rest) > LINE_MAX_CHARS:  # no newline in sight: a line of its own
                    lines.append(rest)
                else:
                    self._partial[level] = rest
        for line in lines:
            self.add(level, logger_name, line.rstrip("\r"))

    def _end_partial_lines(self) -> None:
        with self._buffer_lock:
            partial, self._partial = self._partial, {}
        for level, rest in partial.items():
            self.add(level, "", rest.rstrip("\r"))

    # --- Writing them ------------------------------------------------------------------

    def flush(self, *, final: bool = False) -> int:
        """Write the buffered lines in one batch (and delete the run's oldest
        ones past the limits); with `final`, the unfinished lines of the
        streams too. Returns how many lines were written."""
        with self._flush_lock:
            if final:
                self._end_partial_lines()
            with self._buffer_lock:
                if not self._buffer:
                    return 0
                lines, self._buffer, self._buffer_bytes = list(self._buffer), deque(), 0
            try:
                return self._write(lines)
            except Exception:
                self._put_back(lines)  # for the next flush: the database may answer then
                raise

    def _write(self, lines: list[_Line]) -> int:
        if self._base is None:
            self._load()
        rows = [
            RunLogLine(
                run_id=self.run_id,
                seq=self._base + line.number,
                attempt=self._attempt,
                created_at=line.at,
                level=line.level,
                logger=line.logger,
                message=line.message,
            )
            for line in lines
        ]
        # What the database will hold, kept here only once it does.
        stored, stored_bytes = deque(self._stored), self._stored_bytes
        had_stored = bool(stored)
        for line in lines:
            stored.append((self._base + line.number, line.size))
            stored_bytes += line.size
        last_cut = None
        while stored and (len(stored) > self.max_lines or stored_bytes > self.max_bytes):
            last_cut, size = stored.popleft()
            stored_bytes -= size
        if last_cut is not None:
            rows = [row for row in rows if row.seq > last_cut]
        if last_cut is not None and had_stored:
            with transaction.atomic():
                RunLogLine.objects.filter(run_id=self.run_id, seq__lte=last_cut).delete()
                self._insert(rows)
        else:
            self._insert(rows)
        self._stored, self._stored_bytes = stored, stored_bytes
        return len(rows)

    def _put_back(self, lines: list[_Line]) -> None:
        with self._buffer_lock:
            self._buffer.extendleft(reversed(lines))
            self._buffer_bytes += sum(line.size for line in lines)
            while self._buffer and (len(self._buffer) > self.max_lines or self._buffer_bytes > self.max_bytes):
                self._buffer_bytes -= self._buffer.popleft().size

    @staticmethod
    def _insert(rows: list[RunLogLine]) -> None:
        # Not worth a wait for the disk (PostgreSQL): a crash of the database
        # server may lose the last batch of a log, never a run's state.
        with progress_commit():
            # A second message of the same run (its lines there already) must not fail the batch.
            RunLogLine.objects.bulk_create(rows, ignore_conflicts=True)

    def _load(self) -> None:
        """The run's attempt, and the lines its earlier attempts left (within
        the limits): one query, and a second only when there are such lines."""
        last_line = RunLogLine.objects.filter(run_id=OuterRef("pk")).order_by("-seq").values("seq")[:1]
        found = Run.objects.filter(pk=self.run_id).values_list("attempts", Subquery(last_line)).first()
        attempt, last = found or (0, None)
        stored = deque()
        if last is not None:
            earlier = RunLogLine.objects.filter(run_id=self.run_id).order_by("seq").values_list("seq", "message")
            stored = deque((seq, _size(message)) for seq, message in earlier)
        self._attempt, self._stored, self._base = self._given_attempt or attempt, stored, last or 0
        self._stored_bytes = sum(size for _, size in stored)


# --- The capture of the current thread's run ------------------------------------------------

_local = threading.local()
_active: dict[int, RunLogCapture] = {}  # by thread id: what the flusher thread flushes
_active_lock = threading.Lock()


def current() -> RunLogCapture | None:
    """The capture of the run this thread is running, if any."""
    return getattr(_local, "capture", None)


def begin(run_id: str, attempt: int | None = None) -> RunLogCapture:
    """Start capturing this thread's lines for an attempt of run `run_id`
    (`attempt`: RunLogCapture's)."""
    capture = RunLogCapture(run_id, attempt)
    _local.capture = capture
    with _active_lock:
        _active[threading.get_ident()] = capture
    return capture


def flush_current() -> None:
    """Write the current run's lines now (before its end is recorded). Never
    fails the task: a log that cannot be written is the worker log's news."""
    capture = current()
    if capture is not None:
        _flush_quietly(capture, final=True)


def end() -> None:
    """Stop capturing this thread's lines, writing what is left."""
    capture = current()
    _local.capture = None
    with _active_lock:
        _active.pop(threading.get_ident(), None)
    if capture is not None:
        _flush_quietly(capture, final=True)


def flush_active() -> None:
    """Write the buffered lines of every run being captured in this process."""
    with _active_lock:
        captures = list(_active.values())
    for capture in captures:
        _flush_quietly(capture)


def _flush_quietly(capture: RunLogCapture, *, final: bool = False) -> None:
    try:
        capture.flush(final=final)
    except Exception:
        # Logged with no capture in this thread's way: not a line of the run itself.
        previous, _local.capture = current(), None
        try:
            logger.warning("Could not write the log lines of run %s", capture.run_id, exc_info=True)
        finally:
            _local.capture = previous
