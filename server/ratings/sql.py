"""Hand-written SQL for the reads that every rating request makes, and for quality control.

Why: built by the ORM, each of these cost 2,400–5,100 Python function calls per request (query
compilation, not the database, dominated: measured with cProfile on the bench database), about
three quarters of a next-pair + vote cycle; written out they cost a few hundred. Everything else,
every write included, goes through the ORM.

The SQL runs on PostgreSQL and SQLite alike; only the row-lock clause differs, and it is added
where the database has one (SQLite serialises writers instead, see ``services``). Rows become
real model instances through ``Model.from_db`` (as a queryset builds them), so a field that is not
selected here loads lazily on access instead of reading as a wrong default. The ORM's converters
do not run on these rows, so only ids, integers, floats, texts and booleans (0/1 on SQLite,
turned into ``bool`` here) are selected; timestamps are compared inside the SQL.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from django.db import connection
from django.utils import timezone

from server.generators.models import Sample
from server.ratings.models import Assignment, AssignmentStatus, Comparison, ComparisonKind, Judgment, Rater
from server.ratings.quality import QualityRow
from server.studies.models import Prompt, Study

RATER = Rater._meta.db_table
STUDY = Study._meta.db_table
ASSIGNMENT = Assignment._meta.db_table
COMPARISON = Comparison._meta.db_table
JUDGMENT = Judgment._meta.db_table
PROMPT = Prompt._meta.db_table
SAMPLE = Sample._meta.db_table

RATER_COLUMNS = ("id", "study_id", "user_id", "platform", "status", "paused_reason")
STUDY_COLUMNS = (
    "id",
    "slug",
    "is_active",
    "overlap",
    "gold_rate",
    "repeat_rate",
    "per_rater_cap",
    "reservation_seconds",
    "show_progress",
    "fast_judgment_seconds",
)
STUDY_BOOLEANS = (STUDY_COLUMNS.index("is_active"), STUDY_COLUMNS.index("show_progress"))

_RATER_SQL = (
    "SELECT "
    + ", ".join([f"r.{column}" for column in RATER_COLUMNS] + [f"s.{column}" for column in STUDY_COLUMNS])
    + f" FROM {RATER} r INNER JOIN {STUDY} s ON s.id = r.study_id WHERE r.id = %s AND s.slug = %s"
)

_COUNTS_SQL = f"""
SELECT
    COALESCE(SUM(CASE WHEN status = %s THEN 1 ELSE 0 END), 0),
    COALESCE(SUM(CASE WHEN status = %s OR (status = %s AND expires_at > %s) THEN 1 ELSE 0 END), 0),
    MIN(CASE WHEN status = %s AND expires_at > %s THEN id END)
FROM {ASSIGNMENT}
WHERE rater_id = %s
"""

# Fullest first, served by the (study, kind, active_assignments) index scanned backwards.
_CANDIDATE_SQL = f"""
SELECT c.id, c.study_id, c.prompt_id, c.sample_a_id, c.sample_b_id, c.kind, c.active_assignments,
       p.text, a.text, b.text
FROM {COMPARISON} c
INNER JOIN {PROMPT} p ON p.id = c.prompt_id
INNER JOIN {SAMPLE} a ON a.id = c.sample_a_id
INNER JOIN {SAMPLE} b ON b.id = c.sample_b_id
WHERE c.study_id = %s AND c.kind = %s AND c.active_assignments < %s
  AND NOT EXISTS (SELECT 1 FROM {ASSIGNMENT} x WHERE x.comparison_id = c.id AND x.rater_id = %s)
