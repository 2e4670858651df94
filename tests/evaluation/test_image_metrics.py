from __future__ import annotations

import math

import numpy as np
import pytest

from evaluation.bootstrap import basic_interval
from evaluation.image_metrics import (
    feature_diversity,
    frechet_distance,
    frechet_distance_from_moments,
    frechet_distance_interval,
    leave_one_out_threshold,
    mean_pairwise_distance,
    memorisation_check,
    memorisation_in_space,
    nearest_neighbours,
)


def test_nearest_neighbours_hand_computed_and_uint8_scaled_to_unit() -> None:
    neighbours = nearest_neighbours([[0.0, 0.0], [3.0, 4.0]], [[3.0, 3.0], [0.0, 1.0], [6.0, 8.0]])
    assert neighbours.index.tolist() == [1, 0]
    assert neighbours.distance.tolist() == [1.0, 1.0]
    # uint8 rows count in [0, 1] units: 255 apart in one value is a distance of 1.
    images = nearest_neighbours(np.array([[0, 0]], dtype=np.uint8), np.array([[255, 0]], dtype=np.uint8))
    assert images.distance.tolist() == [1.0]


def test_nearest_neighbours_leave_one_out_and_degenerate_inputs() -> None:
    points = [[0.0], [1.0], [3.0]]
    loo = nearest_neighbours(points, points, exclude_self=True)
    assert loo.index.tolist() == [1, 0, 1]
    assert loo.distance.tolist() == [1.0, 1.0, 2.0]
    empty = nearest_neighbours(np.zeros((0, 2)), [[1.0, 1.0]])
    assert empty.index.tolist() == [] and empty.distance.tolist() == []
    alone = nearest_neighbours([[5.0]], [[5.0]], exclude_self=True)
    assert alone.index.tolist() == [-1] and alone.distance.tolist() == [math.inf]


def test_leave_one_out_threshold_is_the_quantile_of_neighbour_distances() -> None:
    # Leave-one-out distances of 0, 1, 3, 7 on a line: 1, 1, 2, 4; their median is 1.5.
    assert leave_one_out_threshold([[0.0], [1.0], [3.0], [7.0]], quantile=0.5) == 1.5
    assert math.isnan(leave_one_out_threshold([[0.0]]))


def test_memorisation_counts_copies_and_orders_the_grid_nearest_first() -> None:
    training = np.array([[0.0], [10.0], [20.0], [30.0]])
    # Sample 0 copies training row 2; sample 1 lies 5 from two rows (the lower index wins);
    # sample 2 lies 1 from row 3.
    samples = np.array([[20.0], [5.0], [31.0]])
    space = memorisation_in_space(samples, training, threshold=2.0, rounds=50)
    assert space.neighbour_index.tolist() == [2, 0, 3]
    assert space.distance.tolist() == [0.0, 5.0, 1.0]
    assert space.grid_order.tolist() == [0, 2, 1]
    assert space.near_share.mean == 2 / 3
    assert space.near_share.count == 3
    # Calibrated threshold: every training row is 10 from its neighbour, so the threshold is 10.
    assert memorisation_in_space(samples, training, rounds=10).threshold == 10.0


def test_memorisation_share_resamples_conditions_when_given() -> None:
    training = np.array([[0.0], [10.0]])
    samples = np.array([[0.0], [0.0], [5.0], [5.0]])
    space = memorisation_in_space(
        samples, training, threshold=1.0, conditions=["a", "a", "b", "b"], rounds=200
    )
    # Two conditions, one all near (1.0), one all far (0.0): mean 0.5, interval spans both.
    assert (space.near_share.mean, space.near_share.count) == (0.5, 2)
    assert (space.near_share.lower, space.near_share.upper) == (0.0, 1.0)


