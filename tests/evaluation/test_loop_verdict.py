from __future__ import annotations

import math
import re

import pytest

from evaluation.loop_verdict import (
    RatedInterval,
    beats_beyond_interval,
    labels_to_reach,
    rise_verdict,
    standard_error,
    summary_line,
)


def test_standard_error_is_the_sample_deviation_over_root_n() -> None:
    # Deviations from the mean 0.25 are −0.05, +0.05, 0: variance 0.005 / 2, deviation 0.05.
    assert standard_error([0.2, 0.3, 0.25]) == pytest.approx(0.05 / math.sqrt(3), abs=1e-15)
    assert standard_error([0.4, 0.4]) == 0.0
    assert standard_error([0.4]) is None
    assert standard_error([]) is None


def test_a_flat_line_never_passes() -> None:
    verdict = rise_verdict([0.1, 0.2, 0.3], [0.1, 0.2, 0.3])
    assert (verdict.difference, verdict.standard_error, verdict.rises) == (0.0, 0.0, False)
    assert verdict.verdict == "does not rise: final − round0 = +0.0000 (flat) over 3 seeds"


def test_a_noisy_rise_within_two_standard_errors_fails() -> None:
    # Differences 0.3, −0.1, 0.1: mean 0.1, deviation 0.2, standard error 0.2 / √3 = 0.1155.
    verdict = rise_verdict([1.0, 1.0, 1.0], [1.3, 0.9, 1.1])
    assert verdict.difference == pytest.approx(0.1, abs=1e-12)
    assert verdict.standard_error == pytest.approx(0.2 / math.sqrt(3), abs=1e-12)
    assert verdict.rises is False
    assert verdict.verdict == "does not rise: final − round0 = +0.1000 < 2 × se 0.1155 over 3 seeds"


def test_a_clear_rise_passes() -> None:
    # Differences 0.2, 0.3, 0.25: mean 0.25, standard error 0.05 / √3 = 0.0289.
    verdict = rise_verdict([0.1, 0.2, 0.3], [0.3, 0.5, 0.55])
    assert (verdict.round0, verdict.final, verdict.seeds) == (
        pytest.approx(0.2, abs=1e-12),
        pytest.approx(0.45, abs=1e-12),
        3,
    )
    assert verdict.rises is True
    assert verdict.verdict == "rises: final − round0 = +0.2500 ≥ 2 × se 0.0289 over 3 seeds"


def test_a_rise_of_exactly_two_standard_errors_passes_and_a_fall_fails() -> None:
    # Differences 3 and 1: mean 2, standard error |3 − 1| / 2 = 1.
    assert rise_verdict([0.0, 0.0], [3.0, 1.0]).rises is True
    # The same rise on every seed has standard error 0 and passes; the same fall does not.
    assert rise_verdict([0.0, 1.0], [0.5, 1.5]).rises is True
    fall = rise_verdict([0.5, 1.5], [0.0, 1.0])
    assert (fall.rises, fall.verdict) == (
        False,
        "does not rise: final − round0 = -0.5000 < 2 × se 0.0000 over 2 seeds",
    )


def test_one_seed_cannot_tell() -> None:
    verdict = rise_verdict([0.1], [0.9])
    assert (verdict.rises, verdict.standard_error, verdict.verdict) == (False, None, "cannot tell (1 seed)")
    assert verdict.difference == pytest.approx(0.8, abs=1e-12)


def test_scores_must_come_one_per_seed() -> None:
    with pytest.raises(ValueError, match=r"one round-0 and one final score per seed \(got 2 and 1\)"):
        rise_verdict([0.1, 0.2], [0.3])
    with pytest.raises(ValueError, match=r"\(got 0 and 0\)"):
        rise_verdict([], [])


def test_labels_to_reach_skips_round_zero() -> None:
    curve = [(0.0, 0.5), (66.0, 0.3), (132.0, 0.6)]
    assert labels_to_reach(curve, 0.55) == 132.0
    assert labels_to_reach(curve, 0.2) == 66.0  # round 0 scores 0.5 but used no labels
    assert labels_to_reach(curve, 0.3) == 66.0  # reaching means at least equal
    assert labels_to_reach(curve, 0.7) is None
    assert labels_to_reach([(0.0, 0.9)], 0.1) is None


def test_summary_line_format() -> None:
    # Differences 0.0474 and 0.0400: standard error |0.0474 − 0.0400| / 2 = 0.0037.
    verdict = rise_verdict([0.0340, 0.0300], [0.0814, 0.0700])
    line = summary_line("random", "dpo", verdict, 132.0)
    assert line == "summary random dpo: round0 0.0320 final 0.0757 se 0.0037 labels 132"
    assert re.fullmatch(r"summary \S+ \S+: round0 [\d.]+ final [\d.]+ se [\d.]+ labels \d+", line)
    single = summary_line("active", "rloo", rise_verdict([0.5], [0.25]), 65.5)
    assert single == "summary active rloo: round0 0.5000 final 0.2500 se n/a labels 65.5"


def test_a_child_replaces_its_parent_only_above_the_parents_interval() -> None:
    parent = RatedInterval(lower=960.0, upper=1040.0, battles=80)
    assert beats_beyond_interval(RatedInterval(1041.0, 1140.0, 80), parent) is True
    assert beats_beyond_interval(RatedInterval(1040.0, 1140.0, 80), parent) is False  # touching
    assert beats_beyond_interval(RatedInterval(990.0, 1070.0, 80), parent) is False  # within the noise
    assert beats_beyond_interval(RatedInterval(1100.0, 1140.0, 0), parent) is False  # never rated
    assert beats_beyond_interval(None, parent) is False
    assert beats_beyond_interval(RatedInterval(1100.0, 1140.0, 80), None) is False
    assert beats_beyond_interval(RatedInterval(math.nan, math.nan, 80), parent) is False  # no bootstrap
