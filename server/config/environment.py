"""Read typed settings from environment variables, failing fast with the variable's name.

A small reader instead of a library so that every failure says which variable was wrong and what
was expected: start-up is the cheapest place to catch a typo in a deployment.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from django.core.exceptions import ImproperlyConfigured

__all__ = ["DATABASE_CACHE_TABLE", "Environment", "ImproperlyConfigured", "parse_rate"]

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
_POSTGRES_SCHEMES = {"postgres", "postgresql", "pgsql"}
_BROKER_SCHEMES = {"filesystem", "redis", "rediss", "memory"}
_RATE_PERIODS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}
# The embedded topology's cache: a table in the application database. gunicorn's worker processes
# (and the Celery worker) all see it without a cache server, and on SQLite an increment inside one
# IMMEDIATE transaction is exact (see server/core/rate_limits.py); a file-based cache would be
# neither. The cost: its writes take the database's write lock like any other, a few per crowd
# entry and per throttled REST API request (none per vote on the rating page). Redis has neither
# cost, hence CACHE_URL in production.
DATABASE_CACHE_TABLE = "lovelace_cache"


class Environment:
    def __init__(self, source: Mapping[str, str] | None = None) -> None:
        self.source = os.environ if source is None else source

    def _raw(self, name: str, *, required: bool) -> str | None:
        value = self.source.get(name)
        if value is None or value.strip() == "":
            if required:
                raise ImproperlyConfigured(f"{name} must be set (it has no default in this mode).")
            return None
        return value.strip()

    def string(self, name: str, *, default: str = "", required: bool = False) -> str:
        value = self._raw(name, required=required)
        return default if value is None else value

    def boolean(self, name: str, *, default: bool) -> bool:
        value = self._raw(name, required=False)
        if value is None:
            return default
        if value.lower() in _TRUE:
            return True
        if value.lower() in _FALSE:
            return False
        raise ImproperlyConfigured(f"{name} must be a boolean (true/false, 1/0, yes/no), got {value!r}.")

    def integer(self, name: str, *, default: int, minimum: int = 0) -> int:
        value = self._raw(name, required=False)
        if value is None:
            return default
        try:
            number = int(value)
        except ValueError:
            raise ImproperlyConfigured(f"{name} must be an integer, got {value!r}.") from None
        if number < minimum:
            raise ImproperlyConfigured(f"{name} must be at least {minimum}, got {number}.")
        return number

    def fraction(self, name: str, *, default: float) -> float:
        """A number in [0, 1], e.g. a sampling rate."""
        value = self._raw(name, required=False)
        if value is None:
            return default
        try:
            number = float(value)
        except ValueError:
            raise ImproperlyConfigured(f"{name} must be a number from 0 to 1, got {value!r}.") from None
        if not 0.0 <= number <= 1.0:  # NaN fails too
            raise ImproperlyConfigured(f"{name} must be a number from 0 to 1, got {value!r}.")
        return number

    def string_list(
        self, name: str, *, default: list[str] | None = None, required: bool = False
    ) -> list[str]:
        value = self._raw(name, required=required)
        if value is None:
            return list(default or [])
        items = [item.strip() for item in value.split(",") if item.strip()]
        if required and not items:
            raise ImproperlyConfigured(f"{name} must list at least one value (comma-separated).")
        return items

    def path_list(self, name: str) -> list[Path]:
        """Absolute folders separated by ``:`` (as in PATH); a relative one is a configuration error,
        since web and worker processes need not share a working directory."""
        value = self._raw(name, required=False)
        if value is None:
            return []
        folders = []
        for item in value.split(":"):
            if not item.strip():
                continue
            folder = Path(item.strip())
            if not folder.is_absolute():
                raise ImproperlyConfigured(f"{name} must list absolute folders, got {item.strip()!r}.")
            folders.append(folder)
        return folders

    def database(self, name: str, *, sqlite_path: Path, health_checks: bool = True) -> dict[str, Any]:
        """A Django DATABASES entry from a URL; SQLite at ``sqlite_path`` when unset.

        ``health_checks``: check a persistent PostgreSQL connection before its first use in each
        request or task (one more round trip each time; see ``server/config/wsgi.py``).

        Accepted: ``postgres://user:password@host:port/name?option=value`` and
        ``sqlite:////absolute/path.sqlite3``.
        """
        value = self._raw(name, required=False)
        if value is None:
            return _sqlite(sqlite_path)
        parts = urlsplit(value)
        scheme = parts.scheme.lower()
        if scheme == "sqlite":
            path = unquote(parts.path)
            if not path or path == "/":
                raise ImproperlyConfigured(
                    f"{name}: a sqlite URL needs a file path, e.g. sqlite:////abs/path.db."
                )
            return _sqlite(Path(path))
        if scheme not in _POSTGRES_SCHEMES:
            raise ImproperlyConfigured(
                f"{name} must be a postgres:// or sqlite:// URL, got scheme {parts.scheme or '(none)'!r}."
            )
        database_name = unquote(parts.path.lstrip("/"))
        if not parts.hostname or not database_name:
            raise ImproperlyConfigured(
                f"{name} must name a host and a database: postgres://user@host:5432/name."
            )
        try:
            port = parts.port
        except ValueError:
            raise ImproperlyConfigured(f"{name} has an invalid port.") from None
        return {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": database_name,
            "USER": unquote(parts.username or ""),
            "PASSWORD": unquote(parts.password or ""),
            "HOST": parts.hostname,
            "PORT": str(port or ""),
            # Persistent connections: one per worker thread.
            "CONN_MAX_AGE": 60,
            "CONN_HEALTH_CHECKS": health_checks,
            "OPTIONS": _postgres_options(name, dict(parse_qsl(parts.query))),
        }

    def broker(self, name: str, *, default: str) -> str:
        value = self._raw(name, required=False) or default
        parts = urlsplit(value)
        if parts.scheme.lower() not in _BROKER_SCHEMES:
            raise ImproperlyConfigured(
                f"{name} must be a redis://, rediss:// or filesystem:// URL, got {value!r}."
            )
        if parts.scheme.lower().startswith("redis"):
            try:
                parts.port  # noqa: B018 - parsing the port validates it
            except ValueError:
                raise ImproperlyConfigured(f"{name} has an invalid port.") from None
            if not parts.hostname:
                raise ImproperlyConfigured(f"{name} must name a host: redis://host:6379/0.")
        return value

    def cache(self, name: str, *, production: bool) -> dict[str, Any]:
        """A Django CACHES entry from a URL; the database cache table when unset.

        Accepted: ``redis://host:6379/1`` (or ``rediss://``), and ``locmem://`` for a single
        process in debug mode only. The cache holds rate-limit counters (crowd entry, the REST API),
        which must be shared by every web process: a per-process cache would multiply each limit by
        the number of processes, so production mode refuses ``locmem://``.
        """
        value = self._raw(name, required=False)
        if value is None:
            return {
                "BACKEND": "django.core.cache.backends.db.DatabaseCache",
                "LOCATION": DATABASE_CACHE_TABLE,
                # The longest rate period: a counter outlives its window by at most a day. Keys carry
                # their window's number, so a late expiry never stretches a window.
                "TIMEOUT": _RATE_PERIODS["day"],
                # Django's default (300 entries) would cull live counters during a flood from many
                # addresses, which is when they matter; expired entries are culled first.
                "OPTIONS": {"MAX_ENTRIES": 200_000},
            }
        parts = urlsplit(value)
        scheme = parts.scheme.lower()
        if scheme in {"redis", "rediss"}:
            try:
                parts.port  # noqa: B018 - parsing the port validates it
            except ValueError:
                raise ImproperlyConfigured(f"{name} has an invalid port.") from None
            if not parts.hostname:
                raise ImproperlyConfigured(f"{name} must name a host: redis://host:6379/1.")
            return {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": value}
        if scheme == "locmem":
            if production:
                raise ImproperlyConfigured(
                    f"{name}=locmem:// keeps rate-limit counters inside each process, so every web "
                    "process would allow the full limit: use redis://host:6379/1, or leave it unset "
                    "for the database cache."
                )
            return {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
        raise ImproperlyConfigured(
            f"{name} must be a redis://, rediss:// or locmem:// URL (unset: the database cache), "
            f"got {value!r}."
        )

    def rate(self, name: str, *, default: str) -> str:
        """A rate written ``<count>/<period>``, period one of second, minute, hour, day."""
        value = self._raw(name, required=False) or default
        parse_rate(value, name=name)
        return value


def parse_rate(value: str, *, name: str = "rate") -> tuple[int, int]:
    """(count, period in seconds) of a rate such as ``30/hour``; ImproperlyConfigured naming
    ``name`` when it is not one."""
    count, _, period = value.strip().partition("/")
    seconds = _RATE_PERIODS.get(period.strip().lower().removesuffix("s"))
    try:
        number = int(count)
    except ValueError:
        number = -1
    if seconds is None or number < 1:
        raise ImproperlyConfigured(
            f"{name} must be a rate such as 30/hour (a whole number ≥ 1, then second, minute, hour "
            f"or day), got {value!r}."
        )
    return number, seconds


def _postgres_options(name: str, given: dict[str, str]) -> dict[str, Any]:
    """libpq options pass through as strings; the two that psycopg wants typed are converted.

    ``prepare_threshold`` (default 5): a statement run that many times on a connection is prepared
    on the server. Only statements that bind their parameters on the server can be prepared: the
    rating path's hand-written ones (``server.core.db``); the ORM binds on the client. Behind a
    transaction-mode pooler that cannot keep prepared statements, add ``?prepare_threshold=off``.
    ``server_side_binding=true`` would make the ORM bind on the server too; then a query takes at
    most 65,535 parameters, which large ``id__in`` lookups exceed, so it stays off by default.
    """
    options: dict[str, Any] = {"prepare_threshold": 5}
    for key, value in given.items():
        if key == "server_side_binding":
            if value.lower() not in _TRUE | _FALSE:
                raise ImproperlyConfigured(
                    f"{name}: server_side_binding must be true or false, got {value!r}."
                )
            options[key] = value.lower() in _TRUE
        elif key == "prepare_threshold":
            if value.lower() in {"off", "none"}:
                options[key] = None
                continue
            try:
                options[key] = int(value)
            except ValueError:
                options[key] = -1
            if options[key] < 0:
                raise ImproperlyConfigured(
                    f"{name}: prepare_threshold must be a whole number of runs or 'off', got {value!r}."
                )
        else:
            options[key] = value
    return options


def _sqlite(path: Path) -> dict[str, Any]:
    path.parent.mkdir(parents=True, exist_ok=True)
    return {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": str(path),
        "OPTIONS": {
            # WAL lets the web process read while the worker writes; IMMEDIATE transactions take
            # the write lock up front so two writers wait (busy_timeout) instead of deadlocking.
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;",
            "transaction_mode": "IMMEDIATE",
            "timeout": 20,  # seconds to wait for a lock
        },
    }
