"""A workflow's steps drawn as an SVG, server-side: steps in columns by depth
(each column depends only on earlier ones), arrows from a step to those that
wait for it. Every name is escaped by format_html."""

from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from jobs.workflows.graph import layers

BOX_WIDTH, BOX_HEIGHT, COLUMN_GAP, ROW_GAP, MARGIN = 170, 40, 60, 16, 10
FITS = 22  # characters that fit in a box; the full name is in the tooltip


def fit(text: str, size: int = FITS) -> str:
    """`text` cut to `size` characters, with an ellipsis when cut."""
    return text if len(text) <= size else text[: size - 1] + "…"


def workflow_svg(
    steps: list[tuple[str, str, list[str]]],
    *,
    statuses: dict[str, str] | None = None,
    urls: dict[str, str] | None = None,
) -> SafeString:
    """`steps`: (name, job type name, depends_on) of each step. For a workflow
    run, `statuses` gives each step's status (a class on its box, for the
    stylesheet to colour) and `urls` the page each box links to."""
    statuses, urls = statuses or {}, urls or {}
    deps = {name: [need for need in needs if need != name] for name, _, needs in steps}
    job_types = {name: job_type for name, job_type, _ in steps}
    position = {}
    columns = layers(deps)
    for column, names in enumerate(columns):
        for row, name in enumerate(names):
            position[name] = (MARGIN + column * (BOX_WIDTH + COLUMN_GAP), MARGIN + row * (BOX_HEIGHT + ROW_GAP))
    width = MARGIN * 2 + len(columns) * (BOX_WIDTH + COLUMN_GAP) - COLUMN_GAP
    height = MARGIN * 2 + max((len(names) for names in columns), default=0) * (BOX_HEIGHT + ROW_GAP) - ROW_GAP
    edges = []
    for name, needs in deps.items():
        for need in needs:
            if need in position:
                (x1, y1), (x2, y2) = position[need], position[name]
                x1, y1, y2 = x1 + BOX_WIDTH, y1 + BOX_HEIGHT // 2, y2 + BOX_HEIGHT // 2
                middle = (x1 + x2) // 2
                edges.append((x1, y1, middle, y1, middle, y2, x2 - 6, y2))
    return format_html(
        '<svg class="workflow-graph" xmlns="http://www.w3.org/2000/svg" width="{}" height="{}" '
        'viewBox="0 0 {} {}" role="img" aria-label="Workflow steps and their dependencies">'
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="1" refY="5" markerWidth="6" markerHeight="6" '
        'orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="#666"/></marker></defs>{}{}</svg>',
        max(width, 0),
        max(height, 0),
        max(width, 0),
        max(height, 0),
        format_html_join(
            "",
            '<path d="M{},{} C{},{} {},{} {},{}" fill="none" stroke="#666" marker-end="url(#arrow)"/>',
            edges,
        ),
        format_html_join(
            "",
            "{}",
            (
                (_node(name, job_types[name], x, y, statuses.get(name), urls.get(name)),)
                for name, (x, y) in position.items()
            ),
        ),
    )


def _node(name: str, job_type: str, x: int, y: int, status: str | None, url: str | None) -> SafeString:
    box = format_html(
        '<title>{}: {}{}</title><rect x="{}" y="{}" width="{}" height="{}" rx="6" fill="#f8f8f8" '
        'stroke="#417690"/><text x="{}" y="{}" font-size="13" font-weight="bold">{}</text>'
        '<text x="{}" y="{}" font-size="11" fill="#666">{}</text>',
        name,
        job_type,
        f" ({status})" if status else "",
        x,
        y,
        BOX_WIDTH,
        BOX_HEIGHT,
        x + 8,
        y + 16,
        fit(name),
        x + 8,
        y + 32,
        fit(job_type),
    )
    if url:
        box = format_html('<a href="{}">{}</a>', url, box)
    if status:
        return format_html('<g class="step {}" data-step="{}">{}</g>', status, name, box)
    return format_html("<g>{}</g>", box)
