"""Hot statements are prepared on PostgreSQL; the ORM keeps binding on the client."""

from __future__ import annotations

import pytest
from django.db import connection

from server.core.db import hot_cursor
from server.generators.models import Sample

pytestmark = pytest.mark.django_db

STATEMENT = "SELECT %s::bigint + 1"


def prepared_statements() -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        return [row[0] for row in cursor.fetchall()]


def test_a_hot_statement_is_prepared_after_a_few_runs_and_answers_as_before() -> None:
    if connection.vendor != "postgresql":
        pytest.skip("prepared statements are PostgreSQL's")
    threshold = connection.settings_dict["OPTIONS"]["prepare_threshold"]
    assert threshold is not None

    answers = []
    for number in range(threshold + 2):
        with hot_cursor() as cursor:
            cursor.execute(STATEMENT, [number])
            answers.append(cursor.fetchone()[0])

    assert answers == [number + 1 for number in range(threshold + 2)]
    assert any("$1::bigint + 1" in statement for statement in prepared_statements())


def test_orm_lookups_with_more_parameters_than_a_server_side_statement_takes_still_work() -> None:
    # 70,000 ids: over PostgreSQL's 65,535 parameters per bound statement, fine when bound on the client.
    assert Sample.objects.filter(id__in=range(1, 70_001)).count() == 0


def test_hot_cursor_errors_are_djangos_and_the_connection_stays_usable() -> None:
    from django.db import DatabaseError, transaction

    with pytest.raises(DatabaseError), transaction.atomic(), hot_cursor() as cursor:
        cursor.execute("SELECT * FROM no_such_table WHERE id = %s", [1])
    with hot_cursor() as cursor:
        cursor.execute("SELECT %s + 1", [6])
        assert cursor.fetchone()[0] == 7
