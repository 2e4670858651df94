"""Confidence intervals for a proportion: how sure a share of k successes out of n is.

Used for a reward model's validation accuracy, which rests on tens of pairs in a young study:
"90 %" from 10 pairs and from 1,000 pairs must not look alike next to the human ceiling.
"""

from __future__ import annotations

import math

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
    share = successes / n
    denominator = 1 + z * z / n
    centre = (share + z * z / (2 * n)) / denominator
    half_width = z * math.sqrt(share * (1 - share) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, centre - half_width), min(1.0, centre + half_width)
