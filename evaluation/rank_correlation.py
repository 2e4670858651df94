"""Spearman rank correlation with a bootstrap interval: how well a computed metric orders versions
as people do.

The creativity report asks whether each computed novelty metric agrees with people's answers to
"Which is more original?", and each value metric with "Which is better?". The unit is the
version: the metrics are reported per version (a mean over its prompts) and the human side is a
Bradley–Terry rating per version, fitted from pairs of versions, so there is no per-prompt human
score to pair a prompt's metric with (a prompt is judged by a handful of raters on one pair, far
too few votes to rate versions on it alone). The interval therefore resamples versions with
replacement: it says how much the correlation would move with another set of versions like these.
It does not include the noise of the human ratings themselves (their own intervals are shown on
the plane beside it), and with few versions it is wide, as it should be: five versions can hardly
tell a correlation of 0.5 from 0.

Ties get average ranks; a resample in which either side is constant has no correlation and is
left out (the count of those used is returned). Pure numpy, no scipy: the web process imports it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class RankCorrelation:
    """Spearman's rho over ``count`` paired values with its percentile bootstrap interval over
    ``rounds_used`` resamples (NaN bounds when too few resamples had a correlation)."""

    rho: float
    lower: float
    upper: float
    count: int
    rounds_used: int


def average_ranks(values: npt.ArrayLike) -> FloatArray:
    """Ranks 1..n along the last axis, tied values sharing the mean of their ranks."""
    data = np.asarray(values, dtype=np.float64)
    order = np.argsort(data, axis=-1, kind="stable")
    ordered = np.take_along_axis(data, order, axis=-1)
    n = data.shape[-1]
    positions = np.broadcast_to(np.arange(1, n + 1, dtype=np.float64), data.shape).copy()
    # For each run of equal values, every member gets the mean of the run's positions.
    ranks_sorted = np.empty_like(positions)
    for index in np.ndindex(data.shape[:-1]):
        row, places = ordered[index], positions[index]
        out = ranks_sorted[index]
        start = 0
        while start < n:
            stop = start + 1
            while stop < n and row[stop] == row[start]:
                stop += 1
            out[start:stop] = places[start:stop].mean()
            start = stop
    ranks = np.empty_like(ranks_sorted)
    np.put_along_axis(ranks, order, ranks_sorted, axis=-1)
    return ranks


def _pearson_rows(x: FloatArray, y: FloatArray) -> FloatArray:
    """Pearson correlation of each row pair; NaN where a row is constant."""
    dx = x - x.mean(axis=-1, keepdims=True)
    dy = y - y.mean(axis=-1, keepdims=True)
    denominator = np.sqrt((dx * dx).sum(axis=-1) * (dy * dy).sum(axis=-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        result = (dx * dy).sum(axis=-1) / denominator
    return np.where(denominator > 1e-12, result, np.nan)


def spearman(x: npt.ArrayLike, y: npt.ArrayLike) -> float:
    """Spearman's rho: the Pearson correlation of the average ranks. NaN when either side is
    constant or fewer than two pairs are given."""
    a, b = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError("spearman needs two 1-d sequences of the same length")
    if a.size < 2:
        return math.nan
    return float(_pearson_rows(average_ranks(a), average_ranks(b)))


def bootstrap_spearman(
    x: npt.ArrayLike,
    y: npt.ArrayLike,
    *,
    rounds: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
    min_rounds: int = 100,
) -> RankCorrelation:
    """Spearman's rho of the pairs (x[i], y[i]) with a percentile interval from resampling the
    pairs (versions) with replacement. Pairs with a NaN on either side are dropped first."""
    a, b = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError("bootstrap_spearman needs two 1-d sequences of the same length")
    if not 0 < confidence < 1:
        raise ValueError("confidence must be in (0, 1)")
    keep = np.isfinite(a) & np.isfinite(b)
    a, b = a[keep], b[keep]
    n = int(a.size)
    rho = spearman(a, b) if n >= 2 else math.nan
    if n < 3 or rounds <= 0:
        return RankCorrelation(rho=rho, lower=math.nan, upper=math.nan, count=n, rounds_used=0)
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, n, size=(rounds, n))
    replicates = _pearson_rows(average_ranks(a[picks]), average_ranks(b[picks]))
    replicates = replicates[np.isfinite(replicates)]
    if replicates.size < min_rounds:
        return RankCorrelation(
            rho=rho, lower=math.nan, upper=math.nan, count=n, rounds_used=int(replicates.size)
        )
    tail = (1 - confidence) / 2
    lower, upper = np.quantile(replicates, [tail, 1 - tail])
    return RankCorrelation(
        rho=rho, lower=float(lower), upper=float(upper), count=n, rounds_used=int(replicates.size)
    )
