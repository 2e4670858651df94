"""Local class-conditional image generators at 32 × 32: a VAE and a DCGAN, in plain torch.

Both draw an image from a latent vector z ~ N(0, I) and a condition (a class name of
``workers.ml.image_dataset``, "a red circle") through the same ``ConditionalDecoder``: the VAE's
decoder and the GAN's generator share one architecture, so sampling and the feedback step
(``workers.ml.image_policy``) treat both alike.

- ``build_conditional_vae`` (Kingma & Welling 2014; conditional as in Sohn et al. 2015): an encoder
  q(z | x, y) and the decoder p(x | z, y), trained on the ELBO (Gaussian pixel likelihood, i.e. a
  squared error, plus the KL to the prior). Stable and quick; samples are smooth, a little blurred.
- ``build_conditional_gan`` (DCGAN, Radford et al. 2016, with a projection discriminator, Miyato &
  Koyama 2018): the generator against a discriminator that also sees the class. Sharper samples;
  adversarial training is less predictable, so its loss is no quality measure (the classifier
  accuracy of ``workers.ml.image_features`` is).

Each build trains with a ``ProgressReporter``, checkpoints atomically into ``checkpoint_dir``
(resumes from there; a finished build only rewrites its output), and writes a model directory::

    image_generator.json   format, kind, config, class names, latent size, the training data's
                           recipe (``ShapesConfig``: the memorisation check re-renders the exact
                           training images from it), losses, timing, parent (None for a build)
    decoder.safetensors    the decoder's weights (all that sampling needs)

``sample_images(model_dir, conditions, seed)`` draws one image per condition, deterministically for
a seed (same machine and thread count).
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as functional
from safetensors.torch import load_file, save_file
from torch import nn

from workers.ml.checkpoint import load_if_exists, save_atomic
from workers.ml.image_dataset import (
    IMAGE_SIZE,
    ShapesConfig,
    UInt8Array,
    class_names,
    from_unit_tensor_layout,
    render_shapes,
    to_unit_tensor_layout,
)
from workers.ml.preference_data import write_directory_atomically
from workers.ml.progress import ProgressReporter, null_reporter

FORMAT_VERSION = 1
MANIFEST_FILE = "image_generator.json"
DECODER_FILE = "decoder.safetensors"
CHECKPOINT_FILE = "image_generator.pt"
GeneratorKind = Literal["conditional_vae", "conditional_gan"]
SAMPLING_BATCH_SIZE = 256  # images per decoder pass at sampling time: ~20 MB of activations


# --- Networks ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DecoderShape:
    """The decoder's size; stored in the manifest so that loading rebuilds the same network."""

    latent_dim: int
    classes: int
    width: int
    """Channels of the 8 × 8 feature map; 4 × 4 has twice as many, 16 × 16 half."""

    label_dim: int


