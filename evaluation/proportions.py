"""Confidence intervals for a proportion: how sure a share of k successes out of n is.

Used for a reward model's validation accuracy, which rests on tens of pairs in a young study:
"90 %" from 10 pairs and from 1,000 pairs must not look alike next to the human ceiling.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

Z_95 = 1.959963984540054  # the standard normal quantile of 0.975: a two-sided 95 % interval


def wilson_interval(successes: int, n: int, z: float = Z_95) -> tuple[float, float] | None:
    """The Wilson score interval (Wilson 1927) of the proportion ``successes / n``.

    Unlike the normal ("Wald") interval it stays inside [0, 1] and does not collapse to a point
    at 0 or n successes, which is where small validation sets land. Returns (low, high); None for
    n = 0 (no data, no interval). Raises ValueError for successes outside [0, n].

    >>> low, high = wilson_interval(9, 10)
    >>> round(low, 4), round(high, 4)
    (0.5958, 0.9821)
    >>> wilson_interval(0, 0) is None
    True
    """
    if n < 0 or not 0 <= successes <= n:
        raise ValueError(f"need 0 <= successes <= n, got {successes} of {n}")
    if n == 0:
        return None
    return _wilson(successes / n, n, z)


def _wilson(share: float, n: float, z: float) -> tuple[float, float]:
    """Wilson's interval for a share observed over ``n`` (possibly effective, fractional) trials."""
    denominator = 1 + z * z / n
    centre = (share + z * z / (2 * n)) / denominator
    half_width = z * math.sqrt(share * (1 - share) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, centre - half_width), min(1.0, centre + half_width)


# Below this many trials of the less frequent outcome, the cluster-robust variance rests on too
# few events to say how the votes of a comparison hang together (at 0 it says nothing at all).
MIN_MINORITY_TRIALS = 10


def clustered_wilson_interval(
    successes: Sequence[int], sizes: Sequence[int], z: float = Z_95
) -> tuple[float, float] | None:
    """The Wilson interval of a share whose trials come in clusters that need not be independent:
    ``successes[c]`` of ``sizes[c]`` trials in cluster c (the votes on one comparison, the rater
    pairs of one comparison). Returns None when there is no trial.

    Wilson's formula is applied at an effective sample size (Kish: n over the design effect),
    estimated with the ratio estimator's cluster-robust variance Σ(y_c − p·m_c)² / n² for the
    share's variance, capped at n. That estimate rests on the trials of the less frequent outcome:
    with none (every trial a success, or none) it is undefined, and with few it is unreliable
    (59 of 60 votes right, the one wrong in a split comparison, shows no correlation that 60 of
    60 would hide). So below ``MIN_MINORITY_TRIALS`` such trials the effective size is drawn,
    in proportion, toward the number of clusters (each comparison counted once, as if its votes
    always agreed): one more success then never narrows the interval from below. Singleton
    clusters give n throughout, i.e. ``wilson_interval`` exactly.

    >>> [round(x, 4) for x in clustered_wilson_interval([2, 0, 2], [2, 2, 2])]  # 2 alike votes each
    [0.2077, 0.9385]
    >>> [round(x, 4) for x in wilson_interval(2, 3)]  # as if 3 votes, not 6
    [0.2077, 0.9385]
    """
    if len(successes) != len(sizes):
        raise ValueError(f"need one size per cluster, got {len(successes)} successes and {len(sizes)} sizes")
    if any(size < 0 or not 0 <= hits <= size for hits, size in zip(successes, sizes, strict=True)):
        raise ValueError("need 0 <= successes <= size in every cluster")
    n = sum(sizes)
    clusters = sum(1 for size in sizes if size > 0)
    if n == 0:
        return None
    hits_total = sum(successes)
    share = hits_total / n
    spread = sum((hits - share * size) ** 2 for hits, size in zip(successes, sizes, strict=True))
    estimate = float(n) if spread == 0.0 else min(float(n), share * (1 - share) * n * n / spread)
    weight = min(1.0, min(hits_total, n - hits_total) / MIN_MINORITY_TRIALS)
    effective = weight * estimate + (1.0 - weight) * clusters
    return _wilson(share, effective, z)
