"""Job handlers of the training app (worker-only: they import torch through workers.ml)."""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from django.conf import settings

from server.core.paths import model_path_check
from server.generators.models import GeneratorVersion, Sample, VersionKind
from server.generators.services import generate_start, version_model_check
from server.jobs.models import Job
from server.jobs.services import job_log
from server.studies.models import Modality, PromptSplit
from server.training.agreement import accuracy_metrics
from server.training.models import PreferenceSnapshot, RewardModel
from server.training.services import (
    IMAGE_POLICY_METHOD,
    job_checkpoint_folder,
    policy_train_start,
    reward_model_train_start,
)
from server.training.snapshots import snapshot_create, snapshot_rows
from workers.ml.distributed import train_dpo_supervised, train_online_rl_supervised
from workers.ml.dpo import train_dpo
from workers.ml.online_rl import ensemble_reward, train_online_rl
from workers.ml.policy_config import DPOConfig, config_from_options
from workers.ml.policy_training import METADATA_NAME
from workers.ml.preference_data import PreferencePair
from workers.ml.progress import ProgressReporter
from workers.ml.reward_model import (
    RewardModelConfig,
    load_reward_ensemble,
    train_reward_model,
)

REFERENCE_TEXTS = 500  # samples of the study on which rewards are normalised to mean 0, std 1
CHILD_SAMPLES_PER_PROMPT = 3


def _checkpoint_path(job: Job, name: str) -> Path:
    """The job's folder of trainer checkpoints. A job that resumes a failed or cancelled one
    (``training_job_resume``) takes that job's folder over on its first run, so the trainer goes on
    from the newest checkpoint there; it is moved, not copied (one job trains on from it)."""
    folder = job_checkpoint_folder(job.id) / name
    resumed = job.params.get("resumes_job")
    if resumed and not folder.exists():
        earlier = job_checkpoint_folder(int(resumed)) / name
        if earlier.is_dir():
            folder.parent.mkdir(parents=True, exist_ok=True)
            os.replace(earlier, folder)
    return folder


def snapshot_run(*, job: Job, report: ProgressReporter) -> dict[str, Any]:
    report(step=0, total=1, message="freezing eligible judgments")
    # A re-run keeps the snapshot its first run froze, even if judgments arrived since.
    snapshot = PreferenceSnapshot.objects.filter(job=job).first() or snapshot_create(
        study=job.study,
        validation_fraction=float(job.params["validation_fraction"]),
        job_id=job.id,
        criterion_id=job.params.get("criterion_id"),
    )
    report(
        step=1,
        total=1,
        message=f"{snapshot.train_count} train / {snapshot.validation_count} validation pairs",
    )
    then = job.params.get("then", [])
    if "reward_model" in then:
        reward_model_train_start(
            study=job.study,
            snapshot_id=snapshot.id,
            config=job.study.auto_reward_model_config or None,  # the study's loop settings
            parent_id=job.id,
            then=[step for step in then if step != "reward_model"],
        )
    return {
        "snapshot_id": snapshot.id,
        "content_hash": snapshot.content_hash,
        "train": snapshot.train_count,
        "validation": snapshot.validation_count,
    }


def _pairs(snapshot: PreferenceSnapshot) -> tuple[list[PreferencePair], list[PreferencePair], list[int]]:
    """Training pairs, validation pairs, and the comparison each validation pair's vote judged."""
    rows = snapshot_rows(snapshot=snapshot)
    pairs = [
        PreferencePair(
            prompt=str(r["prompt"]),
            chosen=str(r["chosen"]),
            rejected=str(r["rejected"]),
            margin=float(r["margin"]),
            split=str(r["split"]),
        )
        for r in rows
    ]  # type: ignore[arg-type]
    comparisons = [int(r["comparison_id"]) for r in rows if r["split"] == "validation"]  # type: ignore[call-overload]
    train = [p for p in pairs if p.split == "train"]
    return train, [p for p in pairs if p.split == "validation"], comparisons


def reward_model_train_run(*, job: Job, report: ProgressReporter) -> dict[str, Any]:
    # A re-run of a job whose model is recorded (killed before it could finish) trains nothing
    # again: it only makes sure the next step was started.
    reward_model = RewardModel.objects.filter(job=job).first()
    if reward_model is None:
        reward_model = _reward_model_train(job=job, report=report)
    if "policy" in job.params.get("then", []):
        image_study = job.study.modality == Modality.IMAGE
        policy_train_start(
            study=job.study,
            parent_version_id=None,
            method=IMAGE_POLICY_METHOD if image_study else job.study.auto_train_policy,
            snapshot_id=reward_model.snapshot_id,
            reward_model_id=reward_model.id,
            config=job.study.auto_policy_config or None,  # the study's loop settings
            parent_id=job.id,
            then=["generate"],
        )
    return {
        "reward_model_id": reward_model.id,
        "validation_accuracy": reward_model.validation_accuracy,
        "validation_accuracy_interval": reward_model.metrics.get("validation_accuracy_interval"),
        "validation_pairs": reward_model.metrics.get("validation_pairs"),
        "human_agreement_ceiling": reward_model.human_agreement_ceiling,
        "expected_calibration_error": reward_model.expected_calibration_error,
    }


