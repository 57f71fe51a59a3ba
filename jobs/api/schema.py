"""The OpenAPI schema's error answers.

drf-spectacular documents the answers a view gives when all goes well; the
errors every route can give (DRF's authentication, permission, validation and
not-found errors, and Jobsite's own, all `{"detail": ...}` or field messages)
are added here, from what the operation takes, so that each new route
documents them too.
"""

from drf_spectacular.openapi import AutoSchema as SpectacularAutoSchema
from drf_spectacular.utils import OpenApiResponse
from rest_framework import serializers


class ErrorSerializer(serializers.Serializer):
    detail = serializers.CharField(help_text="What went wrong, and how to put it right.")


# Field names (or `detail`, or `non_field_errors`) mapped to what is wrong with
# them: a list of messages, or for nested data (workflow steps) their own errors.
VALIDATION_ERROR = {
    "type": "object",
    "additionalProperties": {},
    "description": "Field names mapped to their errors, e.g. "
    '{"params": ["count: \'x\' is not of type \'integer\'"]}, or {"detail": "..."}.',
}

ERRORS = {
    "400": "Bad input: each field's messages say what to fix.",
    "401": "No credentials, or wrong ones: send `Authorization: Token <key>` or sign in.",
    "403": "Signed in, but without the permission this needs.",
    "404": "Not found.",
    "413": "The request body is larger than the server takes (DATA_UPLOAD_MAX_MEMORY_SIZE).",
    "415": "The request body is not JSON: send `Content-Type: application/json`.",
}


class AutoSchema(SpectacularAutoSchema):
    def get_operation(self, path, path_regex, path_prefix, method, registry):
        operation = super().get_operation(path, path_regex, path_prefix, method, registry)
        if operation is None:
            return None
        parameters = operation.get("parameters", [])
        for parameter in parameters:
            if parameter["in"] == "query":
                # An empty filter means "not filtered", as the browsable API's filter form sends it.
                parameter["allowEmptyValue"] = True
        has_body = "requestBody" in operation
        # Views that take no credentials (trigger URLs) answer neither 401 nor 403.
        codes = ["401", "403"] if self.view.authentication_classes else []
        if has_body or any(p["in"] == "query" for p in parameters):
            codes.append("400")
        # A list answers 404 for a page past its last one.
        if any(p["in"] == "path" for p in parameters) or any(p["name"] == "page" for p in parameters):
            codes.append("404")
        if has_body:
            codes += ["413", "415"]
        responses = operation["responses"]
        for code in codes:
            if code not in responses:
                body = VALIDATION_ERROR if code == "400" else ErrorSerializer
                responses[code] = self._get_response_for_code(OpenApiResponse(body, description=ERRORS[code]), code)
        operation["responses"] = dict(sorted(responses.items()))
        return operation