class ConditionalDecoder(nn.Module):
    """(z [N, latent], label [N]) → image [N, 3, 32, 32] in [−1, 1].

    DCGAN's generator: a linear map to a 4 × 4 map, three transposed convolutions doubling the
    resolution (4 → 8 → 16 → 32) with batch norm and ReLU, tanh at the end. The class enters as a
    learned embedding concatenated to z.
    """

    def __init__(self, shape: DecoderShape) -> None:
        super().__init__()
        self.shape = shape
        wide = 2 * shape.width
        self.label_embedding = nn.Embedding(shape.classes, shape.label_dim)
        self.project = nn.Sequential(
            nn.Linear(shape.latent_dim + shape.label_dim, wide * 4 * 4, bias=False),
            nn.BatchNorm1d(wide * 4 * 4),
            nn.ReLU(),
        )
        self.upsample = nn.Sequential(
            nn.ConvTranspose2d(wide, shape.width, 4, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(shape.width),
            nn.ReLU(),
            nn.ConvTranspose2d(shape.width, shape.width // 2, 4, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(shape.width // 2),
            nn.ReLU(),
            nn.ConvTranspose2d(shape.width // 2, 3, 4, stride=2, padding=1),
            nn.Tanh(),
        )

    def forward(self, latent: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        hidden = self.project(torch.cat([latent, self.label_embedding(labels)], dim=1))
        return self.upsample(hidden.view(latent.shape[0], 2 * self.shape.width, 4, 4))  # type: ignore[no-any-return]


class _Downsampler(nn.Module):
    """image [N, 3, 32, 32] → features [N, 4·width, 4, 4]: three stride-2 convolutions with
    LeakyReLU (DCGAN's discriminator body; also the VAE's encoder body)."""

    def __init__(self, width: int, normalise: bool) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = [3, width, 2 * width, 4 * width]
        for index in range(3):
            layers.append(nn.Conv2d(channels[index], channels[index + 1], 4, stride=2, padding=1))
            if normalise and index > 0:
                layers.append(nn.BatchNorm2d(channels[index + 1]))
            layers.append(nn.LeakyReLU(0.2))
        self.body = nn.Sequential(*layers)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.body(images)  # type: ignore[no-any-return]


class ConditionalEncoder(nn.Module):
    """q(z | x, y): image and class → mean and log-variance of a diagonal Gaussian over z."""

    def __init__(self, shape: DecoderShape) -> None:
        super().__init__()
        self.body = _Downsampler(shape.width // 2, normalise=True)
        self.label_embedding = nn.Embedding(shape.classes, shape.label_dim)
        flat = 2 * shape.width * 4 * 4
        self.head = nn.Linear(flat + shape.label_dim, 2 * shape.latent_dim)

    def forward(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.body(images).flatten(1)
        mean, log_variance = self.head(torch.cat([features, self.label_embedding(labels)], 1)).chunk(2, 1)
        return mean, log_variance


class ProjectionDiscriminator(nn.Module):
    """D(x, y) = w·φ(x) + embed(y)·φ(x) (Miyato & Koyama 2018): the class enters as an inner
    product with the image features, which conditions more reliably than concatenating it."""

    def __init__(self, width: int, classes: int) -> None:
        super().__init__()
        self.body = _Downsampler(width, normalise=False)
        flat = 4 * width * 4 * 4
        self.linear = nn.Linear(flat, 1)
        self.label_embedding = nn.Embedding(classes, flat)
        nn.init.normal_(self.label_embedding.weight, std=0.02)

    def forward(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        features = self.body(images).flatten(1)
        projection = (self.label_embedding(labels) * features).sum(dim=1)
        return self.linear(features).squeeze(1) + projection


# --- Configs -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ConditionalVaeConfig:
    """One VAE build. Defaults: the demo model (figures in bench/images.py's docstring)."""

    data: ShapesConfig = field(default_factory=ShapesConfig)
    """The training images (rendered from this recipe; it is stored with the model)."""

    latent_dim: int = 4
    """Size of z. Small on purpose: with 16 dimensions the encoder put colour and shape into z
    (KL ~50 nats) and the decoder ignored the class, so samples from the prior were noise of
    any colour; with 4, z holds what the class does not say (size, position, background) and
    samples show their condition (measured at 800 steps; bench/images.py)."""

    width: int = 32
    """Decoder channels at 8 × 8 (64 at 4 × 4, 16 at 16 × 16): ~0.1 M decoder parameters,
    ~23 ms of CPU time per step of 64 images (one thread); width 64 took 64 ms for no visible
    gain on these shapes."""

    label_dim: int = 16
    """Size of the class embedding fed with z (16 classes: one dimension each would do)."""

    kl_weight: float = 1.0
    """β of the ELBO: 1 is the plain VAE. ``pixel_precision`` already sets the balance between
    reconstruction and prior; β stays for experiments (β-VAE), not tuned."""

    pixel_precision: float = 10.0
    """1 / (2σ²) of the Gaussian pixel likelihood: the weight of the summed squared error. 10
    (σ ≈ 0.22 in [−1, 1] units, ~29 of 255 levels) trades sharpness against prior matching: at 50
    the posterior strayed ~85 nats from the prior and prior samples were noise; at 3 (with 8
    latent dimensions) samples were blurred and often of the wrong colour."""

    steps: int = 1000
    """Optimizer steps (~16 passes over 4,096 images at batch 64): ~23 s of CPU time on one
    thread. 800 steps already gave recognisable shapes."""

    batch_size: int = 64
    """Images per step."""

    learning_rate: float = 2e-3
    """Adam's step size: large for a small network on simple images; decays by cosine to 10 %."""

    seed: int = 0
    """Seeds initialisation, batch order and the reparameterisation noise."""

    checkpoint_every: int = 200
    """Steps between checkpoints (~2 MB each: weights and Adam moments)."""

    report_every: int = 20
    """Steps between reporter calls; the reported losses are means over these steps."""

    def __post_init__(self) -> None:
        _check_common(self)


@dataclass(frozen=True)
class ConditionalGanConfig:
    """One DCGAN build. Defaults: the demo model (figures in bench/images.py's docstring)."""

    data: ShapesConfig = field(default_factory=ShapesConfig)
    """The training images (rendered from this recipe; it is stored with the model)."""

    latent_dim: int = 32
    """Size of z. GANs use more latent dimensions than they need (DCGAN: 100); 32 suffices here."""

    width: int = 32
    """Generator channels at 8 × 8; the discriminator has half as many in its first layer.
    ~39 ms of CPU time per step (both networks, batch 64, one thread); width 64 took 99 ms."""

    label_dim: int = 16
    """Size of the generator's class embedding."""

    steps: int = 1500
    """Generator steps (one discriminator step each): ~60 s of CPU time on one thread. The
    losses level off after ~800 steps; 2,000 steps gave recognisable shapes of the right colour
    (on light backgrounds only: the generator drops the dark ones, a partial mode collapse)."""

    batch_size: int = 64
    """Images per step, real and generated each."""

    learning_rate: float = 5e-4
    """Adam's step size for both networks, with β₁ = 0.5 as in DCGAN. Above DCGAN's 2e-4 to learn
    the shapes within the budget; tested stable on this data set."""

    seed: int = 0
    """Seeds initialisation, batch order and the latent draws."""

    checkpoint_every: int = 250
    """Steps between checkpoints (~4 MB each: both networks and their Adam moments)."""

    report_every: int = 25
    """Steps between reporter calls; the reported losses are means over these steps."""

    def __post_init__(self) -> None:
        _check_common(self)


def _check_common(config: ConditionalVaeConfig | ConditionalGanConfig) -> None:
    for name in (
        "latent_dim",
        "width",
        "label_dim",
        "steps",
        "batch_size",
        "checkpoint_every",
        "report_every",
    ):
        if getattr(config, name) < 1:
            raise ValueError(f"{name} must be >= 1")
    if config.width % 2:
        raise ValueError("width must be even")


@dataclass
class ImageBuildResult:
    """What a build reports."""

    output_dir: Path
    kind: GeneratorKind
    steps: int
    resumed_from_step: int
    """Step of the checkpoint this call started from; 0 for a fresh build."""
    losses: dict[str, list[float]]
    """Per loss name (VAE: "loss", "reconstruction", "kl"; GAN: "generator", "discriminator"),
    its value at every step 1..steps, steps before a resume included."""
    seconds: float
    """Wall time of this call."""
    parameters: int
    """Parameters of the decoder (what sampling runs)."""


# --- Builds --------------------------------------------------------------------------------------


def build_conditional_vae(
    *,
    output_dir: Path,
    checkpoint_dir: Path,
    config: ConditionalVaeConfig | None = None,
    reporter: ProgressReporter = null_reporter,
) -> ImageBuildResult:
    """Train a conditional VAE on ``config.data`` and write its model directory to ``output_dir``.

    Loss per image: ``pixel_precision``·‖x − x̂‖² + ``kl_weight``·KL(q(z|x,y) ‖ N(0, I)), averaged
    over the batch (the negative ELBO up to a constant). Reports ``metrics`` {"loss",
    "reconstruction", "kl"} every ``report_every`` steps; raising ``Cancelled`` from the reporter
    stops the build and a later call resumes from the last checkpoint. A checkpoint of another
    config raises ValueError.
    """
    started = time.perf_counter()
    config = config or ConditionalVaeConfig()
    shape = DecoderShape(config.latent_dim, len(class_names()), config.width, config.label_dim)
    images, labels = _training_tensors(config.data)
    torch.manual_seed(config.seed)
    decoder = ConditionalDecoder(shape)
    encoder = ConditionalEncoder(shape)
    parameters = [*encoder.parameters(), *decoder.parameters()]
    optimizer = torch.optim.Adam(parameters, lr=config.learning_rate)
    order = torch.Generator().manual_seed(config.seed + 1)
    noise = torch.Generator().manual_seed(config.seed + 2)
    losses: dict[str, list[float]] = {"loss": [], "reconstruction": [], "kl": []}
    modules = {"decoder": decoder, "encoder": encoder}
    step = _resume(checkpoint_dir, config, modules, {"adam": optimizer}, [order, noise], losses)
    resumed_from_step = step

    reporter(step=step, total=config.steps, message=f"resumed at step {step}" if step else "training")
    encoder.train()
    decoder.train()
    while step < config.steps:
        _set_learning_rate(optimizer, step, config.steps, config.learning_rate)
        index = torch.randint(0, images.shape[0], (config.batch_size,), generator=order)
        batch, batch_labels = images[index], labels[index]
        mean, log_variance = encoder(batch, batch_labels)
        epsilon = torch.randn(mean.shape, generator=noise)
        latent = mean + torch.exp(0.5 * log_variance) * epsilon
        reconstruction = decoder(latent, batch_labels)
        squared_error = ((reconstruction - batch) ** 2).flatten(1).sum(1).mean()
        kl = (0.5 * (mean**2 + log_variance.exp() - 1.0 - log_variance)).sum(1).mean()
        loss = config.pixel_precision * squared_error + config.kl_weight * kl
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        step += 1
        losses["loss"].append(float(loss.item()))
        losses["reconstruction"].append(float(squared_error.item()))
        losses["kl"].append(float(kl.item()))
        _checkpoint_and_report(
            step, config, checkpoint_dir, modules, {"adam": optimizer}, [order, noise], losses, reporter
        )

    decoder.eval()
    _write_model(output_dir, "conditional_vae", config, shape, decoder, losses, time.perf_counter() - started)
    return ImageBuildResult(
        output_dir=output_dir,
        kind="conditional_vae",
        steps=step,
        resumed_from_step=resumed_from_step,
        losses=losses,
        seconds=time.perf_counter() - started,
        parameters=sum(parameter.numel() for parameter in decoder.parameters()),
    )


def build_conditional_gan(
    *,
    output_dir: Path,
    checkpoint_dir: Path,
    config: ConditionalGanConfig | None = None,
    reporter: ProgressReporter = null_reporter,
) -> ImageBuildResult:
    """Train a conditional DCGAN on ``config.data`` and write its model directory to ``output_dir``.

    Non-saturating GAN loss (Goodfellow et al. 2014): the discriminator minimises
    softplus(−D(x)) + softplus(D(G(z))), the generator softplus(−D(G(z))); one discriminator step
    per generator step, both with Adam (β₁ = 0.5). Reports ``metrics`` {"generator",
    "discriminator"} every ``report_every`` steps; cancel and resume as ``build_conditional_vae``.
    """
    started = time.perf_counter()
    config = config or ConditionalGanConfig()
    classes = len(class_names())
    shape = DecoderShape(config.latent_dim, classes, config.width, config.label_dim)
    images, labels = _training_tensors(config.data)
    torch.manual_seed(config.seed)
    generator = ConditionalDecoder(shape)
    discriminator = ProjectionDiscriminator(config.width // 2, classes)
    adam = {"lr": config.learning_rate, "betas": (0.5, 0.999)}
    generator_optimizer = torch.optim.Adam(generator.parameters(), **adam)  # type: ignore[arg-type]
    discriminator_optimizer = torch.optim.Adam(discriminator.parameters(), **adam)  # type: ignore[arg-type]
    optimizers = {"generator": generator_optimizer, "discriminator": discriminator_optimizer}
    order = torch.Generator().manual_seed(config.seed + 1)
    noise = torch.Generator().manual_seed(config.seed + 2)
    losses: dict[str, list[float]] = {"generator": [], "discriminator": []}
    modules = {"decoder": generator, "discriminator": discriminator}
    step = _resume(checkpoint_dir, config, modules, optimizers, [order, noise], losses)
    resumed_from_step = step

    reporter(step=step, total=config.steps, message=f"resumed at step {step}" if step else "training")
    generator.train()
    discriminator.train()
    while step < config.steps:
        index = torch.randint(0, images.shape[0], (config.batch_size,), generator=order)
        real, real_labels = images[index], labels[index]
        fake_labels = torch.randint(0, classes, (config.batch_size,), generator=noise)
        latent = torch.randn((config.batch_size, config.latent_dim), generator=noise)
        fake = generator(latent, fake_labels)

        discriminator_loss = (
            functional.softplus(-discriminator(real, real_labels)).mean()
            + functional.softplus(discriminator(fake.detach(), fake_labels)).mean()
        )
        discriminator_optimizer.zero_grad(set_to_none=True)
        discriminator_loss.backward()
        discriminator_optimizer.step()

        generator_loss = functional.softplus(-discriminator(fake, fake_labels)).mean()
        generator_optimizer.zero_grad(set_to_none=True)
        generator_loss.backward()
        generator_optimizer.step()
        step += 1
        losses["generator"].append(float(generator_loss.item()))
        losses["discriminator"].append(float(discriminator_loss.item()))
        _checkpoint_and_report(
            step, config, checkpoint_dir, modules, optimizers, [order, noise], losses, reporter
        )

    generator.eval()
    _write_model(
        output_dir, "conditional_gan", config, shape, generator, losses, time.perf_counter() - started
    )
    return ImageBuildResult(
        output_dir=output_dir,
        kind="conditional_gan",
        steps=step,
        resumed_from_step=resumed_from_step,
        losses=losses,
        seconds=time.perf_counter() - started,
        parameters=sum(parameter.numel() for parameter in generator.parameters()),
    )


def _training_tensors(data: ShapesConfig) -> tuple[torch.Tensor, torch.Tensor]:
    dataset = render_shapes(data)
    return torch.from_numpy(to_unit_tensor_layout(dataset.images)), torch.from_numpy(dataset.labels)


def _set_learning_rate(optimizer: torch.optim.Optimizer, step: int, steps: int, peak: float) -> None:
    """Cosine decay from ``peak`` to a tenth of it over the run."""
    cosine = 0.5 * (1 + math.cos(math.pi * step / steps))
    for group in optimizer.param_groups:
        group["lr"] = peak * (0.1 + 0.9 * cosine)


def _resume(
    checkpoint_dir: Path,
    config: Any,
    modules: Mapping[str, nn.Module],
    optimizers: Mapping[str, torch.optim.Optimizer],
    generators: list[torch.Generator],
    losses: dict[str, list[float]],
) -> int:
    """Load the checkpoint of this build when there is one; return the step to continue from."""
    checkpoint = load_if_exists(checkpoint_dir / CHECKPOINT_FILE)
    if checkpoint is None:
        return 0
    if checkpoint["config"] != _config_json(config):
        raise ValueError(
            f"{checkpoint_dir / CHECKPOINT_FILE} was written by a build with another config: "
            f"{checkpoint['config']}"
        )
    for name, module in modules.items():
        module.load_state_dict(checkpoint["modules"][name])
    for name, optimizer in optimizers.items():
        optimizer.load_state_dict(checkpoint["optimizers"][name])
    for generator, state in zip(generators, checkpoint["generators"], strict=True):
        generator.set_state(state)
    torch.set_rng_state(checkpoint["torch_rng"])
    for name, values in checkpoint["losses"].items():
        losses[name][:] = values
    return int(checkpoint["step"])


def _checkpoint_and_report(
    step: int,
    config: Any,
    checkpoint_dir: Path,
    modules: Mapping[str, nn.Module],
    optimizers: Mapping[str, torch.optim.Optimizer],
    generators: list[torch.Generator],
    losses: dict[str, list[float]],
    reporter: ProgressReporter,
) -> None:
    # Checkpoint before reporting: a reporter that raises Cancelled leaves this step saved.
    if step % config.checkpoint_every == 0 or step == config.steps:
        save_atomic(
            {
                "config": _config_json(config),
                "step": step,
                "modules": {name: module.state_dict() for name, module in modules.items()},
                "optimizers": {name: optimizer.state_dict() for name, optimizer in optimizers.items()},
                "generators": [generator.get_state() for generator in generators],
                "torch_rng": torch.get_rng_state(),
                "losses": losses,
            },
            checkpoint_dir / CHECKPOINT_FILE,
        )
    if step % config.report_every == 0 or step == config.steps:
        metrics = {
            name: sum(values[-config.report_every :]) / len(values[-config.report_every :])
            for name, values in losses.items()
        }
        reporter(step=step, total=config.steps, message=f"step {step}/{config.steps}", metrics=metrics)


def _config_json(config: Any) -> dict[str, Any]:
    """The config as plain JSON values (what checkpoints and manifests store)."""
    return json.loads(json.dumps(asdict(config)))  # type: ignore[no-any-return]


# --- The model directory -------------------------------------------------------------------------


def _write_model(
    output_dir: Path,
    kind: GeneratorKind,
    config: ConditionalVaeConfig | ConditionalGanConfig,
    shape: DecoderShape,
    decoder: ConditionalDecoder,
    losses: dict[str, list[float]],
    seconds: float,
) -> None:
    manifest = {
        "format_version": FORMAT_VERSION,
        "kind": kind,
        "config": _config_json(config),
        "decoder": asdict(shape),
        "class_names": class_names(),
        "training_data": {"dataset": "shapes", "config": asdict(config.data)},
        "final_losses": {name: values[-1] for name, values in losses.items()},
        "build_seconds": round(seconds, 3),
        "parent": None,
    }
    write_generator_directory(output_dir, manifest, decoder)


def write_generator_directory(
    output_dir: Path, manifest: dict[str, Any], decoder: ConditionalDecoder
) -> None:
    """Write ``manifest`` and the decoder's weights to ``output_dir``, atomically (a sibling
    temporary folder renamed into place). The manifest records the weights' SHA-256."""

    def write(folder: Path) -> None:
        weights = {name: tensor.detach().contiguous() for name, tensor in decoder.state_dict().items()}
        save_file(weights, str(folder / DECODER_FILE))
        digest = hashlib.sha256((folder / DECODER_FILE).read_bytes()).hexdigest()
        (folder / MANIFEST_FILE).write_text(json.dumps({**manifest, "decoder_sha256": digest}, indent=2))

    write_directory_atomically(output_dir, write)


@dataclass
class LoadedGenerator:
    """A generator directory in memory: its manifest and the decoder in eval mode (on the CPU)."""

    path: Path
    manifest: dict[str, Any]
    decoder: ConditionalDecoder

    @property
    def class_names(self) -> list[str]:
        return list(self.manifest["class_names"])

    def labels(self, conditions: list[str]) -> torch.Tensor:
        """Label tensor of ``conditions``; ValueError naming the model's classes for an unknown one."""
        names = self.class_names
        labels = []
        for condition in conditions:
            normalised = " ".join(condition.strip().lower().split())
            if normalised not in names:
                raise ValueError(
                    f"{self.path} cannot draw {condition!r}: its conditions are {', '.join(names)}"
                )
            labels.append(names.index(normalised))
        return torch.tensor(labels, dtype=torch.long)


def load_generator(model_dir: Path) -> LoadedGenerator:
    """Load a generator directory written by a build or by ``workers.ml.image_policy``.

    Raises ValueError for a folder that is not one (no manifest, another format version).
    """
    model_dir = Path(model_dir)
    manifest_path = model_dir / MANIFEST_FILE
    if not manifest_path.exists():
        raise ValueError(f"{model_dir} is not an image generator directory (no {MANIFEST_FILE})")
    manifest = json.loads(manifest_path.read_text())
    if manifest.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"{manifest_path}: format version {manifest.get('format_version')!r}, expected {FORMAT_VERSION}"
        )
    decoder = ConditionalDecoder(DecoderShape(**manifest["decoder"]))
    decoder.load_state_dict(load_file(str(model_dir / DECODER_FILE)))
    decoder.eval()
    return LoadedGenerator(path=model_dir, manifest=manifest, decoder=decoder)


def sample_latents(count: int, latent_dim: int, seed: int) -> torch.Tensor:
    """The latents that ``sample_images`` uses for ``seed``: row i depends on (seed, i) only through
    one generator, so the first k rows of a longer draw equal a draw of k."""
    return torch.randn((count, latent_dim), generator=torch.Generator().manual_seed(seed))


@torch.no_grad()
def sample_images(model_dir: Path, conditions: list[str], seed: int) -> UInt8Array:
    """One image per condition, uint8 [N, 32, 32, 3]; the same seed gives the same images.

    Latent i is row i of ``sample_latents(N, latent_dim, seed)``, so image i depends only on the
    seed, its position and its condition (not on the other conditions: the decoder runs in eval
    mode, batch norm uses its running statistics). An empty list gives an empty [0, 32, 32, 3].
    """
    loaded = load_generator(model_dir)
    return generate_with(loaded, conditions, seed)


@torch.no_grad()
def generate_with(loaded: LoadedGenerator, conditions: list[str], seed: int) -> UInt8Array:
    """``sample_images`` on a generator already in memory."""
    if not conditions:
        return np.zeros((0, IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
    labels = loaded.labels(conditions)
    latents = sample_latents(len(conditions), loaded.decoder.shape.latent_dim, seed)
    outputs = [
        loaded.decoder(
            latents[start : start + SAMPLING_BATCH_SIZE], labels[start : start + SAMPLING_BATCH_SIZE]
        )
        for start in range(0, len(conditions), SAMPLING_BATCH_SIZE)
    ]
    return from_unit_tensor_layout(torch.cat(outputs).numpy())


def training_data_config(model_dir: Path) -> ShapesConfig:
    """The recipe of the images a generator was trained on (for a child: its root's). Render it
    with ``workers.ml.image_dataset.render_shapes`` to get the exact training images back."""
    manifest = json.loads((Path(model_dir) / MANIFEST_FILE).read_text())
    return ShapesConfig(**manifest["training_data"]["config"])
