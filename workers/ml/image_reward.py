"""An image reward model: a small CNN ensemble trained on pairwise preferences (Bradley–Terry).

The image counterpart of ``workers.ml.reward_model``: K members, each trained on its own bootstrap
resample of the pairs with the loss ``−log σ(r_chosen − r_rejected − margin)``, then normalised on
reference images (the parent generator's samples, as Ziegler et al. 2019 normalise on reference
policy samples) so that a reward of 1 means "one standard deviation better than the reference".
The members' spread is the uncertainty, as for text.

Why small CNNs from scratch rather than heads on the classifier features of
``workers.ml.image_features``: those features were trained to name (colour, shape) classes and
discard what the raters may care about within a class (a warmer hue, a centred shape); a CNN that
keeps the 8 × 8 layout can learn colour, position and symmetry. ~35 k parameters per member; three
members train on a few hundred pairs in seconds.

Model directory::

    image_reward.json      format, config, normalisation, metrics, training seconds
    members.safetensors    the K members' weights (keys ``member_<k>.<parameter>``)
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as functional
from safetensors.torch import load_file, save_file
from torch import nn

from workers.ml.image_dataset import UInt8Array, to_unit_tensor_layout
from workers.ml.preference_data import write_directory_atomically
from workers.ml.progress import ProgressReporter, null_reporter

FORMAT_VERSION = 1
MANIFEST_FILE = "image_reward.json"
WEIGHTS_FILE = "members.safetensors"
SCORING_BATCH_SIZE = 512  # images per forward pass at scoring time: ~6 MB of activations

FloatArray = npt.NDArray[np.float64]


class RewardCnn(nn.Module):
    """image [N, 3, 32, 32] in [−1, 1] → scalar reward [N].

    Two stride-2 convolutions (32 → 16 → 8) with LeakyReLU, then a linear map of the whole 8 × 8
    map: no global pooling, so where things are (left / right, centred or not) stays visible.
    """

    def __init__(self, width: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, width, 4, stride=2, padding=1),
            nn.LeakyReLU(0.2),
            nn.Conv2d(width, 2 * width, 4, stride=2, padding=1),
            nn.LeakyReLU(0.2),
            nn.Flatten(),
        )
        self.head = nn.Linear(2 * width * 8 * 8, 1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(images)).squeeze(1)  # type: ignore[no-any-return]


@dataclass(frozen=True)
class ImageRewardConfig:
    """One image reward-model training run."""

    ensemble_size: int = 3
    """K members; Christiano et al. used 3, enough for a spread that ranks pairs by uncertainty."""

    bootstrap: bool = True
    """Each member trains on n pairs drawn with replacement from the n pairs (Christiano)."""

    width: int = 8
    """Channels of the first convolution (16 in the second): ~9 k parameters per member. Small on
    purpose: a few hundred pairs cannot fit more without memorising them."""

    epochs: int = 30
    """Passes over each member's pairs; with ~300 pairs at batch 32, ~300 steps per member, ~2 s."""

    batch_size: int = 32
    """Pairs per step."""

    learning_rate: float = 2e-3
    """Adam's step size for a network trained from scratch."""

    weight_decay: float = 1e-3
    """AdamW decay: keeps the members from growing rewards without bound on separable pairs."""

    seed: int = 0
    """Seeds initialisation, bootstrap resamples and batch order (member k uses seed + 1000·k)."""

    def __post_init__(self) -> None:
        for name in ("ensemble_size", "width", "epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")


@dataclass(frozen=True)
class ImagePreferences:
    """Pairs of images: ``chosen[i]`` was preferred over ``rejected[i]`` (uint8 [P, 32, 32, 3] each);
    ``margins[i]`` ≥ 0 is the optional Bradley–Terry margin (e.g. from the rater's strength 1–3)."""

    chosen: UInt8Array
    rejected: UInt8Array
    margins: FloatArray | None = None

    def __post_init__(self) -> None:
        if self.chosen.shape != self.rejected.shape:
            raise ValueError(f"chosen {self.chosen.shape} and rejected {self.rejected.shape} differ in shape")
        if self.margins is not None and self.margins.shape != (self.chosen.shape[0],):
            raise ValueError("margins must have one value per pair")

    def __len__(self) -> int:
        return int(self.chosen.shape[0])


@dataclass(frozen=True)
class ImageRewardScores:
    """Scores of N images: ``mean`` the reward, ``std`` the members' disagreement (same units),
    ``member_scores`` [K, N] each member's normalised score."""

    mean: FloatArray
    std: FloatArray
    member_scores: FloatArray


@dataclass
class ImageRewardResult:
    output_dir: Path
    train_pairs: int
    validation_pairs: int
    validation_accuracy: float | None
    """Share of validation pairs whose chosen image gets the higher ensemble reward (None: none)."""
    validation_right: list[bool]
    """That verdict for each validation pair, in order (the caller clusters them by comparison)."""
    first_loss: float
    """Mean over members of the first step's training loss."""
    last_loss: float
    """Mean over members of the last epoch's mean training loss."""
    seconds: float


