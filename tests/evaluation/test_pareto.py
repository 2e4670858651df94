from __future__ import annotations

import math

import numpy as np

from evaluation.pareto import novel_and_valuable_share, pareto_front


def test_pareto_front_keeps_non_dominated_points_and_their_duplicates() -> None:
    # Given: (1,1) twice, (2,0) twice, (0,2), (0.5,0.5) dominated by (1,1), (2,-1) dominated by
    # (2,0) at equal novelty, (1,0.5) dominated by (1,1) at equal novelty, and a NaN point.
    novelty = [1.0, 2.0, 0.0, 1.0, 0.5, 2.0, 2.0, 1.0, np.nan]
    value = [1.0, 0.0, 2.0, 1.0, 0.5, 0.0, -1.0, 0.5, 9.0]
    assert pareto_front(novelty, value).tolist() == [0, 1, 2, 3, 5]


def test_pareto_front_equals_brute_force_on_random_points() -> None:
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 6, 80).astype(float), rng.integers(0, 6, 80).astype(float)
    dominated = [
        any(x[j] >= x[i] and y[j] >= y[i] and (x[j] > x[i] or y[j] > y[i]) for j in range(80))
        for i in range(80)
    ]
    assert pareto_front(x, y).tolist() == [i for i in range(80) if not dominated[i]]


def test_pareto_front_degenerate_inputs() -> None:
    assert pareto_front([], []).tolist() == []
    assert pareto_front([0.3], [0.1]).tolist() == [0]
    assert pareto_front([np.nan], [1.0]).tolist() == []
    assert pareto_front([1.0, 1.0], [1.0, 1.0]).tolist() == [0, 1]


def test_novel_and_valuable_share_counts_samples_over_both_thresholds() -> None:
    novelty = [0.9, 0.9, 0.1, 0.5, np.nan]
    value = [1.0, -1.0, 2.0, 0.0, 5.0]
    # At least 0.5 novelty and 0.0 value: samples 0 and 3, of the 4 with both values defined.
    assert novel_and_valuable_share(novelty, value, novelty_threshold=0.5, value_threshold=0.0) == 0.5
    assert math.isnan(novel_and_valuable_share([], [], novelty_threshold=0.5, value_threshold=0.0))
