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


def clustered_wilson_interval(
    successes: Sequence[int], sizes: Sequence[int], z: float = Z_95
) -> tuple[float, float] | None:
    """The Wilson interval of a share whose trials come in clusters that need not be independent:
    ``successes[c]`` of ``sizes[c]`` trials in cluster c (the votes on one comparison, the rater
    pairs of one comparison). Returns None when there is no trial.

    Wilson's formula is applied at the effective sample size n / deff (Kish's design effect),
    with the ratio estimator's cluster-robust variance Σ(y_c − p·m_c)² / n² standing for the
    share's variance. Singleton clusters give n_eff = n, i.e. ``wilson_interval`` exactly; votes
    that always agree within a comparison count about once per comparison. Where that variance
    cannot be estimated (every trial a success, or none), each cluster counts once.

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
    share = sum(successes) / n
    spread = sum((hits - share * size) ** 2 for hits, size in zip(successes, sizes, strict=True))
    if share in (0.0, 1.0) or spread == 0.0:
        effective = float(clusters) if share in (0.0, 1.0) else float(n)
    else:
        effective = min(float(n), share * (1 - share) * n * n / spread)
    return _wilson(share, effective, z)
