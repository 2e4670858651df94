"""Every judgment of a study with every field, streamed to JSONL and Parquet.

The raw record behind every figure Lovelace shows: each judgment (revoked ones included, with
when and why), its timings, quality flags and rationale, the rater, the pair as stored (A / B) and
as shown (``left_is_a``), the prompt and both texts (or images: file and content hash) with their
versions, and ``answers``: the judgment's answer to every question of the study
(``ANSWER_FIELDS``). Rows come from one server-side cursor a chunk at a time and go to both files
as they come, so an export holds one chunk in memory whatever the size of the study; the answers
to the further questions of a chunk come in one more query per chunk (not per row). ``pyarrow``
is imported by the writer only (the worker's; the web process never loads it).

``answers`` is a list, one entry per question the judgment answered, in the order the rater
answered them: ``{"criterion": key, "position": 0.., "question": text, "outcome": "A" | "B" |
"tie" | "both_bad", "chose_left": true | false | null}``. Position 0 is the study's own question
(the same answer as the row's ``outcome`` and ``chose_left``), so every criterion reads the same
way: explode the list (``pandas.DataFrame.explode``, ``pyarrow.compute.list_flatten``) and filter
on ``criterion``. A further question added after a vote has no entry in that vote's list.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from server.generators.images import image_export_name
from server.ratings.models import Judgment, JudgmentAnswer
from server.studies.models import Criterion, Study

CHUNK_ROWS = 2000

# (column, query path, Parquet type name): the one list both files and the query follow.
COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("judgment_id", "id", "int64"),
    ("submitted_at", "submitted_at", "timestamp"),
    ("shown_at", "shown_at", "timestamp"),
    ("first_input_at", "first_input_at", "timestamp"),
    ("active_seconds", "active_seconds", "float64"),
    ("outcome", "outcome", "string"),
    ("chose_left", "chose_left", "bool"),
    ("strength", "strength", "int64"),
    ("rationale", "rationale", "string"),
    ("is_flagged", "is_flagged", "bool"),
    ("flag_reasons", "flag_reasons", "strings"),
    ("revoked_at", "revoked_at", "timestamp"),
    ("revoked_reason", "revoked_reason", "string"),
    ("replaces_id", "replaces_id", "int64"),
    ("assignment_id", "assignment_id", "int64"),
    ("left_is_a", "assignment__left_is_a", "bool"),
    ("rater_id", "assignment__rater_id", "int64"),
    ("rater_platform", "assignment__rater__platform", "string"),
    ("rater_external_id", "assignment__rater__external_id", "string"),
    ("rater_status", "assignment__rater__status", "string"),
    ("comparison_id", "assignment__comparison_id", "int64"),
    ("comparison_kind", "assignment__comparison__kind", "string"),
    ("gold_answer", "assignment__comparison__gold_answer", "string"),
    ("prompt_id", "assignment__comparison__prompt_id", "int64"),
    ("prompt_external_id", "assignment__comparison__prompt__external_id", "string"),
    ("prompt_split", "assignment__comparison__prompt__split", "string"),
    ("prompt", "assignment__comparison__prompt__text", "string"),
    ("sample_a_id", "assignment__comparison__sample_a_id", "int64"),
    ("sample_b_id", "assignment__comparison__sample_b_id", "int64"),
    ("version_a_id", "assignment__comparison__sample_a__version_id", "int64"),
    ("version_b_id", "assignment__comparison__sample_b__version_id", "int64"),
    ("generator_a", "assignment__comparison__sample_a__version__generator__name", "string"),
    ("version_a", "assignment__comparison__sample_a__version__label", "string"),
    ("generator_b", "assignment__comparison__sample_b__version__generator__name", "string"),
    ("version_b", "assignment__comparison__sample_b__version__label", "string"),
    ("text_a", "assignment__comparison__sample_a__text", "string"),
    ("text_b", "assignment__comparison__sample_b__text", "string"),
    # An image sample's file in the export (``images/<sha256>.<ext>``) and its content hash;
    # null for a text sample. The query reads the storage name; the writer turns it into the file.
    ("image_a", "assignment__comparison__sample_a__image__storage_name", "string"),
    ("image_b", "assignment__comparison__sample_b__image__storage_name", "string"),
    ("image_a_sha256", "assignment__comparison__sample_a__image__sha256", "string"),
    ("image_b_sha256", "assignment__comparison__sample_b__image__sha256", "string"),
)
# The last column: every question's answer (see the module's docstring).
ANSWERS_COLUMN = "answers"
ANSWER_FIELDS: tuple[tuple[str, str], ...] = (
    ("criterion", "string"),
    ("position", "int64"),
    ("question", "string"),
    ("outcome", "string"),
    ("chose_left", "bool"),
)
COLUMN_NAMES = (*(name for name, _, _ in COLUMNS), ANSWERS_COLUMN)
IMAGE_COLUMNS = tuple(COLUMN_NAMES.index(name) for name in ("image_a", "image_b"))
_OUTCOME = COLUMN_NAMES.index("outcome")
_CHOSE_LEFT = COLUMN_NAMES.index("chose_left")


def judgment_rows(*, study: Study, chunk_rows: int = CHUNK_ROWS) -> Iterator[list[tuple[Any, ...]]]:
    """The study's judgments in id order, ``chunk_rows`` tuples (``COLUMN_NAMES`` order, the
    answers list last) at a time, from a server-side cursor on PostgreSQL (Django's
    ``iterator``), each chunk's further answers in one query."""
    first = {"criterion": study.criterion_key, "position": 0, "question": study.question}
    further = {
        criterion_id: {"criterion": key, "position": position, "question": question}
        for criterion_id, key, position, question in Criterion.objects.filter(study=study).values_list(
            "id", "key", "position", "question"
        )
    }
    rows = (
        Judgment.objects.filter(assignment__comparison__study=study)
        .order_by("id")
        .values_list(*(path for _, path, _ in COLUMNS))
        .iterator(chunk_size=chunk_rows)
    )

    def with_answers(chunk: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        answers: dict[int, list[dict[str, Any]]] = {}
        if further:
            for judgment_id, criterion_id, outcome, chose_left in (
                # Only the criteria read when the export started: a criterion added (and answered)
                # since would have no entry in ``further``, and the export one question set.
                JudgmentAnswer.objects.filter(
                    judgment_id__in=[row[0] for row in chunk], criterion_id__in=list(further)
                )
                .order_by("judgment_id", "criterion__position")
                .values_list("judgment_id", "criterion_id", "outcome", "chose_left")
            ):
                answers.setdefault(judgment_id, []).append(
                    {**further[criterion_id], "outcome": outcome, "chose_left": chose_left}
                )
        return [
            (
                *row,
                [
                    {**first, "outcome": row[_OUTCOME], "chose_left": row[_CHOSE_LEFT]},
                    *answers.get(row[0], ()),
                ],
            )
            for row in chunk
        ]

    chunk: list[tuple[Any, ...]] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) >= chunk_rows:
            yield with_answers(chunk)
            chunk = []
    if chunk:
        yield with_answers(chunk)


