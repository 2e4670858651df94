from __future__ import annotations

import math

import numpy as np
import pytest

from evaluation.pareto import novel_and_valuable_interval, novel_and_valuable_share, pareto_front


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


def test_novel_and_valuable_interval_pools_samples_and_resamples_prompts() -> None:
    # Prompt 7: three samples over both bars; prompt 8: one sample under the novelty bar and a
    # sample with an undefined value (left out). Pooled: 3 of 4 samples, not the mean of the
    # per-prompt shares (1 and 0). Resampling the two prompts gives {7, 7} → 1, {8, 8} → 0 and
    # a mix → 3/4, each extreme with probability 1/4: the 95% interval is [0, 1].
    novelty = [0.9, 0.6, 0.5, 0.2, 0.9]
    value = [0.1, 0.0, 3.0, 1.0, np.nan]
    prompts = [7, 7, 7, 8, 8]
    share = novel_and_valuable_interval(
        novelty, value, novelty_threshold=0.5, value_threshold=0.0, groups=prompts, rounds=400, seed=0
    )
    assert (
        share.mean
        == 0.75
        == novel_and_valuable_share(novelty, value, novelty_threshold=0.5, value_threshold=0.0)
    )
    assert (share.lower, share.upper, share.count) == (0.0, 1.0, 2)
    # Image novelty is a distance: bars at the memorisation threshold 2.5 and value 0.
    one_prompt = novel_and_valuable_interval(
        [3.0, 2.4, 2.5], [0.5, 0.5, -0.1], novelty_threshold=2.5, value_threshold=0.0, groups=[1, 1, 1]
    )
    assert (one_prompt.mean, one_prompt.lower, one_prompt.upper) == (1 / 3, 1 / 3, 1 / 3)
    empty = novel_and_valuable_interval(
        [np.nan], [1.0], novelty_threshold=0.0, value_threshold=0.0, groups=[1]
    )
    assert math.isnan(empty.mean) and empty.count == 0
    with pytest.raises(ValueError, match="differ in length"):
        novel_and_valuable_interval([1.0], [1.0, 2.0], novelty_threshold=0.0, value_threshold=0.0, groups=[1])
