"""A run's log store (jobs/runs/logs.py): lines written in batches, bounded
per run by a line and a byte limit with the newest kept, across attempts."""

import pytest
from django.db import OperationalError
from django.db.models import Sum
from django.db.models.functions import Length

from jobs.models import Run, RunLogLine
from jobs.runs.logs import LINE_MAX_CHARS, RunLogCapture
from tests.factories import RunFactory

pytestmark = pytest.mark.postgres  # run on PostgreSQL too (see pyproject.toml)


@pytest.fixture
def run(db) -> Run:
    return RunFactory(status=Run.Status.RUNNING, attempts=1)


def messages(run) -> list[str]:
    return list(run.log_lines.values_list("message", flat=True))


def test_lines_are_written_in_one_batch_per_flush_not_one_query_per_line(run, django_assert_num_queries):
    capture = RunLogCapture(run.pk)
    for number in range(100):
        capture.add("WARNING", "app", f"line {number}")
    # The run's attempt, and whether it has lines from an earlier attempt (once per attempt); one INSERT.
    with django_assert_num_queries(2):
        assert capture.flush() == 100
    for number in range(100, 150):
        capture.add("WARNING", "app", f"line {number}")
    with django_assert_num_queries(1):
        capture.flush()
    assert messages(run) == [f"line {number}" for number in range(150)]
    assert list(run.log_lines.values_list("seq", flat=True)) == list(range(1, 151))


def test_past_the_line_limit_the_newest_lines_are_kept_and_the_cut_ones_counted(run, settings):
    settings.JOBS_RUN_LOG_MAX_LINES = 10
    capture = RunLogCapture(run.pk)
    for number in range(1, 8):
        capture.add("WARNING", "app", f"line {number}")
    capture.flush()
    for number in range(8, 26):  # more than the limit between two flushes, too
        capture.add("WARNING", "app", f"line {number}")
    capture.flush()
    assert messages(run) == [f"line {number}" for number in range(16, 26)]
    assert RunLogLine.lines_cut(run.pk) == 15


def test_past_the_byte_limit_the_newest_lines_are_kept(run, settings):
    settings.JOBS_RUN_LOG_MAX_BYTES = 1000
    capture = RunLogCapture(run.pk)
    for number in range(1, 31):
        capture.add("WARNING", "app", f"{number:03} " + "é" * 48)  # 100 bytes in UTF-8
        if number % 7 == 0:
            capture.flush()
    capture.flush()
    assert messages(run)[0].startswith("021 ") and messages(run)[-1].startswith("030 ")
    assert len(messages(run)) == 10
    assert RunLogLine.lines_cut(run.pk) == 20


def test_a_later_attempt_goes_on_after_the_lines_of_the_earlier_ones_within_the_same_limits(run, settings):
    settings.JOBS_RUN_LOG_MAX_LINES = 5
    first = RunLogCapture(run.pk)
    for number in range(1, 5):
        first.add("ERROR", "app", f"first {number}")
    first.flush(final=True)
    Run.objects.filter(pk=run.pk).update(attempts=2)
    second = RunLogCapture(run.pk)
    for number in range(1, 4):
        second.add("ERROR", "app", f"second {number}")
    second.flush(final=True)
    lines = list(run.log_lines.values_list("seq", "attempt", "message"))
    assert lines == [(3, 1, "first 3"), (4, 1, "first 4"), (5, 2, "second 1"), (6, 2, "second 2"), (7, 2, "second 3")]
    assert RunLogLine.lines_cut(run.pk) == 2


def test_stream_text_becomes_lines_at_its_newlines_and_the_rest_at_the_end(run):
    capture = RunLogCapture(run.pk)
    capture.write("STDOUT", "one")
    capture.write("STDOUT", "\ntwo\r\nthr")
    capture.write("STDERR", "oops\n")
    capture.write("STDOUT", "ee")
    capture.flush(final=True)
    assert list(run.log_lines.values_list("level", "message")) == [
        ("STDOUT", "one"),
        ("STDOUT", "two"),
        ("STDERR", "oops"),
        ("STDOUT", "three"),
    ]


def test_one_huge_line_is_cut(run):
    capture = RunLogCapture(run.pk)
    capture.add("WARNING", "app", "y" * (LINE_MAX_CHARS * 3))
    capture.flush()
    [message] = messages(run)
    assert message.endswith(f"… ({LINE_MAX_CHARS * 2} more characters)")
    assert run.log_lines.aggregate(total=Sum(Length("message")))["total"] < LINE_MAX_CHARS + 100


def test_the_lines_go_with_their_run(run):
    capture = RunLogCapture(run.pk)
    capture.add("WARNING", "app", "bye")
    capture.flush()
    run.delete()
    assert not RunLogLine.objects.exists()


def test_credentials_in_urls_are_masked_in_the_lines_kept(run):
    capture = RunLogCapture(run.pk)
    capture.add("ERROR", "app", "cannot reach postgres://app:s3cret@db.example.com/jobs")
    capture.write("STDOUT", "GET https://api.example.com/v1?api_key=abc123&page=2\n")
    capture.flush()
    assert messages(run) == [
        "cannot reach postgres://app:********@db.example.com/jobs",
        "GET https://api.example.com/v1?api_key=********&page=2",
    ]


def test_the_workers_handler_takes_records_of_the_run_in_this_thread_from_its_level_up_not_celerys(run):
    import io
    import logging

    from jobs.runs import logs
    from jobs.worker.run_logs import RunLogHandler, RunStream

    log = logging.getLogger("tests.handler")
    log.setLevel(logging.DEBUG)
    log.propagate = False
    handler = RunLogHandler(logging.INFO)
    log.addHandler(handler)
    celery_log = logging.getLogger("celery.app.trace")
    celery_log.addHandler(handler)
    under = io.StringIO()
    stream = RunStream(under, "STDOUT")
    try:
        log.warning("before the run: not its line")
        logs.begin(run.pk)
        log.debug("below the level")
        log.info("an info line")
        celery_log.error("Task raised: Celery's own account")
        stream.write("printed\n")
        logs.end()
        log.warning("after the run: not its line")
    finally:
        log.removeHandler(handler)
        celery_log.removeHandler(handler)
    assert list(run.log_lines.values_list("level", "logger", "message")) == [
        ("INFO", "tests.handler", "an info line"),
        ("STDOUT", "", "printed"),
    ]
    assert under.getvalue() == "printed\n"  # and still where it went before


def test_lines_that_could_not_be_written_are_written_by_the_next_flush(run, monkeypatch):
    capture = RunLogCapture(run.pk)
    capture.add("WARNING", "app", "one")
    capture.flush()
    capture.add("WARNING", "app", "two")

    def database_busy(rows):
        raise OperationalError("database is locked")

    monkeypatch.setattr(RunLogCapture, "_insert", staticmethod(database_busy))
    with pytest.raises(OperationalError):
        capture.flush()
    monkeypatch.undo()
    capture.add("WARNING", "app", "three")
    capture.flush()
    assert list(run.log_lines.values_list("seq", "message")) == [(1, "one"), (2, "two"), (3, "three")]