def _json_value(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def _arrow_schema() -> Any:
    import pyarrow as pa

    types = {
        "int64": pa.int64(),
        "float64": pa.float64(),
        "bool": pa.bool_(),
        "string": pa.string(),
        "strings": pa.list_(pa.string()),
        "timestamp": pa.timestamp("us", tz="UTC"),
    }
    answer = pa.struct([pa.field(name, types[kind]) for name, kind in ANSWER_FIELDS])
    return pa.schema(
        [
            *(pa.field(name, types[kind]) for name, _, kind in COLUMNS),
            pa.field(ANSWERS_COLUMN, pa.list_(answer)),
        ]
    )


def judgments_write(
    *,
    study: Study,
    jsonl_path: Path,
    parquet_path: Path,
    on_chunk: Callable[[int], None] = lambda rows: None,
    on_image: Callable[[str], None] | None = None,
    chunk_rows: int = CHUNK_ROWS,
) -> int:
    """Write the study's judgments to both files, a chunk at a time; returns the row count.
    ``on_chunk(rows_so_far)`` is called after each chunk (progress, heartbeat); ``on_image`` with
    the storage name of each image a row shows (the caller copies it into the export)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = _arrow_schema()
    written = 0
    with (
        open(jsonl_path, "w", encoding="utf-8") as jsonl,
        pq.ParquetWriter(str(parquet_path), schema, compression="zstd") as parquet,
    ):
        for stored in judgment_rows(study=study, chunk_rows=chunk_rows):
            chunk = [_with_image_files(row, on_image) for row in stored]
            for row in chunk:
                record = {name: _json_value(value) for name, value in zip(COLUMN_NAMES, row, strict=True)}
                jsonl.write(json.dumps(record, ensure_ascii=False) + "\n")
            columns = list(zip(*chunk, strict=True))
            arrays = [
                pa.array(column, type=field.type) for column, field in zip(columns, schema, strict=True)
            ]
            parquet.write_batch(pa.record_batch(arrays, schema=schema))
            written += len(chunk)
            on_chunk(written)
    return written


def _with_image_files(row: tuple[Any, ...], on_image: Callable[[str], None] | None) -> tuple[Any, ...]:
    """The row with its images' storage names turned into export file names (``on_image`` sees
    each storage name first)."""
    if all(row[index] is None for index in IMAGE_COLUMNS):
        return row
    values = list(row)
    for index in IMAGE_COLUMNS:
        if values[index] is not None:
            if on_image is not None:
                on_image(values[index])
            values[index] = image_export_name(values[index])
    return tuple(values)
