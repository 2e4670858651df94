"""Hand-written SQL for the statements every rating request runs, and for quality control.

Why: built by the ORM, each of these cost 2,400–5,100 Python function calls per request (query
compilation, not the database, dominated: measured with cProfile on the bench database), about
three quarters of a next-pair + vote cycle; written out they cost a few hundred. The hot path's
inserts and counter updates are here for the same reason; every other write goes through the
ORM. Each statement's text is fixed (no lists of ids spliced in), so PostgreSQL keeps it prepared
(``server.core.db.hot_cursor``).

The SQL runs on PostgreSQL and SQLite alike; only the row-lock clause differs, and it is added
where the database has one (SQLite serialises writers instead, see ``services``). Rows become
real model instances through ``Model.from_db`` (as a queryset builds them; see ``_instance``), so
a field that is not selected here loads lazily on access instead of reading as a wrong default.
The ORM's converters do not run on these rows, so mostly ids, integers, floats, texts and booleans
(0/1 on SQLite, turned into ``bool`` here) are selected and timestamps are compared inside the
SQL; the rater's two onboarding timestamps go through the database backend's converters
(``_from_db``).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from django.db import connection, transaction
from django.db.models import Model

from server.core.db import hot_cursor
from server.generators.models import ImageAsset, Sample
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
IMAGE = ImageAsset._meta.db_table

RATER_COLUMNS = (
    "id",
    "study_id",
    "user_id",
    "platform",
    "session_binding",
    "status",
    "paused_reason",
    # Onboarding: read by every next pair (whether to show the guidelines or a qualification pair).
    "guidelines_acknowledged_at",
    "qualified_at",
)
RATER_DATETIMES = ("guidelines_acknowledged_at", "qualified_at")
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
    # Quality thresholds: the vote's quality check reads them (deferred, each would cost a query).
    "min_gold_accuracy",
    "min_self_consistency",
    "max_position_bias",
    "min_quality_judgments",
    "quality_alpha",
    "quality_min_checks",
    "require_guidelines_ack",
    "qualification_pairs",
    "qualification_min_correct",
)
STUDY_BOOLEANS = tuple(
    STUDY_COLUMNS.index(name) for name in ("is_active", "show_progress", "require_guidelines_ack")
)

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

# A pair as the rating page shows it: the comparison's ids with the prompt's and samples' texts,
# and an image sample's image (hash and size; NULLs for a text sample), read by
# ``_comparison_with_content``.
_PAIR_COLUMNS = (
    "c.id, c.study_id, c.prompt_id, c.sample_a_id, c.sample_b_id, c.kind, c.active_assignments, "
    "p.text, a.text, b.text, a.image_id, ia.sha256, ia.width, ia.height, b.image_id, ib.sha256, ib.width, "
    "ib.height"
)
_PAIR_WIDTH = 18  # columns in _PAIR_COLUMNS
_PAIR_TEXTS = f"""
INNER JOIN {PROMPT} p ON p.id = c.prompt_id
INNER JOIN {SAMPLE} a ON a.id = c.sample_a_id
INNER JOIN {SAMPLE} b ON b.id = c.sample_b_id
LEFT OUTER JOIN {IMAGE} ia ON ia.id = a.image_id
LEFT OUTER JOIN {IMAGE} ib ON ib.id = b.image_id
"""

# Fullest first, served by the (study, kind, active_assignments) index scanned backwards. "Not
# seen by this rater" is a set built once per query (a hashed subplan), not a probe per candidate:
# with a correlated NOT EXISTS the planner, misled by stale statistics, re-read the rater's whole
# history for every full pair it skipped (23 ms against 1 ms on the load bench).
_CANDIDATE_SQL = f"""
SELECT {_PAIR_COLUMNS} FROM {COMPARISON} c {_PAIR_TEXTS}
WHERE c.study_id = %s AND c.kind = %s AND c.active_assignments < %s
  AND c.id NOT IN (SELECT x.comparison_id FROM {ASSIGNMENT} x WHERE x.rater_id = %s)
