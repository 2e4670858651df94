"""How much raters agree with each other, and how each rater behaves.

Agreement sets the ceiling that a reward model is judged against (InstructGPT: labelers agree
72–77 % of the time), and per-rater signals find the raters whose votes are noise. Inputs are plain
arrays: reliability data as a [raters, units] matrix with NaN for "did not rate", or one row per
judgment (rater id, unit id, label) in long form.

For pairwise judgments encode the outcome on the ordinal scale A < tie < B with
``ordinal_outcome_codes`` (both-bad votes are not on that scale and become missing).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from evaluation.bootstrap import cluster_multiplicities
from evaluation.outcomes import Outcome

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


def ordinal_outcome_codes(outcome: npt.ArrayLike) -> FloatArray:
    """Map ``Outcome`` codes onto the ordinal scale A-wins = 0 < tie = 1 < B-wins = 2.

    Both-bad becomes NaN (missing): it says nothing about which sample is better.
    Degenerate input: an empty array gives an empty array.
    """
    codes = np.asarray(outcome, dtype=np.int64)
    table = np.full(len(Outcome), np.nan)
    table[Outcome.A_WINS] = 0.0
    table[Outcome.TIE] = 1.0
    table[Outcome.B_WINS] = 2.0
    return np.asarray(table[codes], dtype=np.float64)


def krippendorff_alpha(
    reliability_data: npt.ArrayLike, *, level: Literal["ordinal", "nominal"] = "ordinal"
) -> float:
    """Krippendorff's alpha over a [raters, units] matrix of category values (NaN = missing).

    What: α = 1 − D_observed / D_expected, from the coincidence matrix of pairable values (units
    with at least two ratings), with the nominal distance (0 if equal, else 1) or the ordinal
    distance δ²(c, k) = (Σ_{g=c..k} n_g − (n_c + n_k)/2)² over the sorted observed values.
    Why: unlike Cohen's kappa it handles many raters, missing ratings and ordered categories —
    a rater who says "tie" when others say "A" disagrees less than one who says "B".
    Matches the ``krippendorff`` package.

    Degenerate input: NaN when no unit has two ratings or when all pairable values are the same
    category (no variation to agree on); an empty matrix gives NaN.
    """
    counts = pairable_unit_counts(reliability_data)
    if counts.shape[0] == 0:
        return math.nan
    return float(alpha_from_coincidences(unit_coincidences(counts).sum(axis=0), level=level))


def pairable_unit_counts(reliability_data: npt.ArrayLike) -> FloatArray:
    """counts[u, c]: how many raters gave pairable unit u the c-th observed value (sorted).

    A unit is pairable when at least two raters gave it a value; the others cannot show agreement
    or disagreement and are left out. The categories are the values observed anywhere in the
    matrix, so a category seen only in unpairable units is a column of zeros (it changes nothing).
    Degenerate input: an empty or non-2-D matrix, or one without values, gives a [0, 0] array.
    """
    data = np.asarray(reliability_data, dtype=np.float64)
    if data.ndim != 2 or data.size == 0:
        return np.zeros((0, 0))
    observed = ~np.isnan(data)
    values = np.unique(data[observed])
    if values.size == 0:
        return np.zeros((0, 0))
    category = np.searchsorted(values, np.where(observed, data, values[0]))
    unit = np.broadcast_to(np.arange(data.shape[1]), data.shape)
    counts = np.bincount(
        (unit * values.size + category)[observed], minlength=data.shape[1] * values.size
    ).reshape(data.shape[1], values.size)
    return np.asarray(counts[counts.sum(axis=1) >= 2], dtype=np.float64)


def unit_coincidences(counts: FloatArray) -> FloatArray:
    """Each pairable unit's share of the coincidence matrix, [units, c, c]:
    o^u_ck = (n_uc n_uk − [c = k] n_uc) / (m_u − 1), m_u the unit's number of values.

    Summed over units they give Krippendorff's coincidence matrix; a bootstrap of units weights
    these terms by how often each unit is drawn, without rebuilding anything.
    """
    per_unit = counts.sum(axis=1)
    scaled = counts / (per_unit - 1.0)[:, None]
    outer = scaled[:, :, None] * counts[:, None, :]
    size = counts.shape[1]
    outer[:, np.arange(size), np.arange(size)] -= scaled
    return np.asarray(outer, dtype=np.float64)


def alpha_from_coincidences(
    coincidences: npt.ArrayLike, *, level: Literal["ordinal", "nominal"] = "ordinal"
) -> FloatArray:
    """α = 1 − D_o / D_e from coincidence matrices [..., c, c] (any leading axes, e.g. rounds).

    NaN where the expected disagreement is zero (every pairable value in one category).
    """
    o = np.asarray(coincidences, dtype=np.float64)
    marginals = o.sum(axis=-1)
    total = marginals.sum(axis=-1)
    distance = _squared_distance(marginals, level)
    expected = np.einsum("...c,...k,...ck->...", marginals, marginals, distance) / np.maximum(
        total - 1.0, 1e-300
    )
    observed = np.einsum("...ck,...ck->...", o, distance)
    with np.errstate(invalid="ignore", divide="ignore"):
        alpha = np.where(expected > 0.0, 1.0 - observed / np.where(expected > 0.0, expected, 1.0), np.nan)
    return np.asarray(alpha, dtype=np.float64)


def _squared_distance(marginals: FloatArray, level: Literal["ordinal", "nominal"]) -> FloatArray:
    """δ²(c, k) for marginals [..., c] (the ordinal distance depends on them), [..., c, c]."""
    size = marginals.shape[-1]
    if level == "nominal":
        return np.broadcast_to(1.0 - np.eye(size), (*marginals.shape[:-1], size, size)).astype(np.float64)
    zeros = np.zeros((*marginals.shape[:-1], 1))
    cumulative = np.concatenate([zeros, np.cumsum(marginals, axis=-1)], axis=-1)
    low = np.minimum.outer(np.arange(size), np.arange(size))
    high = np.maximum.outer(np.arange(size), np.arange(size))
    between = cumulative[..., high + 1] - cumulative[..., low]  # Σ_{g=low..high} n_g
    return np.asarray((between - (marginals[..., low] + marginals[..., high]) / 2.0) ** 2, dtype=np.float64)


@dataclass(frozen=True)
class AlphaEstimate:
    """Krippendorff's α with a bootstrap percentile interval over units.

    ``units``: pairable units (rated by two or more raters); ``values``: the ratings in them;
    ``rounds``: bootstrap rounds drawn, ``defined_rounds`` those where α was defined (a resample
    may put every value in one category). NaN α when it cannot be computed; NaN bounds without
    an interval.
    """

    alpha: float
    lower: float
    upper: float
    units: int
    values: int
    rounds: int
    defined_rounds: int
    confidence: float


# Rounds per chunk of the [units, rounds] multiplicity matrix: ~8 MB of float64 at 1,000 units.
_ALPHA_CHUNK_ENTRIES = 1 << 20


def bootstrap_krippendorff_alpha(
    reliability_data: npt.ArrayLike,
    *,
    level: Literal["ordinal", "nominal"] = "ordinal",
    rounds: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> AlphaEstimate:
    """Krippendorff's α (``krippendorff_alpha``) and a percentile bootstrap interval that
    resamples units (for pairwise judgments: comparisons) with replacement.

    What: each unit's coincidences (``unit_coincidences``) are computed once; a round weights them
    by how often the unit was drawn and recomputes α from the sum — all rounds at once, no loop
    over units. Resampling units, not single ratings, keeps each unit's raters together, which is
    where the agreement is (Hayes & Krippendorff 2007 bootstrap units too).
    Why: an α from 15 comparisons and from 1,500 must not look alike.

    Degenerate input: no pairable unit gives α NaN, no interval, units 0; α undefined on the data
    (no variation) gives NaN throughout; rounds where α is undefined are left out of the interval
    (``defined_rounds`` says how many remain); zero rounds gives NaN bounds.
    """
    counts = pairable_unit_counts(reliability_data)
    units = counts.shape[0]
    values = int(counts.sum())
    if units == 0:
        return AlphaEstimate(math.nan, math.nan, math.nan, 0, 0, rounds, 0, confidence)
    terms = unit_coincidences(counts)
    size = counts.shape[1]
    alpha = float(alpha_from_coincidences(terms.sum(axis=0), level=level))
    if not math.isfinite(alpha) or rounds == 0:
        return AlphaEstimate(alpha, math.nan, math.nan, units, values, rounds, 0, confidence)
    flat = terms.reshape(units, size * size)
    generator = np.random.default_rng(seed)
    replicates = np.empty(rounds)
    chunk = max(1, _ALPHA_CHUNK_ENTRIES // units)
    for start in range(0, rounds, chunk):
        drawn = cluster_multiplicities(units, rounds=min(chunk, rounds - start), generator=generator)
        coincidences = (drawn.T @ flat).reshape(-1, size, size)
        replicates[start : start + drawn.shape[1]] = alpha_from_coincidences(coincidences, level=level)
    lower, upper, defined = _finite_percentile_interval(replicates, confidence)
    return AlphaEstimate(alpha, lower, upper, units, values, rounds, defined, confidence)


@dataclass(frozen=True)
class KappaEstimate:
    """Cohen's κ between two raters with a bootstrap percentile interval over the shared items."""

    kappa: float
    lower: float
    upper: float
    items: int
    agreement: float  # raw share of items labelled alike
    rounds: int
    defined_rounds: int
    confidence: float


