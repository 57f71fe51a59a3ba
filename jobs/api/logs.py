"""`GET /api/v1/runs/{id}/logs/`: a run's log lines (jobs/runs/logs.py), in
order, a page at a time from `?after=<seq>`, so that a client follows a
running run by asking again from the last line it has (the `next` link).
See docs/guide.md, "Run logs"."""

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.utils.urls import replace_query_param

from jobs.models import Run, RunLogLine

PAGE_SIZE = 200
MAX_PAGE_SIZE = 1000


class RunLogLineSerializer(serializers.ModelSerializer):
    time = serializers.DateTimeField(source="created_at")

    class Meta:
        model = RunLogLine
        fields = ["seq", "time", "attempt", "level", "logger", "message"]


class RunLogPageSerializer(serializers.Serializer):
    lines_cut = serializers.IntegerField(
        help_text="How many of the run's first lines were cut to keep its log within the limits."
    )
    next = serializers.URLField(
        allow_null=True,
        help_text="The lines after this page's last: ask it again to follow a running run. "
        "Null once the run has ended and this page holds its last line.",
    )
    results = RunLogLineSerializer(many=True)


def _whole_number(request: Request, name: str, default: int, minimum: int) -> int:
    value = request.query_params.get(name) or ""
    if not value:
        return default
    if not value.isdigit() or int(value) < minimum:
        raise ValidationError({name: [f"{value!r}: give a whole number from {minimum}."]})
    return int(value)


def run_log_page(request: Request, run: Run) -> dict:
    """The page of the run's lines that `request` asks for (query parameters
    `after` and `page_size`), as RunLogPageSerializer says."""
    after = _whole_number(request, "after", 0, 0)
    size = min(_whole_number(request, "page_size", PAGE_SIZE, 1), MAX_PAGE_SIZE)
    lines = list(RunLogLine.objects.filter(run=run, seq__gt=after).order_by("seq")[:size])
    last = lines[-1].seq if lines else after
    ended = run.is_terminal and len(lines) < size
    return {
        "lines_cut": RunLogLine.lines_cut(run.pk),
        "next": None if ended else replace_query_param(request.build_absolute_uri(), "after", last),
        "results": RunLogLineSerializer(lines, many=True).data,
    }


schema = extend_schema(
    parameters=[
        OpenApiParameter("after", int, description="Only the lines after this seq (the last one you have)."),
        OpenApiParameter(
            "page_size", int, description=f"Lines per page: {PAGE_SIZE} unless given, at most {MAX_PAGE_SIZE}."
        ),
    ],
    responses={200: RunLogPageSerializer},
    filters=False,
)
