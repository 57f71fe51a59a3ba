"""Geometry for the small charts the templates draw as inline SVG.

Computed here, drawn in templates (so every label is escaped by Django).
"""

from dataclasses import dataclass

from jobs.models import Run

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
    return f"{seconds / 3600:.1f} h"


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
