"""Settings of the test run: Lovelace's settings in development mode, whatever the topology.

The suite runs against the machine's PostgreSQL and Redis, where ``DJANGO_DEBUG`` defaults to off
(it defaults to on only in the embedded topology). Tests use the development settings there, and
every process they start inherits that; tests of production mode start ``server.config.settings``
in a subprocess with their own variables (tests/server/config/test_settings.py).

Under pytest-xdist (``make test`` runs the suite in several processes) each test process gets what
two processes must not share, before the settings read the environment: pytest-django gives it its
own test database (``test_<name>_gw1``); here it gets its own Redis database for the broker (a real
worker started by an integration test must not take the jobs another test process queued: job ids
repeat across the test databases) and its own var folder (files named after job ids, likewise). The
changes go through the environment, so the worker, beat and gunicorn processes that tests start
inherit them.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

os.environ.setdefault("DJANGO_DEBUG", "true")

# Redis' default number of databases: test process gwN uses the given broker database + N, modulo.
REDIS_DATABASES = 16


def _isolate_test_process(worker: str) -> None:
    """Point the broker and the var folder of xdist worker ``worker`` (gw0, gw1…) at its own."""
    index = int(worker.removeprefix("gw"))
    var = os.environ.get("LOVELACE_VAR_DIR") or str(Path(__file__).resolve().parents[1] / "var")
    os.environ["LOVELACE_VAR_DIR"] = str(Path(var) / f"test-{worker}")
    broker = urlsplit(os.environ.get("CELERY_BROKER_URL", ""))
    if broker.scheme.lower() in {"redis", "rediss"}:
        database = int(broker.path.strip("/") or 0)
        path = f"/{(database + index) % REDIS_DATABASES}"
        os.environ["CELERY_BROKER_URL"] = urlunsplit(broker._replace(path=path))


_WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")
# A subprocess that inherits the whole environment (PYTEST_XDIST_WORKER included) and loads these
# settings again must not move its folder and broker a second time.
if _WORKER and os.environ.get("LOVELACE_TEST_PROCESS") != _WORKER:
    _isolate_test_process(_WORKER)
    os.environ["LOVELACE_TEST_PROCESS"] = _WORKER

from django.conf import global_settings  # noqa: E402

from server.config.settings import *  # noqa: E402, F403

# A user's password is hashed with PBKDF2 at Django's production cost (a quarter of a second of
# CPU each); the suite creates thousands of users, and no test is about the hash's cost. The
# production hashers stay listed after MD5, so a hash made by them still verifies.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher", *global_settings.PASSWORD_HASHERS]