def _reward_model_train(*, job: Job, report: ProgressReporter) -> RewardModel:
    if job.study.modality == Modality.IMAGE:
        from server.training.image_jobs import image_reward_model_train

        return image_reward_model_train(job=job, report=report)
    for warning in job.params.get("warnings", []):  # from the start: too few pairs, ...
        job_log(job_id=job.id, line=f"warning: {warning}")
    snapshot = PreferenceSnapshot.objects.get(id=job.params["snapshot_id"])
    train, validation, validation_comparisons = _pairs(snapshot)
    reference = list(
        Sample.objects.filter(prompt__study=job.study, prompt__split=PromptSplit.TRAIN)
        .order_by("id")
        .values_list("text", "prompt__text")[:REFERENCE_TEXTS]
    )
    config = RewardModelConfig(**job.params.get("config", {}))
    model_path_check(config.backbone_path, field="config.backbone_path")  # again, before loading it
    output_dir = Path(settings.VAR_DIR) / "reward_models" / f"job-{job.id}"
    # The trainers' checkpoints live in the job's folder: a re-run of the job (a killed worker,
    # a cancel and restart) resumes from them, keeping the members that finished. With
    # ``distributed`` other than "none" the members train on supervised ranks (launched from
    # inside ``train_reward_model``, workers.ml.distributed): rank 0's progress reaches ``report``,
    # a cancel stops every rank at a saved step, a dead rank fails the job by name (RankFailed).
    result = train_reward_model(
        train,
        validation,
        [text for text, _ in reference],
        config,
        output_dir,
        _checkpoint_path(job, "reward_model"),
        report,
        reference_prompts=[prompt for _, prompt in reference],
    )
    agreement = accuracy_metrics(
        snapshot=snapshot, right=result.validation_right, comparisons=validation_comparisons
    )
    ceiling = agreement.pop("ceiling")
    reward_model = RewardModel.objects.create(
        study=job.study,
        snapshot=snapshot,
        criterion_id=snapshot.criterion_id,  # it models the question its pairs answer
        backbone=config.backbone_path,
        ensemble_size=config.ensemble_size,
        path=str(output_dir),
        config=asdict(config),
        validation_accuracy=result.validation_accuracy,
        human_agreement_ceiling=ceiling,
        expected_calibration_error=result.expected_calibration_error,
        metrics={
            "kind": result.kind,
            "member_validation_accuracy": result.member_validation_accuracy,
            "validation_loss": result.validation_loss,
            "first_train_loss": result.first_train_loss,
            "last_train_loss": result.last_train_loss,
            "train_pairs": result.train_pairs,
            "validation_pairs": result.validation_pairs,
            # The reliability diagram's bins (evaluation.calibration); older models have none.
            "reliability_bins": result.reliability_bins,
            "truncated_pairs": result.truncated_pairs,
            "dropped_pairs": result.dropped_pairs,
            "provenance": result.provenance,
            "warnings": job.params.get("warnings", []),
            # The accuracy's interval by comparison, the ceiling's n and interval, and the model
            # on the ceiling's comparisons.
            **agreement,
            "steps": result.steps,
            "resumed_from_step": result.resumed_from_step,
        },
        job=job,
    )
    shutil.rmtree(_checkpoint_path(job, "reward_model").parent, ignore_errors=True)
    return reward_model


def _child_label(parent: GeneratorVersion, job: Job, method: str) -> str:
    return f"{parent.label}+{method}-j{job.id}"[:120]


def policy_train_run(*, job: Job, report: ProgressReporter) -> dict[str, Any]:
    # As for reward models: a re-run finds the child it registered and trains nothing again.
    child = GeneratorVersion.objects.filter(training_job=job, kind=VersionKind.TRAINED).first()
    if child is None:
        child = _policy_train(job=job, report=report)
    if "generate" in job.params.get("then", []):
        # All prompts: the leaderboard is reported on holdout prompts, and the child must be
        # judged there against its parent; snapshots never take holdout judgments for training.
        generate_start(
            study=job.study,
            version_ids=[child.id],
            split="all",
            samples_per_prompt=CHILD_SAMPLES_PER_PROMPT,
            then=["select_pairs"],
            parent_id=job.id,
        )
    return {"child_version_id": child.id, "method": job.params["method"], **child.metadata.get("result", {})}