class ImageRewardEnsemble(nn.Module):
    """The K members with their normalisation; differentiable, so a policy step can climb it.

    ``forward(images in [−1, 1])`` returns the normalised member scores [K, N];
    ``reward(images)`` their mean, renormalised (the reward that ``score_images`` reports).
    """

    def __init__(self, members: list[RewardCnn], normalisation: dict[str, Any]) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)
        self.register_buffer("member_mean", torch.tensor(normalisation["member_mean"]))
        self.register_buffer("member_std", torch.tensor(normalisation["member_std"]))
        self.ensemble_mean = float(normalisation["ensemble_mean"])
        self.ensemble_std = float(normalisation["ensemble_std"])

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        raw = torch.stack([member(images) for member in self.members])
        return (raw - self.member_mean[:, None]) / self.member_std[:, None]  # type: ignore[index]

    def reward(self, images: torch.Tensor, std_penalty: float = 0.0) -> torch.Tensor:
        """The normalised mean over members; with ``std_penalty`` k > 0 the pessimistic reward
        mean − k·std, the members' population std in the same units (``score_images``' std)."""
        members = self(images)
        reward = (members.mean(dim=0) - self.ensemble_mean) / self.ensemble_std
        if std_penalty == 0:
            return reward
        return reward - std_penalty * members.std(dim=0, unbiased=False) / self.ensemble_std


def _tensor(images: UInt8Array) -> torch.Tensor:
    return torch.from_numpy(to_unit_tensor_layout(np.asarray(images, dtype=np.uint8)))


@torch.no_grad()
def _raw_scores(members: list[RewardCnn], images: torch.Tensor) -> torch.Tensor:
    parts = [
        torch.stack([member(images[start : start + SCORING_BATCH_SIZE]) for member in members])
        for start in range(0, images.shape[0], SCORING_BATCH_SIZE)
    ]
    return torch.cat(parts, dim=1) if parts else torch.zeros((len(members), 0))


def _normalisation(raw: torch.Tensor) -> dict[str, Any]:
    """Mean 0, std 1 per member on the reference images, then the same for the members' mean.
    A std of 0 (constant member, or one reference image) is replaced by 1 (no scaling)."""

    def safe(value: float) -> float:
        return value if value > 1e-8 else 1.0

    member_mean = raw.mean(dim=1)
    member_std = raw.std(dim=1, unbiased=False)
    member_std = torch.where(member_std > 1e-8, member_std, torch.ones_like(member_std))
    normalised = ((raw - member_mean[:, None]) / member_std[:, None]).mean(dim=0)
    return {
        "member_mean": member_mean.tolist(),
        "member_std": member_std.tolist(),
        "ensemble_mean": float(normalised.mean()),
        "ensemble_std": safe(float(normalised.std(unbiased=False))),
    }


