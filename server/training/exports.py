"""Exports: the preference dataset, the leaderboard and the evaluation report, as files.

``export_start`` (web process) validates the request and enqueues an ``export`` job;
``export_run`` (worker) writes the files under ``VAR_DIR/exports/job-<id>/`` and returns their
paths as the job's result. Kinds:

- ``preferences`` — a PreferenceSnapshot (the one given, else the study's latest, else a new one
  frozen by the job) as ``preferences.jsonl`` (one ``snapshot_rows`` row a line, ids for lineage
  included) and as a Hugging Face ``datasets`` dataset saved with ``save_to_disk`` in
  ``dataset/`` with the columns TRL's preference trainers read — ``prompt``, ``chosen``,
  ``rejected``, ``margin`` — plus ``rater_id`` and ``split`` (``train`` / ``validation``);
  ``preferences-dataset.zip`` holds that folder for download.
  The dataset is a ``datasets.DatasetDict`` with ``train`` and ``validation`` splits (TRL's
  trainers take ``dataset["train"]`` and ``dataset["validation"]``). With ``hub_repo`` and a
  ``HF_TOKEN`` in the worker's environment, it is also pushed to that Hugging Face Hub dataset
  repository (private); a failed push is reported in the result and the files are kept.
  An image study's pairs are images: each image is written once, by content hash, to ``images/``
  (``<sha256>.png`` or ``.jpg``, the stored bytes), and ``chosen`` / ``rejected`` in the JSONL are
  those files' paths relative to the export folder (with ``chosen_sha256`` / ``rejected_sha256``);
  the dataset's ``chosen`` and ``rejected`` are ``datasets.Image`` columns holding the bytes, so
  ``load_from_disk`` gives PIL images. ``preferences-images.zip`` holds the JSONL with ``images/``
  for download. Rows are read from a server-side cursor and the dataset written from a generator,
  so memory holds a chunk of rows and the names of the images written, not the images.
- ``judgments`` — every judgment of the study with every field (``server.ratings.judgment_export``),
  streamed to ``judgments.jsonl`` and ``judgments.parquet``, with its ``answers`` to every question
  of the study (a list of ``{criterion, position, question, outcome, chose_left}``); the result
  lists the study's criteria. For an image study also each image once in ``images/`` (``image_a``
  / ``image_b`` name the files) and ``judgments-images.zip``.
- ``leaderboard`` — the latest LeaderboardSnapshot as ``leaderboard.csv``.
- ``evaluation_report`` — one self-contained HTML page (``evaluation-report.html``) with the
  latest evaluation of each version and its plots as inline SVG.

The web process imports this module (for ``export_start``); ``datasets`` is imported inside
``export_run`` only, so it never loads there.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from django.conf import settings

from server.core.csv_export import CSVWriter
from server.core.exceptions import ApplicationError, Conflict, NotFound
from server.evaluations.models import Evaluation
from server.evaluations.selectors import leaderboard_latest
from server.generators.images import EXPORT_IMAGES_FOLDER, image_export_name, image_storage
from server.jobs.models import Job, JobKind
from server.jobs.services import job_enqueue
from server.ratings.judgment_export import COLUMN_NAMES, judgments_write
from server.ratings.models import Judgment
from server.studies.models import Modality, Study
from server.studies.selectors import study_criteria
from server.training.models import PreferenceSnapshot, SnapshotPair
from server.training.snapshots import eligible_judgments, snapshot_create, snapshot_rows

EXPORT_KINDS = ("preferences", "judgments", "leaderboard", "evaluation_report")
HUB_REPO = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}")
DATASET_COLUMNS = ("prompt", "chosen", "rejected", "margin", "rater_id", "split")
# The rating's and the win rate's bootstrap intervals travel with them: a rank without its interval
# reads as a certainty the data do not give.
LEADERBOARD_COLUMNS = (
    "rank",
    "version_id",
    "label",
    "rating",
    "lower",
    "upper",
    "battles",
    "win_rate",
    "win_rate_lower",
    "win_rate_upper",
)

IMAGE_ROW_COLUMNS = (
    *DATASET_COLUMNS,
    "judgment_id",
    "chosen_version_id",
    "rejected_version_id",
    "chosen_sha256",
    "rejected_sha256",
)
IMAGE_CHUNK_ROWS = 500  # pairs a cursor round trip brings; each row holds two file names, not images
PREFERENCES_JSONL = "preferences.jsonl"
IMAGES_FOLDER = EXPORT_IMAGES_FOLDER
PREFERENCES_IMAGES_ZIP = "preferences-images.zip"
JUDGMENTS_IMAGES_ZIP = "judgments-images.zip"
DATASET_FOLDER = "dataset"
DATASET_ZIP = "preferences-dataset.zip"
JUDGMENTS_JSONL = "judgments.jsonl"
JUDGMENTS_PARQUET = "judgments.parquet"
LEADERBOARD_CSV = "leaderboard.csv"
REPORT_HTML = "evaluation-report.html"


def export_dir(job_id: int) -> Path:
    return Path(settings.VAR_DIR) / "exports" / f"job-{job_id}"


def export_start(
    *,
    study: Study,
    kind: str,
    snapshot_id: int | None = None,
    hub_repo: str = "",
    created_by_id: int | None = None,
) -> Job:
    """Enqueue an export of ``kind``, refusing at once what the worker could not do."""
    if kind not in EXPORT_KINDS:
        raise ApplicationError(
            f"Unknown export kind {kind!r}; choose one of {', '.join(EXPORT_KINDS)}.", extra={"field": "kind"}
        )
    if snapshot_id is not None and kind != "preferences":
        raise ApplicationError(
            "A snapshot is chosen only for a preferences export.", extra={"field": "snapshot_id"}
        )
    if hub_repo:
        if kind != "preferences":
            raise ApplicationError(
                "Only a preferences export is pushed to the Hugging Face Hub.", extra={"field": "hub_repo"}
            )
        if not HUB_REPO.fullmatch(hub_repo):
            raise ApplicationError(
                "hub_repo must name a Hub repository as owner/name (letters, digits, '.', '_', '-').",
                extra={"field": "hub_repo"},
            )
        if not os.environ.get("HF_TOKEN"):
            raise ApplicationError(
                "Pushing to the Hugging Face Hub needs a token: set HF_TOKEN in the environment of the "
                "web and worker processes.",
                extra={"field": "hub_repo"},
            )
    if kind == "judgments" and not Judgment.objects.filter(assignment__comparison__study=study).exists():
        raise Conflict("The study has no judgments to export yet.")
    if kind == "preferences":
        if snapshot_id is not None:
            if not PreferenceSnapshot.objects.filter(study=study, id=snapshot_id).exists():
                raise NotFound(f"The study has no snapshot {snapshot_id}.", extra={"field": "snapshot_id"})
        elif (
            not PreferenceSnapshot.objects.filter(study=study).exists()
            and not eligible_judgments(study=study).exists()
        ):
            raise Conflict("The study has no eligible judgments to export yet.")
    elif kind == "leaderboard" and leaderboard_latest(study=study) is None:
        raise Conflict("The study has no leaderboard yet; recompute it first.")
    elif kind == "evaluation_report" and not Evaluation.objects.filter(study=study).exists():
        raise Conflict("The study has no evaluation yet; evaluate a version first.")
    return job_enqueue(
        kind=JobKind.EXPORT,
        study_id=study.id,
        created_by_id=created_by_id,
        params={"kind": kind, "snapshot_id": snapshot_id, **({"hub_repo": hub_repo} if hub_repo else {})},
    )


# --- Worker side --------------------------------------------------------------------------------


def export_run(*, job: Job, report) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """The ``export`` job. Files are written in a scratch folder renamed into place at the end, so
    a download never sees half a file and a re-run after a crash starts clean."""
    kind = job.params.get("kind")
    study = job.study
    if study is None or kind not in EXPORT_KINDS:
        raise ApplicationError(f"Export job {job.id} has no study or an unknown kind {kind!r}.")
    final = export_dir(job.id)
    scratch = final.with_name(f"{final.name}.partial-{os.getpid()}")
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    try:
        if kind == "preferences":
            result = _export_preferences(job=job, study=study, folder=scratch, report=report)
        elif kind == "judgments":
            result = _export_judgments(study=study, folder=scratch, report=report)
        elif kind == "leaderboard":
            result = _export_leaderboard(study=study, folder=scratch, report=report)
        else:
            result = _export_report(study=study, folder=scratch, report=report)
        shutil.rmtree(final, ignore_errors=True)
        scratch.rename(final)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    files = {name: str(final / name) for name in result.pop("files")}
    if job.params.get("hub_repo"):
        result["hub"] = _push_to_hub(final / DATASET_FOLDER, repo=job.params["hub_repo"], report=report)
    return {"kind": kind, "directory": str(final), "files": files, **result}


def _push_to_hub(folder: Path, *, repo: str, report) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """Push the saved DatasetDict to a private Hub dataset repository; a failure (network, token,
    permissions) is reported, not raised: the export's files are there either way."""
    from datasets import load_from_disk

    report(step=4, total=5, message=f"pushing the dataset to the Hugging Face Hub as {repo}")
    try:
        commit = load_from_disk(str(folder)).push_to_hub(repo, private=True, token=os.environ["HF_TOKEN"])
    except Exception as error:
        reason = str(error).strip().splitlines()[0][:300] if str(error).strip() else type(error).__name__
        return {"repo": repo, "pushed": False, "error": f"{type(error).__name__}: {reason}"}
    return {"repo": repo, "pushed": True, "commit_url": str(getattr(commit, "commit_url", "") or "")}