ORDER BY c.active_assignments DESC
LIMIT 1
"""

# Gold sets are small (tens of items), so a random order is cheap here.
_GOLD_SQL = f"""
SELECT {_PAIR_COLUMNS} FROM {COMPARISON} c {_PAIR_TEXTS}
WHERE c.study_id = %s AND c.kind = %s
  AND c.id NOT IN (SELECT x.comparison_id FROM {ASSIGNMENT} x WHERE x.rater_id = %s)
ORDER BY RANDOM()
LIMIT 1
"""

# A random regular pair the rater judged, neither among its last few judgments nor repeated for it
# already, and the side its A was shown on; the assignment is drawn first so that only the winner's
# texts are read. Both exclusions are sets computed once (a correlated NOT EXISTS here was
# quadratic in the rater's history).
_REPEAT_SQL = f"""
SELECT {_PAIR_COLUMNS}, o.left_is_a
FROM {ASSIGNMENT} o INNER JOIN {COMPARISON} c ON c.id = o.comparison_id {_PAIR_TEXTS}
WHERE o.id = (
    SELECT d.id FROM {ASSIGNMENT} d INNER JOIN {COMPARISON} dc ON dc.id = d.comparison_id
    WHERE d.rater_id = %s AND d.status = %s AND dc.kind = %s
      AND d.id NOT IN (
          SELECT r.id FROM {ASSIGNMENT} r WHERE r.rater_id = %s AND r.status = %s ORDER BY r.id DESC LIMIT %s
      )
      AND d.comparison_id NOT IN (
          SELECT x.repeat_of_id FROM {ASSIGNMENT} y INNER JOIN {COMPARISON} x ON x.id = y.comparison_id
          WHERE y.rater_id = %s AND x.kind = %s AND x.repeat_of_id IS NOT NULL
      )
    ORDER BY RANDOM()
    LIMIT 1
)
"""

# The assignment a vote is for (found through the unique index on its token), locked, with what the
# vote needs to know in the same round trip: its comparison's kind, whether its reservation ran
# out, the judgment an undo left behind (the vote replaces it) and how many pairs the rater has
# completed.
_VOTE_SQL = f"""
SELECT a.id, a.comparison_id, a.rater_id, a.left_is_a, a.status, a.is_qualification, c.kind,
       CASE WHEN a.expires_at <= %s THEN 1 ELSE 0 END,
       (SELECT MAX(j.id) FROM {JUDGMENT} j
         WHERE j.assignment_id = a.id AND j.revoked_reason = 'undo'
           AND NOT EXISTS (SELECT 1 FROM {JUDGMENT} k WHERE k.replaces_id = j.id)),
       (SELECT COUNT(*) FROM {ASSIGNMENT} d WHERE d.rater_id = a.rater_id AND d.status = %s)
FROM {ASSIGNMENT} a
INNER JOIN {COMPARISON} c ON c.id = a.comparison_id
WHERE a.token = %s
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


_FIELD_ORDER: dict[tuple[type[Model], tuple[str, ...]], tuple[list[str], list[int]]] = {}


def _instance(model: type[Model], names: tuple[str, ...], values: tuple[Any, ...] | list[Any]) -> Any:
    """A model instance from columns selected in any order. ``Model.from_db`` takes the values in
    the model's field order (it fills the unselected ones with "deferred" by position), so they
    are put in that order here instead of relying on each SELECT to follow it."""
    key = (model, names)
    if key not in _FIELD_ORDER:
        ordered = [field.attname for field in model._meta.concrete_fields if field.attname in names]
        if len(ordered) != len(names):
            raise ValueError(f"{model.__name__} has no field among {sorted(set(names) - set(ordered))}")
        _FIELD_ORDER[key] = (ordered, [names.index(name) for name in ordered])
    ordered, positions = _FIELD_ORDER[key]
    return model.from_db(connection.alias, ordered, [values[position] for position in positions])


def _fetchone(sql: str, params: list[Any]) -> tuple[Any, ...] | None:
    with hot_cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone()


