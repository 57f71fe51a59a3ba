from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import ProtectedError
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from jobs.core.errors import Conflict, ServiceError


def exception_handler(exc, context):
    """DRF's handler, plus service errors as 400/409 with field messages, and
    a body over DATA_UPLOAD_MAX_MEMORY_SIZE as 413 (Django would answer 400)."""
    if isinstance(exc, RequestDataTooBig):
        length = context["request"].META.get("CONTENT_LENGTH", "?")
        detail = (
            f"The request body is {length} bytes; this server takes at most {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} "
            "(DATA_UPLOAD_MAX_MEMORY_SIZE). Send less: pass large data by reference rather than in params."
        )
        return Response({"detail": detail}, status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE)
    if isinstance(exc, ServiceError):
        code = status.HTTP_409_CONFLICT if isinstance(exc, Conflict) else status.HTTP_400_BAD_REQUEST
        body = {"detail": exc.errors["detail"][0]} if list(exc.errors) == ["detail"] else exc.errors
        return Response(body, status=code)
    if isinstance(exc, ProtectedError):
        # The views check what uses an object before deleting it; this is for
        # a use added in between (or one they do not know of).
        uses = ", ".join(sorted(f"{obj._meta.verbose_name} '{obj}'" for obj in exc.protected_objects))
        return Response({"detail": f"Still used by {uses}: remove those first."}, status=status.HTTP_409_CONFLICT)
    if isinstance(exc, DjangoValidationError):
        body = exc.message_dict if hasattr(exc, "error_dict") else {"detail": exc.messages}
        return Response(body, status=status.HTTP_400_BAD_REQUEST)
    return drf_exception_handler(exc, context)