ORDER BY c.active_assignments DESC
LIMIT 1
"""

# The assignment a vote is for, locked, with what the vote needs to know in the same round trip:
# its comparison's kind, whether its reservation ran out, the judgment an undo left behind (the
# vote replaces it) and how many pairs the rater has completed.
_VOTE_SQL = f"""
SELECT a.id, a.comparison_id, a.rater_id, a.left_is_a, a.status, c.kind,
       CASE WHEN a.expires_at <= %s THEN 1 ELSE 0 END,
       (SELECT MAX(j.id) FROM {JUDGMENT} j
         WHERE j.assignment_id = a.id AND j.revoked_reason = 'undo'
           AND NOT EXISTS (SELECT 1 FROM {JUDGMENT} k WHERE k.replaces_id = j.id)),
       (SELECT COUNT(*) FROM {ASSIGNMENT} d WHERE d.rater_id = a.rater_id AND d.status = %s)
FROM {ASSIGNMENT} a
INNER JOIN {COMPARISON} c ON c.id = a.comparison_id
WHERE a.id = %s
"""


def _lock(of: str) -> str:
    features = connection.features
    if not features.has_select_for_update:
        return ""
    clause = " FOR UPDATE"
    if features.has_select_for_update_of:
        clause += f" OF {of}"
    if features.has_select_for_update_skip_locked and of == "c":
        clause += " SKIP LOCKED"  # a rater never waits for another: it takes the next free pair
    return clause


def _timestamp(moment: datetime) -> Any:
    return connection.ops.adapt_datetimefield_value(moment)


def _fetchone(sql: str, params: list[Any]) -> tuple[Any, ...] | None:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone()


def rater_with_study(*, rater_id: int, study_slug: str) -> Rater | None:
    """The rater with the study rules the rating endpoints use, if it belongs to that study."""
    row = _fetchone(_RATER_SQL, [rater_id, study_slug])
    if row is None:
        return None
    rater = Rater.from_db(connection.alias, RATER_COLUMNS, row[: len(RATER_COLUMNS)])
    study_values = list(row[len(RATER_COLUMNS) :])
    for position in STUDY_BOOLEANS:
        study_values[position] = bool(study_values[position])
    rater.study = Study.from_db(connection.alias, STUDY_COLUMNS, study_values)
    return rater


def assignment_counts(*, rater_id: int, now: datetime) -> tuple[int, int, int | None]:
    """(completed, live = completed or reserved and unexpired, id of the oldest open reservation)."""
    moment = _timestamp(now)
    completed, reserved = AssignmentStatus.COMPLETED, AssignmentStatus.RESERVED
    row = _fetchone(_COUNTS_SQL, [completed, completed, reserved, moment, reserved, moment, rater_id])
    assert row is not None  # an aggregate always answers one row
    return int(row[0]), int(row[1]), row[2]


def lock_regular_candidate(*, study_id: int, rater_id: int, overlap: int) -> Comparison | None:
    """The fullest regular comparison with room that the rater has not seen, locked, with texts."""
    row = _fetchone(_CANDIDATE_SQL + _lock("c"), [study_id, ComparisonKind.REGULAR, overlap, rater_id])
    if row is None:
        return None
    alias = connection.alias
    comparison = Comparison.from_db(
        alias,
        ("id", "study_id", "prompt_id", "sample_a_id", "sample_b_id", "kind", "active_assignments"),
        row[:7],
    )
    comparison.prompt = Prompt.from_db(alias, ("id", "text"), (row[2], row[7]))
    comparison.sample_a = Sample.from_db(alias, ("id", "text"), (row[3], row[8]))
    comparison.sample_b = Sample.from_db(alias, ("id", "text"), (row[4], row[9]))
    return comparison


def lock_assignment_for_vote(*, assignment_id: int, now: datetime) -> Assignment | None:
    """The assignment, row-locked, with ``expired``, ``undone_id`` and ``judged`` set on it."""
    row = _fetchone(_VOTE_SQL + _lock("a"), [_timestamp(now), AssignmentStatus.COMPLETED, assignment_id])
    if row is None:
        return None
    alias = connection.alias
    assignment = Assignment.from_db(
        alias, ("id", "comparison_id", "rater_id", "left_is_a", "status"), (*row[:3], bool(row[3]), row[4])
    )
    assignment.comparison = Comparison.from_db(alias, ("id", "kind"), (row[1], row[5]))
    assignment.expired = bool(row[6])  # type: ignore[attr-defined]
    assignment.undone_id = row[7]  # type: ignore[attr-defined]
    assignment.judged = int(row[8])  # type: ignore[attr-defined]
    return assignment


# --- Quality control (after a gold or repeat vote, and every tenth vote) -------------------------

_QUALITY_ROWS_SQL = f"""
SELECT a.comparison_id, c.kind, c.gold_answer, c.repeat_of_id, j.outcome, j.chose_left,
       j.active_seconds, j.submitted_at
