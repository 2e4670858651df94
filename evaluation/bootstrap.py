"""Bootstrap confidence intervals over prompts.

Every mean that Lovelace reports carries an interval that says how much it would move on another
draw of prompts: prompts, not samples, are the unit that varies between studies, and the samples
of one prompt are correlated. All resampling rounds are drawn and reduced at once with array
operations; a seed makes the result reproducible.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

# Rounds are processed in chunks so that the [rounds, prompts] index matrix stays below
# about 80 MB (10 million int64 entries) whatever the number of prompts.
_MAX_CHUNK_ENTRIES = 10_000_000


@dataclass(frozen=True)
class MeanInterval:
    """A mean with its bootstrap percentile interval.

    ``count`` is the number of resampling units (prompts, or values when no groups are given)
    that entered the estimate after dropping NaN values.
    """

    mean: float
    lower: float
    upper: float
    count: int


def percentile_interval(replicates: npt.ArrayLike, confidence: float = 0.95) -> tuple[FloatArray, FloatArray]:
    """Percentile bootstrap interval along the first axis of ``replicates`` ([rounds, ...]).

    Returns ``(lower, upper)``, the (1 - confidence)/2 and (1 + confidence)/2 quantiles with
    linear interpolation (numpy's default, as pandas' ``quantile`` that Chatbot Arena uses).
    Degenerate input: zero rounds gives NaN bounds of the trailing shape.
    """
    values = np.asarray(replicates, dtype=np.float64)
    if values.shape[0] == 0:
        nan = np.full(values.shape[1:], np.nan)
        return nan, nan.copy()
    tail = (1.0 - confidence) / 2.0
    bounds = np.quantile(values, [tail, 1.0 - tail], axis=0)
    return np.asarray(bounds[0], dtype=np.float64), np.asarray(bounds[1], dtype=np.float64)


def bootstrap_mean(
    values: npt.ArrayLike,
    *,
    groups: npt.ArrayLike | None = None,
    weight_by: Literal["prompt", "sample"] = "prompt",
    rounds: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> MeanInterval:
    """Mean of per-prompt values with a bootstrap confidence interval over prompts.

    What: ``values`` are either one value per prompt (``groups`` is None) or one value per sample
    with ``groups`` giving each sample's prompt id. Prompts are resampled with replacement
    ``rounds`` times (all rounds at once, as a [rounds, prompts] index matrix); the interval is
    the percentile interval at ``confidence``.

    Why: samples of one prompt are not independent, so resampling samples would give intervals
    that are too narrow; resampling prompts is the cluster bootstrap.

    ``weight_by``: ``"prompt"`` (default) averages the per-prompt means, every prompt counting
    once; ``"sample"`` pools all samples of the chosen prompts (ratio of sums), for statistics
    such as a win rate over battles. Without groups both are the plain mean.

    Degenerate input: NaN values are dropped first. No values left gives mean, lower and upper
    NaN with count 0; one prompt gives lower = upper = mean; ``rounds`` = 0 gives NaN bounds.
    """
    data = np.asarray(values, dtype=np.float64).reshape(-1)
    keep = ~np.isnan(data)
    data = data[keep]
    if groups is None:
        sums = data
        sizes = np.ones_like(data)
    else:
        group_ids = np.asarray(groups).reshape(-1)[keep]
        _, group_index = np.unique(group_ids, return_inverse=True)
        sums = np.bincount(group_index, weights=data).astype(np.float64)
        sizes = np.bincount(group_index).astype(np.float64)
    if weight_by == "prompt":
        # Per-prompt means, then each prompt weighs the same.
        sums = sums / np.maximum(sizes, 1.0)
        sizes = np.ones_like(sums)
    count = int(sums.shape[0])
    if count == 0:
        return MeanInterval(mean=math.nan, lower=math.nan, upper=math.nan, count=0)
    mean = float(sums.sum() / sizes.sum())
    replicates = _resampled_ratios(sums, sizes, rounds=rounds, seed=seed)
    lower, upper = percentile_interval(replicates, confidence)
    return MeanInterval(mean=mean, lower=float(lower), upper=float(upper), count=count)


def _resampled_ratios(sums: FloatArray, sizes: FloatArray, *, rounds: int, seed: int) -> FloatArray:
    """sum(sums[idx]) / sum(sizes[idx]) for ``rounds`` uniform resamples idx of the units."""
    generator = np.random.default_rng(seed)
    units = sums.shape[0]
    chunk = max(1, _MAX_CHUNK_ENTRIES // max(units, 1))
    out = np.empty(rounds, dtype=np.float64)
    for start in range(0, rounds, chunk):
        stop = min(rounds, start + chunk)
        index = generator.integers(0, units, size=(stop - start, units))
        out[start:stop] = sums[index].sum(axis=1) / sizes[index].sum(axis=1)
    return out
