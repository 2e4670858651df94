"""Parse an image-sample import: a zip archive of PNG/JPEG files with a manifest, naming the
manifest line (and the image file) of every error.

The archive holds ``manifest.jsonl`` or ``manifest.csv`` at its top level; each line (row) names
one image: ``prompt`` (or ``condition``: a class-conditional generator's label), ``file`` (its path
inside the archive), ``generator``, and optionally ``version``, ``split``, ``prompt_id`` and
``metadata``, as in the text import (``importing.py``). An image may be named by several lines;
files no line names are ignored.

Zip bombs: the archive's size, its number of entries and the sum of their declared sizes are
checked before anything is unpacked, and each image is read with a bound (a lying header cannot
make it larger). Every image is validated and re-encoded here (``images.image_reencode``), before
the service writes anything: a file with any error imports nothing. No database.
"""

from __future__ import annotations

import io
import posixpath
import zipfile
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings

from server.core.exceptions import ApplicationError
from server.core.untrusted_json import json_value_problem
from server.generators.images import EncodedImage, ImageRefused, image_reencode
from server.generators.importing import (
    MAX_TEXT_CHARACTERS,
    ImportProblem,
    decode_utf8,
    import_refused,
    metadata_of,
    parse_csv,
    parse_jsonl,
)

MANIFEST_NAMES = ("manifest.jsonl", "manifest.ndjson", "manifest.csv")
REQUIRED_FIELDS = ("file", "generator")  # and one of prompt / condition
OPTIONAL_FIELDS = ("prompt", "condition", "version", "split", "metadata", "prompt_id")


@dataclass(frozen=True)
class ImageImportRow:
    line: int
    prompt: str
    file: str
    generator: str
    version: str = "external"
    split: str = "train"
    prompt_id: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    image: EncodedImage | None = None  # set once the file was read and re-encoded


def _text(line: int, name: str, value: Any, problems: list[ImportProblem]) -> str | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if not isinstance(value, str):
        problems.append(ImportProblem(line, name, f"must be text, not {type(value).__name__}"))
        return None
    if len(value) > MAX_TEXT_CHARACTERS:
        problems.append(ImportProblem(line, name, f"is longer than {MAX_TEXT_CHARACTERS:,} characters"))
        return None
    return value


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _validate(line: int, record: dict[str, Any], problems: list[ImportProblem]) -> ImageImportRow | None:
    before = len(problems)
    for name, value in record.items():
        problem = json_value_problem(value)
        if problem is not None:
            where = f"{name}{problem[0] if problem[0].startswith('[') else '.' + problem[0]}"
            problems.append(ImportProblem(line, where if problem[0] else name, problem[1]))
    if len(problems) > before:
        return None
    unknown = sorted(set(record) - set(REQUIRED_FIELDS) - set(OPTIONAL_FIELDS))
    if unknown:
        known = ", ".join(REQUIRED_FIELDS + OPTIONAL_FIELDS)
        problems.append(ImportProblem(line, unknown[0], f"is not a known field (known: {known})"))
    values: dict[str, Any] = {}
    for name in REQUIRED_FIELDS:
        value = _text(line, name, record.get(name), problems)
        if value is not None:
            values[name] = value.strip()
        elif _blank(record.get(name)):
            problems.append(ImportProblem(line, name, "is missing or empty"))
    prompt = _text(line, "prompt", record.get("prompt"), problems)
    condition = _text(line, "condition", record.get("condition"), problems)
    if prompt is not None and condition is not None:
        problems.append(ImportProblem(line, "condition", "give a prompt or a condition, not both"))
    elif prompt is not None or condition is not None:
        values["prompt"] = prompt if prompt is not None else condition
    elif _blank(record.get("prompt")) and _blank(record.get("condition")):
        problems.append(
            ImportProblem(
                line,
                "prompt",
                "is missing or empty (give the prompt or the condition the image was made for; "
                "an unconditional generator's images can share one, e.g. 'unconditional')",
            )
        )
    for name in ("version", "split", "prompt_id"):
        value = _text(line, name, record.get(name), problems)
        if value is not None:
            values[name] = value.strip()
    if values.get("split", "train") not in ("train", "holdout"):
        problems.append(ImportProblem(line, "split", "must be 'train' or 'holdout'"))
    metadata = metadata_of(line, record, problems)
    if len(problems) > before:
        return None
    return ImageImportRow(line=line, metadata=metadata, **values)


def _member_name(name: str) -> str | None:
    """An archive path as the manifest may name it ("./a/b.png" and "a/b.png" are one), or None
    for a path that leaves the archive's root."""
    cleaned = name.replace("\\", "/").strip()
    if not cleaned or cleaned.startswith("/"):
        return None
    normal = posixpath.normpath(cleaned)
    if normal in (".", "..") or normal.startswith("../"):
        return None
    return normal