def test_memorisation_degenerate_inputs() -> None:
    empty = memorisation_in_space(np.zeros((0, 1)), [[0.0], [1.0]], rounds=10)
    assert empty.near_share.count == 0 and math.isnan(empty.near_share.mean)
    one = memorisation_in_space([[0.0]], [[0.0], [4.0]], rounds=10)
    assert (one.near_share.mean, one.near_share.lower, one.near_share.upper) == (1.0, 1.0, 1.0)
    # One training image: no threshold can be calibrated and nothing counts as near.
    single = memorisation_in_space([[0.0]], [[0.0]], rounds=10)
    assert math.isnan(single.threshold) and single.near_share.mean == 0.0


def test_memorisation_check_uses_both_spaces_and_rejects_mismatched_rows() -> None:
    training_images = np.array([[[[0, 0, 0]]], [[[255, 255, 255]]]], dtype=np.uint8)
    training_features = np.array([[0.0, 0.0], [1.0, 1.0]])
    check = memorisation_check(
        training_images[:1], training_images, np.array([[1.0, 1.0]]), training_features, rounds=10
    )
    assert check.pixels.neighbour_index.tolist() == [0]
    assert check.features.neighbour_index.tolist() == [1]
    with pytest.raises(ValueError, match="same number of rows"):
        memorisation_check(training_images, training_images, training_features[:1], training_features)


