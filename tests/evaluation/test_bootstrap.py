from __future__ import annotations

import math

import numpy as np
import pytest

from evaluation.bootstrap import (
    bootstrap_mean,
    cluster_multiplicities,
    clustered_cells,
    percentile_interval,
    resample_clustered_cells,
)


def test_bootstrap_mean_is_reproducible_with_a_seed_and_brackets_the_mean() -> None:
    values = np.random.default_rng(0).normal(size=200)
    first = bootstrap_mean(values, seed=3)
    again = bootstrap_mean(values, seed=3)
    other = bootstrap_mean(values, seed=4)
    assert first == again
    assert first.lower != other.lower
    assert first.mean == pytest.approx(values.mean(), abs=1e-15)
    assert first.lower < first.mean < first.upper
    assert first.count == 200


def test_bootstrap_mean_resamples_prompts_not_samples() -> None:
    # Given: prompt "a" has three samples scoring 0, prompt "b" one sample scoring 1.
    values = [0.0, 0.0, 0.0, 1.0]
    groups = ["a", "a", "a", "b"]
    # When / then: each prompt counts once → 1/2; pooled over samples → 1/4.
    by_prompt = bootstrap_mean(values, groups=groups, rounds=500)
    by_sample = bootstrap_mean(values, groups=groups, weight_by="sample", rounds=500)
    assert by_prompt.mean == 0.5 and by_prompt.count == 2
    assert by_sample.mean == 0.25 and by_sample.count == 2
    # With two prompts a resample holds a twice, b twice, or one of each: prompt means 0, ½, 1.
    assert by_prompt.lower == 0.0 and by_prompt.upper == 1.0


def test_bootstrap_mean_of_constant_values_has_a_zero_width_interval() -> None:
    result = bootstrap_mean([2.5, 2.5, 2.5], groups=[1, 2, 3])
    assert (result.mean, result.lower, result.upper) == (2.5, 2.5, 2.5)


def test_bootstrap_mean_degenerate_inputs() -> None:
    empty = bootstrap_mean([])
    assert math.isnan(empty.mean) and math.isnan(empty.lower) and math.isnan(empty.upper)
    assert empty.count == 0
    only_nan = bootstrap_mean([np.nan, np.nan], groups=[1, 2])
    assert math.isnan(only_nan.mean) and only_nan.count == 0
    one = bootstrap_mean([4.0, np.nan])
    assert (one.mean, one.lower, one.upper, one.count) == (4.0, 4.0, 4.0, 1)
    no_rounds = bootstrap_mean([1.0, 2.0], rounds=0)
    assert no_rounds.mean == 1.5 and math.isnan(no_rounds.lower)


def test_percentile_interval_uses_linear_interpolation() -> None:
    lower, upper = percentile_interval(np.arange(101.0), confidence=0.9)
    assert (float(lower), float(upper)) == pytest.approx((5.0, 95.0), abs=1e-12)


# --- Cluster bootstrap of counts ------------------------------------------------------------------


def test_cluster_multiplicities_draw_n_of_n_clusters_per_round_reproducibly() -> None:
    draws = cluster_multiplicities(7, rounds=500, generator=np.random.default_rng(1))
    again = cluster_multiplicities(7, rounds=500, generator=np.random.default_rng(1))
    assert draws.shape == (7, 500)
    assert np.array_equal(draws, again)
    assert (draws.sum(axis=0) == 7).all()
    assert (draws >= 0).all() and np.array_equal(draws, np.round(draws))
    # Each cluster is drawn once per round on average.
    assert draws.mean() == 1.0
    assert cluster_multiplicities(0, rounds=3, generator=np.random.default_rng(0)).shape == (0, 3)


def test_clustered_cells_aggregates_per_cluster_and_cell() -> None:
    # Given: five observations in cells 0, 0, 2, 1, 0 of prompts "p", "p", "p", "q", "q".
    grouped = clustered_cells([0, 0, 2, 1, 0], ["p", "p", "p", "q", "q"], n_cells=3)
    # Then: groups (p, cell 0) ×2, (p, cell 2) ×1, (q, cell 0) ×1, (q, cell 1) ×1.
    assert grouped.n_first == 2 and grouped.second is None
    assert list(zip(grouped.first.tolist(), grouped.cell.tolist(), grouped.count.tolist(), strict=True)) == [
        (0, 0, 2.0),
        (0, 2, 1.0),
        (1, 0, 1.0),
        (1, 1, 1.0),
    ]
    assert grouped.observations == 5
    with pytest.raises(ValueError):
        clustered_cells([0, 3], [1, 2], n_cells=3)
    with pytest.raises(ValueError):
        clustered_cells([0, 1], [1], n_cells=3)


def test_one_cluster_resamples_to_the_observed_counts_every_round() -> None:
    grouped = clustered_cells([0, 0, 1, 2], [9, 9, 9, 9], n_cells=3)
    resampled = resample_clustered_cells(grouped, rounds=50, generator=np.random.default_rng(0))
    assert np.array_equal(resampled, np.tile([2.0, 1.0, 1.0], (50, 1)))


def test_cluster_resampling_keeps_clusters_whole() -> None:
    # Given: cluster a holds 2 observations of cell 0, cluster b holds 3 of cell 2.
    grouped = clustered_cells([0, 0, 2, 2, 2], ["a", "a", "b", "b", "b"], n_cells=3)
    resampled = resample_clustered_cells(grouped, rounds=400, generator=np.random.default_rng(0))
    # Then: a round holds a twice, a and b, or b twice — never a part of a cluster.
    rounds = {tuple(row) for row in resampled.tolist()}
    assert rounds == {(4.0, 0.0, 0.0), (2.0, 0.0, 3.0), (0.0, 0.0, 6.0)}
    # ... in proportions 1/4, 1/2, 1/4.
    both = float(np.mean(resampled[:, 0] == 2.0))
    assert 0.4 < both < 0.6


def test_two_way_resampling_weights_each_observation_by_both_multiplicities() -> None:
    # Given: 2 prompts × 2 raters, one observation per (prompt, rater), each in its own cell.
    prompts = [0, 0, 1, 1]
    raters = [0, 1, 0, 1]
    grouped = clustered_cells([0, 1, 2, 3], prompts, raters, n_cells=4)
    resampled = resample_clustered_cells(grouped, rounds=300, generator=np.random.default_rng(5))
    # Then: cell (p, r) counts m_prompt[p] · m_rater[r], the multiplicities drawn in that order.
    generator = np.random.default_rng(5)
    prompt_draws = cluster_multiplicities(2, rounds=300, generator=generator)
    rater_draws = cluster_multiplicities(2, rounds=300, generator=generator)
    expected = np.stack(
        [prompt_draws[p] * rater_draws[r] for p, r in zip(prompts, raters, strict=True)], axis=1
    )
    assert np.array_equal(resampled, expected)
    assert set(np.unique(resampled).tolist()) == {0.0, 1.0, 2.0, 4.0}


def test_cluster_resampling_of_no_observations_gives_zeros() -> None:
    grouped = clustered_cells([], [], n_cells=6)
    assert grouped.n_first == 0
    assert np.array_equal(
        resample_clustered_cells(grouped, rounds=4, generator=np.random.default_rng(0)), np.zeros((4, 6))
    )
