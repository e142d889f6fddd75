"""API-wide error handling: every error is JSON with a ``detail`` that names the problem, and
no traceback ever reaches a client."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig, SuspiciousOperation, TooManyFilesSent
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import InterfaceError, OperationalError
from django_filters.rest_framework import DjangoFilterBackend
from rest_framework import status
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from config.errors import DomainError
from config.middleware import NUL_DETAIL, is_nul_text_error

logger = logging.getLogger("loupe.api")


class JSONObjectParser(JSONParser):
    """JSON bodies, which every endpoint reads as an object of fields: a bare number, string,
    list or null is a 400 that says so, never an error inside the view."""

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        data = super().parse(stream, media_type, parser_context)
        if not isinstance(data, dict):
            raise ParseError(
                f"The JSON body must be an object of fields ({{...}}), not {type(data).__name__}."
            )
        return data


class ListFilterBackend(DjangoFilterBackend):
    """django-filter's query filters, on list endpoints only. A detail URL names its object:
    ``/api/v1/images/5/file/?status=trashed`` is image 5 whatever its status, never a 404
    because a list filter was left on the link."""

    def filter_queryset(self, request: Request, queryset: Any, view: Any) -> Any:
        if getattr(view, "detail", False):
            return queryset
        return super().filter_queryset(request, queryset, view)


def request_fields(request: Request) -> Mapping[str, Any]:
    """The request body as fields by name: a JSON object (``JSONObjectParser`` refuses anything
    else) or a form's ``QueryDict``. A list can only come from a parser that does not belong
    on the view, so it is a 400 rather than an error inside the view."""
    data = request.data
    if not isinstance(data, Mapping):
        raise ParseError("The body must be an object of fields, not a list.")
    return data


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, DomainError):
        # A service's refusal (config.errors): its status and body are its own.
        return Response(exc.api_body(), status=exc.status_code)
    if isinstance(exc, TooManyFilesSent):
        limit = settings.DATA_UPLOAD_MAX_NUMBER_FILES
        return Response(
            {
                "detail": f"Too many files in one request; the limit is {limit} "
                "(LOUPE_MAX_FILES_PER_REQUEST). Send them in several requests, or as a zip "
                "archive to /api/v1/imports/."
            },
            status=status.HTTP_400_BAD_REQUEST,
        )
    if isinstance(exc, RequestDataTooBig):
        return Response(
            {"detail": "The request body is too large."},
            status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
        )
    if isinstance(exc, SuspiciousOperation):
        return Response({"detail": f"Refused: {exc}"}, status=status.HTTP_400_BAD_REQUEST)
    if isinstance(exc, DjangoValidationError):
        return Response({"detail": "; ".join(exc.messages)}, status=status.HTTP_400_BAD_REQUEST)
    if is_nul_text_error(exc):
        return Response({"detail": NUL_DETAIL}, status=status.HTTP_400_BAD_REQUEST)
    if isinstance(exc, (OperationalError, InterfaceError)):
        # The database is unreachable: re-raised, so config.middleware answers 503 with
        # Retry-After for the API and the pages alike.
        return None
    response = drf_exception_handler(exc, context)
    if response is None:
        logger.exception("Unhandled API error", exc_info=exc)
        return Response(
            {"detail": "Internal error; it has been logged."},
            status=status.HTTP_500_INTERNAL_SERVER_ERROR,
        )
    if isinstance(response.data, dict) and "detail" not in response.data:
        response.data = {"detail": _summarise(response.data), "errors": response.data}
    elif isinstance(response.data, list):
        response.data = {"detail": "; ".join(map(str, response.data)), "errors": response.data}
    return response


def _summarise(errors: dict[Any, Any]) -> str:
    parts = []
    for field, messages in errors.items():
        text = _flatten(messages)
        parts.append(text if field == "non_field_errors" else f"{field}: {text}")
    return "; ".join(parts)


def _flatten(messages: Any) -> str:
    """The plain text of a field's errors, however DRF nests them: a list field's errors are
    keyed by item index ({0: ["A valid number is required."]}), a nested serializer's by
    field."""
    if isinstance(messages, dict):
        return "; ".join(
            f"{'item ' if isinstance(key, int) else ''}{key}: {_flatten(value)}"
            for key, value in messages.items()
        )
    if isinstance(messages, list):
        return " ".join(_flatten(message) for message in messages)
    return str(messages)