FROM {JUDGMENT} j
INNER JOIN {ASSIGNMENT} a ON a.id = j.assignment_id
INNER JOIN {COMPARISON} c ON c.id = a.comparison_id
WHERE a.rater_id = %s AND j.revoked_at IS NULL
ORDER BY j.id
"""

_OTHER_OUTCOMES_SQL = f"""
SELECT a.comparison_id, j.outcome
FROM {JUDGMENT} j
INNER JOIN {ASSIGNMENT} a ON a.id = j.assignment_id
WHERE a.comparison_id IN ({{placeholders}}) AND a.rater_id <> %s AND j.revoked_at IS NULL
"""


def _aware(moment: datetime) -> datetime:
    # SQLite hands back naive UTC datetimes (the ORM's converter would make them aware).
    return moment if timezone.is_aware(moment) else timezone.make_aware(moment, UTC)


def quality_rows(*, rater_id: int) -> list[QualityRow]:
    """The rater's live judgments with what their comparisons are, oldest first."""
    with connection.cursor() as cursor:
        cursor.execute(_QUALITY_ROWS_SQL, [rater_id])
        rows = cursor.fetchall()
    return [
        QualityRow(
            comparison_id=row[0],
            kind=row[1],
            gold_answer=row[2],
            repeat_of_id=row[3],
            outcome=row[4],
            chose_left=None if row[5] is None else bool(row[5]),
            active_seconds=row[6],
            submitted_at=_aware(row[7]),
        )
        for row in rows
    ]


def other_outcomes(*, rater_id: int, comparison_ids: list[int]) -> dict[int, list[str]]:
    """Live outcomes of the other raters on the given comparisons."""
    outcomes: dict[int, list[str]] = {}
    unique_ids = sorted(set(comparison_ids))
    if not unique_ids:
        return outcomes
    with connection.cursor() as cursor:
        sql = _OTHER_OUTCOMES_SQL.format(placeholders=", ".join(["%s"] * len(unique_ids)))
        cursor.execute(sql, [*unique_ids, rater_id])
        for comparison_id, outcome in cursor.fetchall():
            outcomes.setdefault(comparison_id, []).append(outcome)
    return outcomes


# --- Counter and status updates of the hot path --------------------------------------------------
# The same statements through QuerySet.update() cost ~450–700 Python calls each; these ~80.


def _execute(sql: str, params: list[Any]) -> int:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.rowcount


def comparison_take_slot(*, comparison_id: int, overlap: int) -> bool:
    """One more live assignment on the comparison, unless it is full; whether it was taken."""
    return (
        _execute(
            f"UPDATE {COMPARISON} SET active_assignments = active_assignments + 1"
            " WHERE id = %s AND active_assignments < %s",
            [comparison_id, overlap],
        )
        == 1
    )


def comparison_count_completed(*, comparison_id: int) -> None:
    _execute(
        f"UPDATE {COMPARISON} SET completed_assignments = completed_assignments + 1 WHERE id = %s",
        [comparison_id],
    )


def assignment_complete(*, assignment_id: int) -> None:
    _execute(
        f"UPDATE {ASSIGNMENT} SET status = %s WHERE id = %s", [AssignmentStatus.COMPLETED, assignment_id]
    )