def test_mean_pairwise_distance_and_feature_diversity() -> None:
    assert mean_pairwise_distance([[0.0, 0.0], [3.0, 4.0], [0.0, 0.0]]) == pytest.approx(10 / 3, rel=1e-15)
    assert math.isnan(mean_pairwise_distance([[1.0]]))
    whole = feature_diversity([[1.0, 0.0], [0.0, 1.0]])
    assert whole.vendi == pytest.approx(2.0, rel=1e-12)
    assert whole.mean_distance.mean == pytest.approx(math.sqrt(2), rel=1e-15)
    # Within conditions: "a" has two orthogonal rows (Vendi 2, distance √2), "b" two equal rows
    # (Vendi 1, distance 0).
    per_condition = feature_diversity(
        [[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [1.0, 1.0]], conditions=[0, 0, 1, 1], rounds=100
    )
    assert per_condition.vendi == pytest.approx(1.5, rel=1e-12)
    assert per_condition.mean_distance.mean == pytest.approx(math.sqrt(2) / 2, rel=1e-15)
    assert per_condition.mean_distance.count == 2


def test_feature_diversity_degenerate_inputs() -> None:
    empty = feature_diversity(np.zeros((0, 3)))
    assert empty.vendi == 0.0 and math.isnan(empty.mean_distance.mean) and empty.mean_distance.count == 0
    one = feature_diversity([[1.0, 2.0]])
    assert one.vendi == 1.0 and math.isnan(one.mean_distance.mean)


def test_frechet_distance_hand_computed() -> None:
    # One dimension: (μ1 − μ2)² + σ1² + σ2² − 2 σ1 σ2 = 9 + 1 + 4 − 4 = 10.
    assert frechet_distance_from_moments([0.0], [[1.0]], [3.0], [[4.0]]) == 10.0
    # Diagonal covariances: the sum over dimensions of the one-dimensional terms.
    value = frechet_distance_from_moments([0.0, 0.0], np.diag([1.0, 9.0]), [1.0, 0.0], np.diag([4.0, 1.0]))
    assert value == pytest.approx(1 + (1 + 4 - 4) + (9 + 1 - 6), rel=1e-12)
    # From data: {0, 2} has mean 1 and variance 2 (n − 1); {1, 3} mean 2 and variance 2.
    assert frechet_distance([[0.0], [2.0]], [[1.0], [3.0]]) == pytest.approx(1.0, abs=1e-12)
    assert frechet_distance([[0.0, 1.0], [2.0, 5.0], [1.0, 0.0]], [[0.0, 1.0], [2.0, 5.0], [1.0, 0.0]]) == (
        pytest.approx(0.0, abs=1e-9)
    )


def test_frechet_distance_degenerate_inputs_and_interval() -> None:
    assert math.isnan(frechet_distance([[1.0]], [[0.0], [1.0]]))
    assert math.isnan(frechet_distance_interval([[1.0]], [[0.0], [1.0]]).lower)
    with pytest.raises(ValueError, match="feature sizes differ"):
        frechet_distance([[0.0], [1.0]], [[0.0, 1.0], [1.0, 0.0]])
    generator = np.random.default_rng(0)
    samples = generator.normal(1.0, 1.0, size=(200, 2))
    references = generator.normal(0.0, 1.0, size=(400, 2))
    interval = frechet_distance_interval(samples, references, rounds=100, seed=1)
    assert interval.count == 200
    # The normal case (many samples per dimension): the bias is small next to the spread, and
    # the interval holds the plug-in value, the corrected one and the true distance, 2 (a unit
    # shift in each of two dimensions, equal covariances).
    assert interval.lower <= interval.value <= interval.upper
    assert interval.lower <= interval.bias_corrected <= interval.upper
    assert interval.lower < 2.0 < interval.upper
    assert interval.bias_corrected == pytest.approx(interval.value - interval.bias, abs=1e-12)


def test_basic_interval_hand_computed() -> None:
    # Replicates 0, 1, ..., 100: quantiles 2.5 and 97.5 (linear interpolation), mean 50.
    result = basic_interval(60.0, np.arange(101.0))
    assert (result.lower, result.upper) == (120.0 - 97.5, 120.0 - 2.5)
    assert (result.bias, result.bias_corrected) == (-10.0, 70.0)
    # Replicates all above the estimate, as a distance's are: the percentile interval [12.5, 17.5]
    # would exclude 10; the basic one is [2.5, 7.5] around 10 − 5 = 5, and a floor clips it.
    shifted = basic_interval(10.0, np.linspace(12.0, 18.0, 101), confidence=5 / 6, floor=4.0)
    assert (shifted.lower, shifted.upper) == (pytest.approx(4.0), pytest.approx(7.5))
    assert (shifted.bias, shifted.bias_corrected) == (pytest.approx(5.0), pytest.approx(5.0))
    empty = basic_interval(3.0, [math.nan])
    assert math.isnan(empty.lower) and math.isnan(empty.bias) and empty.bias_corrected == 3.0


def test_frechet_interval_resamples_within_conditions_and_is_not_above_its_value() -> None:
    # One sample per condition: nothing to resample within a condition, so every round equals
    # the value (whole-condition resampling would change the mix of conditions instead).
    generator = np.random.default_rng(3)
    references = generator.normal(0.0, 1.0, size=(50, 2))
    one_each = generator.normal(0.5, 1.0, size=(6, 2))
    single = frechet_distance_interval(one_each, references, conditions=np.arange(6), rounds=20, seed=0)
    assert single.lower == single.upper == pytest.approx(single.value, abs=1e-12)
    assert single.bias == pytest.approx(0.0, abs=1e-12)
    # Clustered features, 8 conditions of 40 samples in 3 dimensions: the replicates sit above
    # the value (bias > 0) and the interval is not above it.
    centres = generator.normal(0.0, 4.0, size=(8, 3))
    labels = np.repeat(np.arange(8), 40)
    samples = centres[labels] + generator.normal(0.2, 1.0, size=(320, 3))
    training = np.concatenate([centre + generator.normal(0.0, 1.0, size=(200, 3)) for centre in centres])
    clustered = frechet_distance_interval(samples, training, conditions=labels, rounds=200, seed=0)
    assert clustered.bias > 0
    assert clustered.lower <= clustered.value <= clustered.upper
    assert clustered.lower <= clustered.bias_corrected < clustered.value
    with pytest.raises(ValueError, match="3 conditions for 6 samples"):
        frechet_distance_interval(one_each, references, conditions=[0, 1, 2])
