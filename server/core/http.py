"""Facts about the HTTP request that several apps read the same way."""

from __future__ import annotations

from django.http import HttpRequest


def client_address(request: HttpRequest) -> str:
    """The address of the client that sent the request, as rate limits count it.

    The socket's peer address. Behind a reverse proxy that is the proxy's, so every client would
    share one budget; trusting ``X-Forwarded-For`` is a deployment decision (how many proxies set
    it) and belongs here, in one place, when it is made.
    """
    return request.META.get("REMOTE_ADDR") or "unknown"
