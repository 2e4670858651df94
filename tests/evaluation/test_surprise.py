from __future__ import annotations

import math

import numpy as np

from evaluation.surprise import compare_surprisal, mean_surprisal


def test_mean_surprisal_pools_tokens() -> None:
    # 1 + 2 + 3 nats over 3 tokens.
    assert mean_surprisal([np.array([-1.0, -2.0]), np.array([-3.0])]) == 2.0


def test_compare_surprisal_hand_computed_with_exact_interval() -> None:
    # Given: every sample token costs 2 nats and every human token 1.5, so every resample agrees.
    samples = [np.full(3, -2.0), np.full(5, -2.0)]
    baseline = [np.full(4, -1.5), np.full(1, -1.5), np.full(2, -1.5)]
    # When
    result = compare_surprisal(samples, baseline, rounds=200)
    # Then
    assert (result.sample_mean, result.baseline_mean, result.difference) == (2.0, 1.5, 0.5)
    assert (result.lower, result.upper) == (0.5, 0.5)
    assert (result.sample_tokens, result.baseline_tokens) == (8, 7)


def test_compare_surprisal_interval_is_reproducible_and_brackets_the_difference() -> None:
    rng = np.random.default_rng(0)
    samples = [-rng.gamma(2.0, 1.5, size) for size in rng.integers(5, 30, 40)]
    baseline = [-rng.gamma(2.0, 1.0, size) for size in rng.integers(5, 30, 40)]
    first = compare_surprisal(samples, baseline, seed=1)
    assert first == compare_surprisal(samples, baseline, seed=1)
    assert first.lower < first.difference < first.upper


def test_compare_surprisal_degenerate_inputs() -> None:
    assert math.isnan(mean_surprisal([]))
    assert math.isnan(mean_surprisal([np.array([])]))
    result = compare_surprisal([], [np.array([-1.0])])
    assert math.isnan(result.sample_mean) and result.baseline_mean == 1.0
    assert math.isnan(result.difference) and math.isnan(result.lower) and math.isnan(result.upper)
    assert result.sample_tokens == 0
