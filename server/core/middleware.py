"""Middleware of the whole site: the health check, and the cookies of rating pages inside MTurk."""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse

from server.core.views import health

HEALTH_PATH = "/healthz"

Handler = Callable[[HttpRequest], HttpResponse]


class HealthCheckMiddleware:
    """Answer ``GET /healthz`` before host validation and the https redirect.

    A container's health check asks ``http://127.0.0.1:8000/healthz``: plain HTTP to a host name
    that is not in ALLOWED_HOSTS, so SecurityMiddleware would redirect it to https (301) and the
    first ``request.get_host()`` would refuse it (400). Nothing here calls ``get_host()``; the
    answer says only that the process runs and reaches its database. Every other path and
    method goes through the whole stack.
    """

    def __init__(self, get_response: Handler) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path_info == HEALTH_PATH and request.method in ("GET", "HEAD"):
            return health(request)
        return self.get_response(request)


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
