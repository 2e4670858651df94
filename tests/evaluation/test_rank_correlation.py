"""Spearman's rho against hand-computed values, and its bootstrap interval over versions."""

from __future__ import annotations

import math

import numpy as np
import pytest

from evaluation.rank_correlation import average_ranks, bootstrap_spearman, spearman


def test_ranks_share_the_mean_of_tied_places() -> None:
    assert average_ranks([10, 20, 20, 5]).tolist() == [2.0, 3.5, 3.5, 1.0]
    assert average_ranks([[3, 1, 2], [1, 1, 1]]).tolist() == [[3.0, 1.0, 2.0], [2.0, 2.0, 2.0]]


def test_spearman_matches_the_hand_computed_values() -> None:
    # No ties: 1 - 6 * sum(d^2) / (n (n^2 - 1)) with d = (-1, 1, -1, 1, 0): 1 - 6*4/120 = 0.8.
    assert spearman([1, 2, 3, 4, 5], [2, 1, 4, 3, 5]) == pytest.approx(0.8)
    # Ties: ranks (1, 2.5, 2.5, 4) against (1, 2, 3, 4): 4.5 / sqrt(4.5 * 5) = 0.948683.
    assert spearman([1, 2, 2, 3], [10, 20, 30, 40]) == pytest.approx(4.5 / math.sqrt(22.5))
    assert spearman([1, 2, 3], [30, 20, 10]) == pytest.approx(-1.0)
    assert math.isnan(spearman([1, 1, 1], [1, 2, 3]))  # a constant side orders nothing
    with pytest.raises(ValueError, match="same length"):
        spearman([1, 2], [1, 2, 3])


def test_the_bootstrap_interval_of_a_perfect_order_is_one() -> None:
    result = bootstrap_spearman([1, 2, 3], [2, 4, 6], rounds=500, seed=1)

    assert (result.rho, result.lower, result.upper, result.count) == (1.0, 1.0, 1.0, 3)
    # A resample that drew one version three times (1 in 9) has no correlation and is left out.
    assert 410 < result.rounds_used < 480


def test_the_interval_covers_rho_is_reproducible_and_drops_missing_pairs() -> None:
    x = [1, 2, 3, 4, 5, 6, 7, 8, float("nan")]
    y = [2, 1, 4, 3, 6, 5, 8, 7, 100]
    first = bootstrap_spearman(x, y, rounds=1000, seed=7)
    again = bootstrap_spearman(x, y, rounds=1000, seed=7)

    assert first == again
    assert first.count == 8
    # Swapping neighbours: d = ±1 for all eight, 1 - 6*8/(8*63) = 0.904762.
    assert first.rho == pytest.approx(1 - 48 / 504)
    assert first.lower < first.rho <= first.upper <= 1.0


def test_too_few_versions_give_no_interval() -> None:
    result = bootstrap_spearman([1, 2], [1, 2])
    assert (result.rho, result.count, result.rounds_used) == (1.0, 2, 0)
    assert math.isnan(result.lower) and math.isnan(result.upper)
    assert np.isnan(bootstrap_spearman([1], [1]).rho)
