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


@dataclass(frozen=True)
class BasicInterval:
    """A plug-in estimate with its bootstrap bias and basic (pivotal) interval."""

    estimate: float  # the plug-in value, computed on the data as they are
    bias: float  # mean of the replicates minus the estimate: the bootstrap estimate of its bias
    bias_corrected: float  # estimate − bias (clipped at ``floor``)
    lower: float
    upper: float


def basic_interval(
    estimate: float, replicates: npt.ArrayLike, confidence: float = 0.95, *, floor: float | None = None
) -> BasicInterval:
    """Basic (pivotal) bootstrap interval [2θ̂ − q_hi, 2θ̂ − q_lo], with the bias-corrected estimate
    2θ̂ − mean(θ*) (Efron & Tibshirani 1993, ch. 10 and 13.4; Davison & Hinkley 1997, eq. 5.6).

    Why not the percentile interval [q_lo, q_hi]: for a statistic whose bootstrap distribution is
    shifted away from the estimate (θ* − θ̂ has a mean far from 0, as a distance estimated from
    finite samples), the percentile interval repeats the shift instead of undoing it and can lie
    entirely on one side of the estimate. The basic interval takes θ* − θ̂ as a stand-in for
    θ̂ − θ, so the shift is subtracted: it is centred on the bias-corrected estimate (it contains
    it whenever mean(θ*) lies between the two quantiles), and contains θ̂ itself whenever the bias
    is small next to the spread. ``floor`` clips bounds and corrected estimate of a quantity that
    cannot go below it (a distance: 0). Replicates that are NaN are dropped.
    Degenerate input: no finite replicate (or a NaN estimate) gives NaN bias and bounds, and the
    estimate as its own corrected value.

    >>> result = basic_interval(60.0, range(101))  # quantiles 2.5 and 97.5, mean 50
    >>> (result.lower, result.upper, result.bias, result.bias_corrected)
    (22.5, 117.5, -10.0, 70.0)
    """
    values = np.asarray(replicates, dtype=np.float64).reshape(-1)
    values = values[~np.isnan(values)]
    if values.size == 0 or math.isnan(estimate):
        return BasicInterval(estimate, math.nan, estimate, math.nan, math.nan)
    quantile_lower, quantile_upper = (float(bound) for bound in percentile_interval(values, confidence))
    bias = float(values.mean()) - estimate
    lower, upper, corrected = (
        2.0 * estimate - quantile_upper,
        2.0 * estimate - quantile_lower,
        estimate - bias,
    )
    if floor is not None:
        lower, upper, corrected = max(lower, floor), max(upper, floor), max(corrected, floor)
    return BasicInterval(estimate=estimate, bias=bias, bias_corrected=corrected, lower=lower, upper=upper)


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


# ---------------------------------------------------------------------------------------------
# Cluster bootstrap of counts

IntArray = npt.NDArray[np.int64]

# Rounds of the cluster bootstrap are drawn in chunks of about this many [clusters, rounds]
# entries (8 MB of int64): measured on 250,000 clusters and 1M judgments, 4-round chunks took
# ~0.9 s per 200 rounds against ~2.9 s for 40-round (80 MB) chunks, whose fresh pages cost more
# than the arithmetic.
_CLUSTER_CHUNK_ENTRIES = 1 << 20


@dataclass(frozen=True)
class ClusteredCells:
    """Observations aggregated per cluster and cell, the input of a cluster bootstrap of counts.

    Every observation (for a leaderboard: one judgment) falls in one of ``n_cells`` cells (a pair
    of versions and an outcome) and belongs to one cluster of a first kind (its prompt) and,
    optionally, one of a second kind (its rater). Group g holds ``count[g]`` observations of cell
    ``cell[g]`` in cluster ``first[g]`` (of ``n_first``) and, when ``second`` is given, cluster
    ``second[g]`` (of ``n_second``).
    """

    n_cells: int
    cell: IntArray
    count: FloatArray
    first: IntArray
    n_first: int
    second: IntArray | None = None
    n_second: int = 0

    @property
    def observations(self) -> int:
        return int(self.count.sum())


