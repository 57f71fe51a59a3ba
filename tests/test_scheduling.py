"""When cron and interval schedules fire, including across daylight-saving changes."""

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.utils import timezone

from jobs.core.cron import cron_error, describe_cron, next_cron_fire, next_interval_fire, timezone_error
from jobs.models import Schedule
from jobs.schedules import dispatcher
from tests.factories import JobTypeFactory

pytestmark = pytest.mark.postgres  # run on PostgreSQL too (see pyproject.toml)


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


def fires(expression: str, zone: str, start: datetime, count: int) -> list[datetime]:
    """The next `count` fires after `start`, as wall-clock times in `zone`."""
    result, after = [], start
    for _ in range(count):
        after = next_cron_fire(expression, zone, after)
        result.append(after.astimezone(ZoneInfo(zone)))
    return result


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("61 * * * *", "cron '61 * * * *': minute must be 0-59, not 61"),
        ("0 24 * * *", "hour must be 0-23, not 24"),
        ("0 0 0 * *", "day of month must be 1-31, not 0"),
        ("0 0 * 13 *", "month must be 1-12, not 13"),
        ("0 0 * * 8", "day of week must be 0-7, not 8"),
        ("*/0 * * * *", "the step in minute '*/0' must be a whole number of at least 1"),
        ("* * *", "give 5 fields (minute hour day-of-month month day-of-week), not 3"),
        ("a b c d e", "not a valid cron expression"),
        ("0 0 31 2 *", "it never fires"),
    ],
)
def test_it_explains_what_is_wrong_with_a_cron_expression(expression, message):
    assert message in cron_error(expression)


@pytest.mark.parametrize(
    "expression", ["* * * * *", "0 5 * * 1", "*/15 9-17 * * mon-fri", "0 0 1 jan,jul *", "0 0 * * 7"]
)
def test_it_accepts_valid_cron_expressions(expression):
    assert cron_error(expression) is None


def test_it_names_unknown_time_zones():
    assert timezone_error("Europe/Berlin") is None
    assert timezone_error("Mars/Olympus") == (
        "Unknown time zone 'Mars/Olympus': use an IANA name such as 'Europe/Berlin' or 'UTC'"
    )
    assert timezone_error("../etc/passwd") is not None


def test_it_describes_cron_in_words():
    assert describe_cron("0 5 * * 1") == "At 05:00, only on Monday"


def test_cron_fires_at_wall_clock_times_in_its_zone():
    assert next_cron_fire("0 9 * * *", "Europe/Berlin", utc(2026, 6, 1, 12)) == utc(2026, 6, 2, 7)
    assert next_cron_fire("0 9 * * *", "America/New_York", utc(2026, 1, 10, 0)) == utc(2026, 1, 10, 14)


def test_new_york_spring_forward_fires_a_skipped_time_once_at_the_next_valid_minute():
    # 2026-03-08: clocks jump from 02:00 EST to 03:00 EDT, so 02:30 does not exist.
    got = fires("30 2 * * *", "America/New_York", utc(2026, 3, 7, 12), 3)
    assert got[0] == datetime(2026, 3, 8, 3, 0, tzinfo=ZoneInfo("America/New_York"))
    assert got[0].utcoffset() == timedelta(hours=-4)
    assert got[1] == datetime(2026, 3, 9, 2, 30, tzinfo=ZoneInfo("America/New_York"))
    assert len(set(got)) == 3


def test_new_york_spring_forward_fires_every_skipped_slot_only_once():
    got = fires("*/20 2 * * *", "America/New_York", utc(2026, 3, 8, 5), 2)
    # 02:00, 02:20 and 02:40 do not exist: one fire at 03:00, then the next day.
    assert got == [
        datetime(2026, 3, 8, 3, 0, tzinfo=ZoneInfo("America/New_York")),
        datetime(2026, 3, 9, 2, 0, tzinfo=ZoneInfo("America/New_York")),
    ]


