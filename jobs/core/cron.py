"""When schedules fire: cron in a time zone, and fixed intervals.

Cron expressions follow wall-clock time in the schedule's own time zone. Across
daylight-saving changes each wall-clock fire time fires once: a time that does
not exist (the hour skipped in spring) fires at the first valid minute after
it, and a time that happens twice (the hour repeated in autumn) fires at its
first occurrence only.
"""

import re
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cron_descriptor import FormatException, Options, get_description
from croniter import CroniterBadCronError, CroniterBadDateError, croniter

# (name, lowest, highest) of the five cron fields, in order.
CRON_FIELDS = [
    ("minute", 0, 59),
    ("hour", 0, 23),
    ("day of month", 1, 31),
    ("month", 1, 12),
    ("day of week", 0, 7),
]


def cron_error(expression: str) -> str | None:
    """What is wrong with a 5-field cron expression, or None if it is usable."""
    fields = expression.split()
    if len(fields) != 5:
        return (
            f"cron '{expression}': give 5 fields (minute hour day-of-month month day-of-week), "
            f"not {len(fields)}, e.g. '0 5 * * 1'"
        )
    for value, (name, low, high) in zip(fields, CRON_FIELDS, strict=True):
        for number in re.findall(r"\d+", value.split("/")[0]):
            if not low <= int(number) <= high:
                return f"cron '{expression}': {name} must be {low}-{high}, not {number}"
        step = value.split("/")[1] if "/" in value else None
        if step is not None and (not step.isdigit() or int(step) == 0):
            return f"cron '{expression}': the step in {name} '{value}' must be a whole number of at least 1"
    if not croniter.is_valid(expression):
        return f"cron '{expression}': not a valid cron expression (e.g. '*/15 * * * *' or '0 5 * * mon-fri')"
    try:
        croniter(expression, datetime(2000, 1, 1)).get_next(datetime)
    except (CroniterBadDateError, CroniterBadCronError):
        return f"cron '{expression}': it never fires (check the day of month and the month)"
    return None


def timezone_error(name: str) -> str | None:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return f"Unknown time zone '{name}': use an IANA name such as 'Europe/Berlin' or 'UTC'"
    return None


def describe_cron(expression: str) -> str:
    """'At 05:00, only on Monday' for '0 5 * * 1'."""
    options = Options()
    options.use_24hour_time_format = True
    try:
        return get_description(expression, options)
    except FormatException:
        return expression


def _exists(naive: datetime, zone: ZoneInfo) -> bool:
    """Whether a wall-clock time happens in `zone` (not in a spring-forward gap)."""
    aware = naive.replace(tzinfo=zone)
    return aware.astimezone(UTC).astimezone(zone).replace(tzinfo=None) == naive


@lru_cache(maxsize=4096)  # the dispatcher asks the same question for many schedules
def next_cron_fire(expression: str, timezone_name: str, after: datetime) -> datetime:
    """The first fire strictly after the instant `after`, as an aware UTC datetime."""
    zone = ZoneInfo(timezone_name)
    after = after.astimezone(UTC)
    wall_clock = croniter(expression, after.astimezone(zone).replace(tzinfo=None))
    while True:
        naive = wall_clock.get_next(datetime)
        if not _exists(naive, zone):
            # Skipped by the clock change: fire at the first minute that exists.
            while not _exists(naive, zone):
                naive = naive.replace(second=0, microsecond=0) + timedelta(minutes=1)
        # A repeated wall-clock time fires at its first occurrence; the second
        # is taken only when the first is already past (created in between).
        for fold in (0, 1):
            instant = naive.replace(tzinfo=zone, fold=fold).astimezone(UTC)
            if instant > after:
                return instant


def next_interval_fire(anchor: datetime, seconds: int, after: datetime) -> datetime:
    """The first of anchor, anchor + seconds, anchor + 2·seconds, … strictly after `after`."""
    if after < anchor:
        return anchor
    periods = int((after - anchor).total_seconds() // seconds) + 1
    return anchor + timedelta(seconds=periods * seconds)
