"""The feedback loop of image studies: a reward model on the study's judgments of images
(``workers.ml.image_reward``) and a child generator climbing it (``workers.ml.image_policy``).

Worker-only (torch through ``workers.ml``). Called from ``server.training.jobs`` when the study is
an image study (reward model) or the method is ``IMAGE_POLICY_METHOD`` (policy); the rows they
write are the text loop's: a ``RewardModel``, and a TRAINED child version with its parent,
training job, snapshot and reward model, enrolled in the study.
"""

from __future__ import annotations

import io
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
from django.conf import settings

from server.core.exceptions import ApplicationError
from server.core.paths import model_path_check
from server.generators.images import image_asset_read
from server.generators.models import GeneratorVersion, ImageAsset, Sample
from server.generators.services import version_model_check
from server.jobs.models import Job
from server.studies.models import Modality, PromptSplit
from server.training.agreement import accuracy_metrics
from server.training.models import PreferenceSnapshot, RewardModel
from workers.ml.image_dataset import UInt8Array
from workers.ml.image_generators import MANIFEST_FILE
from workers.ml.image_policy import ImagePolicyConfig, fine_tune_image_generator
from workers.ml.image_reward import ImagePreferences, ImageRewardConfig, train_image_reward_model
from workers.ml.progress import ProgressReporter

REFERENCE_IMAGES = 500  # image samples of the study on which rewards are normalised


def _pixels(asset: ImageAsset, cache: dict[int, UInt8Array]) -> UInt8Array:
    from PIL import Image

    if asset.id not in cache:
        with Image.open(io.BytesIO(image_asset_read(asset))) as image:
            pixels = image.convert("RGB")
            if pixels.size != (32, 32):  # an imported image, compared at the generators' size
                pixels = pixels.resize((32, 32))
            cache[asset.id] = np.asarray(pixels, dtype=np.uint8)
    return cache[asset.id]


def _preferences(
    snapshot: PreferenceSnapshot, split: str, cache: dict[int, UInt8Array]
) -> tuple[ImagePreferences | None, list[int]]:
    """The snapshot's pairs of two images in ``split`` as the trainer takes them, and the
    comparison each judged, in the same order (one query: they cannot drift apart)."""
    pairs = list(
        snapshot.pairs.filter(split=split, chosen__image__isnull=False, rejected__image__isnull=False)
        .select_related("chosen__image", "rejected__image", "judgment__assignment")
        .order_by("id")
    )
    comparisons = [pair.judgment.assignment.comparison_id for pair in pairs]
    if not pairs:
        return None, comparisons
    preferences = ImagePreferences(
        chosen=np.stack([_pixels(pair.chosen.image, cache) for pair in pairs]),  # type: ignore[arg-type]
        rejected=np.stack([_pixels(pair.rejected.image, cache) for pair in pairs]),  # type: ignore[arg-type]
        margins=np.array([pair.margin for pair in pairs], dtype=np.float64),
    )
    return preferences, comparisons