def bootstrap_cohens_kappa(
    labels_first: npt.ArrayLike,
    labels_second: npt.ArrayLike,
    *,
    rounds: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> KappaEstimate:
    """``cohens_kappa`` with a percentile bootstrap interval that resamples the items both raters
    labelled, all rounds at once (one ``bincount`` of [rounds, items] confusion cells).

    Degenerate input: items with a missing label are dropped; no items gives NaN and items 0;
    κ undefined on the data (both raters always used one and the same label) gives NaN
    throughout; rounds where κ is undefined are left out of the interval.
    """
    a = np.asarray(labels_first, dtype=np.float64).reshape(-1)
    b = np.asarray(labels_second, dtype=np.float64).reshape(-1)
    keep = ~(np.isnan(a) | np.isnan(b))
    a, b = a[keep], b[keep]
    items = int(a.size)
    kappa = cohens_kappa(a, b)
    agreement = float(np.mean(a == b)) if items else math.nan
    if items == 0 or not math.isfinite(kappa) or rounds == 0:
        return KappaEstimate(kappa, math.nan, math.nan, items, agreement, rounds, 0, confidence)
    _, index = np.unique(np.concatenate([a, b]), return_inverse=True)
    size = int(index.max()) + 1
    cell = index[:items] * size + index[items:]
    generator = np.random.default_rng(seed)
    drawn = cell[generator.integers(0, items, size=(rounds, items))]
    confusion = (
        np.bincount(
            (np.arange(rounds)[:, None] * size * size + drawn).reshape(-1), minlength=rounds * size * size
        ).reshape(rounds, size, size)
        / items
    )
    observed = np.trace(confusion, axis1=1, axis2=2)
    chance = np.einsum("rc,rc->r", confusion.sum(axis=2), confusion.sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        replicates = np.where(chance < 1.0, (observed - chance) / (1.0 - chance), np.nan)
    lower, upper, defined = _finite_percentile_interval(replicates, confidence)
    return KappaEstimate(kappa, lower, upper, items, agreement, rounds, defined, confidence)


def _finite_percentile_interval(replicates: FloatArray, confidence: float) -> tuple[float, float, int]:
    finite = replicates[np.isfinite(replicates)]
    if finite.size == 0:
        return math.nan, math.nan, 0
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(finite, [tail, 1.0 - tail])
    return float(low), float(high), int(finite.size)


def cohens_kappa(labels_first: npt.ArrayLike, labels_second: npt.ArrayLike) -> float:
    """Cohen's kappa between two raters' labels of the same items (NaN = missing).

    What: κ = (p_observed − p_chance) / (1 − p_chance), chance from each rater's own label
    frequencies. Why: raw agreement overstates reliability when one label dominates.
    Degenerate input: items where either label is missing are dropped; no items left gives NaN;
    chance agreement of 1 (both raters always used the same single label) gives NaN.
    """
    a = np.asarray(labels_first, dtype=np.float64).reshape(-1)
    b = np.asarray(labels_second, dtype=np.float64).reshape(-1)
    keep = ~(np.isnan(a) | np.isnan(b))
    a, b = a[keep], b[keep]
    if a.size == 0:
        return math.nan
    categories, index = np.unique(np.concatenate([a, b]), return_inverse=True)
    index_a, index_b = index[: a.size], index[a.size :]
    share_a = np.bincount(index_a, minlength=categories.size) / a.size
    share_b = np.bincount(index_b, minlength=categories.size) / a.size
    chance = float(share_a @ share_b)
    observed = float(np.mean(index_a == index_b))
    if chance >= 1.0:
        return math.nan
    return (observed - chance) / (1.0 - chance)


@dataclass(frozen=True)
class RaterAgreement:
    """Per rater (sorted ids): share of judgments that match the majority of the other raters on
    the same unit, and how many judgments had such a majority."""

    raters: npt.NDArray[Any]
    agreement: FloatArray
    compared: IntArray


def agreement_with_leave_one_out_majority(
    rater_ids: npt.ArrayLike, unit_ids: npt.ArrayLike, labels: npt.ArrayLike
) -> RaterAgreement:
    """How often each rater agrees with the majority of the *other* raters of the same unit.

    What: for each judgment (rater, unit, label), the majority label among the other raters'
    judgments of that unit (all of this rater's own judgments of the unit left out); the judgment
    counts when that majority is unique, and agrees when it equals the label.
    Why: a rater far below the others is careless or gaming; leaving the rater out keeps their own
    vote from propping up "the majority".

    Degenerate input: a judgment with no other raters on its unit, or a tied majority, is not
    compared; a rater with nothing compared gets agreement NaN and compared 0; no judgments gives
    empty arrays.
    """
    raters = np.asarray(rater_ids).reshape(-1)
    units = np.asarray(unit_ids).reshape(-1)
    label = np.asarray(labels).reshape(-1)
    if raters.size == 0:
        return RaterAgreement(
            raters=np.zeros(0, dtype=np.int64), agreement=np.zeros(0), compared=np.zeros(0, dtype=np.int64)
        )
    rater_values, rater_index = np.unique(raters, return_inverse=True)
    _, unit_index = np.unique(units, return_inverse=True)
    _, label_index = np.unique(label, return_inverse=True)
    n_units = int(unit_index.max()) + 1
    n_labels = int(label_index.max()) + 1
    unit_counts = np.bincount(unit_index * n_labels + label_index, minlength=n_units * n_labels).reshape(
        n_units, n_labels
    )
    # The rater's own labels on each unit they judged, to take out of the unit's counts.
    _, own_key = np.unique(rater_index * n_units + unit_index, return_inverse=True)
    own_counts = np.bincount(
        own_key * n_labels + label_index, minlength=(own_key.max() + 1) * n_labels
    ).reshape(-1, n_labels)
    others = unit_counts[unit_index] - own_counts[own_key]
    top = others.max(axis=1)
    unique_top = (others == top[:, None]).sum(axis=1) == 1
    compared = unique_top & (top > 0)
    agrees = compared & (others.argmax(axis=1) == label_index)
    n_raters = rater_values.size
    compared_count = np.bincount(rater_index, compared, minlength=n_raters).astype(np.int64)
    agree_count = np.bincount(rater_index, agrees, minlength=n_raters)
    with np.errstate(invalid="ignore", divide="ignore"):
        agreement = np.where(compared_count > 0, agree_count / np.maximum(compared_count, 1), np.nan)
    return RaterAgreement(raters=rater_values, agreement=agreement, compared=compared_count)


@dataclass(frozen=True)
class PositionBias:
    """Per rater (sorted ids): share of decisive votes that picked the sample shown on the left,
    the number of decisive votes, and the two-sided binomial p-value against 1/2."""

    raters: npt.NDArray[Any]
    left_rate: FloatArray
    decisive: IntArray
    p_value: FloatArray


def left_choice_rate(
    rater_ids: npt.ArrayLike, chose_left: npt.ArrayLike, decisive: npt.ArrayLike | None = None
) -> PositionBias:
    """Position bias: how often each rater picks the left sample when they pick one.

    What: ``chose_left[k]`` says whether judgment k picked the left-hand sample; ``decisive[k]``
    (default all True) marks the votes that picked a sample at all (not tie, not both bad).
    Sides are randomised, so an honest rater's rate is near 1/2; the p-value says how surprising
    the observed rate is under 1/2 (exact two-sided binomial test).

    Degenerate input: a rater without decisive votes gets left_rate NaN, decisive 0 and p-value
    NaN; no judgments gives empty arrays.
    """
    raters = np.asarray(rater_ids).reshape(-1)
    left = np.asarray(chose_left, dtype=bool).reshape(-1)
    counted = np.ones_like(left) if decisive is None else np.asarray(decisive, dtype=bool).reshape(-1)
    rater_values, rater_index = np.unique(raters, return_inverse=True)
    votes = np.bincount(rater_index, counted, minlength=rater_values.size).astype(np.int64)
    lefts = np.bincount(rater_index, counted & left, minlength=rater_values.size).astype(np.int64)
    with np.errstate(invalid="ignore", divide="ignore"):
        rate = np.where(votes > 0, lefts / np.maximum(votes, 1), np.nan)
    # Two-sided exact test for p = 1/2: the distribution is symmetric, so double the smaller tail.
    # Imported here: scipy.stats costs the web process ~40 MB, and only this test needs it.
    from scipy import stats

    tail = np.minimum(stats.binom.cdf(lefts, votes, 0.5), stats.binom.sf(lefts - 1, votes, 0.5))
    p_value = np.where(votes > 0, np.minimum(1.0, 2.0 * tail), np.nan)
    return PositionBias(raters=rater_values, left_rate=rate, decisive=votes, p_value=p_value)
