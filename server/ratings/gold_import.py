"""Gold checks that staff supply: a prompt, two texts (or images) and the expected answer (A, B or tie).

A file (JSONL, or CSV with the same columns) has the fields ``prompt``, ``text_a``, ``text_b``,
``expected`` and optionally ``split`` (for a prompt the study does not have yet). An image study's
lines name their two images instead of texts: ``image_a`` and ``image_b`` are the SHA-256 of images
a sample of the study already shows (what an image import reports as each row's ``sha256``, and
the name of the image's URL on the rating page), so a check can only show images staff have
imported into this study. It is checked line by line like a sample import, and any error names its
line and imports nothing. Then, in one transaction: prompts are matched by normalised text (created
when new, and generated for like any other prompt), both texts (images) are filed as samples of the
external version ``lovelace-gold/staff`` (never paired in regular comparisons), and each line
becomes one gold comparison. A pair the study already has as a gold check (same prompt and texts
or images, either order, same answer) is reported and skipped, so importing a file again changes
nothing.

Raters see a staff check exactly as any pair: texts without surrounding whitespace, sides drawn at
random. Whether it reads like the generated texts around it is up to whoever wrote it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction

from server.core.exceptions import ApplicationError
from server.generators.importing import (
    MAX_TEXT_CHARACTERS,
    ImportProblem,
    decode_utf8,
    detect_format,
    import_refused,
    parse_csv,
    parse_jsonl,
)
from server.generators.models import (
    ImageAsset,
    Sample,
    VersionKind,
    sample_text_hash,
    sample_text_normalised,
)
from server.generators.services import generator_version_register
from server.ratings.models import Comparison, ComparisonKind, GoldAnswer
from server.ratings.pair_selection import GOLD_GENERATOR, STAFF_GOLD_LABEL
from server.studies.models import Modality, Prompt, PromptSplit, Study, prompt_text_hash

REQUIRED_FIELDS = ("prompt", "text_a", "text_b", "expected")
IMAGE_REQUIRED_FIELDS = ("prompt", "image_a", "image_b", "expected")
OPTIONAL_FIELDS = ("split",)
SHA256 = re.compile(r"[0-9a-f]{64}")
EXPECTED = {"a": GoldAnswer.A, "b": GoldAnswer.B, "tie": GoldAnswer.TIE}
SWAPPED = {GoldAnswer.A: GoldAnswer.B, GoldAnswer.B: GoldAnswer.A, GoldAnswer.TIE: GoldAnswer.TIE}


@dataclass(frozen=True)
class GoldRow:
    """One check: two texts, or (an image study's) two images by their SHA-256."""

    line: int
    prompt: str
    expected: str  # a GoldAnswer value
    text_a: str = ""  # without surrounding whitespace: raters see it so (``shown_text``)
    text_b: str = ""
    image_a: str = ""  # lower-case hex SHA-256 of an image of the study
    image_b: str = ""
    split: str = PromptSplit.TRAIN

    @property
    def content_keys(self) -> tuple[str, str]:
        """The samples' content hashes (``Sample.text_hash``: a text's, or its image's SHA-256)."""
        if self.image_a:
            return self.image_a, self.image_b
        return sample_text_hash(self.text_a), sample_text_hash(self.text_b)


@dataclass
class GoldImportResult:
    created: int = 0
    duplicates: list[int] = field(default_factory=list)  # lines of checks the study already has
    prompts_created: int = 0


def _validate_image(line: int, record: dict[str, Any], problems: list[ImportProblem]) -> GoldRow | None:
    """A line of an image study: ``image_a`` / ``image_b`` instead of texts."""
    before = len(problems)
    for name in ("text_a", "text_b"):
        if name in record:
            problems.append(
                ImportProblem(
                    line,
                    name,
                    "is for text studies: an image study's gold pair names its images as image_a and "
                    "image_b (the SHA-256 of images of the study)",
                )
            )
    images: dict[str, str] = {}
    for name in ("image_a", "image_b"):
        value = record.get(name)
        if value is None or (isinstance(value, str) and not value.strip()):
            problems.append(ImportProblem(line, name, "is missing or empty"))
        elif not isinstance(value, str) or not SHA256.fullmatch(value.strip().lower()):
            problems.append(ImportProblem(line, name, "must be an image's SHA-256 (64 hexadecimal digits)"))
        else:
            images[name] = value.strip().lower()
    if "image_a" in images and images.get("image_b") == images["image_a"]:
        problems.append(ImportProblem(line, "image_b", "is the same image as image_a"))
    rest = {
        key: value for key, value in record.items() if key not in ("image_a", "image_b", "text_a", "text_b")
    }
    row = _validate_common(line, rest, problems, IMAGE_REQUIRED_FIELDS)
    if row is None or len(problems) > before:
        return None
    return GoldRow(line=line, prompt=row.prompt, expected=row.expected, split=row.split, **images)


def _validate_common(
    line: int, record: dict[str, Any], problems: list[ImportProblem], known: tuple[str, ...]
) -> GoldRow | None:
    """The prompt, the expected answer, the split and unknown fields (of every modality)."""
    before = len(problems)
    prompt = record.get("prompt")
    problem = _text_problem(prompt)
    if problem:
        problems.append(ImportProblem(line, "prompt", problem))
    expected = record.get("expected")
    if not isinstance(expected, str) or expected.strip().lower() not in EXPECTED:
        problems.append(ImportProblem(line, "expected", "must be A, B or tie"))
    split = record.get("split") or PromptSplit.TRAIN
    if split not in PromptSplit.values:
        problems.append(ImportProblem(line, "split", "must be 'train' or 'holdout'"))
    unknown = sorted(set(record) - set(known) - set(OPTIONAL_FIELDS))
    if unknown:
        names = ", ".join(known + OPTIONAL_FIELDS)
        problems.append(ImportProblem(line, unknown[0], f"is not a known field (known: {names})"))
    if len(problems) > before:
        return None
    return GoldRow(
        line=line, prompt=str(prompt).strip(), expected=EXPECTED[str(expected).strip().lower()], split=split
    )


def _text_problem(value: Any) -> str | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return "is missing or empty"
    if not isinstance(value, str):
        return f"must be text, not {type(value).__name__}"
    if len(value) > MAX_TEXT_CHARACTERS:
        return f"is longer than {MAX_TEXT_CHARACTERS:,} characters"
    if "\x00" in value:
        return "contains a NUL character"
    return None


def _validate(line: int, record: dict[str, Any], problems: list[ImportProblem]) -> GoldRow | None:
    """A line of a text study: two texts."""
    before = len(problems)
    texts: dict[str, str] = {}
    for name in ("text_a", "text_b"):
        problem = _text_problem(record.get(name))
        if problem:
            problems.append(ImportProblem(line, name, problem))
        else:
            texts[name] = sample_text_normalised(record[name])
    if "text_a" in texts and texts.get("text_b") == texts["text_a"]:
        problems.append(ImportProblem(line, "text_b", "is the same text as text_a"))
    rest = {key: value for key, value in record.items() if key not in ("text_a", "text_b")}
    row = _validate_common(line, rest, problems, REQUIRED_FIELDS)
    if row is None or len(problems) > before:
        return None
    return GoldRow(line=line, prompt=row.prompt, expected=row.expected, split=row.split, **texts)


def _validator(
    modality: str,
) -> tuple[Callable[[int, dict[str, Any], list[ImportProblem]], GoldRow | None], tuple[str, ...]]:
    if modality == Modality.IMAGE:
        return _validate_image, IMAGE_REQUIRED_FIELDS
    return _validate, REQUIRED_FIELDS


def gold_rows_parse(
    *, data: bytes, filename: str, declared_format: str | None = None, modality: str = Modality.TEXT
) -> list[GoldRow]:
    """Rows of a JSONL or CSV file for a study of ``modality``; any problem refuses the whole file,
    naming lines and fields."""
    file_format = detect_format(filename, declared_format)
    text = decode_utf8(data, max_bytes=settings.LOVELACE_MAX_UPLOAD_BYTES)
    validate, required = _validator(modality)
    rows = parse_jsonl(text, validate) if file_format == "jsonl" else parse_csv(text, validate, required)
    if not rows:
        raise ApplicationError("The file has no rows.", extra={"field": "file"})
    return rows


def gold_rows_from_records(records: list[dict[str, Any]], *, modality: str = Modality.TEXT) -> list[GoldRow]:
    """Rows of a JSON request (``records[0]`` is line 1), checked as a file's lines are."""
    problems: list[ImportProblem] = []
    validate, _ = _validator(modality)
    rows = [validate(number, record, problems) for number, record in enumerate(records, start=1)]
    if problems:
        raise import_refused(problems)
    if not rows:
        raise ApplicationError("There are no gold pairs to import.", extra={"field": "pairs"})
    return [row for row in rows if row is not None]


def gold_pairs_import_file(
    *, study: Study, data: bytes, filename: str, declared_format: str | None = None
) -> GoldImportResult:
    rows = gold_rows_parse(
        data=data, filename=filename, declared_format=declared_format, modality=study.modality
    )
    return gold_pairs_import(study=study, rows=rows)


def _unordered(prompt_id: int, first: str, second: str) -> tuple[int, frozenset[str]]:
    return prompt_id, frozenset((first, second))


@transaction.atomic
def gold_pairs_import(*, study: Study, rows: list[GoldRow]) -> GoldImportResult:
    """Import checked rows in one transaction (see the module's docstring)."""
    problems: list[ImportProblem] = []
    result = GoldImportResult()

    # Prompts: the study's, matched by normalised text; new ones with one split each.
    prompts = {prompt.text_hash: prompt for prompt in Prompt.objects.filter(study=study)}
    new_prompts: dict[str, GoldRow] = {}
    for row in rows:
        key = prompt_text_hash(row.prompt)
        if key in prompts:
            continue
        first = new_prompts.setdefault(key, row)
        if first.split != row.split:
            problems.append(
                ImportProblem(row.line, "split", f"the prompt has split {first.split!r} on line {first.line}")
            )

    # A row's kind must be the study's, and an image must be one a sample of the study shows.
    image_study = study.modality == Modality.IMAGE
    wanted = {sha for row in rows for sha in (row.image_a, row.image_b) if sha}
    assets = {
        asset.sha256: asset
        for asset in ImageAsset.objects.filter(sha256__in=wanted, samples__prompt__study=study).distinct()
    }
    for row in rows:
        if bool(row.image_a) != image_study:
            field_name = "image_a" if row.image_a else "text_a"
            problems.append(
                ImportProblem(
                    row.line,
                    field_name,
                    f"the study is a {study.modality} study; its gold pairs are "
                    + ("images (image_a, image_b)" if image_study else "texts (text_a, text_b)"),
                )
            )
            continue
        for name, sha in (("image_a", row.image_a), ("image_b", row.image_b)):
            if sha and sha not in assets:
                problems.append(
                    ImportProblem(
                        row.line, name, "no image of this study has this SHA-256 (import the image first)"
                    )
                )

    # The same check twice in the file, or against a check the study has with another answer.
    existing: dict[tuple[int, frozenset[str]], tuple[str, str, str]] = {}
    for prompt_id, hash_a, hash_b, answer in Comparison.objects.filter(
        study=study, kind=ComparisonKind.GOLD
    ).values_list("prompt_id", "sample_a__text_hash", "sample_b__text_hash", "gold_answer"):
        existing[_unordered(prompt_id, hash_a, hash_b)] = (hash_a, hash_b, answer)
    seen: dict[tuple[str, frozenset[str]], int] = {}
    skipped: set[int] = set()
    for row in rows:
        hash_a, hash_b = row.content_keys
        in_file = (prompt_text_hash(row.prompt), frozenset((hash_a, hash_b)))
        if in_file in seen:
            problems.append(ImportProblem(row.line, "", f"repeats the pair of line {seen[in_file]}"))
            continue
        seen[in_file] = row.line
        prompt = prompts.get(prompt_text_hash(row.prompt))
        stored = existing.get(_unordered(prompt.id, hash_a, hash_b)) if prompt else None
        if stored is None:
            continue
        answer = stored[2] if stored[0] == hash_a else SWAPPED[GoldAnswer(stored[2])]
        if answer != row.expected:
            problems.append(
                ImportProblem(row.line, "expected", f"the study has this check with the answer {answer}")
            )
        else:
            skipped.add(row.line)
    if problems:
        raise import_refused(sorted(problems, key=lambda problem: problem.line))

    created_prompts = Prompt.objects.bulk_create(
        [
            Prompt(study=study, text=row.prompt.strip(), text_hash=key, split=row.split)
            for key, row in new_prompts.items()
        ]
    )
    for prompt in created_prompts:
        prompts[prompt.text_hash] = prompt
    result.prompts_created = len(created_prompts)

    version = generator_version_register(
        generator_name=GOLD_GENERATOR,
        label=STAFF_GOLD_LABEL,
        kind=VersionKind.EXTERNAL,
        metadata={
            "purpose": "texts and images of gold checks that staff supplied with their expected answers"
        },
    )
    todo = [row for row in rows if row.line not in skipped]
    samples = {
        (sample.prompt_id, sample.text_hash): sample
        for sample in Sample.objects.filter(version=version, prompt__study=study, seed__isnull=True)
    }
    missing: dict[tuple[int, str], Sample] = {}
    for row in todo:
        prompt = prompts[prompt_text_hash(row.prompt)]
        for text, image, content_key in zip(
            (row.text_a, row.text_b), (row.image_a, row.image_b), row.content_keys, strict=True
        ):
            key = (prompt.id, content_key)
            if key not in samples and key not in missing:
                # bulk_create skips Sample.save: the hash is set here (an image's is its SHA-256).
                missing[key] = Sample(
                    prompt=prompt, version=version, text=text, image=assets.get(image), text_hash=content_key
                )
    comparisons = []
    try:
        for sample in Sample.objects.bulk_create(list(missing.values())):
            samples[(sample.prompt_id, sample.text_hash)] = sample
        for row in todo:
            prompt = prompts[prompt_text_hash(row.prompt)]
            comparisons.append(
                Comparison(
                    study=study,
                    prompt=prompt,
                    kind=ComparisonKind.GOLD,
                    sample_a=samples[(prompt.id, row.content_keys[0])],
                    sample_b=samples[(prompt.id, row.content_keys[1])],
                    gold_answer=row.expected,
                )
            )
        Comparison.objects.bulk_create(comparisons)
    except IntegrityError:  # a concurrent import of the same texts: refuse whole, keep nothing
        raise ApplicationError(
            "Another import of the same gold pairs ran at the same time; try again."
        ) from None
    result.created = len(comparisons)
    result.duplicates = sorted(skipped)
    return result
