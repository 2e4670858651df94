"""Middleware of the whole site: health and readiness checks, request ids, and the cookies of rating
pages inside MTurk."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse

from server.core import log_context
from server.core.views import health, ready

HEALTH_PATH = "/healthz"
READY_PATH = "/readyz"
PROBES = {HEALTH_PATH: health, READY_PATH: ready}
# A client's own request id is kept when it is this plain (a proxy's or a load balancer's).
SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")

Handler = Callable[[HttpRequest], HttpResponse]


class HealthCheckMiddleware:
    """Answer ``GET /healthz`` and ``GET /readyz`` before host validation and the https redirect.

    A container's health check asks ``http://127.0.0.1:8000/healthz``: plain HTTP to a host name
    that is not in ALLOWED_HOSTS, so SecurityMiddleware would redirect it to https (301) and the
    first ``request.get_host()`` would refuse it (400). Nothing here calls ``get_host()``; the
    answer says only that the process runs and reaches its database. Every other path and
    method goes through the whole stack.
    """

    def __init__(self, get_response: Handler) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        probe = PROBES.get(request.path_info)
        if probe is not None and request.method in ("GET", "HEAD"):
            return probe(request)
        return self.get_response(request)


class RequestIdMiddleware:
    """Gives each request an id for its log lines (``server.core.log_context``) and answers it in
    ``X-Request-ID``; a sane id sent by the client or a proxy is kept, so logs join up."""

    def __init__(self, get_response: Handler) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        sent = request.headers.get("X-Request-ID", "")
        identifier = sent if SANE_REQUEST_ID.fullmatch(sent) else uuid.uuid4().hex
        token = log_context.request_id.set(identifier)
        try:
            response = self.get_response(request)
        finally:
            log_context.request_id.reset(token)
        response["X-Request-ID"] = identifier
        return response


class RatingPageCookiesMiddleware:
    """With ``LOVELACE_ALLOW_MTURK_IFRAME``: SameSite=None on the session and CSRF cookies that a
    rating page sets for a participant without an account (MTurk shows the page in an iframe on
    its own site, where a Lax cookie is not sent). Any other response, and a logged-in user's
    cookies on a rating page, keep the site-wide SameSite=Lax."""

    def __init__(self, get_response: Handler) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if not settings.LOVELACE_ALLOW_MTURK_IFRAME:
            return response
        names = [
            name
            for name in (settings.SESSION_COOKIE_NAME, settings.CSRF_COOKIE_NAME)
            if name in response.cookies
        ]
        if names and _is_rating_page(request) and not request.user.is_authenticated:
            for name in names:
                response.cookies[name]["samesite"] = "None"
        return response


def _is_rating_page(request: HttpRequest) -> bool:
    match = getattr(request, "resolver_match", None)
    return match is not None and match.app_name == "ratings"