def _export_preferences(*, job: Job, study: Study, folder: Path, report) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    from datasets import Dataset, DatasetDict, Features, Value  # worker only: heavy import

    report(step=0, total=4, message="choosing the snapshot")
    snapshot_id = job.params.get("snapshot_id")
    if snapshot_id is not None:
        snapshot = PreferenceSnapshot.objects.get(study=study, id=snapshot_id)
    else:
        snapshot = PreferenceSnapshot.objects.filter(study=study).order_by(
            "-created_at", "-id"
        ).first() or snapshot_create(study=study, job_id=job.id)
    if study.modality == Modality.IMAGE:
        return _export_image_preferences(snapshot=snapshot, folder=folder, report=report)
    rows = snapshot_rows(snapshot=snapshot)

    report(step=1, total=4, message=f"writing {len(rows)} rows as JSONL")
    with open(folder / PREFERENCES_JSONL, "w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")

    report(step=2, total=4, message="writing the Hugging Face dataset")
    features = Features(
        {
            "prompt": Value("string"),
            "chosen": Value("string"),
            "rejected": Value("string"),
            "margin": Value("float64"),
            "rater_id": Value("int64"),
            "split": Value("string"),
        }
    )
    # One DatasetDict with the snapshot's own split: TRL takes dataset["train"] and
    # dataset["validation"] as they are; the split column stays for a reader of the flat file.
    splits = {
        split: Dataset.from_dict(
            {name: [row[name] for row in rows if row["split"] == split] for name in DATASET_COLUMNS},
            features=features,
        )
        for split in ("train", "validation")
    }
    # One shard per split, even an empty one: datasets writes no shard for an empty split by
    # default, and then cannot load the folder back.
    DatasetDict(splits).save_to_disk(str(folder / DATASET_FOLDER), num_shards=dict.fromkeys(splits, 1))

    report(step=3, total=4, message="packing the dataset for download")
    _zip_folder(folder / DATASET_FOLDER, folder / DATASET_ZIP)
    return {
        "snapshot_id": snapshot.id,
        "content_hash": snapshot.content_hash,
        "rows": len(rows),
        "files": [PREFERENCES_JSONL, DATASET_FOLDER, DATASET_ZIP],
    }


