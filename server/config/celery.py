"""Wire the Celery app into Django so that ``celery -A server.config`` finds it."""

from __future__ import annotations

from workers.celery_app import app

__all__ = ["app"]
