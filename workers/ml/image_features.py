"""The offline feature space for images: a small CNN classifier trained on the project's shapes.

Why a trained classifier (and not Inception, nor a random network): FID-style metrics need features
in which distance means "looks different to a person". Inception features need a download and
describe ImageNet photographs, not 32 × 32 shapes; the MNIST literature uses a LeNet trained on
the data set for the same reason. A fixed random convolutional network would be offline too, but
its features mostly measure colour and brightness, and it cannot say whether a sample shows the
shape it was asked for. A classifier trained on the 16 (colour, shape) classes gives both: its
penultimate layer (``FEATURE_DIM`` values after ReLU) is the feature space of the memorisation
check, the diversity score and the Fréchet distance (``evaluation.image_metrics``), and its
prediction gives "does the sample show its condition" (accuracy on samples).

It is trained on images rendered from a different seed than the generators' training data, so
features do not favour the exact images a generator saw. Training takes ~10 s on 2 cores.

Model directory::

    image_features.json        format, config, class names, held-out accuracy, training seconds
    classifier.safetensors     the weights
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as functional
from safetensors.torch import load_file, save_file
from torch import nn

from workers.ml.image_dataset import (
    ShapesConfig,
    UInt8Array,
    class_names,
    render_shapes,
    to_unit_tensor_layout,
)
from workers.ml.preference_data import write_directory_atomically
from workers.ml.progress import ProgressReporter, null_reporter

FORMAT_VERSION = 1
MANIFEST_FILE = "image_features.json"
WEIGHTS_FILE = "classifier.safetensors"
FEATURE_DIM = 64
FEATURE_BATCH_SIZE = 256  # images per forward pass: ~10 MB of activations

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


class ShapeClassifier(nn.Module):
    """image [N, 3, 32, 32] in [−1, 1] → (features [N, 64], logits [N, classes]).

    Three 3 × 3 convolutions with ReLU and 2 × 2 max-pooling (32 → 16 → 8 → 4), a 64-unit ReLU
    layer (the features), a linear classifier. ~90 k parameters.
    """

    def __init__(self, classes: int, width: int = 16) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, width, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(2 * width, 4 * width, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(4 * width * 4 * 4, FEATURE_DIM),
            nn.ReLU(),
        )
        self.classify = nn.Linear(FEATURE_DIM, classes)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.body(images)
        return features, self.classify(features)


@dataclass(frozen=True)
class FeatureNetworkConfig:
    """One classifier build; the defaults build the demo's feature space."""

    data: ShapesConfig = field(default_factory=lambda: ShapesConfig(images_per_class=128, seed=1000))
    """Training images: 2,048, from seed 1000, so not the generators' (seed 0) images."""

    held_out: ShapesConfig = field(default_factory=lambda: ShapesConfig(images_per_class=32, seed=2000))
    """Images for the held-out accuracy stored with the model (512, seed 2000)."""

    steps: int = 400
    """Optimizer steps: ~12 passes over 2,048 images at batch 64; held-out accuracy ≥ 0.98."""

    batch_size: int = 64
    """Images per step."""

    learning_rate: float = 2e-3
    """Adam's step size, constant: the task is easy and the run short."""

    blur_probability: float = 0.5
    """Share of training images blurred by a 3 × 3 box filter. The VAE's samples are smoother
    than the rendered images; without this the classifier would judge blur rather than shape."""

    seed: int = 0
    """Seeds initialisation, batch order and the augmentation."""

    report_every: int = 50
    """Steps between reporter calls."""


@dataclass
class FeatureNetworkResult:
    output_dir: Path
    held_out_accuracy: float
    """Share of the held-out rendered images classified correctly."""
    losses: list[float]
    """Cross-entropy at every step."""
    seconds: float


def _blur(images: torch.Tensor) -> torch.Tensor:
    kernel = torch.full((3, 1, 3, 3), 1.0 / 9.0)
    return functional.conv2d(functional.pad(images, (1, 1, 1, 1), mode="replicate"), kernel, groups=3)


