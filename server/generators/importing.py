"""Parse sample-import files (JSONL or CSV) into validated rows, naming the line of every error.

Pure parsing: no database. The service turns rows into prompts and samples in one transaction,
so a file with any error imports nothing.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from server.core.exceptions import ApplicationError
from server.core.untrusted_json import UntrustedJSONError, json_loads_untrusted, json_value_problem

REQUIRED_FIELDS = ("prompt", "text", "generator")
OPTIONAL_FIELDS = ("version", "split", "metadata", "prompt_id")
MAX_TEXT_CHARACTERS = 100_000
MAX_ERRORS_REPORTED = 50
JSON_WHITESPACE = " \t\r"  # a JSONL line of only these is blank and skipped


@dataclass(frozen=True)
class ImportRow:
    line: int
    prompt: str
    text: str
    generator: str
    version: str = "external"
    split: str = "train"
    prompt_id: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ImportProblem:
    line: int
    field: str
    message: str

    def __str__(self) -> str:
        where = f"line {self.line}" + (f", field '{self.field}'" if self.field else "")
        return f"{where}: {self.message}"


def import_refused(problems: list[ImportProblem]) -> ApplicationError:
    """The one error of a refused file: the first problems in the message, all (up to a limit)
    with their line and field in ``extra``."""
    shown = problems[:MAX_ERRORS_REPORTED]
    more = len(problems) - len(shown)
    summary = "; ".join(str(problem) for problem in shown[:3])
    if len(problems) > 3:
        summary += f"; and {len(problems) - 3} more"
    return ApplicationError(
        f"The file was not imported: {summary}.",
        extra={
            "errors": [{"line": p.line, "field": p.field, "message": p.message} for p in shown],
            "errors_not_shown": more,
        },
    )


def detect_format(filename: str, declared: str | None = None) -> str:
    if declared:
        if declared not in ("jsonl", "csv"):
            raise ApplicationError(
                f"Unknown format {declared!r}: use 'jsonl' or 'csv'.", extra={"field": "format"}
            )
        return declared
    lowered = filename.lower()
    if lowered.endswith((".jsonl", ".ndjson", ".json")):
        return "jsonl"
    if lowered.endswith(".csv"):
        return "csv"
    raise ApplicationError(
        f"Cannot tell the format of {filename!r}: name it .jsonl or .csv, or say the format.",
        extra={"field": "format"},
    )


def decode_utf8(data: bytes, *, max_bytes: int) -> str:
    """UTF-8 text of an upload; refuses files over ``max_bytes`` and names the line of a bad byte."""
    if len(data) > max_bytes:
        raise ApplicationError(
            f"The file is {len(data):,} bytes; the limit is {max_bytes:,} bytes.", extra={"field": "file"}
        )
    if not data.strip():
        raise ApplicationError("The file is empty.", extra={"field": "file"})
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise import_refused(
            [ImportProblem(line, "", f"not valid UTF-8 (byte {error.start}); save the file as UTF-8")]
        ) from None
    return text.removeprefix("\ufeff")


def _subfield(name: str, path: str) -> str:
    return f"{name}{path if path.startswith('[') else '.' + path}" if path else name


def metadata_of(line: int, record: dict[str, Any], problems: list[ImportProblem]) -> dict[str, Any]:
    """A row's ``metadata`` object ({} when absent); a problem for anything else. CSV carries it
    as a JSON object in one cell."""
    metadata = record.get("metadata", {})
    if isinstance(metadata, str):
        try:
            metadata = json_loads_untrusted(metadata) if metadata.strip() else {}
        except UntrustedJSONError as error:
            problems.append(ImportProblem(line, _subfield("metadata", error.path), error.message))
            return {}
    if not isinstance(metadata, dict):
        problems.append(ImportProblem(line, "metadata", "must be a JSON object"))
        return {}
    return metadata


def _validate(line: int, record: dict[str, Any], problems: list[ImportProblem]) -> ImportRow | None:
    before = len(problems)
    values: dict[str, Any] = {}
    for name, value in record.items():
        # A CSV cell can hold a NUL character (a JSONL line was checked when it was read).
        problem = json_value_problem(value)
        if problem is not None:
            problems.append(ImportProblem(line, _subfield(name, problem[0]), problem[1]))
    if len(problems) > before:
        return None
    for name in REQUIRED_FIELDS:
        value = record.get(name)
        if value is None or (isinstance(value, str) and not value.strip()):
            problems.append(ImportProblem(line, name, "is missing or empty"))
        elif not isinstance(value, str):
            problems.append(ImportProblem(line, name, f"must be text, not {type(value).__name__}"))
        elif len(value) > MAX_TEXT_CHARACTERS:
            problems.append(ImportProblem(line, name, f"is longer than {MAX_TEXT_CHARACTERS:,} characters"))
        else:
            values[name] = value
    for name in ("version", "split", "prompt_id"):
        value = record.get(name)
        if value in (None, ""):
            continue
        if not isinstance(value, str):
            problems.append(ImportProblem(line, name, f"must be text, not {type(value).__name__}"))
        else:
            values[name] = value.strip()
    if values.get("split", "train") not in ("train", "holdout"):
        problems.append(ImportProblem(line, "split", "must be 'train' or 'holdout'"))
    metadata = metadata_of(line, record, problems)
    unknown = sorted(set(record) - set(REQUIRED_FIELDS) - set(OPTIONAL_FIELDS))
    if unknown:
        problems.append(
            ImportProblem(
                line,
                unknown[0],
                f"is not a known field (known: {', '.join(REQUIRED_FIELDS + OPTIONAL_FIELDS)})",
            )
        )
    if len(problems) > before:
        return None
    return ImportRow(line=line, metadata=metadata, **values)


Row = TypeVar("Row")
# Checks one record of a file (its line, its fields); appends what is wrong, returns the row or None.
Validator = Callable[[int, dict[str, Any], list[ImportProblem]], Row | None]


def parse_jsonl(text: str, validate: Validator[Row] = _validate) -> list[Row]:  # type: ignore[assignment]
    rows: list[Row] = []
    problems: list[ImportProblem] = []
    # Physical lines: "\n" ends a line ("\r\n" too). ``str.splitlines`` would also split at U+2028,
    # U+0085, form feeds and more, which JSON allows inside a string, and count lines that a text
    # editor does not show.
    for number, raw in enumerate(text.split("\n"), start=1):
        raw = raw.removesuffix("\r")
        if not raw.strip(JSON_WHITESPACE):
            continue
        try:
            record = json_loads_untrusted(raw)
        except UntrustedJSONError as error:
            problems.append(ImportProblem(number, error.path, error.message))
            continue
        if not isinstance(record, dict):
            problems.append(ImportProblem(number, "", "must be a JSON object"))
            continue
        row = validate(number, record, problems)
        if row is not None:
            rows.append(row)
    if problems:
        raise import_refused(problems)
    return rows


def parse_csv(
    text: str,
    validate: Validator[Row] = _validate,  # type: ignore[assignment]
    required: tuple[str, ...] = REQUIRED_FIELDS,
) -> list[Row]:
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = reader.fieldnames or []
    missing = [name for name in required if name not in header]
    if missing:
        raise import_refused(
            [ImportProblem(1, name, "column is missing from the header") for name in missing]
        )
    rows: list[Row] = []
    problems: list[ImportProblem] = []
    try:
        for record in reader:
            line = reader.line_num  # the record's last physical line (cells may span lines)
            if None in record:
                problems.append(ImportProblem(line, "", "has more cells than the header"))
                continue
            cleaned = {key: value for key, value in record.items() if value not in (None, "")}
            row = validate(line, cleaned, problems)
            if row is not None:
                rows.append(row)
    except csv.Error as error:
        problems.append(ImportProblem(reader.line_num, "", f"is not valid CSV ({error})"))
    if problems:
        raise import_refused(problems)
    return rows


def parse_import(
    data: bytes, *, filename: str, declared_format: str | None, max_bytes: int
) -> list[ImportRow]:
    file_format = detect_format(filename, declared_format)
    text = decode_utf8(data, max_bytes=max_bytes)
    rows = parse_jsonl(text) if file_format == "jsonl" else parse_csv(text)
    if not rows:
        raise ApplicationError("The file has no rows.", extra={"field": "file"})
    return rows
