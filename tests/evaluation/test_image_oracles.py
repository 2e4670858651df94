from __future__ import annotations

import numpy as np
import pytest

from evaluation.image_oracles import (
    IMAGE_ORACLES,
    load_image_oracle,
    oracle_choice,
    symmetry_oracle,
    warmth_oracle,
)


def _image(rows: list[list[tuple[int, int, int]]]) -> np.ndarray:
    return np.array(rows, dtype=np.uint8)


def test_warmth_oracle_hand_computed() -> None:
    # Pixels (red − blue)/255: 1, −1, 0, 0.5 → mean 0.125.
    image = _image([[(255, 0, 0), (0, 0, 255)], [(9, 9, 9), (255, 40, 0)]])
    assert warmth_oracle("a red circle", image) == pytest.approx((1 - 1 + 0 + 1) / 4, rel=1e-15)
    assert warmth_oracle("", _image([[(128, 128, 128)]])) == 0.0


def test_symmetry_oracle_hand_computed() -> None:
    symmetric = _image([[(10, 20, 30), (0, 0, 0), (10, 20, 30)]])
    assert symmetry_oracle("", symmetric) == 1.0
    # Left pixel white, right black: each side differs by 1 in 3 channels, the centre by 0:
    # mean |x − mirror| = (3 + 0 + 3) / 9 = 2/3.
    lopsided = _image([[(255, 255, 255), (0, 0, 0), (0, 0, 0)]])
    assert symmetry_oracle("", lopsided) == pytest.approx(1 / 3, rel=1e-15)


def test_oracle_choice_prefers_higher_and_ties_on_equal() -> None:
    warm, cool = _image([[(200, 0, 0)]]), _image([[(0, 0, 200)]])
    assert oracle_choice(warmth_oracle, "p", warm, cool) == "left"
    assert oracle_choice(warmth_oracle, "p", cool, warm) == "right"
    assert oracle_choice(warmth_oracle, "p", warm, warm.copy()) == "tie"


def test_oracles_reject_non_images_and_load_by_name() -> None:
    with pytest.raises(ValueError, match=r"expected an image \[H, W, 3\]"):
        warmth_oracle("", np.zeros((4, 4), dtype=np.uint8))
    assert load_image_oracle("warmth") is warmth_oracle
    assert load_image_oracle("evaluation.image_oracles:symmetry_oracle") is symmetry_oracle
    assert sorted(IMAGE_ORACLES) == ["symmetry", "warmth"]
    with pytest.raises(ValueError, match=r"use a built-in name \(symmetry, warmth\)"):
        load_image_oracle("redness")
    with pytest.raises(ValueError, match="has no 'nothing'"):
        load_image_oracle("evaluation.image_oracles:nothing")
