from rest_framework.exceptions import ValidationError
from rest_framework.pagination import PageNumberPagination


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