def _from_db(model: type[Model], name: str, value: Any) -> Any:
    """A column's value as the ORM would read it (SQLite returns timestamps as text)."""
    field = model._meta.get_field(name)
    expression = field.get_col(model._meta.db_table)  # type: ignore[union-attr]
    for converter in connection.ops.get_db_converters(expression) + field.get_db_converters(connection):
        value = converter(value, expression, connection)
    return value


def rater_with_study(*, rater_id: int, study_slug: str) -> Rater | None:
    """The rater with the study rules the rating endpoints use, if it belongs to that study."""
    row = _fetchone(_RATER_SQL, [rater_id, study_slug])
    if row is None:
        return None
    rater_values = list(row[: len(RATER_COLUMNS)])
    for name in RATER_DATETIMES:
        position = RATER_COLUMNS.index(name)
        rater_values[position] = _from_db(Rater, name, rater_values[position])
    rater: Rater = _instance(Rater, RATER_COLUMNS, rater_values)
    study_values = list(row[len(RATER_COLUMNS) :])
    for position in STUDY_BOOLEANS:
        study_values[position] = bool(study_values[position])
    rater.study = _instance(Study, STUDY_COLUMNS, study_values)
    return rater


def assignment_counts(*, rater_id: int, now: datetime) -> tuple[int, int, int | None]:
    """(completed, live = completed or reserved and unexpired, id of the oldest open reservation)."""
    moment = _timestamp(now)
    completed, reserved = AssignmentStatus.COMPLETED, AssignmentStatus.RESERVED
    row = _fetchone(_COUNTS_SQL, [completed, completed, reserved, moment, reserved, moment, rater_id])
    assert row is not None  # an aggregate always answers one row
    return int(row[0]), int(row[1]), row[2]


def _comparison_with_content(row: tuple[Any, ...]) -> Comparison:
    comparison: Comparison = _instance(
        Comparison,
        ("id", "study_id", "prompt_id", "sample_a_id", "sample_b_id", "kind", "active_assignments"),
        row[:7],
    )
    comparison.prompt = _instance(Prompt, ("id", "text"), (row[2], row[7]))
    comparison.sample_a = _sample_with_content(row[3], row[8], row[10:14])
    comparison.sample_b = _sample_with_content(row[4], row[9], row[14:18])
    return comparison


def _sample_with_content(sample_id: int, text: str, image: tuple[Any, ...]) -> Sample:
    sample: Sample = _instance(Sample, ("id", "text", "image_id"), (sample_id, text, image[0]))
    sample.image = (
        None if image[0] is None else _instance(ImageAsset, ("id", "sha256", "width", "height"), image)
    )
    return sample


def lock_regular_candidate(*, study_id: int, rater_id: int, overlap: int) -> Comparison | None:
    """The fullest regular comparison with room that the rater has not seen, locked, with texts."""
    row = _fetchone(_CANDIDATE_SQL + _lock("c"), [study_id, ComparisonKind.REGULAR, overlap, rater_id])
    return None if row is None else _comparison_with_content(row)


def lock_gold_candidate(*, study_id: int, rater_id: int) -> Comparison | None:
    """A random gold comparison the rater has not seen, locked, with texts."""
    row = _fetchone(_GOLD_SQL + _lock("c"), [study_id, ComparisonKind.GOLD, rater_id])
    return None if row is None else _comparison_with_content(row)


def repeat_original(*, rater_id: int, skip_latest: int) -> tuple[Comparison, bool] | None:
    """A regular comparison to show the rater again, with texts, and whether it showed A on the left."""
    completed = AssignmentStatus.COMPLETED
    row = _fetchone(
        _REPEAT_SQL,
        [
            *(rater_id, completed, ComparisonKind.REGULAR),
            *(rater_id, completed, skip_latest),
            *(rater_id, ComparisonKind.REPEAT),
        ],
    )
    if row is None:
        return None
    return _comparison_with_content(row[:_PAIR_WIDTH]), bool(row[_PAIR_WIDTH])


