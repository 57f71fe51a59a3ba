from rest_framework import parsers
from rest_framework.exceptions import ParseError

from jobs.core.limits import MAX_JSON_DEPTH, json_depth


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser, refusing JSON nested more than MAX_JSON_DEPTH levels.

    (DRF reads the body through `request.body`, which holds it to
    DATA_UPLOAD_MAX_MEMORY_SIZE: jobs/api/errors.py answers 413 for that.)
    """

    def parse(self, stream, media_type=None, parser_context=None):
        too_deep = ParseError(f"JSON parse error - nested more than {MAX_JSON_DEPTH} levels deep.")
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise too_deep from None
        if json_depth(data) > MAX_JSON_DEPTH:
            raise too_deep
        return data