def _policy_train(*, job: Job, report: ProgressReporter) -> GeneratorVersion:
    params = job.params
    for warning in params.get("warnings", []):  # from the start: too few pairs
        job_log(job_id=job.id, line=f"warning: {warning}")
    parent = GeneratorVersion.objects.select_related("generator").get(id=params["parent_version_id"])
    method = params["method"]
    if method == IMAGE_POLICY_METHOD:
        from server.training.image_jobs import image_policy_train

        label = _child_label(parent, job, method)
        trained = image_policy_train(job=job, report=report, parent=parent, label=label)
        return _register_child(
            job=job,
            parent=parent,
            label=label,
            output_dir=trained["output_dir"],
            method=method,
            config=trained["config"],
            snapshot=PreferenceSnapshot.objects.get(id=params["snapshot_id"]),
            reward_model=trained["reward_model"],
            summary=trained["summary"],
            provenance=trained["provenance"],
            metadata=trained["metadata"],
        )
    # The parent is trained from the revision its version pins (a hub model; none for a folder).
    config = replace(
        config_from_options(method, params.get("config", {})), parent_revision=parent.model_revision or None
    )
    label = _child_label(parent, job, method)
    output_dir = Path(settings.VAR_DIR) / "models" / f"{parent.generator.name}-{label}".replace("/", "_")
    snapshot = PreferenceSnapshot.objects.get(id=params["snapshot_id"])
    reward_model = RewardModel.objects.filter(id=params.get("reward_model_id")).first()
    # Checked at the start and again here, before loading (see server.core.paths).
    parent_model = version_model_check(version=parent, field="parent_version_id")
    reward_model_path = model_path_check(reward_model.path, field="reward_model_id") if reward_model else ""
    # The trainer's own checkpoints (checkpoint-N folders): a re-run after a kill or a cancel
    # resumes from the newest one.
    checkpoints = _checkpoint_path(job, "policy")
    result: Any
    # distributed "none" trains here, in the worker; anything else on supervised ranks
    # (workers.ml.distributed), which read the same data from files in the checkpoint folder.
    in_process = config.distributed == "none"
    if isinstance(config, DPOConfig):
        train, validation, _ = _pairs(snapshot)
        result = (train_dpo if in_process else train_dpo_supervised)(
            train, parent_model, output_dir, config, checkpoints, report, validation_pairs=validation
        )
    elif not in_process:
        assert reward_model is not None
        prompts = list(job.study.prompts.filter(split=PromptSplit.TRAIN).values_list("text", flat=True))
        result = train_online_rl_supervised(
            prompts, parent_model, Path(reward_model_path), output_dir, config, checkpoints, report
        )
    else:
        assert reward_model is not None
        prompts = list(job.study.prompts.filter(split=PromptSplit.TRAIN).values_list("text", flat=True))
        ensemble = load_reward_ensemble(Path(reward_model_path))
        result = train_online_rl(
            prompts,
            parent_model,
            ensemble_reward(ensemble, std_penalty=config.reward_std_penalty),
            output_dir,
            config,
            checkpoints,
            report,
        )
    summary = {key: value for key, value in asdict(result).items() if not isinstance(value, list)}
    provenance = json.loads((output_dir / METADATA_NAME).read_text())["provenance"]
    child = _register_child(
        job=job,
        parent=parent,
        label=label,
        output_dir=output_dir,
        method=method,
        config=asdict(config),
        snapshot=snapshot,
        reward_model=reward_model,
        summary=summary,
        provenance=provenance,
    )
    shutil.rmtree(checkpoints.parent, ignore_errors=True)
    return child


def _register_child(
    *,
    job: Job,
    parent: GeneratorVersion,
    label: str,
    output_dir: Path,
    method: str,
    config: dict[str, Any],
    snapshot: PreferenceSnapshot,
    reward_model: RewardModel | None,
    summary: dict[str, Any],
    provenance: dict[str, Any],
    metadata: dict[str, Any] | None = None,
) -> GeneratorVersion:
    """The child version with its full lineage: parent, job, snapshot, reward model, config, and
    the provenance of the weights it was trained from (path, content hash or revision, dtype,
    adapter or merged)."""
    from server.studies.services import study_enrol_version

    child, _ = GeneratorVersion.objects.get_or_create(
        generator=parent.generator,
        label=label,
        defaults={
            "kind": VersionKind.TRAINED,
            "model_path": str(output_dir),
            "decoding": parent.decoding,
            "reference_corpus_path": parent.reference_corpus_path,
            "parent": parent,
            "training_job": job,
            "snapshot": snapshot,
            "reward_model": reward_model,
            "training_config": {"method": method, **config, "provenance": provenance},
            # ``metadata``: what the child is beyond its lineage (an image generator says so).
            "metadata": {**(metadata or {}), "result": summary, "provenance": provenance},
        },
    )
    study_enrol_version(study=job.study, version=child, job_id=job.id)
    return child