def build_feature_network(
    *,
    output_dir: Path,
    config: FeatureNetworkConfig | None = None,
    reporter: ProgressReporter = null_reporter,
) -> FeatureNetworkResult:
    """Train the shape classifier on ``config.data`` and write its directory to ``output_dir``.

    Not checkpointed: the run takes seconds, less than a checkpoint round trip would save.
    Reports ``metrics={"loss": ...}`` every ``report_every`` steps.
    """
    started = time.perf_counter()
    config = config or FeatureNetworkConfig()
    names = class_names()
    dataset = render_shapes(config.data)
    images = torch.from_numpy(to_unit_tensor_layout(dataset.images))
    labels = torch.from_numpy(dataset.labels)
    torch.manual_seed(config.seed)
    model = ShapeClassifier(len(names))
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    draws = torch.Generator().manual_seed(config.seed + 1)
    losses: list[float] = []
    model.train()
    for step in range(1, config.steps + 1):
        index = torch.randint(0, images.shape[0], (config.batch_size,), generator=draws)
        batch = images[index]
        blurred = torch.rand(config.batch_size, generator=draws) < config.blur_probability
        batch = torch.where(blurred[:, None, None, None], _blur(batch), batch)
        _, logits = model(batch)
        loss = functional.cross_entropy(logits, labels[index])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.item()))
        if step % config.report_every == 0 or step == config.steps:
            recent = losses[-config.report_every :]
            reporter(
                step=step,
                total=config.steps,
                message=f"step {step}",
                metrics={"loss": sum(recent) / len(recent)},
            )
    model.eval()
    held_out = render_shapes(config.held_out)
    predicted = _predict(model, held_out.images)
    accuracy = float((predicted == held_out.labels).mean())
    seconds = time.perf_counter() - started
    manifest = {
        "format_version": FORMAT_VERSION,
        "config": json.loads(json.dumps(asdict(config))),
        "class_names": names,
        "feature_dim": FEATURE_DIM,
        "held_out_accuracy": accuracy,
        "final_loss": losses[-1],
        "build_seconds": round(seconds, 3),
    }

    def write(folder: Path) -> None:
        save_file(
            {name: tensor.contiguous() for name, tensor in model.state_dict().items()},
            str(folder / WEIGHTS_FILE),
        )
        digest = hashlib.sha256((folder / WEIGHTS_FILE).read_bytes()).hexdigest()
        (folder / MANIFEST_FILE).write_text(json.dumps({**manifest, "weights_sha256": digest}, indent=2))

    write_directory_atomically(output_dir, write)
    return FeatureNetworkResult(
        output_dir=output_dir, held_out_accuracy=accuracy, losses=losses, seconds=seconds
    )


@dataclass
class FeatureNetwork:
    """A loaded feature directory: the classifier in eval mode and its class names."""

    path: Path
    manifest: dict[str, Any]
    model: ShapeClassifier

    @property
    def class_names(self) -> list[str]:
        return list(self.manifest["class_names"])


def load_feature_network(path: Path) -> FeatureNetwork:
    """Load a directory written by ``build_feature_network``; ValueError for anything else."""
    path = Path(path)
    manifest_path = path / MANIFEST_FILE
    if not manifest_path.exists():
        raise ValueError(f"{path} is not an image feature directory (no {MANIFEST_FILE})")
    manifest = json.loads(manifest_path.read_text())
    if manifest.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"{manifest_path}: format version {manifest.get('format_version')!r}, expected {FORMAT_VERSION}"
        )
    model = ShapeClassifier(len(manifest["class_names"]))
    model.load_state_dict(load_file(str(path / WEIGHTS_FILE)))
    model.eval()
    return FeatureNetwork(path=path, manifest=manifest, model=model)


@torch.no_grad()
def _forward(model: ShapeClassifier, images: UInt8Array) -> tuple[torch.Tensor, torch.Tensor]:
    array = np.asarray(images, dtype=np.uint8)
    if array.shape[0] == 0:
        return torch.zeros((0, FEATURE_DIM)), torch.zeros((0, model.classify.out_features))
    tensor = torch.from_numpy(to_unit_tensor_layout(array))
    parts = [
        model(tensor[start : start + FEATURE_BATCH_SIZE])
        for start in range(0, tensor.shape[0], FEATURE_BATCH_SIZE)
    ]
    return torch.cat([part[0] for part in parts]), torch.cat([part[1] for part in parts])


def _predict(model: ShapeClassifier, images: UInt8Array) -> IntArray:
    return _forward(model, images)[1].argmax(dim=1).numpy().astype(np.int64)


def image_features(network: FeatureNetwork, images: UInt8Array) -> FloatArray:
    """Features [N, 64] (float64) of uint8 images [N, 32, 32, 3]; [0, 64] for no images."""
    return _forward(network.model, images)[0].numpy().astype(np.float64)


def predict_classes(network: FeatureNetwork, images: UInt8Array) -> IntArray:
    """The classifier's label [N] for each image (an index into ``network.class_names``)."""
    return _predict(network.model, images)


def condition_accuracy(network: FeatureNetwork, images: UInt8Array, conditions: list[str]) -> FloatArray:
    """Per image 1.0 when the classifier names its condition, else 0.0: "shows what was asked".

    The mean is the accuracy on samples; pass the per-image values with the conditions as groups
    to ``evaluation.bootstrap.bootstrap_mean`` for its interval over conditions.
    """
    names = network.class_names
    expected = np.asarray(
        [names.index(" ".join(c.strip().lower().split())) for c in conditions], dtype=np.int64
    )
    return (predict_classes(network, images) == expected).astype(np.float64)
