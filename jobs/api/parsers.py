from django.conf import settings
from rest_framework import parsers, status
from rest_framework.exceptions import APIException, ParseError

# Deeper JSON is refused: Python code that walks a value (placeholders, schema
# checks) recurses once per level, and no job needs this many.
MAX_JSON_DEPTH = 64


class RequestTooLarge(APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_code = "request_too_large"


def json_depth(value) -> int:
    depth, level = 0, [value]
    while level:
        depth += 1
        children = []
        for item in level:
            if isinstance(item, dict):
                children.extend(item.values())
            elif isinstance(item, list):
                children.extend(item)
        level = children
    return depth - 1 if depth else 0


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser, held to DATA_UPLOAD_MAX_MEMORY_SIZE and MAX_JSON_DEPTH.

    Django applies that limit when `request.body` or a form is read, but DRF's
    parsers read the request as a stream, so without this check a body of any
    size would be read into memory.
    """

    def parse(self, stream, media_type=None, parser_context=None):
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        request = (parser_context or {}).get("request")
        if limit is not None and request is not None:
            try:
                length = int(request.META.get("CONTENT_LENGTH") or 0)
            except ValueError:
                length = 0
            if length > limit:
                raise RequestTooLarge(
                    f"The request body is {length} bytes; this server takes at most {limit} "
                    "(DATA_UPLOAD_MAX_MEMORY_SIZE). Send less: pass large data by reference rather than in params."
                )
        too_deep = ParseError(f"JSON parse error - nested more than {MAX_JSON_DEPTH} levels deep.")
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise too_deep from None
        if json_depth(data) > MAX_JSON_DEPTH:
            raise too_deep
        return data