def image_reward_model_train(*, job: Job, report: ProgressReporter) -> RewardModel:
    """Train the image reward ensemble on the snapshot's pairs of images and record it."""
    snapshot = PreferenceSnapshot.objects.get(id=job.params["snapshot_id"])
    cache: dict[int, UInt8Array] = {}
    train, _ = _preferences(snapshot, "train", cache)
    if train is None:
        raise ApplicationError("The snapshot has no training pairs of two images.")
    validation, validation_comparisons = _preferences(snapshot, "validation", cache)
    references = list(
        Sample.objects.filter(prompt__study=job.study, prompt__split=PromptSplit.TRAIN, image__isnull=False)
        .select_related("image")
        .order_by("id")[:REFERENCE_IMAGES]
    )
    if len(references) < 2:
        raise ApplicationError("The normalisation needs at least two image samples on train prompts.")
    reference_images = np.stack([_pixels(sample.image, cache) for sample in references])  # type: ignore[arg-type]
    config = ImageRewardConfig(**job.params.get("config", {}))
    output_dir = Path(settings.VAR_DIR) / "reward_models" / f"job-{job.id}"
    result = train_image_reward_model(
        preferences=train,
        reference_images=reference_images,
        output_dir=output_dir,
        validation=validation,
        config=config,
        reporter=report,
    )
    manifest = json.loads((output_dir / "image_reward.json").read_text())
    agreement = accuracy_metrics(
        snapshot=snapshot, right=result.validation_right, comparisons=validation_comparisons
    )
    ceiling = agreement.pop("ceiling")
    return RewardModel.objects.create(
        study=job.study,
        snapshot=snapshot,
        backbone="image-cnn",
        ensemble_size=config.ensemble_size,
        path=str(output_dir),
        config=asdict(config),
        validation_accuracy=result.validation_accuracy,
        human_agreement_ceiling=ceiling,
        metrics={
            "kind": "image_cnn",
            "modality": Modality.IMAGE.value,
            "train_pairs": result.train_pairs,
            "validation_pairs": result.validation_pairs,
            **agreement,
            "first_train_loss": result.first_loss,
            "last_train_loss": result.last_loss,
            "reference_images": len(references),
            "seconds": round(result.seconds, 2),
            "provenance": {"weights_sha256": manifest.get("weights_sha256")},
            "warnings": job.params.get("warnings", []),
        },
        job=job,
    )


def image_policy_train(
    *, job: Job, report: ProgressReporter, parent: GeneratorVersion, label: str
) -> dict[str, Any]:
    """Fine-tune a child of the image generator ``parent`` against the study's reward model.
    Returns what ``_register_child`` records (output folder, config, summary, provenance)."""
    params = job.params
    reward_model = RewardModel.objects.get(id=params["reward_model_id"])
    reward_dir = Path(model_path_check(reward_model.path, field="reward_model_id"))
    parent_dir = Path(version_model_check(version=parent, field="parent_version_id"))
    config = ImagePolicyConfig(**params.get("config", {}))
    output_dir = Path(settings.VAR_DIR) / "models" / f"{parent.generator.name}-{label}".replace("/", "_")
    # The conditions the study asks for (its train prompts): the child learns where raters judged.
    conditions = list(
        job.study.prompts.filter(split=PromptSplit.TRAIN).order_by("id").values_list("text", flat=True)
    )
    try:
        result = fine_tune_image_generator(
            parent_dir=parent_dir,
            reward_dir=reward_dir,
            output_dir=output_dir,
            config=config,
            conditions=[" ".join(text.strip().lower().split()) for text in conditions] or None,
            reporter=report,
        )
    except ValueError as error:  # a prompt that is not one of the parent's conditions
        raise ApplicationError(f"{parent}: {error}") from None
    manifest = json.loads((output_dir / MANIFEST_FILE).read_text())
    return {
        "output_dir": output_dir,
        "config": asdict(config),
        "reward_model": reward_model,
        "summary": {
            "reward_before": round(result.reward_before, 5),
            "reward_after": round(result.reward_after, 5),
            "distance_to_parent": round(result.distance_to_parent, 6),
            "seconds": round(result.seconds, 2),
        },
        "provenance": {
            "parent_path": str(parent_dir),
            "parent_decoder_sha256": (manifest.get("parent") or {}).get("decoder_sha256"),
            "reward_model_sha256": (manifest.get("parent") or {}).get("reward_model_sha256"),
            "decoder_sha256": manifest.get("decoder_sha256"),
        },
        "metadata": {
            "modality": Modality.IMAGE.value,
            "architecture": parent.metadata.get("architecture"),
            "generator_kind": manifest.get("kind"),
            "decoder_sha256": manifest.get("decoder_sha256"),
            "training_data": manifest.get("training_data"),
        },
    }