def clustered_cells(
    cell: npt.ArrayLike,
    first: npt.ArrayLike,
    second: npt.ArrayLike | None = None,
    *,
    n_cells: int,
) -> ClusteredCells:
    """Aggregate observations (cell index, first cluster id, optional second cluster id).

    Cluster ids may be any sortable values (prompt ids, rater ids, strings); they are renumbered
    0..k−1. Degenerate input: no observations gives zero groups and zero clusters. Raises
    ValueError when the arrays differ in length or a cell index lies outside [0, n_cells).
    """
    cells = np.asarray(cell, dtype=np.int64).reshape(-1)
    first_ids = np.asarray(first).reshape(-1)
    if first_ids.shape != cells.shape:
        raise ValueError("cell and first must have the same length")
    if cells.size and (cells.min() < 0 or cells.max() >= n_cells):
        raise ValueError("cell index outside [0, n_cells)")
    _, first_index = np.unique(first_ids, return_inverse=True)
    first_index = first_index.reshape(-1).astype(np.int64)
    n_first = int(first_index.max()) + 1 if first_index.size else 0
    if second is None:
        key = first_index * n_cells + cells
        keys, count = np.unique(key, return_counts=True)
        return ClusteredCells(
            n_cells=n_cells,
            cell=(keys % max(n_cells, 1)).astype(np.int64),
            count=count.astype(np.float64),
            first=(keys // max(n_cells, 1)).astype(np.int64),
            n_first=n_first,
        )
    second_ids = np.asarray(second).reshape(-1)
    if second_ids.shape != cells.shape:
        raise ValueError("cell and second must have the same length")
    _, second_index = np.unique(second_ids, return_inverse=True)
    second_index = second_index.reshape(-1).astype(np.int64)
    n_second = int(second_index.max()) + 1 if second_index.size else 0
    rows, inverse = np.unique(
        np.stack([first_index, second_index, cells], axis=1), axis=0, return_inverse=True
    )
    count = np.bincount(inverse.reshape(-1), minlength=rows.shape[0]).astype(np.float64)
    return ClusteredCells(
        n_cells=n_cells,
        cell=rows[:, 2].astype(np.int64),
        count=count,
        first=rows[:, 0].astype(np.int64),
        n_first=n_first,
        second=rows[:, 1].astype(np.int64),
        n_second=n_second,
    )


def cluster_multiplicities(n_clusters: int, *, rounds: int, generator: np.random.Generator) -> FloatArray:
    """How often each of ``n_clusters`` clusters is drawn in each round, [n_clusters, rounds].

    Each round draws ``n_clusters`` clusters uniformly with replacement (the ordinary bootstrap of
    clusters), so every column sums to ``n_clusters`` and follows Multinomial(n, 1/n). Drawn as
    uniform indices and counted with one ``bincount`` (~10x faster than numpy's multinomial,
    which draws binomials one cluster at a time). Degenerate input: no clusters gives [0, rounds].
    """
    if n_clusters == 0 or rounds == 0:
        return np.zeros((n_clusters, rounds))
    index = generator.integers(0, n_clusters, size=(rounds, n_clusters))
    # Flat position cluster · rounds + round (in place): the counts land in [clusters, rounds] order.
    index *= rounds
    index += np.arange(rounds)[:, None]
    counts = np.bincount(index.reshape(-1), minlength=n_clusters * rounds)
    return counts.reshape(n_clusters, rounds).astype(np.float64)


def resample_clustered_cells(
    clustered: ClusteredCells, *, rounds: int, generator: np.random.Generator
) -> FloatArray:
    """Cluster bootstrap of cell counts: [rounds, n_cells] counts, each round a resample of clusters.

    What: one-way (``second`` None): each round draws the clusters with replacement and adds up
    the cell counts of the clusters drawn, a cluster drawn twice counting twice; a cluster is
    always kept whole. Two-way (``second`` given, e.g. prompts × raters): the "pigeonhole"
    bootstrap of Owen (2007, Ann. Appl. Stat. 1:2) — the first and the second clusters are
    resampled independently and each observation is weighted by the product of the multiplicities
    of its two clusters. For crossed random effects it is mildly conservative (its variance adds
    the observation-level noise once more), whereas a one-way bootstrap ignores the other factor.

    Why: observations within a cluster (the several raters of one prompt) share the cluster's
    effect; resampling observations one by one treats them as independent and gives intervals that
    are too narrow (tests/evaluation/test_cluster_bootstrap_coverage.py measures how much).

    Rounds are drawn as [clusters, rounds] multiplicity matrices and summed with one sparse
    product per chunk of rounds; chunks hold ~1M entries (see ``_CLUSTER_CHUNK_ENTRIES``).
    Cost: O(rounds × (clusters + groups)); bench/leaderboard.py times it. Degenerate input: no
    observations gives zeros; a single cluster (one-way) gives the observed counts in every round.
    """
    out = np.zeros((rounds, clustered.n_cells))
    if rounds == 0 or clustered.cell.size == 0:
        return out
    from scipy import sparse  # scipy.sparse only here: bootstrap_mean users need none of it

    groups = clustered.cell.size
    largest = max(clustered.n_first, clustered.n_second, groups if clustered.second is not None else 0)
    chunk = max(1, _CLUSTER_CHUNK_ENTRIES // max(largest, 1))
    if clustered.second is None:
        # counts[cell, round] = Σ_clusters S[cell, cluster] · m[cluster, round]
        scatter = sparse.csr_matrix(
            (clustered.count, (clustered.cell, clustered.first)),
            shape=(clustered.n_cells, clustered.n_first),
        )
    else:
        # counts[cell, round] = Σ_groups S[cell, group] · m1[first(g), round] · m2[second(g), round]
        scatter = sparse.csr_matrix(
            (clustered.count, (clustered.cell, np.arange(groups))), shape=(clustered.n_cells, groups)
        )
    for start in range(0, rounds, chunk):
        size = min(chunk, rounds - start)
        weights = cluster_multiplicities(clustered.n_first, rounds=size, generator=generator)
        if clustered.second is not None:
            second = cluster_multiplicities(clustered.n_second, rounds=size, generator=generator)
            weights = weights[clustered.first] * second[clustered.second]
        out[start : start + size] = np.asarray(scatter @ weights).T
    return out
