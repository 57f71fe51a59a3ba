"""Paging of the API's lists: page numbers for the short lists (job types,
schedules), and cursors for the run list, which grows without end and is never
counted (jobs/core/keyset.py). See docs/guide.md#the-api."""

import base64
import binascii

from rest_framework.exceptions import ValidationError
from rest_framework.pagination import BasePagination, PageNumberPagination
from rest_framework.response import Response
from rest_framework.utils.urls import replace_query_param

from jobs.core.keyset import Cursor, Keyset


def _whole_number(request, name: str) -> int | None:
    """The query parameter `name` as a whole number from 1; None when absent or empty."""
    value = request.query_params.get(name)
    if not value:
        return None
    if not value.isdigit() or int(value) < 1:
        raise ValidationError({name: [f"{value!r}: give a whole number from 1."]})
    return int(value)


class Pagination(PageNumberPagination):
    """DRF's page numbers, with a `page` or `page_size` that is not a whole
    number from 1 refused (400) rather than quietly replaced by the default."""

    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200
    last_page_strings = ()

    def get_page_size(self, request) -> int:
        asked = _whole_number(request, self.page_size_query_param)
        return min(asked, self.max_page_size) if asked else self.page_size

    def get_page_number(self, request, paginator):
        return _whole_number(request, self.page_query_param) or 1

    def get_schema_operation_parameters(self, view):
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            parameter["schema"]["minimum"] = 1
            if parameter["name"] == self.page_size_query_param:
                parameter["description"] = (
                    f"Results per page: {self.page_size} unless given, at most {self.max_page_size}."
                )
        return parameters


class KeysetPagination(BasePagination):
    """Newest first by (created_at, id), a page at a time: `?cursor=` from the
    `next` or `previous` link of the page before, `?page_size=` as for the other
    lists. Each page is one query (LIMIT page_size + 1), with no COUNT and no
    OFFSET, so the last page costs what the first does.

    The cursor is opaque to clients: the direction and the (created_at, id) of
    the row a page ends on, in URL-safe base64.
    """

    page_size = Pagination.page_size
    page_size_query_param = Pagination.page_size_query_param
    max_page_size = Pagination.max_page_size
    cursor_query_param = "cursor"
    time_field = "created_at"
    directions = ("after", "before")

    def paginate_queryset(self, queryset, request, view=None):
        if "page" in request.query_params:
            raise ValidationError(
                {"page": ["This list is paged by cursor, not page number: follow the `next` link (its `cursor`)."]}
            )
        self.request = request
        keyset = Keyset(queryset.model, self.time_field)
        size = min(_whole_number(request, self.page_size_query_param) or self.page_size, self.max_page_size)
        page = keyset.page(
            queryset, size=size, **self._decode(request.query_params.get(self.cursor_query_param), keyset)
        )
        self.newer, self.older = page.newer, page.older
        return page.rows

    def _decode(self, token: str | None, keyset: Keyset) -> dict[str, Cursor]:
        if not token:
            return {}
        try:
            text = base64.b64decode(token + "=" * (-len(token) % 4), altchars=b"-_", validate=True).decode()
            direction, _, cursor = text.partition(":")
            if direction not in self.directions:
                raise ValueError(direction)
            return {direction: keyset.parse(cursor)}
        except (ValueError, binascii.Error):
            raise ValidationError(
                {
                    self.cursor_query_param: [
                        "Not a cursor this list gave: use the `next` or `previous` link of a page as it is, "
                        "or leave `cursor` out to start from the newest."
                    ]
                }
            ) from None

    def _link(self, direction: str, cursor: Cursor | None) -> str | None:
        if cursor is None:
            return None
        token = base64.urlsafe_b64encode(f"{direction}:{cursor}".encode()).decode().rstrip("=")
        return replace_query_param(self.request.build_absolute_uri(), self.cursor_query_param, token)

    def get_paginated_response(self, data) -> Response:
        return Response(
            {"next": self._link("after", self.older), "previous": self._link("before", self.newer), "results": data}
        )

    def get_paginated_response_schema(self, schema: dict) -> dict:
        link = {"type": "string", "nullable": True, "format": "uri"}
        return {
            "type": "object",
            "required": ["next", "previous", "results"],
            "properties": {
                "next": {**link, "description": "The next (older) page; null on the last page."},
                "previous": {**link, "description": "The previous (newer) page; null on the first page."},
                "results": schema,
            },
        }

    def get_schema_operation_parameters(self, view) -> list[dict]:
        return [
            {
                "name": self.cursor_query_param,
                "required": False,
                "in": "query",
                "description": "Where the page starts: take it from the `next` or `previous` link.",
                "schema": {"type": "string"},
            },
            {
                "name": self.page_size_query_param,
                "required": False,
                "in": "query",
                "description": f"Results per page: {self.page_size} unless given, at most {self.max_page_size}.",
                "schema": {"type": "integer", "minimum": 1},
            },
        ]
