"""The evaluation job of an image generator: memorisation, diversity, fidelity, and value.

Worker-only (torch through ``workers.ml``). The numbers come from ``evaluation.image_metrics``;
this module gathers the inputs: the version's image samples on the split's prompts (drawn if
missing, as for text), the exact training images of the lineage's root (re-rendered from the
recipe stored with the generator), and the feature space (the shape classifier of
``workers.ml.image_features``, built once and cached under the var folder).

Stored like a text evaluation (``Evaluation.metrics``: name → {"mean", "lower", "upper", ...}),
so the report, the dashboard and the Pareto view show the figures beside the text ones; plus
``memorisation_grid``: the samples nearest a training image, each with that image (small PNGs,
base64, so the report stays one self-contained file) for the sample / neighbour grid.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import math
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
from django.conf import settings

from evaluation.bootstrap import bootstrap_mean
from evaluation.image_metrics import (
    feature_diversity,
    frechet_distance_interval,
    leave_one_out_threshold,
    memorisation_check,
)
from evaluation.pareto import novel_and_valuable_interval, pareto_front
from server.core.exceptions import ApplicationError
from server.core.paths import model_path_check
from server.evaluations.models import Evaluation
from server.evaluations.selectors import leaderboard_latest
from server.generators.image_jobs import image_samples_generate_missing
from server.generators.images import image_asset_read
from server.generators.models import GeneratorVersion, Sample
from server.generators.services import version_model_check
from server.jobs.models import Job
from server.studies.models import Criterion, Prompt
from server.studies.services import VALUE_KEY
from server.training.models import RewardModel
from workers.ml.image_dataset import ShapesConfig, UInt8Array, render_shapes
from workers.ml.image_features import (
    FeatureNetworkConfig,
    build_feature_network,
    condition_accuracy,
    image_features,
    load_feature_network,
)
from workers.ml.image_generators import training_data_config
from workers.ml.progress import ProgressReporter

BOOTSTRAP_ROUNDS = 1000
FRECHET_ROUNDS = 200
GRID_SIZE = 12  # samples shown with their nearest training image (nearest first)
STEPS = 5
# A feature network of seconds for tests (``feature_size: "tiny"`` in the job's parameters).
TINY_FEATURES = FeatureNetworkConfig(
    data=ShapesConfig(images_per_class=8, seed=1000),
    held_out=ShapesConfig(images_per_class=2, seed=2000),
    steps=20,
    batch_size=32,
    report_every=10,
)


def _clean(value: float) -> float | None:
    return round(float(value), 5) if np.isfinite(value) else None


def _interval(mean: float, lower: float, upper: float, count: int) -> dict[str, float | int | None]:
    return {"mean": _clean(mean), "lower": _clean(lower), "upper": _clean(upper), "count": count}


def feature_network_dir(config: FeatureNetworkConfig) -> Path:
    """The cached feature network of ``config``: one folder per recipe, so a change of recipe
    never reuses features of another (evaluations name the folder and its hash)."""
    recipe = hashlib.sha256(json.dumps(asdict(config), sort_keys=True).encode()).hexdigest()[:12]
    return Path(settings.VAR_DIR) / "models" / f"image-features-{recipe}"


def feature_network_path(size: str) -> Path:
    config = TINY_FEATURES if size == "tiny" else FeatureNetworkConfig()
    folder = feature_network_dir(config)
    if not (folder / "image_features.json").is_file():
        build_feature_network(output_dir=folder, config=config)  # written atomically
    return folder


def _png_base64(image: UInt8Array) -> str:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image), mode="RGB").save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def decoded_image(data: bytes) -> UInt8Array:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        pixels = image.convert("RGB")
        if pixels.size != (32, 32):  # an imported image of another size, compared at the generators' size
            pixels = pixels.resize((32, 32))
        return np.asarray(pixels, dtype=np.uint8)


def image_evaluation_run(
    *, job: Job, report: ProgressReporter, version: GeneratorVersion, root: GeneratorVersion
) -> dict[str, Any]:
    params = job.params
    study = job.study
    prompts = list(Prompt.objects.filter(study=study, split=params["split"]).order_by("id"))
    k = int(params["samples_per_prompt"])
    seed = int(params.get("seed", 0))
    root_path = Path(version_model_check(version=root, field="reference_model_path"))
    notes: list[str] = []

    report(step=0, total=STEPS, message="samples")
    image_samples_generate_missing(
        version=version, prompts=prompts, seeds=range(k), job=job, on_chunk=lambda count, speed: None
    )
    samples = list(
        Sample.objects.filter(
            version=version, prompt__in=prompts, seed__in=list(range(k)), image__isnull=False
        )
        .select_related("prompt", "image")
        .order_by("prompt_id", "seed")
    )
    if not samples:
        raise ApplicationError(
            f"{version} has no image samples on the {params['split']} prompts to evaluate."
        )
    images = np.stack([decoded_image(image_asset_read(sample.image)) for sample in samples])  # type: ignore[arg-type]
    prompt_of = np.array([sample.prompt_id for sample in samples], dtype=np.int64)

    report(step=1, total=STEPS, message="training images and features")
    data_config = training_data_config(root_path)
    training = render_shapes(data_config).images
    features_dir = feature_network_path(str(params.get("feature_size", "demo")))
    network = load_feature_network(features_dir)
    sample_features = image_features(network, images)
    training_features = image_features(network, training)

    report(step=2, total=STEPS, message="memorisation")
    check = memorisation_check(
        images,
        training,
        sample_features,
        training_features,
        conditions=prompt_of,
        pixel_threshold=leave_one_out_threshold(training),
        feature_threshold=leave_one_out_threshold(training_features),
        rounds=BOOTSTRAP_ROUNDS,
        seed=seed,
    )
    metrics: dict[str, Any] = {}
    for space, result in (("pixel", check.pixels), ("feature", check.features)):
        share = result.near_share
        metrics[f"memorisation_{space}_share"] = {
            **_interval(share.mean, share.lower, share.upper, share.count),
            "threshold": round(result.threshold, 5),
        }
        metrics[f"nearest_training_{space}_distance"] = _interval(*_mean_ci(result.distance, prompt_of, seed))

    report(step=3, total=STEPS, message="diversity and Fréchet distance")
    diversity = feature_diversity(sample_features, conditions=prompt_of, rounds=BOOTSTRAP_ROUNDS, seed=seed)
    spread = diversity.mean_distance
    metrics["feature_vendi_per_prompt"] = {"mean": round(diversity.vendi, 5)}
    metrics["feature_mean_distance_per_prompt"] = _interval(
        spread.mean, spread.lower, spread.upper, spread.count
    )
    if k < 2:
        notes.append("one sample per prompt: diversity within a prompt needs k >= 2")
    frechet = frechet_distance_interval(
        sample_features, training_features, conditions=prompt_of, rounds=FRECHET_ROUNDS, seed=seed
    )
    # Two metrics, so that versions' evaluations are compared on one estimate each:
    # ``frechet_distance`` is the plug-in value (FID's convention, and what evaluations stored
    # under that name before the correction), without an interval: the basic bootstrap interval
    # is centred on the corrected value and the plug-in one, biased upward at these sample counts,
    # may lie above it. ``frechet_distance_corrected`` is the bias-corrected distance with that
    # interval. See frechet_distance_interval.
    metrics["frechet_distance"] = _interval(frechet.value, math.nan, math.nan, frechet.count)
    metrics["frechet_distance_corrected"] = {
        **_interval(frechet.bias_corrected, frechet.lower, frechet.upper, frechet.count),
        "plug_in": _clean(frechet.value),
        "bias": _clean(frechet.bias),
    }
    accuracy = condition_accuracy(network, images, [sample.prompt.text for sample in samples])
    metrics["condition_accuracy"] = _interval(*_mean_ci(accuracy, prompt_of, seed))

    report(step=4, total=STEPS, message="value")
    board = leaderboard_latest(study=study)
    row = next((entry for entry in (board.rows if board else []) if entry["version_id"] == version.id), None)
    if board is not None and row is not None:
        metrics["bt_rating"] = {
            "mean": row["rating"],
            "lower": row["lower"],
            "upper": row["upper"],
            "leaderboard_id": board.id,
        }
    # The grid: the samples nearest a training image in pixels, each beside that image.
    metrics["memorisation_grid"] = [
        {
            "sample_id": samples[index].id,
            "sample_png": _png_base64(images[index]),
            "neighbour_png": _png_base64(training[check.pixels.neighbour_index[index]]),
            "training_index": int(check.pixels.neighbour_index[index]),
            "pixel_distance": round(float(check.pixels.distance[index]), 5),
            "feature_distance": round(float(check.features.distance[index]), 5),
            "near": bool(check.pixels.distance[index] < check.pixels.threshold),
        }
        for index in check.pixels.grid_order[:GRID_SIZE].tolist()
    ]
    reward_model = image_reward_model_of(study=study)
    if reward_model is not None:
        # Value per sample, as text's: the image reward model's score (the members' mean, in
        # ensemble-normalised units), its mean with an interval resampling prompts; with the
        # distance to the nearest training image in features as novelty, the Pareto view's points.
        from workers.ml.image_reward import load_image_reward_model, score_images

        ensemble = load_image_reward_model(
            Path(model_path_check(reward_model.path, field="reward model path"))
        )
        values = score_images(ensemble, images).mean
        metrics["reward_model_score"] = {
            **_interval(*_mean_ci(values, prompt_of, seed)),
            "reward_model_id": reward_model.id,
        }
        novelty = np.asarray(check.features.distance, dtype=np.float64)
        front = pareto_front(novelty, values)
        metrics["points"] = [
            {"sample_id": sample.id, "novelty": round(float(n), 5), "value": round(float(v), 5)}
            for sample, n, v in zip(samples, novelty, values, strict=True)
        ]
        metrics["pareto_sample_ids"] = [samples[i].id for i in front.tolist()]
        # Novel and valuable, as text's: novel = no nearer to any training image (in features)
        # than the memorisation threshold, i.e. not flagged as a near-copy; valuable = a reward
        # score at or above the value threshold (default 0, the ensemble-normalised mean).
        novelty_threshold = float(check.features.threshold)
        value_threshold = float(params.get("value_threshold", 0.0))
        share = novel_and_valuable_interval(
            novelty,
            values,
            novelty_threshold=novelty_threshold,
            value_threshold=value_threshold,
            groups=prompt_of,
            rounds=BOOTSTRAP_ROUNDS,
            seed=seed,
        )
        metrics["novel_and_valuable_share"] = {
            **_interval(share.mean, share.lower, share.upper, share.count),
            "novelty_threshold": round(novelty_threshold, 5),
            "value_threshold": value_threshold,
        }
    else:
        notes.append("no image reward model yet: per-sample value and the Pareto view were not computed")
    features_manifest = json.loads((features_dir / "image_features.json").read_text())
    protocol = {
        "modality": "image",
        "split": params["split"],
        "prompt_ids": [prompt.id for prompt in prompts],
        "samples_per_prompt": k,
        "sample_count": len(samples),
        "seeds": list(range(k)),
        "training_data": {
            "dataset": "shapes",
            "config": asdict(data_config),
            "images": int(training.shape[0]),
        },
        "reference_model": str(root_path),
        "feature_network": str(features_dir),
        "reward_model_id": reward_model.id if reward_model else None,
        "novelty_measure": "nearest_training_feature_distance",
        "novelty_threshold_for_joint": "memorisation_feature_threshold",
        "feature_network_sha256": features_manifest.get("weights_sha256"),
        "feature_network_held_out_accuracy": features_manifest.get("held_out_accuracy"),
        "memorisation_threshold_quantile": 0.05,
        "bootstrap_rounds": BOOTSTRAP_ROUNDS,
        "frechet_rounds": FRECHET_ROUNDS,
        "bootstrap_seed": seed,
        "notes": notes,
    }
    evaluation = Evaluation.objects.create(
        study=study, version=version, protocol=protocol, metrics=metrics, job=job
    )
    report(step=STEPS, total=STEPS, message="stored")
    return {"evaluation_id": evaluation.id, "samples": len(samples), "notes": notes}


def image_reward_model_of(*, study: Any) -> RewardModel | None:
    """The study's latest image reward model of its value question (the creativity template's
    value criterion, else the study's own question), as text's evaluation picks; a text reward
    model is never used on images."""
    value_criterion = Criterion.objects.filter(study=study, key=VALUE_KEY).first()
    models = RewardModel.objects.filter(study=study, metrics__modality="image")
    models = (
        models.filter(criterion=value_criterion) if value_criterion else models.filter(criterion__isnull=True)
    )
    return models.order_by("-created_at", "-id").first()


def _mean_ci(values: Any, groups: Any, seed: int) -> tuple[float, float, float, int]:
    interval = bootstrap_mean(
        np.asarray(values, dtype=np.float64), groups=groups, rounds=BOOTSTRAP_ROUNDS, seed=seed
    )
    return interval.mean, interval.lower, interval.upper, interval.count