def _image_pair_rows(snapshot_id: int, split: str | None = None) -> Iterator[dict[str, Any]]:
    """The snapshot's pairs of two images in id order, from a server-side cursor, each with the
    file names the export gives its images (``images/<sha256>.<ext>``) and their storage names."""
    pairs = SnapshotPair.objects.filter(
        snapshot_id=snapshot_id, chosen__image__isnull=False, rejected__image__isnull=False
    )
    if split is not None:
        pairs = pairs.filter(split=split)
    fields = (
        "chosen__prompt__text",
        "chosen__image__storage_name",
        "rejected__image__storage_name",
        "margin",
        "judgment__assignment__rater_id",
        "split",
        "judgment_id",
        "chosen__version_id",
        "rejected__version_id",
        "chosen__image__sha256",
        "rejected__image__sha256",
    )
    for values in pairs.order_by("id").values_list(*fields).iterator(chunk_size=IMAGE_CHUNK_ROWS):
        prompt, chosen_name, rejected_name, *rest = values
        row = dict(
            zip(
                IMAGE_ROW_COLUMNS,
                (prompt, image_export_name(chosen_name), image_export_name(rejected_name), *rest),
                strict=True,
            )
        )
        yield {**row, "_stored": (chosen_name, rejected_name)}


class _ImageCopier:
    """Copies each stored image into the export once (the set holds names, ~100 bytes each)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.written: set[str] = set()
        (folder / IMAGES_FOLDER).mkdir(exist_ok=True)

    def copy(self, storage_name: str) -> None:
        exported = image_export_name(storage_name)
        if exported in self.written:
            return
        with image_storage().open(storage_name, "rb") as source, open(self.folder / exported, "wb") as target:
            shutil.copyfileobj(source, target)
        self.written.add(exported)


def _image_dataset_examples(snapshot_id: int, split: str, folder: str) -> Iterator[dict[str, Any]]:
    """Rows of the image dataset: the images' bytes read back from the export's files (a
    ``datasets.Image`` value as a {bytes, path} dict, stored in the Arrow files)."""
    for row in _image_pair_rows(snapshot_id, split):
        example = {name: row[name] for name in DATASET_COLUMNS}
        for side in ("chosen", "rejected"):
            path = Path(folder) / row[side]
            example[side] = {"bytes": path.read_bytes(), "path": path.name}
        yield example


def _export_image_preferences(*, snapshot: PreferenceSnapshot, folder: Path, report) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    from datasets import Dataset, DatasetDict, Features, Image, Value  # worker only: heavy import

    total = SnapshotPair.objects.filter(snapshot=snapshot).count()
    report(step=1, total=4, message=f"writing the snapshot's {total} pairs and their images")
    copier = _ImageCopier(folder)
    rows = 0
    with open(folder / PREFERENCES_JSONL, "w", encoding="utf-8") as handle:
        for row in _image_pair_rows(snapshot.id):
            for storage_name in row.pop("_stored"):
                copier.copy(storage_name)
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
            rows += 1

    report(step=2, total=4, message="writing the Hugging Face dataset with image columns")
    features = Features(
        {
            "prompt": Value("string"),
            "chosen": Image(),
            "rejected": Image(),
            "margin": Value("float64"),
            "rater_id": Value("int64"),
            "split": Value("string"),
        }
    )
    cache = folder / ".datasets-cache"  # from_generator's Arrow files, removed once saved
    splits = {}
    for split in ("train", "validation"):
        if SnapshotPair.objects.filter(
            snapshot=snapshot, split=split, chosen__image__isnull=False, rejected__image__isnull=False
        ).exists():
            splits[split] = Dataset.from_generator(
                _image_dataset_examples,
                features=features,
                gen_kwargs={"snapshot_id": snapshot.id, "split": split, "folder": str(folder)},
                cache_dir=str(cache),
            )
        else:  # from_generator refuses a generator with no rows
            splits[split] = Dataset.from_dict({name: [] for name in DATASET_COLUMNS}, features=features)
    DatasetDict(splits).save_to_disk(str(folder / DATASET_FOLDER), num_shards=dict.fromkeys(splits, 1))
    del splits
    shutil.rmtree(cache, ignore_errors=True)

    report(step=3, total=4, message="packing the dataset and the images for download")
    _zip_folder(folder / DATASET_FOLDER, folder / DATASET_ZIP)
    _zip_paths(folder, [folder / PREFERENCES_JSONL, folder / IMAGES_FOLDER], folder / PREFERENCES_IMAGES_ZIP)
    return {
        "snapshot_id": snapshot.id,
        "content_hash": snapshot.content_hash,
        "rows": rows,
        "images": len(copier.written),
        # Pairs with a text side (none, unless an admin edited rows) are not image pairs.
        "skipped_pairs": total - rows,
        "files": [PREFERENCES_JSONL, IMAGES_FOLDER, DATASET_FOLDER, DATASET_ZIP, PREFERENCES_IMAGES_ZIP],
    }


def _export_judgments(*, study: Study, folder: Path, report) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    total = Judgment.objects.filter(assignment__comparison__study=study).count()
    report(step=0, total=max(total, 1), message=f"writing {total} judgments as JSONL and Parquet")
    copier = _ImageCopier(folder) if study.modality == Modality.IMAGE else None
    written = judgments_write(
        study=study,
        jsonl_path=folder / JUDGMENTS_JSONL,
        parquet_path=folder / JUDGMENTS_PARQUET,
        on_chunk=lambda rows: report(
            step=min(rows, total), total=max(total, 1), message=f"{rows} of {total} judgments written"
        ),
        on_image=copier.copy if copier else None,
    )
    files = [JUDGMENTS_JSONL, JUDGMENTS_PARQUET]
    result: dict[str, Any] = {
        "rows": written,
        "columns": list(COLUMN_NAMES),
        "criteria": [
            {"key": criterion.key, "position": criterion.position, "question": criterion.question}
            for criterion in study_criteria(study=study)
        ],
    }
    if copier is not None:
        _zip_paths(
            folder,
            [folder / JUDGMENTS_JSONL, folder / JUDGMENTS_PARQUET, folder / IMAGES_FOLDER],
            folder / JUDGMENTS_IMAGES_ZIP,
        )
        files += [IMAGES_FOLDER, JUDGMENTS_IMAGES_ZIP]
        result["images"] = len(copier.written)
    return {**result, "files": files}


def _zip_paths(root: Path, paths: list[Path], target: Path) -> None:
    """Files and folders (recursively) under ``root`` into one archive, named relative to ``root``.
    Images are stored, not deflated: PNG and JPEG are compressed already."""
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_STORED) as archive:
        for path in paths:
            for item in [path] if path.is_file() else sorted(path.rglob("*")):
                if item.is_file():
                    archive.write(item, arcname=str(item.relative_to(root)))


def _zip_folder(source: Path, target: Path) -> None:
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(source.rglob("*")):
            if path.is_file():
                archive.write(path, arcname=str(Path(source.name) / path.relative_to(source)))


def leaderboard_csv(rows: list[dict[str, Any]]) -> str:
    """The leaderboard rows as CSV (header ``LEADERBOARD_COLUMNS``; a missing number is empty; a
    label that would start a spreadsheet formula is quoted, see ``CSVWriter``)."""
    buffer = io.StringIO()
    writer = CSVWriter(buffer, lineterminator="\n")
    writer.writerow(LEADERBOARD_COLUMNS)
    for row in rows:
        writer.writerow(["" if row.get(column) is None else row[column] for column in LEADERBOARD_COLUMNS])
    return buffer.getvalue()


def _export_leaderboard(*, study: Study, folder: Path, report) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    report(step=0, total=1, message="writing the leaderboard")
    board = leaderboard_latest(study=study)
    if board is None:
        raise ApplicationError("The study has no leaderboard.")
    (folder / LEADERBOARD_CSV).write_text(leaderboard_csv(board.rows), encoding="utf-8")
    return {"leaderboard_id": board.id, "rows": len(board.rows), "files": [LEADERBOARD_CSV]}


def _export_report(*, study: Study, folder: Path, report) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    from server.evaluations.reports import evaluation_report_html, latest_evaluations

    report(step=0, total=1, message="rendering the evaluation report")
    evaluations = latest_evaluations(study=study)
    (folder / REPORT_HTML).write_text(evaluation_report_html(study=study), encoding="utf-8")
    return {"evaluation_ids": [evaluation.id for evaluation in evaluations], "files": [REPORT_HTML]}


def export_file_path(*, job: Job, name: str) -> Path:
    """The path of file ``name`` of a finished export job, refusing anything it did not write."""
    if job.kind != JobKind.EXPORT:
        raise NotFound(f"Job {job.id} is not an export.")
    if job.status != "succeeded":
        raise Conflict(f"Export {job.id} is {job.status}; download it when it has succeeded.")
    recorded = (job.result or {}).get("files", {})
    if name not in recorded:
        raise NotFound(f"Export {job.id} has no file {name!r}.", extra={"files": sorted(recorded)})
    path = Path(recorded[name]).resolve()
    if not path.is_file() or export_dir(job.id).resolve() not in path.parents:
        raise NotFound(f"Export {job.id} has no file {name!r} to download.")
    return path
