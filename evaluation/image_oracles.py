"""Image oracles for simulated raters: the image-typed variant of the text oracles.

The text oracles (``server/ratings/simulated_raters.py``) are ``Oracle = Callable[[str, str],
float]``: a pure, deterministic function (prompt, text) → score; the rater prefers the higher
score, equal scores tie. An image oracle has the same shape with the image in place of the text:
``ImageOracle = Callable[[str, UInt8Array], float]``, (prompt, image uint8 [H, W, 3]) → score, and
the same rule for votes (``oracle_choice``). ``load_image_oracle`` resolves a built-in name
(``IMAGE_ORACLES``) or ``module:function`` like ``load_oracle`` does for text.

The built-in preferences are planted so that nothing in training sees them except through the
votes: a warmth preference (colour) and a left–right symmetry preference (composition). Both
ignore the prompt, as the text oracles do.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import numpy as np
import numpy.typing as npt

from evaluation.named_functions import function_by_name

UInt8Array = npt.NDArray[np.uint8]
ImageOracle = Callable[[str, UInt8Array], float]


def _unit_rgb(image: npt.ArrayLike) -> npt.NDArray[np.float64]:
    array = np.asarray(image)
    if array.ndim != 3 or array.shape[-1] != 3:
        raise ValueError(f"expected an image [H, W, 3], got shape {array.shape}")
    return array.astype(np.float64) / 255.0


def warmth_oracle(prompt: str, image: UInt8Array) -> float:
    """Mean over pixels of (red − blue), in [−1, 1]: prefers warm colours (reds, oranges,
    yellows) over cool ones, in the shape and the background alike.

    A preference a generator conditioned on "a blue square" can still follow (a purple-tinted
    blue, a warmer background) without drawing another class. 0.0 for a grey image.
    """
    rgb = _unit_rgb(image)
    if rgb.size == 0:
        return 0.0
    return float((rgb[..., 0] - rgb[..., 2]).mean())


def symmetry_oracle(prompt: str, image: UInt8Array) -> float:
    """1 − mean |image − its mirror image| over pixels and channels, in [0, 1]: prefers
    compositions that are symmetric about the vertical centre line.

    Every shape of the project's data set is mirror-symmetric about its own vertical axis, so the
    oracle rewards a shape drawn at the horizontal centre (and an even background); off-centre
    shapes lose. 1.0 for a symmetric image.
    """
    rgb = _unit_rgb(image)
    if rgb.size == 0:
        return 1.0
    return float(1.0 - np.abs(rgb - rgb[:, ::-1, :]).mean())


IMAGE_ORACLES: dict[str, ImageOracle] = {
    "warmth": warmth_oracle,
    "symmetry": symmetry_oracle,
}


def oracle_choice(
    oracle: ImageOracle, prompt: str, left: UInt8Array, right: UInt8Array
) -> Literal["left", "right", "tie"]:
    """The vote of a noiseless simulated rater: the higher score wins, equal scores tie (the rule
    of ``server.ratings.simulated_raters.rate`` for text)."""
    left_score, right_score = oracle(prompt, left), oracle(prompt, right)
    if left_score > right_score:
        return "left"
    if right_score > left_score:
        return "right"
    return "tie"


def load_image_oracle(name_or_path: str) -> ImageOracle:
    """The image oracle called ``name_or_path``: a built-in name (``IMAGE_ORACLES``) or
    ``module:function``. ValueError naming what was wrong (and the built-in names) otherwise."""
    return function_by_name(name_or_path, IMAGE_ORACLES, "image oracle")
