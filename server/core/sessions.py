"""Django's database sessions, with the read that every request makes written out in SQL.

Sessions stay in the database so that a logout or a changed rater session holds in every web
process at once (a per-process cache would not). The ORM's ``Session.objects.get`` cost about a
fifth of the rating API's Python time per request (query compilation, measured with cProfile on
the load bench); this is the same statement without compiling it. Writes go through Django.
"""

from __future__ import annotations

from typing import Any

from django.contrib.sessions.backends import db
from django.db import connections, router
from django.utils import timezone

from server.core.db import hot_cursor


class SessionStore(db.SessionStore):
    def _get_session_from_db(self) -> Any:
        key = self.session_key  # None when the cookie's key is malformed (checked by Django)
        if key is None:
            return None
        model = self.model
        connection = connections[router.db_for_read(model)]
        now = connection.ops.adapt_datetimefield_value(timezone.now())
        with hot_cursor(connection) as cursor:
            table = model._meta.db_table
            cursor.execute(
                f"SELECT session_data FROM {table} WHERE session_key = %s AND expire_date > %s", [key, now]
            )
            row = cursor.fetchone()
        if row is None:
            self._session_key = None
            return None
        return model(session_key=key, session_data=row[0])
