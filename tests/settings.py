"""Settings of the test run: Lovelace's settings in development mode, whatever the topology.

The suite runs against the machine's PostgreSQL and Redis, where ``DJANGO_DEBUG`` defaults to off
(it defaults to on only in the embedded topology). Tests use the development settings there, and
every process they start inherits that; tests of production mode start ``server.config.settings``
in a subprocess with their own variables (tests/server/config/test_settings.py).
"""

from __future__ import annotations

import os

os.environ.setdefault("DJANGO_DEBUG", "true")

from server.config.settings import *  # noqa: F403
