"""The one domain error type. Services raise it; one handler per interface maps it to HTTP."""

from __future__ import annotations

from typing import Any


class ApplicationError(Exception):
    """A request that the domain refuses: bad input, a forbidden transition, a conflict.

    ``message`` is written for the person who made the request; ``extra`` carries details such as
    the field or the line number that was wrong. ``status`` is the HTTP status an API answers with.
    """

    def __init__(self, message: str, *, extra: dict[str, Any] | None = None, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.extra = extra or {}
        self.status = status


class NotFound(ApplicationError):
    def __init__(self, message: str, *, extra: dict[str, Any] | None = None) -> None:
        super().__init__(message, extra=extra, status=404)


class Conflict(ApplicationError):
    def __init__(self, message: str, *, extra: dict[str, Any] | None = None) -> None:
        super().__init__(message, extra=extra, status=409)