def test_new_york_fall_back_fires_a_repeated_time_once():
    # 2026-11-01: 01:30 happens at 05:30 UTC (EDT) and again at 06:30 UTC (EST).
    got = fires("30 1 * * *", "America/New_York", utc(2026, 10, 31, 12), 2)
    assert got[0].astimezone(UTC) == utc(2026, 11, 1, 5, 30)
    assert got[1].astimezone(UTC) == utc(2026, 11, 2, 6, 30)


def test_a_schedule_created_during_the_repeated_hour_fires_at_the_second_occurrence():
    # 06:10 UTC is 01:10 EST, inside the repeated hour; 01:30 EDT is already past.
    assert next_cron_fire("30 1 * * *", "America/New_York", utc(2026, 11, 1, 6, 10)) == utc(2026, 11, 1, 6, 30)


def test_berlin_spring_forward_and_fall_back():
    # 2026-03-29: 02:00 CET → 03:00 CEST. 2026-10-25: 03:00 CEST → 02:00 CET.
    spring = fires("15 2 * * *", "Europe/Berlin", utc(2026, 3, 28, 12), 2)
    assert spring[0].astimezone(UTC) == utc(2026, 3, 29, 1, 0)  # 03:00 CEST, the first valid minute
    assert spring[1].astimezone(UTC) == utc(2026, 3, 30, 0, 15)  # 02:15 CEST
    autumn = fires("15 2 * * *", "Europe/Berlin", utc(2026, 10, 24, 12), 2)
    assert autumn[0].astimezone(UTC) == utc(2026, 10, 25, 0, 15)  # 02:15 CEST, the first of two
    assert autumn[1].astimezone(UTC) == utc(2026, 10, 26, 1, 15)  # 02:15 CET
    # From 01:30 CEST: 02:00 CEST, then 03:00 CET (02:00 CET repeats a wall time
    # that has fired), 04:00 CET, 05:00 CET.
    hourly = fires("0 * * * *", "Europe/Berlin", utc(2026, 10, 24, 23, 30), 4)
    assert [t.astimezone(UTC).hour for t in hourly] == [0, 2, 3, 4]


def test_interval_fires_count_from_the_anchor():
    anchor = utc(2026, 1, 1, 0, 0, 0)
    assert next_interval_fire(anchor, 60, utc(2025, 12, 31)) == anchor
    assert next_interval_fire(anchor, 60, anchor) == utc(2026, 1, 1, 0, 1)
    assert next_interval_fire(anchor, 60, utc(2026, 1, 1, 0, 5, 30)) == utc(2026, 1, 1, 0, 6)


def test_the_dispatcher_moves_each_schedule_past_its_tick_on_to_its_own_next_one(db):
    # Schedules that share a cron, time zone and tick share their next one (computed
    # once); an interval's counts from its own start, one past its end stops.
    now = timezone.now()
    job_type = JobTypeFactory()
    tick = now - timedelta(minutes=7)
    specs = {
        "five-a": {"cron": "*/5 * * * *"},
        "five-b": {"cron": "*/5 * * * *"},
        "nine-utc": {"cron": "0 9 * * *"},
        "nine-new-york": {"cron": "0 9 * * *", "timezone": "America/New_York"},
        "hourly-early": {"interval_seconds": 3600, "start_at": now - timedelta(minutes=50)},
        "hourly-late": {"interval_seconds": 3600},  # from when it was created
        "ended": {"cron": "*/5 * * * *", "end_at": now},
    }
    for name, timing in specs.items():
        Schedule.objects.create(name=name, job_type=job_type, **timing)
    Schedule.objects.update(next_run_at=tick, planned=True)
    Schedule.objects.filter(name="hourly-late").update(created_at=now - timedelta(minutes=20))
    expected = {s.name: s.compute_next_run(max(now, s.next_run_at)) for s in Schedule.objects.all()}
    assert dispatcher._advance_batch(now) == len(specs)
    moved = {s.name: (s.next_run_at, s.planned) for s in Schedule.objects.all()}
    assert moved == {name: (following, False) for name, following in expected.items()}
    assert expected["five-a"] == expected["five-b"] and expected["ended"] is None
    assert expected["nine-utc"] != expected["nine-new-york"]
    assert expected["hourly-early"] != expected["hourly-late"]
