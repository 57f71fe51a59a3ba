"""Geometry for the small charts the templates draw as inline SVG.

Computed here, drawn in templates (so every label is escaped by Django).
"""

import math
from dataclasses import dataclass
from datetime import datetime

from jobs.models import Run
from jobs.workflows.svg import fit

MIN_SLOTS = 25


@dataclass
class Bar:
    x: float
    y: float
    width: float
    height: float
    status: str
    label: str
    url: str


@dataclass
class DurationChart:
    width: int
    height: int
    bars: list[Bar]
    max_seconds: float

    @property
    def max_label(self) -> str:
        return format_seconds(self.max_seconds)


def format_seconds(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    if seconds < 172_800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def duration_chart(runs: list[Run], *, width: int = 640, height: int = 120) -> DurationChart | None:
    """One bar per finished run, oldest on the left, height proportional to its duration."""
    timed = [run for run in runs if run.duration is not None]
    if not timed:
        return None
    timed.sort(key=lambda run: run.created_at)
    seconds = [run.duration.total_seconds() for run in timed]
    top = max(max(seconds), 0.001)
    slot = width / max(len(timed), MIN_SLOTS)  # a few runs get thin bars, not one wide block
    gap = min(2.0, slot * 0.2)
    start = width - slot * len(timed)  # the newest run always at the right edge
    bars = []
    for i, (run, value) in enumerate(zip(timed, seconds, strict=True)):
        bar_height = max(1.0, value / top * (height - 2))
        bars.append(
            Bar(
                x=round(start + i * slot + gap / 2, 2),
                y=round(height - bar_height, 2),
                width=round(slot - gap, 2),
                height=round(bar_height, 2),
                status=run.status,
                label=f"{run.created_at:%Y-%m-%d %H:%M:%S} · {run.status} · {format_seconds(value)}",
                url=run.get_absolute_url(),
            )
        )
    return DurationChart(width=width, height=height, bars=bars, max_seconds=top)


# --- A workflow run's steps on a time axis ----------------------------------------

TIMELINE_LABEL_WIDTH = 200  # the step names, left of the axis
TIMELINE_ROW = 28
TIMELINE_BAR = 16
TIMELINE_AXIS = 22  # below the rows: tick labels
NICE_STEPS = (1, 2, 5)
NOTE_FITS = 90  # characters of a note that fit right of the labels; the tooltip has it all
NAME_FITS = 24  # likewise for a step's name


@dataclass
class Span:
    x: float
    width: float


@dataclass
class TimelineRow:
    name: str
    job_type: str
    status: str
    url: str
    y: float  # top of the row
    bar: Span | None  # started → finished, or → now while it runs
    wait: Span | None  # queued → started, or → now while it waits in its queue
    open_ended: bool  # still going: the bar stops at "now"
    note: str  # said instead of a bar when the step never ran here
    label: str  # the tooltip

    # Where the template draws each part of the row.
    @property
    def bar_y(self) -> float:
        return self.y + (TIMELINE_ROW - TIMELINE_BAR) / 2

    @property
    def wait_y(self) -> float:
        return self.y + TIMELINE_ROW / 2 - 2

    @property
    def text_y(self) -> float:
        return self.y + TIMELINE_ROW / 2 + 4


@dataclass
class Timeline:
    width: int
    height: int
    row_height = TIMELINE_ROW
    bar_height = TIMELINE_BAR
    axis_y: float
    left: int  # x where the time axis starts
    rows: list[TimelineRow]
    ticks: list[tuple[float, str]]  # (x, label)
    start: datetime | None  # the time at the axis's origin
    span_seconds: float


def _tick_step(seconds: float, most: int = 6) -> float:
    """A round step (1, 2 or 5 times a power of ten) giving at most `most` ticks over `seconds`."""
    magnitude = 10 ** math.floor(math.log10(seconds / most)) if seconds > 0 else 1
    for factor in (*NICE_STEPS, 10):
        if seconds / (factor * magnitude) <= most:
            return factor * magnitude
    return 10 * magnitude


def _note(run: Run, statuses: dict[str, str]) -> str:
    if run.rerun_of_id:
        return f"reused the result of run {str(run.rerun_of_id)[:8]}"
    if run.status == Run.Status.WAITING:
        pending = [need for need in run.depends_on if statuses.get(need) != Run.Status.SUCCEEDED]
        return "waiting for " + ", ".join(pending) if pending else "waiting"
    if run.status == Run.Status.CANCELLED:
        return "cancelled before it started"
    if run.status == Run.Status.FAILED:
        return "failed before it started" + (f": {run.error}" if run.error else "")
    return f"{run.status}, not started yet"


def step_timeline(steps: list[Run], *, now: datetime, width: int = 960) -> Timeline | None:
    """Each step of a workflow run as a row: a bar from its start to its end (to
    `now` while it runs), after a thin one for the time it waited in its queue.
    Steps that never ran in this run (waiting, cancelled before they started,
    reused from an earlier run) get a note instead of a bar."""
    if not steps:
        return None
    timed = [run for run in steps if not run.rerun_of_id and (run.queued_at or run.started_at)]
    start = min((run.queued_at or run.started_at for run in timed), default=None)
    ends = [run.finished_at or now for run in timed if run.finished_at or not run.is_terminal]
    span = max((max(ends, default=now) - start).total_seconds(), 0.001) if start else 0.0
    left, right = TIMELINE_LABEL_WIDTH, width - 10
    scale = (right - left) / span if span else 0.0

    def x(moment: datetime) -> float:
        return round(left + (moment - start).total_seconds() * scale, 2)

    def between(begin: datetime, end: datetime) -> Span:
        return Span(x(begin), max(round(x(end) - x(begin), 2), 2.0))  # a step of a few ms stays visible

    statuses = {run.step_name: run.status for run in steps}
    rows = []
    for i, run in enumerate(steps):
        bar = wait = None
        ran = run in timed
        if ran and run.queued_at:
            wait = between(run.queued_at, run.started_at or run.finished_at or now)
        if ran and run.started_at:
            bar = between(run.started_at, run.finished_at or now)
        open_ended = ran and not run.is_terminal
        if bar:
            took = format_seconds(((run.finished_at or now) - run.started_at).total_seconds())
            label = f"{run.step_name} · {run.status} · {took}{' so far' if open_ended else ''}"
        else:
            label = f"{run.step_name} · {run.status}"
        rows.append(
            TimelineRow(
                name=fit(run.step_name, NAME_FITS),
                job_type=run.job_type.name,
                status=run.status,
                url=run.get_absolute_url(),
                y=i * TIMELINE_ROW,
                bar=bar,
                wait=wait,
                open_ended=open_ended,
                note="" if bar or wait else fit(_note(run, statuses), NOTE_FITS),
                label=label if bar or wait else f"{label} · {_note(run, statuses)}",
            )
        )
    ticks = []
    if span:
        step = _tick_step(span)
        n = 0
        while n * step <= span * 1.0001:
            label = "0" if n == 0 else "+" + format_seconds(n * step).replace(".0 ", " ")
            ticks.append((round(left + n * step * scale, 2), label))
            n += 1
    axis_y = len(rows) * TIMELINE_ROW
    return Timeline(
        width=width,
        height=axis_y + TIMELINE_AXIS,
        axis_y=axis_y,
        left=left,
        rows=rows,
        ticks=ticks,
        start=start,
        span_seconds=span,
    )
