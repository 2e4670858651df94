from __future__ import annotations

import math

import numpy as np
import pytest

from evaluation.bootstrap import bootstrap_mean, percentile_interval


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
