"""Request and job ids on every log record, and the two line formats (text, JSON lines).

The web process sets the request id (``RequestIdMiddleware``), the worker the job id
(``workers.runner.run_job``); both live in context variables, so a log call anywhere below them
carries them without passing anything around. Records outside a request or job show ``-``.
"""

from __future__ import annotations

import json
import logging
from contextvars import ContextVar
from datetime import UTC, datetime

request_id: ContextVar[str | None] = ContextVar("lovelace_request_id", default=None)
job_id: ContextVar[int | None] = ContextVar("lovelace_job_id", default=None)

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [request=%(request_id)s job=%(job_id)s] %(message)s"


class ContextFilter(logging.Filter):
    """Adds ``request_id`` and ``job_id`` to every record that passes the handler."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id.get() or "-"
        job = job_id.get()
        record.job_id = job if job is not None else "-"
        return True


class JsonLinesFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message, ids, exception."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", "-"),
            "job_id": getattr(record, "job_id", "-"),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def logging_config(*, level: str, json_lines: bool) -> dict[str, object]:
    """The ``LOGGING`` setting: one console handler with the ids, in text or JSON lines."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"context": {"()": "server.core.log_context.ContextFilter"}},
        "formatters": {
            "text": {"format": TEXT_FORMAT},
            "json": {"()": "server.core.log_context.JsonLinesFormatter"},
        },
        "handlers": {
            "console": {
                "class": "logging.StreamHandler",
                "filters": ["context"],
                "formatter": "json" if json_lines else "text",
            }
        },
        "root": {"handlers": ["console"], "level": level},
    }
