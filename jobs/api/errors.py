from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from jobs.services import Conflict, ServiceError


def exception_handler(exc, context):
    """DRF's handler, plus service errors as 400/409 with field messages."""
    if isinstance(exc, ServiceError):
        code = status.HTTP_409_CONFLICT if isinstance(exc, Conflict) else status.HTTP_400_BAD_REQUEST
        body = {"detail": exc.errors["detail"][0]} if list(exc.errors) == ["detail"] else exc.errors
        return Response(body, status=code)
    if isinstance(exc, DjangoValidationError):
        body = exc.message_dict if hasattr(exc, "error_dict") else {"detail": exc.messages}
        return Response(body, status=status.HTTP_400_BAD_REQUEST)
    return drf_exception_handler(exc, context)