def train_image_reward_model(
    *,
    preferences: ImagePreferences,
    reference_images: UInt8Array,
    output_dir: Path,
    validation: ImagePreferences | None = None,
    config: ImageRewardConfig | None = None,
    reporter: ProgressReporter = null_reporter,
) -> ImageRewardResult:
    """Train the ensemble on ``preferences``, normalise it on ``reference_images`` and write it.

    ``reference_images``: what a reward of 0 should mean, typically the parent generator's
    samples (at least two images, so that a spread exists). ``validation``: held-out pairs for the
    reported accuracy. Not checkpointed: the run takes seconds. Reports per member and epoch.
    ValueError for no pairs or fewer than two reference images.
    """
    started = time.perf_counter()
    config = config or ImageRewardConfig()
    if len(preferences) == 0:
        raise ValueError("no preference pairs to train on")
    if np.asarray(reference_images).shape[0] < 2:
        raise ValueError("the normalisation needs at least two reference images")
    chosen, rejected = _tensor(preferences.chosen), _tensor(preferences.rejected)
    margins = (
        torch.zeros(len(preferences))
        if preferences.margins is None
        else torch.tensor(preferences.margins, dtype=torch.float32)
    )
    pairs = len(preferences)
    total = config.ensemble_size * config.epochs
    members: list[RewardCnn] = []
    first_losses, last_losses = [], []
    for member_index in range(config.ensemble_size):
        seed = config.seed + 1000 * member_index
        torch.manual_seed(seed)
        member = RewardCnn(config.width)
        optimizer = torch.optim.AdamW(
            member.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
        )
        draws = torch.Generator().manual_seed(seed + 1)
        rows = torch.randint(0, pairs, (pairs,), generator=draws) if config.bootstrap else torch.arange(pairs)
        epoch_loss = 0.0
        for epoch in range(config.epochs):
            order = rows[torch.randperm(pairs, generator=draws)]
            losses = []
            for start in range(0, pairs, config.batch_size):
                batch = order[start : start + config.batch_size]
                difference = member(chosen[batch]) - member(rejected[batch]) - margins[batch]
                loss = functional.softplus(-difference).mean()  # −log σ(difference)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                losses.append(float(loss.item()))
            if epoch == 0:
                first_losses.append(losses[0])
            epoch_loss = sum(losses) / len(losses)
            reporter(
                step=member_index * config.epochs + epoch + 1,
                total=total,
                message=f"member {member_index + 1}/{config.ensemble_size}, epoch {epoch + 1}",
                metrics={"loss": epoch_loss},
            )
        last_losses.append(epoch_loss)
        member.eval()
        members.append(member)

    normalisation = _normalisation(_raw_scores(members, _tensor(reference_images)))
    ensemble = ImageRewardEnsemble(members, normalisation)
    accuracy = None
    right: list[bool] = []
    if validation is not None and len(validation):
        with torch.no_grad():
            chosen_reward = ensemble.reward(_tensor(validation.chosen))
            rejected_reward = ensemble.reward(_tensor(validation.rejected))
        right = [bool(hit) for hit in (chosen_reward > rejected_reward).tolist()]
        accuracy = sum(right) / len(right)
    seconds = time.perf_counter() - started
    result = ImageRewardResult(
        output_dir=output_dir,
        train_pairs=pairs,
        validation_pairs=0 if validation is None else len(validation),
        validation_accuracy=accuracy,
        validation_right=right,
        first_loss=float(np.mean(first_losses)),
        last_loss=float(np.mean(last_losses)),
        seconds=seconds,
    )
    manifest = {
        "format_version": FORMAT_VERSION,
        "config": asdict(config),
        "normalisation": normalisation,
        "metrics": {
            "train_pairs": pairs,
            "validation_pairs": result.validation_pairs,
            "validation_accuracy": accuracy,
            "first_loss": result.first_loss,
            "last_loss": result.last_loss,
        },
        "train_seconds": round(seconds, 3),
    }

    def write(folder: Path) -> None:
        weights = {
            f"member_{index}.{name}": tensor.contiguous()
            for index, member in enumerate(members)
            for name, tensor in member.state_dict().items()
        }
        save_file(weights, str(folder / WEIGHTS_FILE))
        digest = hashlib.sha256((folder / WEIGHTS_FILE).read_bytes()).hexdigest()
        (folder / MANIFEST_FILE).write_text(json.dumps({**manifest, "weights_sha256": digest}, indent=2))

    write_directory_atomically(output_dir, write)
    return result


def load_image_reward_model(path: Path) -> ImageRewardEnsemble:
    """Load a directory written by ``train_image_reward_model`` (eval mode, CPU); ValueError for
    a folder that is not one."""
    path = Path(path)
    manifest_path = path / MANIFEST_FILE
    if not manifest_path.exists():
        raise ValueError(f"{path} is not an image reward-model directory (no {MANIFEST_FILE})")
    manifest = json.loads(manifest_path.read_text())
    if manifest.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"{manifest_path}: format version {manifest.get('format_version')!r}, expected {FORMAT_VERSION}"
        )
    config = ImageRewardConfig(**manifest["config"])
    weights = load_file(str(path / WEIGHTS_FILE))
    members = []
    for index in range(config.ensemble_size):
        member = RewardCnn(config.width)
        prefix = f"member_{index}."
        member.load_state_dict(
            {name[len(prefix) :]: value for name, value in weights.items() if name.startswith(prefix)}
        )
        members.append(member)
    ensemble = ImageRewardEnsemble(members, manifest["normalisation"])
    ensemble.eval()
    return ensemble


@torch.no_grad()
def score_images(ensemble: ImageRewardEnsemble, images: UInt8Array) -> ImageRewardScores:
    """Reward (mean) and members' disagreement (std, population std over members, divided by the
    ensemble std like the mean) of uint8 images [N, 32, 32, 3]. No images gives empty arrays."""
    tensor = _tensor(images)
    if tensor.shape[0] == 0:
        empty = np.zeros(0)
        return ImageRewardScores(
            mean=empty, std=empty.copy(), member_scores=np.zeros((len(ensemble.members), 0))
        )
    member_scores = torch.cat(
        [
            ensemble(tensor[start : start + SCORING_BATCH_SIZE])
            for start in range(0, tensor.shape[0], SCORING_BATCH_SIZE)
        ],
        dim=1,
    )
    mean = (member_scores.mean(dim=0) - ensemble.ensemble_mean) / ensemble.ensemble_std
    std = member_scores.std(dim=0, unbiased=False) / ensemble.ensemble_std
    return ImageRewardScores(
        mean=mean.numpy().astype(np.float64),
        std=std.numpy().astype(np.float64),
        member_scores=member_scores.numpy().astype(np.float64),
    )
