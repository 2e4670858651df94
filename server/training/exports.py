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
import shutil
import zipfile
from pathlib import Path
from typing import Any

from django.conf import settings

from server.core.csv_export import CSVWriter
from server.core.exceptions import ApplicationError, Conflict, NotFound
from server.evaluations.models import Evaluation
from server.evaluations.selectors import leaderboard_latest
from server.jobs.models import Job, JobKind
from server.jobs.services import job_enqueue
from server.studies.models import Study
from server.training.models import PreferenceSnapshot
from server.training.snapshots import eligible_judgments, snapshot_create, snapshot_rows

EXPORT_KINDS = ("preferences", "leaderboard", "evaluation_report")
DATASET_COLUMNS = ("prompt", "chosen", "rejected", "margin", "rater_id", "split")
LEADERBOARD_COLUMNS = ("rank", "version_id", "label", "rating", "lower", "upper", "battles", "win_rate")

PREFERENCES_JSONL = "preferences.jsonl"
DATASET_FOLDER = "dataset"
DATASET_ZIP = "preferences-dataset.zip"
LEADERBOARD_CSV = "leaderboard.csv"
REPORT_HTML = "evaluation-report.html"


def export_dir(job_id: int) -> Path:
    return Path(settings.VAR_DIR) / "exports" / f"job-{job_id}"


def export_start(
    *, study: Study, kind: str, snapshot_id: int | None = None, created_by_id: int | None = None
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
        params={"kind": kind, "snapshot_id": snapshot_id},
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
        elif kind == "leaderboard":
            result = _export_leaderboard(study=study, folder=scratch, report=report)
        else:
            result = _export_report(study=study, folder=scratch, report=report)
        shutil.rmtree(final, ignore_errors=True)
        scratch.rename(final)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    files = {name: str(final / name) for name in result.pop("files")}
    return {"kind": kind, "directory": str(final), "files": files, **result}


def _export_preferences(*, job: Job, study: Study, folder: Path, report) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    from datasets import Dataset, Features, Value  # worker only: heavy import

    report(step=0, total=4, message="choosing the snapshot")
    snapshot_id = job.params.get("snapshot_id")
    if snapshot_id is not None:
        snapshot = PreferenceSnapshot.objects.get(study=study, id=snapshot_id)
    else:
        snapshot = PreferenceSnapshot.objects.filter(study=study).order_by(
            "-created_at", "-id"
        ).first() or snapshot_create(study=study, job_id=job.id)
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
    columns = {name: [row[name] for row in rows] for name in DATASET_COLUMNS}
    Dataset.from_dict(columns, features=features).save_to_disk(str(folder / DATASET_FOLDER))

    report(step=3, total=4, message="packing the dataset for download")
    _zip_folder(folder / DATASET_FOLDER, folder / DATASET_ZIP)
    return {
        "snapshot_id": snapshot.id,
        "content_hash": snapshot.content_hash,
        "rows": len(rows),
        "files": [PREFERENCES_JSONL, DATASET_FOLDER, DATASET_ZIP],
    }


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
