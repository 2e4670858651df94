"""The probes of a running web process: liveness (cheap) and readiness (its dependencies)."""

from __future__ import annotations

import logging
import os

from django.conf import settings
from django.db import connection
from django.http import HttpRequest, JsonResponse

logger = logging.getLogger(__name__)

BROKER_TIMEOUT = 2.0  # seconds a readiness check waits for the broker


def health(request: HttpRequest) -> JsonResponse:
    """Liveness: the process answers. Touches nothing else, so a database or broker outage never
    gets a healthy web process restarted (readiness says when it cannot serve)."""
    return JsonResponse({"status": "ok"})


def ready(request: HttpRequest) -> JsonResponse:
    """Readiness: the database answers a query and the broker accepts a connection. 503 names
    the dependency that failed (the details go to the log, not to the caller)."""
    checks = {"database": _check(_database_answers, "database"), "broker": _check(_broker_answers, "broker")}
    ok = all(value == "ok" for value in checks.values())
    return JsonResponse({"status": "ready" if ok else "not ready", **checks}, status=200 if ok else 503)


def _check(probe, name: str) -> str:  # type: ignore[no-untyped-def]
    try:
        probe()
    except Exception:
        logger.exception("readiness: the %s does not answer", name)
        return "unavailable"
    return "ok"


def _database_answers() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


def _broker_answers() -> None:
    from workers.celery_app import app  # light: no ML imports

    if settings.CELERY_BROKER_URL.startswith("filesystem"):
        # The embedded broker is a folder: ready when every process can write messages into it.
        queue = settings.CELERY_BROKER_FOLDER / "queue"
        if not (queue.is_dir() and os.access(queue, os.W_OK)):
            raise OSError(f"the broker folder {queue} is not writable")
        return
    with app.connection_for_write(settings.CELERY_BROKER_URL) as broker:
        broker.ensure_connection(max_retries=1, timeout=BROKER_TIMEOUT)
