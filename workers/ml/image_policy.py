"""Fine-tuning an image generator from feedback: climb the reward model, stay near the parent.

The image counterpart of the text policy step (RLHF's trade-off, Ziegler et al. 2019): the child
decoder starts as a copy of the parent's (a VAE decoder or a GAN generator, see
``workers.ml.image_generators``) and minimises, over latents z ~ N(0, I) and conditions y drawn
uniformly from the parent's classes,

    − r(child(z, y)) + β · mean((child(z, y) − parent(z, y))²)

where r is the image reward ensemble's normalised mean (``workers.ml.image_reward``; with
``reward_std_penalty`` k > 0 the pessimistic mean − k·std over its members) and the
penalty is the mean squared difference of the two images for the same latent and condition, in
[−1, 1] pixel units. The decoder is differentiable, so the reward's gradient flows straight into
it (no policy-gradient estimator needed). β plays the part of the KL coefficient: large β keeps
the child's images close to the parent's, small β lets it chase the reward, and the reward model
may then be exploited (images that score well but that no rater would prefer).

Batch norm stays in eval mode (the parent's running statistics, fixed): the child is judged
image by image, and batch statistics of a batch drifting toward the reward would shift them.

The child directory has the parent's layout, with ``parent`` recorded in its manifest: the
parent's path and decoder SHA-256, the reward model's path, β and the measured figures.
"""

from __future__ import annotations

import copy
import hashlib
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from workers.ml.image_generators import (
    MANIFEST_FILE,
    load_generator,
    sample_latents,
    write_generator_directory,
)
from workers.ml.image_reward import load_image_reward_model
from workers.ml.progress import ProgressReporter, null_reporter


@dataclass(frozen=True)
class ImagePolicyConfig:
    """One feedback step on an image generator."""

    beta: float = 100.0
    """Weight of the mean squared difference to the parent. Rewards are normalised (std 1 on the
    parent's samples) and the penalty is in squared [−1, 1] units. Measured on the demo GAN with a
    warmth reward model (bench/images.py): β = 100 raised the reward by ~1 standard deviation at
    a distance of 0.005 and kept the classifier accuracy on samples (0.69 → 0.64); β = 10 raised
    it by ~6 but the accuracy fell to 0.24, and β ≤ 1 turned every class into a red blob
    (accuracy 0.06): the reward model is exploited once the parent no longer holds the child."""

    steps: int = 150
    """Optimizer steps; ~20 ms each at batch 64 on one thread for the demo decoders."""

    batch_size: int = 64
    """Latent–condition draws per step."""

    learning_rate: float = 5e-4
    """Adam's step size: a tenth of the builds' rates, since the child should move, not relearn."""

    evaluation_samples: int = 256
    """Fixed latents (drawn from ``seed + 1``) on which reward and distance are measured before
    and after, the same for every β so that runs are comparable."""

    reward_std_penalty: float = 0.0
    """k in the pessimistic reward mean − k·std over the ensemble's members that the child climbs
    (0: the mean), as the text policies offer: images on which the members disagree, where the
    reward model knows least, pay for it. ``reward_before`` and ``reward_after`` stay the mean."""

    seed: int = 0
    """Seeds the training latents and conditions."""

    report_every: int = 10
    """Steps between reporter calls."""

    def __post_init__(self) -> None:
        if self.beta < 0:
            raise ValueError("beta must be >= 0")
        if not self.reward_std_penalty >= 0:
            raise ValueError("reward_std_penalty must be >= 0")
        for name in ("steps", "batch_size", "evaluation_samples", "report_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")


@dataclass
class ImagePolicyResult:
    output_dir: Path
    reward_before: float
    """Mean reward of the parent's images on the evaluation latents."""
    reward_after: float
    """Mean reward of the child's images on the same latents and conditions."""
    distance_to_parent: float
    """Mean squared difference between child and parent images on the evaluation latents, in
    [−1, 1] units (0 for an unchanged child; the penalty's quantity)."""
    losses: list[float]
    seconds: float