def lock_assignment_for_vote(*, token: str, now: datetime) -> Assignment | None:
    """The assignment with ``token``, row-locked, with ``expired``, ``undone_id`` and ``judged`` set."""
    row = _fetchone(_VOTE_SQL + _lock("a"), [_timestamp(now), AssignmentStatus.COMPLETED, token])
    if row is None:
        return None
    assignment: Assignment = _instance(
        Assignment,
        ("id", "comparison_id", "rater_id", "left_is_a", "status", "is_qualification"),
        (*row[:3], bool(row[3]), row[4], bool(row[5])),
    )
    assignment.comparison = _instance(Comparison, ("id", "kind"), (row[1], row[6]))
    assignment.expired = bool(row[7])  # type: ignore[attr-defined]
    assignment.undone_id = row[8]  # type: ignore[attr-defined]
    assignment.judged = int(row[9])  # type: ignore[attr-defined]
    return assignment


# --- Quality control (after a gold or repeat vote, and every tenth vote) -------------------------

# Both start from the rater's completed assignments (a live judgment's assignment is always
# completed) and reach each judgment by its assignment, so they read the rater's rows through
# indexes. Their texts never change, so PostgreSQL keeps them prepared; a list of ids in the SQL
# would make each call a new statement to parse and plan.
_QUALITY_ROWS_SQL = f"""
SELECT a.comparison_id, c.kind, c.gold_answer, c.repeat_of_id, j.outcome, j.chose_left,
       j.active_seconds, j.submitted_at > %s
FROM {ASSIGNMENT} a
INNER JOIN {JUDGMENT} j ON j.assignment_id = a.id
INNER JOIN {COMPARISON} c ON c.id = a.comparison_id
WHERE a.rater_id = %s AND a.status = %s AND a.is_qualification = %s AND j.revoked_at IS NULL
ORDER BY j.id
"""

# The other raters' live outcomes on the regular comparisons this rater judged.
_OTHER_OUTCOMES_SQL = f"""
SELECT o.comparison_id, oj.outcome
FROM {ASSIGNMENT} a
INNER JOIN {COMPARISON} c ON c.id = a.comparison_id
INNER JOIN {ASSIGNMENT} o ON o.comparison_id = a.comparison_id
INNER JOIN {JUDGMENT} oj ON oj.assignment_id = o.id
WHERE a.rater_id = %s AND a.status = %s AND c.kind = %s
  AND o.rater_id <> a.rater_id AND o.status = %s AND oj.revoked_at IS NULL
"""

_LONG_AGO = datetime(2000, 1, 1, tzinfo=UTC)


def quality_rows(*, rater_id: int, since: datetime | None = None) -> list[QualityRow]:
    """The rater's live judgments with what their comparisons are, oldest first; ``since_resume``
    tells whether each came after ``since`` (when staff resumed the rater)."""
    with hot_cursor() as cursor:
        cursor.execute(
            # Qualification answers are left out: the qualification has judged them (``onboarding``).
            _QUALITY_ROWS_SQL,
            [_timestamp(since or _LONG_AGO), rater_id, AssignmentStatus.COMPLETED, False],
        )
        rows = cursor.fetchall()
    if connection.vendor == "sqlite":  # booleans come back as 0 / 1 there
        return [
            QualityRow._make((*row[:5], None if row[5] is None else bool(row[5]), row[6], bool(row[7])))
            for row in rows
        ]
    return [QualityRow._make(row) for row in rows]


def other_outcomes(*, rater_id: int) -> dict[int, list[str]]:
    """Live outcomes of the other raters on the regular comparisons the rater judged."""
    completed = AssignmentStatus.COMPLETED
    outcomes: dict[int, list[str]] = {}
    with hot_cursor() as cursor:
        cursor.execute(_OTHER_OUTCOMES_SQL, [rater_id, completed, ComparisonKind.REGULAR, completed])
        for comparison_id, outcome in cursor.fetchall():
            outcomes.setdefault(comparison_id, []).append(outcome)
    return outcomes


# --- The rater's stored quality (read and written by every quality check) ----------------------

_QUALITY_FIELD = Rater._meta.get_field("quality")


