"""Novelty and value together.

Boden's point is that creativity needs both: novel nonsense and valuable copies are equally
uncreative. These functions keep the two axes separate (no single "creativity score") and report
the trade-off: the Pareto front, and the share of samples above a bar on both (Ritchie's
"novel and good" rate).
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from evaluation.bootstrap import MeanInterval, bootstrap_mean

IntArray = npt.NDArray[np.int64]


def pareto_front(novelty: npt.ArrayLike, value: npt.ArrayLike) -> IntArray:
    """Indices (ascending) of the points that no other point dominates, both axes maximised.

    What: j dominates i when novelty_j ≥ novelty_i and value_j ≥ value_i with at least one strict.
    Duplicated points do not dominate each other, so all copies of a front point are on it.
    O(n log n): sort by novelty descending, then a point is on the front iff its value is the
    largest of its novelty tie group and exceeds every value at strictly greater novelty.
    Degenerate input: no points gives an empty array; a point with NaN on either axis is never on
    the front and dominates nothing; one point gives [0].
    """
    x = np.asarray(novelty, dtype=np.float64).reshape(-1)
    y = np.asarray(value, dtype=np.float64).reshape(-1)
    candidates = np.nonzero(~(np.isnan(x) | np.isnan(y)))[0]
    if candidates.size == 0:
        return np.zeros(0, dtype=np.int64)
    cx, cy = x[candidates], y[candidates]
    # Tie groups of equal novelty, from the highest novelty down.
    levels, group = np.unique(-cx, return_inverse=True)
    group_best = np.full(levels.size, -np.inf)
    np.maximum.at(group_best, group, cy)
    # Best value among strictly higher novelty: exclusive running maximum over the groups.
    better_before = np.concatenate([[-np.inf], np.maximum.accumulate(group_best)[:-1]])
    on_front = (cy == group_best[group]) & (cy > better_before[group])
    return np.sort(candidates[on_front]).astype(np.int64)


def novel_and_valuable_share(
    novelty: npt.ArrayLike, value: npt.ArrayLike, *, novelty_threshold: float, value_threshold: float
) -> float:
    """Share of samples with novelty ≥ ``novelty_threshold`` and value ≥ ``value_threshold``.

    Why: a version can raise mean novelty by producing a few wild samples; this counts how many
    samples clear both bars. Samples with NaN on either axis are left out of numerator and
    denominator (their measurement is undefined, not failed).
    Degenerate input: no samples with both values defined gives NaN.
    """
    x = np.asarray(novelty, dtype=np.float64).reshape(-1)
    y = np.asarray(value, dtype=np.float64).reshape(-1)
    defined = ~(np.isnan(x) | np.isnan(y))
    if not defined.any():
        return math.nan
    both = (x[defined] >= novelty_threshold) & (y[defined] >= value_threshold)
    return float(both.mean())


def novel_and_valuable_interval(
    novelty: npt.ArrayLike,
    value: npt.ArrayLike,
    *,
    novelty_threshold: float,
    value_threshold: float,
    groups: npt.ArrayLike,
    rounds: int = 1000,
    seed: int = 0,
) -> MeanInterval:
    """``novel_and_valuable_share`` with a bootstrap interval over prompts (``groups``: each
    sample's prompt), the cluster bootstrap of every per-sample mean Lovelace reports.

    The share pools the samples of the resampled prompts (ratio of sums), so ``mean`` is exactly
    ``novel_and_valuable_share``; ``count`` is the number of prompts with a defined sample.
    Degenerate input: no sample with both values defined gives NaN mean and bounds, count 0;
    one prompt gives lower = upper = mean.
    """
    x = np.asarray(novelty, dtype=np.float64).reshape(-1)
    y = np.asarray(value, dtype=np.float64).reshape(-1)
    prompts = np.asarray(groups).reshape(-1)
    if not x.shape == y.shape == prompts.shape:
        raise ValueError(f"novelty, value and groups differ in length: {x.size}, {y.size}, {prompts.size}")
    both = ((x >= novelty_threshold) & (y >= value_threshold)).astype(np.float64)
    both[np.isnan(x) | np.isnan(y)] = np.nan  # left out, as in the share
    return bootstrap_mean(both, groups=prompts, weight_by="sample", rounds=rounds, seed=seed)