def fine_tune_image_generator(
    *,
    parent_dir: Path,
    reward_dir: Path,
    output_dir: Path,
    config: ImagePolicyConfig | None = None,
    conditions: list[str] | None = None,
    reporter: ProgressReporter = null_reporter,
) -> ImagePolicyResult:
    """Train a child of the generator at ``parent_dir`` against the reward model at ``reward_dir``
    and write it to ``output_dir`` (atomically). ``conditions``: the classes to train and
    evaluate on (None: all of the parent's). Reports ``metrics`` {"reward", "distance"} (means
    over the last ``report_every`` steps); not checkpointed (seconds of work).
    """
    started = time.perf_counter()
    config = config or ImagePolicyConfig()
    parent = load_generator(parent_dir)
    reward_model = load_image_reward_model(reward_dir)
    for parameter in [*parent.decoder.parameters(), *reward_model.parameters()]:
        parameter.requires_grad_(False)
    child = copy.deepcopy(parent.decoder)
    for parameter in child.parameters():
        parameter.requires_grad_(True)
    child.eval()  # batch norm on the parent's running statistics; see the module docstring
    names = conditions if conditions is not None else parent.class_names
    labels = parent.labels(names)
    latent_dim = parent.decoder.shape.latent_dim

    evaluation_latents = sample_latents(config.evaluation_samples, latent_dim, config.seed + 1)
    evaluation_labels = labels[torch.arange(config.evaluation_samples) % labels.numel()]
    with torch.no_grad():
        parent_evaluation = parent.decoder(evaluation_latents, evaluation_labels)
        reward_before = float(reward_model.reward(parent_evaluation).mean())

    optimizer = torch.optim.Adam(child.parameters(), lr=config.learning_rate)
    draws = torch.Generator().manual_seed(config.seed)
    losses: list[float] = []
    rewards: list[float] = []
    distances: list[float] = []
    reporter(step=0, total=config.steps, message=f"reward before {reward_before:.3f}")
    for step in range(1, config.steps + 1):
        latent = torch.randn((config.batch_size, latent_dim), generator=draws)
        batch_labels = labels[torch.randint(0, labels.numel(), (config.batch_size,), generator=draws)]
        with torch.no_grad():
            anchor = parent.decoder(latent, batch_labels)
        images = child(latent, batch_labels)
        reward = reward_model.reward(images, config.reward_std_penalty).mean()
        distance = ((images - anchor) ** 2).mean()
        loss = -reward + config.beta * distance
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.item()))
        rewards.append(float(reward.item()))
        distances.append(float(distance.item()))
        if step % config.report_every == 0 or step == config.steps:
            window = slice(-config.report_every, None)
            reporter(
                step=step,
                total=config.steps,
                message=f"step {step}/{config.steps}",
                metrics={
                    "reward": sum(rewards[window]) / len(rewards[window]),
                    "distance": sum(distances[window]) / len(distances[window]),
                },
            )

    with torch.no_grad():
        child_evaluation = child(evaluation_latents, evaluation_labels)
        reward_after = float(reward_model.reward(child_evaluation).mean())
        distance_to_parent = float(((child_evaluation - parent_evaluation) ** 2).mean())
    seconds = time.perf_counter() - started
    manifest: dict[str, Any] = json.loads((Path(parent_dir) / MANIFEST_FILE).read_text())
    manifest.pop("decoder_sha256", None)
    manifest["parent"] = {
        "path": str(Path(parent_dir).resolve()),
        "decoder_sha256": parent.manifest.get("decoder_sha256"),
        "reward_model": str(Path(reward_dir).resolve()),
        "reward_model_sha256": _reward_weights_digest(Path(reward_dir)),
        "policy_config": asdict(config),
        "conditions": names,
        "reward_before": reward_before,
        "reward_after": reward_after,
        "distance_to_parent": distance_to_parent,
        "seconds": round(seconds, 3),
    }
    write_generator_directory(output_dir, manifest, child)
    return ImagePolicyResult(
        output_dir=output_dir,
        reward_before=reward_before,
        reward_after=reward_after,
        distance_to_parent=distance_to_parent,
        losses=losses,
        seconds=seconds,
    )


def _reward_weights_digest(reward_dir: Path) -> str | None:
    manifest = json.loads((reward_dir / "image_reward.json").read_text())
    digest = manifest.get("weights_sha256")
    return str(digest) if digest else hashlib.sha256(b"").hexdigest()
