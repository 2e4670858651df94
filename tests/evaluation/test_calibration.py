from __future__ import annotations

import math

import pytest

from evaluation.calibration import ReliabilityBin, calibration_error_from_bins, reliability_bins


def test_reliability_bins_hand_computed() -> None:
    # Confidences max(p, 1 − p): 0.9, 0.8, 0.7, 0.55, 0.55; right where p > 0.5: 1, 1, 0, 1, 0.
    bins = reliability_bins([0.9, 0.8, 0.3, 0.55, 0.45], bins=10)
    assert bins == [
        ReliabilityBin(0.5, 0.6, 2, pytest.approx(0.55), 0.5),  # type: ignore[arg-type]
        ReliabilityBin(0.7, 0.8, 1, pytest.approx(0.7), 0.0),  # type: ignore[arg-type]
        ReliabilityBin(0.8, 0.9, 1, pytest.approx(0.8), 1.0),  # type: ignore[arg-type]
        ReliabilityBin(0.9, 1.0, 1, pytest.approx(0.9), 1.0),  # type: ignore[arg-type]
    ]
    # ECE = (2 · 0.05 + 0.7 + 0.2 + 0.1) / 5 = 0.22.
    assert calibration_error_from_bins(bins) == pytest.approx(0.22)


def test_a_certain_prediction_falls_in_the_last_bin_and_no_pairs_give_no_bins() -> None:
    assert reliability_bins([1.0, 0.0], bins=4) == [ReliabilityBin(0.75, 1.0, 2, 1.0, 0.5)]
    assert reliability_bins([], bins=10) == []
    assert math.isnan(calibration_error_from_bins([]))
    with pytest.raises(ValueError):
        reliability_bins([0.5], bins=0)