def _archive_open(data: bytes) -> zipfile.ZipFile:
    limit = settings.LOVELACE_IMAGE_ARCHIVE_MAX_BYTES
    if len(data) > limit:
        raise ApplicationError(
            f"The archive is {len(data):,} bytes; the limit is {limit:,} bytes.", extra={"field": "file"}
        )
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, OSError, ValueError):
        raise ApplicationError(
            "The file is not a zip archive: upload a .zip of PNG/JPEG images with a manifest.jsonl "
            "or manifest.csv.",
            extra={"field": "file"},
        ) from None
    members = [info for info in archive.infolist() if not info.is_dir()]
    if len(members) > settings.LOVELACE_IMAGE_ARCHIVE_MAX_ENTRIES:
        raise ApplicationError(
            f"The archive has {len(members):,} files; the limit is "
            f"{settings.LOVELACE_IMAGE_ARCHIVE_MAX_ENTRIES:,}.",
            extra={"field": "file"},
        )
    declared = sum(info.file_size for info in members)
    if declared > settings.LOVELACE_IMAGE_ARCHIVE_MAX_UNCOMPRESSED:
        raise ApplicationError(
            f"The archive unpacks to {declared:,} bytes; the limit is "
            f"{settings.LOVELACE_IMAGE_ARCHIVE_MAX_UNCOMPRESSED:,} bytes.",
            extra={"field": "file"},
        )
    if any(info.flag_bits & 0x1 for info in members):
        raise ApplicationError(
            "The archive is encrypted: upload it without a password.", extra={"field": "file"}
        )
    return archive


def _read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, limit: int) -> bytes:
    """The member's bytes, at most ``limit`` + 1 of them (more means too large, whatever its
    header declared)."""
    with archive.open(info) as handle:
        return handle.read(limit + 1)


def parse_image_archive(data: bytes) -> list[ImageImportRow]:
    """The archive's manifest rows, each with its image re-encoded; refuses the whole archive with
    every problem found (manifest line, field, and the file name for image errors)."""
    archive = _archive_open(data)
    members: dict[str, zipfile.ZipInfo] = {}
    for info in archive.infolist():
        name = _member_name(info.filename)
        if name is not None and not info.is_dir():
            members.setdefault(name, info)
    manifests = [name for name in members if name.lower() in MANIFEST_NAMES]
    if len(manifests) != 1:
        raise ApplicationError(
            "The archive must hold one manifest at its top level: manifest.jsonl or manifest.csv"
            + (f" (it holds {', '.join(sorted(manifests))})." if manifests else "."),
            extra={"field": "file"},
        )
    manifest_name = manifests[0]
    upload_limit = settings.LOVELACE_MAX_UPLOAD_BYTES
    try:
        manifest_bytes = _read_member(archive, members[manifest_name], upload_limit)
    except (zipfile.BadZipFile, OSError, EOFError) as error:
        raise ApplicationError(
            f"The manifest cannot be unpacked ({error}).", extra={"field": "file"}
        ) from None
    text = decode_utf8(manifest_bytes, max_bytes=upload_limit)
    if manifest_name.lower().endswith(".csv"):
        rows = parse_csv(text, _validate, required=REQUIRED_FIELDS)
    else:
        rows = parse_jsonl(text, _validate)
    if not rows:
        raise ApplicationError("The manifest has no rows.", extra={"field": "file"})

    problems: list[ImportProblem] = []
    encoded: dict[str, EncodedImage | str] = {}  # by member name: the image, or what is wrong with it
    image_limit = settings.LOVELACE_IMAGE_MAX_BYTES
    result: list[ImageImportRow] = []
    for row in rows:
        name = _member_name(row.file)
        if name is None:
            problems.append(ImportProblem(row.line, "file", f"{row.file!r} is not a path inside the archive"))
            continue
        if name == manifest_name:
            problems.append(ImportProblem(row.line, "file", f"{row.file!r} is the manifest, not an image"))
            continue
        info = members.get(name)
        if info is None:
            problems.append(ImportProblem(row.line, "file", f"{row.file!r} is not in the archive"))
            continue
        if name not in encoded:
            try:
                content = _read_member(archive, info, image_limit)
                if len(content) > image_limit:
                    raise ImageRefused(f"the file is larger than {image_limit:,} bytes")
                encoded[name] = image_reencode(content)
            except ImageRefused as error:
                encoded[name] = error.message
            except (zipfile.BadZipFile, OSError, EOFError) as error:
                encoded[name] = f"cannot be unpacked ({error})"
        image = encoded[name]
        if isinstance(image, str):
            problems.append(ImportProblem(row.line, "file", f"{row.file}: {image}"))
            continue
        result.append(
            ImageImportRow(
                line=row.line,
                prompt=row.prompt,
                file=name,
                generator=row.generator,
                version=row.version,
                split=row.split,
                prompt_id=row.prompt_id,
                metadata=row.metadata,
                image=image,
            )
        )
    if problems:
        raise import_refused(problems)
    return result
