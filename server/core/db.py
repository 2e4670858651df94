"""A cursor for the few statements that every request runs, which PostgreSQL keeps prepared.

Django's PostgreSQL cursors bind parameters on the client: the statement text then changes with
every value, so nothing can be prepared, but any number of parameters works (a server-side
statement takes at most 65,535, which a large ``id__in`` lookup exceeds). So the ORM keeps
client-side binding, and only the hand-written statements of the rating path, whose texts never
change, bind on the server: psycopg prepares each after ``prepare_threshold`` runs on a connection
and PostgreSQL stops parsing and planning it on every request.
"""

from __future__ import annotations

from typing import Any

from django.db import connection as default_connection
from django.db.backends.postgresql.base import ServerBindingCursor
from django.db.backends.utils import CursorDebugWrapper, CursorWrapper


def hot_cursor(connection: Any = default_connection) -> Any:
    """A Django cursor (errors wrapped, queries logged in tests) with server-side binding on
    PostgreSQL; the ordinary cursor on other databases."""
    if connection.vendor != "postgresql":
        return connection.cursor()
    connection.close_if_health_check_failed()
    connection.ensure_connection()
    connection.validate_thread_sharing()
    with connection.wrap_database_errors:
        cursor = ServerBindingCursor(connection.connection)
    wrapper = CursorDebugWrapper if connection.queries_logged else CursorWrapper
    return wrapper(cursor, connection)
