"""A procedural image data set that the project renders itself: coloured shapes at 32 × 32.

Why our own: the image half of Lovelace must build, train and be evaluated offline (no download,
no licence question) in seconds on a CPU. Every image is drawn here from a seed, so the data set
is the code plus ``ShapesConfig``; nothing is copied from any published data set.

An image shows one shape (circle, square, triangle, cross) in one named colour (red, yellow, green,
blue) on a plain background, with jittered hue, size, position and background, plus pixel noise.
Its class is the (colour, shape) pair, ``class_names()[label]`` = "a red circle": a text that
serves as the prompt of a study and as the condition of a generator. 4 × 4 = 16 classes.

Deterministic: the same config gives the same uint8 array, bit for bit, for a given numpy version
(numpy's PCG64 generator and float64 arithmetic only; no threads, no GPU).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

IMAGE_SIZE = 32
SHAPES = ("circle", "square", "triangle", "cross")
# Named colours as RGB in [0, 1]; per image the colour is jittered around these (COLOUR_JITTER).
# Red and yellow are the warm ones, green and blue the cool ones (the warmth oracle's axis).
COLOURS: dict[str, tuple[float, float, float]] = {
    "red": (0.85, 0.15, 0.12),
    "yellow": (0.92, 0.82, 0.15),
    "green": (0.15, 0.70, 0.22),
    "blue": (0.15, 0.30, 0.88),
}
COLOUR_JITTER = 0.08  # per channel, uniform ±: colours vary but stay nameable
# Supersampling factor of the rasteriser: each pixel is the mean of 4 × 4 sub-pixel tests, so
# edges are anti-aliased (a 32-pixel circle drawn without it looks like a staircase).
SUPERSAMPLE = 4

UInt8Array = npt.NDArray[np.uint8]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class ShapesConfig:
    """Which images to render. Two configs that compare equal render identical arrays."""

    images_per_class: int = 256
    """16 classes × 256 = 4,096 images (12 MB as uint8): enough for the 32 × 32 generators to
    learn every class in about a minute on 2 CPU cores; rendering takes ~1 s."""

    seed: int = 0
    """Seeds every draw (shape placement, colours, background, noise)."""

    noise: float = 0.03
    """Standard deviation of Gaussian pixel noise, in [0, 1] units (~8 of 255): enough that no two
    images of a class are alike in flat regions, little enough that the shape stays clear."""

    min_radius: float = 6.0
    """Smallest shape half-width in pixels: smaller shapes (a 10-pixel triangle) are hard to name."""

    max_radius: float = 11.0
    """Largest half-width: with the position margin the shape always lies fully inside the image."""

    max_offset: float = 5.0
    """How far (pixels, each axis) the shape's centre may lie from the image centre, further
    limited so that the shape stays inside. Enough that left-right symmetry varies between images
    (the symmetry oracle's axis); a shape anywhere in the frame would cost the 32 × 32 generators
    most of their training budget on placement alone."""

    def __post_init__(self) -> None:
        if self.images_per_class < 1:
            raise ValueError("images_per_class must be >= 1")
        if not 0.0 <= self.noise <= 0.5:
            raise ValueError("noise must lie in [0, 0.5]")
        if self.max_offset < 0:
            raise ValueError("max_offset must be >= 0")
        if not 2.0 <= self.min_radius <= self.max_radius <= IMAGE_SIZE / 2 - 1:
            raise ValueError(f"need 2 <= min_radius <= max_radius <= {IMAGE_SIZE // 2 - 1}")


@dataclass(frozen=True)
class ShapesDataset:
    """Rendered images [N, 32, 32, 3] uint8 and their labels [N] (indices into ``class_names()``)."""

    images: UInt8Array
    labels: IntArray


def class_names() -> list[str]:
    """The 16 class names in label order: colour-major ("a red circle", "a red square", ...)."""
    return [f"a {colour} {shape}" for colour in COLOURS for shape in SHAPES]


def class_index(name: str) -> int:
    """The label of a class name; accepts surrounding whitespace and any letter case.

    Raises ValueError naming the known classes for anything else (a generator can only draw what
    it was trained on).
    """
    names = class_names()
    normalised = " ".join(name.strip().lower().split())
    if normalised not in names:
        raise ValueError(f"unknown image class {name!r}: use one of {', '.join(names)}")
    return names.index(normalised)


def render_shapes(config: ShapesConfig | None = None) -> ShapesDataset:
    """Render the data set of ``config``: every class ``images_per_class`` times, shuffled.

    Images are returned in a seeded random order, so any prefix is a class-balanced-ish sample.
    """
    config = config or ShapesConfig()
    generator = np.random.default_rng(config.seed)
    classes = len(class_names())
    labels = np.repeat(np.arange(classes, dtype=np.int64), config.images_per_class)
    labels = labels[generator.permutation(labels.size)]
    images = np.empty((labels.size, IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
    for position, label in enumerate(labels.tolist()):
        images[position] = _render_one(int(label), config, generator)
    return ShapesDataset(images=images, labels=labels)


def _subpixel_grid() -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """x and y of the sub-pixel centres, [32·S, 32·S] each, in pixel units."""
    coordinates = (np.arange(IMAGE_SIZE * SUPERSAMPLE) + 0.5) / SUPERSAMPLE
    return np.meshgrid(coordinates, coordinates)


_GRID_X, _GRID_Y = _subpixel_grid()


def shape_coverage(shape: str, centre_x: float, centre_y: float, radius: float) -> npt.NDArray[np.float64]:
    """Fraction of each pixel [32, 32] covered by ``shape``; ``radius`` is its half-width.

    Circle: disc of that radius. Square: axis-aligned, side 2·radius. Triangle: pointing up, base
    2·radius, height 2·radius (isosceles, hence mirror-symmetric about its vertical axis). Cross:
    two bars of width 2·radius/3.
    """
    dx = _GRID_X - centre_x
    dy = _GRID_Y - centre_y
    if shape == "circle":
        inside = dx**2 + dy**2 <= radius**2
    elif shape == "square":
        inside = (np.abs(dx) <= radius) & (np.abs(dy) <= radius)
    elif shape == "triangle":
        # Apex at (0, −radius), base from (−radius, radius) to (radius, radius): |dx| may grow by
        # half a pixel per pixel of depth below the apex.
        inside = (dy <= radius) & (np.abs(dx) <= (dy + radius) / 2)
    elif shape == "cross":
        bar = radius / 3
        inside = ((np.abs(dx) <= bar) & (np.abs(dy) <= radius)) | (
            (np.abs(dy) <= bar) & (np.abs(dx) <= radius)
        )
    else:
        raise ValueError(f"unknown shape {shape!r}")
    coverage = inside.reshape(IMAGE_SIZE, SUPERSAMPLE, IMAGE_SIZE, SUPERSAMPLE).mean(axis=(1, 3))
    return np.asarray(coverage, dtype=np.float64)


def _render_one(label: int, config: ShapesConfig, generator: np.random.Generator) -> UInt8Array:
    colour_name, shape = list(COLOURS)[label // len(SHAPES)], SHAPES[label % len(SHAPES)]
    radius = generator.uniform(config.min_radius, config.max_radius)
    # Keep the whole shape (and a pixel of margin) inside the image.
    centre = IMAGE_SIZE / 2
    low = max(radius + 1.0, centre - config.max_offset)
    high = min(IMAGE_SIZE - radius - 1.0, centre + config.max_offset)
    centre_x, centre_y = generator.uniform(low, high), generator.uniform(low, high)
    colour = np.clip(
        np.asarray(COLOURS[colour_name]) + generator.uniform(-COLOUR_JITTER, COLOUR_JITTER, 3), 0.0, 1.0
    )
    # Backgrounds: a dim or a pale grey with a slight tint, so the shape's colour dominates.
    background = generator.choice([0.12, 0.85]) + generator.uniform(-0.08, 0.08, 3)
    coverage = shape_coverage(shape, centre_x, centre_y, radius)[..., None]
    image = coverage * colour + (1.0 - coverage) * background
    image = image + generator.normal(0.0, config.noise, image.shape)
    return np.asarray(np.round(np.clip(image, 0.0, 1.0) * 255.0), dtype=np.uint8)


def to_unit_tensor_layout(images: UInt8Array) -> npt.NDArray[np.float32]:
    """uint8 [N, H, W, 3] → float32 [N, 3, H, W] in [−1, 1], the layout the torch models take."""
    array = np.asarray(images)
    if array.ndim != 4 or array.shape[-1] != 3:
        raise ValueError(f"expected images [N, H, W, 3], got shape {array.shape}")
    return np.ascontiguousarray(array.transpose(0, 3, 1, 2), dtype=np.float32) / 127.5 - 1.0


def from_unit_tensor_layout(values: npt.NDArray[np.float32]) -> UInt8Array:
    """The inverse of ``to_unit_tensor_layout``: float [N, 3, H, W] in [−1, 1] → uint8 [N, H, W, 3]
    (values outside [−1, 1] are clipped, the rest rounded to the nearest level)."""
    scaled = np.round((np.clip(np.asarray(values, dtype=np.float64), -1.0, 1.0) + 1.0) * 127.5)
    return np.ascontiguousarray(scaled.transpose(0, 2, 3, 1)).astype(np.uint8)
