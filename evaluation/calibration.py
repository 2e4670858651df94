"""Calibration of predicted preference probabilities: the bins of a reliability diagram.

A reward model predicts, for each validation pair, the probability p that the chosen side is
preferred (the ensemble mean of σ(r_chosen − r_rejected)). Its prediction is "chosen" when
p > 1/2, held with confidence max(p, 1 − p). A calibrated model is right 70 % of the time on the
pairs where it is 70 % confident; the reliability diagram plots accuracy against confidence per
bin, and the expected calibration error (Guo et al. 2017) is their pair-weighted gap. The
definitions match ``workers.ml.reward_model.expected_calibration_error`` bin for bin, so the
diagram and the stored ECE describe the same numbers.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt


@dataclass(frozen=True)
class ReliabilityBin:
    """One equal-width confidence bin [lower, upper): how many pairs fell in it, their mean
    confidence and the share of them the model got right."""

    lower: float
    upper: float
    count: int
    mean_confidence: float
    accuracy: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def reliability_bins(probabilities: npt.ArrayLike, bins: int = 10) -> list[ReliabilityBin]:
    """The non-empty bins of the reliability diagram of predictions ``probabilities`` that the
    chosen side is preferred.

    What: confidence max(p, 1 − p) in ``bins`` equal-width bins over [0, 1] (the last one closed;
    confidences are ≥ 1/2, so only the upper half of the bins can fill), and per bin the share of
    pairs with p > 1/2 (right: the chosen side is the one people preferred).
    Degenerate input: no probabilities gives an empty list; ``bins`` < 1 raises ValueError.
    """
    if bins < 1:
        raise ValueError("bins must be at least 1")
    p = np.asarray(probabilities, dtype=np.float64).reshape(-1)
    if p.size == 0:
        return []
    confidence = np.maximum(p, 1.0 - p)
    correct = (p > 0.5).astype(np.float64)
    index = np.minimum((confidence * bins).astype(np.int64), bins - 1)
    count = np.bincount(index, minlength=bins)
    confidence_sum = np.bincount(index, confidence, minlength=bins)
    correct_sum = np.bincount(index, correct, minlength=bins)
    return [
        ReliabilityBin(
            lower=round(b / bins, 6),
            upper=round((b + 1) / bins, 6),
            count=int(count[b]),
            mean_confidence=float(confidence_sum[b] / count[b]),
            accuracy=float(correct_sum[b] / count[b]),
        )
        for b in range(bins)
        if count[b]
    ]


def calibration_error_from_bins(bins: list[ReliabilityBin]) -> float:
    """Expected calibration error: Σ_b (n_b / n) |accuracy_b − mean confidence_b|.

    Degenerate input: no bins (no pairs) gives NaN.
    """
    total = sum(item.count for item in bins)
    if total == 0:
        return math.nan
    return sum(item.count / total * abs(item.accuracy - item.mean_confidence) for item in bins)
