"""The API's one exception handler: every refusal becomes ``{"error": message, "details": {...}}``.

Services raise ``ApplicationError`` (with its HTTP status); DRF raises its own exceptions for
authentication, permissions, throttling and malformed input. Both come out in the same shape, so a
program reads one field whatever went wrong. Anything else is a bug and stays a 500.
"""

from __future__ import annotations

import math
from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404
from rest_framework import exceptions
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from server.core.exceptions import ApplicationError


def _first_message(detail: Any, path: tuple[str, ...] = ()) -> str:
    """The first leaf message of a (nested) DRF error detail, prefixed with its field path."""
    if isinstance(detail, dict):
        items = [(str(key), value) for key, value in detail.items()]
    elif isinstance(detail, list):
        items = [(str(index), value) for index, value in enumerate(detail)]
    else:
        where = ".".join(part for part in path if part != "non_field_errors")
        return f"{where}: {detail}" if where else str(detail)
    for key, value in items:
        if value:  # a list serializer reports {} for each valid item
            # A field's list of messages is indexed by position; the position says nothing.
            keep = key if isinstance(detail, dict) or isinstance(value, dict) else None
            return _first_message(value, (*path, keep) if keep is not None else path)
    return ".".join(path) or "invalid"


def error_body(message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"error": message, "details": details or {}}


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, ApplicationError):
        return Response(error_body(exc.message, exc.extra), status=exc.status)
    if isinstance(exc, DjangoValidationError):
        fields = exc.message_dict if hasattr(exc, "error_dict") else {"non_field_errors": exc.messages}
        exc = exceptions.ValidationError(fields)
    elif isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()
    if not isinstance(exc, exceptions.APIException):
        return None  # a bug: Django's 500 handler logs it

    response = drf_exception_handler(exc, context)  # keeps WWW-Authenticate and Retry-After headers
    if response is None:  # pragma: no cover - DRF handles every APIException
        return None
    if isinstance(exc, exceptions.ValidationError):
        detail = exc.detail if isinstance(exc.detail, dict) else {"non_field_errors": exc.detail}
        response.data = error_body(f"The request is not valid: {_first_message(detail)}", {"fields": detail})
    elif isinstance(exc, exceptions.Throttled):
        wait = math.ceil(exc.wait) if exc.wait is not None else None
        response.data = error_body("Too many requests; slow down.", {"retry_after_seconds": wait})
    else:
        response.data = error_body(_first_message(exc.detail))
    return response