def rater_quality_state(*, rater_id: int) -> tuple[str, str, dict[str, Any]] | None:
    """(status, paused reason, stored quality signals) of the rater."""
    row = _fetchone(f"SELECT status, paused_reason, quality FROM {RATER} WHERE id = %s", [rater_id])
    if row is None:
        return None
    stored = row[2]  # Django reads JSON as text, on PostgreSQL too, and decodes it in the field
    return row[0], row[1], json.loads(stored) if isinstance(stored, str) else stored


def rater_merge_quality(*, rater_id: int, signals: dict[str, Any]) -> None:
    """Write these keys of the rater's stored quality and keep the others as they are now, not as
    they were when the caller read them: a concurrent resume (``resumed_at``) or refresh of the
    agreement signals is never written back over."""
    if connection.vendor == "postgresql":
        _execute(
            f"UPDATE {RATER} SET quality = quality || %s WHERE id = %s",
            [_QUALITY_FIELD.get_db_prep_save(signals, connection), rater_id],
        )
        return
    # SQLite runs one writing transaction at a time (they start IMMEDIATE), so read, merge, write.
    with transaction.atomic():
        state = rater_quality_state(rater_id=rater_id)
        merged = {**(state[2] if state else {}), **signals}
        _execute(
            f"UPDATE {RATER} SET quality = %s WHERE id = %s",
            [_QUALITY_FIELD.get_db_prep_save(merged, connection), rater_id],
        )


# --- Inserts of the hot path -------------------------------------------------------------------
# Model.save() compiles its INSERT anew on every call (~0.4 ms of Python each, two per judgment);
# the statement only depends on the model, so it is built once here. Values go through each
# field's own get_db_prep_save (JSON, timestamps), as the ORM's insert does.

_INSERT_SQL: dict[tuple[type[Model], str], tuple[str, list[Any]]] = {}


def insert(instance: Model) -> None:
    """Insert a new instance (defaults already set, no save signals in this app) and set its id."""
    model = type(instance)
    returning = connection.features.can_return_columns_from_insert  # SQLite before 3.35 cannot
    key = (model, connection.vendor)
    if key not in _INSERT_SQL:
        fields = [field for field in model._meta.concrete_fields if not field.primary_key]
        columns = ", ".join(connection.ops.quote_name(field.column) for field in fields)
        placeholders = ", ".join(["%s"] * len(fields))
        statement = f"INSERT INTO {model._meta.db_table} ({columns}) VALUES ({placeholders})"
        _INSERT_SQL[key] = (statement + (" RETURNING id" if returning else ""), fields)
    statement, fields = _INSERT_SQL[key]
    values = [field.get_db_prep_save(field.pre_save(instance, True), connection) for field in fields]
    with hot_cursor() as cursor:
        cursor.execute(statement, values)
        instance.pk = cursor.fetchone()[0] if returning else cursor.lastrowid
    instance._state.adding = False
    instance._state.db = connection.alias


# --- Counter and status updates of the hot path --------------------------------------------------
# The same statements through QuerySet.update() cost ~450–700 Python calls each; these ~80.


def _execute(sql: str, params: list[Any]) -> int:
    with hot_cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.rowcount


def comparison_take_slot(*, comparison_id: int, overlap: int | None) -> bool:
    """One more live assignment on the comparison, unless it holds ``overlap`` already (None: no
    limit); whether it was taken."""
    sql = f"UPDATE {COMPARISON} SET active_assignments = active_assignments + 1 WHERE id = %s"
    params: list[Any] = [comparison_id]
    if overlap is not None:
        sql += " AND active_assignments < %s"
        params.append(overlap)
    return _execute(sql, params) == 1


def comparison_count_completed(*, comparison_id: int) -> None:
    _execute(
        f"UPDATE {COMPARISON} SET completed_assignments = completed_assignments + 1 WHERE id = %s",
        [comparison_id],
    )


def assignment_complete(*, assignment_id: int) -> None:
    _execute(
        f"UPDATE {ASSIGNMENT} SET status = %s WHERE id = %s", [AssignmentStatus.COMPLETED, assignment_id]
    )
