from __future__ import annotations

import math
import re

import pytest

from evaluation.loop_verdict import (
    RatedInterval,
    beats_beyond_interval,
    reach_verdict,
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


def test_reach_verdict_pairs_seeds_and_skips_round_zero() -> None:
    # Two seeds; random's final scores 0.50 and 0.60. Round 0 of active already scores higher but
    # used no labels; round 1 falls short on average; round 2 reaches (differences +0.02, +0.04).
    active = [
        [(0.0, 0.9), (96.0, 0.40), (192.0, 0.52)],
        [(0.0, 0.9), (96.0, 0.50), (192.0, 0.64)],
    ]
    verdict = reach_verdict(active, [0.50, 0.60], 288.0)
    assert verdict.labels == 192.0
    assert verdict.share == pytest.approx(192 / 288)
    assert verdict.difference == pytest.approx(0.03)
    assert verdict.standard_error == pytest.approx(0.01)  # |0.02 − 0.04| / 2
    assert not verdict.within_noise  # 0.03 ≥ 2 × 0.01
    assert verdict.verdict == (
        "reached with 192 labels = 67% of random's 288 "
        "(difference from random's final +0.0300 ± se 0.0100 over 2 seeds)"
    )


def test_reach_verdict_says_when_reaching_or_missing_could_be_chance() -> None:
    # Round 1: differences −0.05 and +0.07, mean +0.01 ≥ 0 (reached), se 0.06: within noise.
    chance = reach_verdict([[(0.0, 0.1), (96.0, 0.45)], [(0.0, 0.1), (96.0, 0.67)]], [0.5, 0.6], 288.0)
    assert chance.labels == 96.0 and chance.within_noise
    assert chance.verdict.endswith("over 2 seeds, within noise)")
    # Never reached: the best round's shortfall is reported.
    missed = reach_verdict(
        [[(0.0, 0.1), (96.0, 0.2), (192.0, 0.3)], [(0.0, 0.1), (96.0, 0.2), (192.0, 0.32)]], [0.5, 0.5], 288.0
    )
    assert missed.labels is None and missed.share is None
    assert missed.difference == pytest.approx(-0.19)
    assert not missed.within_noise
    assert missed.verdict == (
        "not reached: best round's difference from random's final -0.1900 ± se 0.0100 over 2 seeds"
    )
    # One seed: nothing can be said about noise.
    single = reach_verdict([[(0.0, 0.1), (96.0, 0.7)]], [0.5], 96.0)
    assert single.standard_error is None and single.within_noise
    assert "one seed" in single.verdict


def test_reach_verdict_refuses_unpaired_input() -> None:
    with pytest.raises(ValueError, match=r"one active curve per random score \(got 1 and 2\)"):
        reach_verdict([[(0.0, 0.1), (96.0, 0.2)]], [0.5, 0.6], 288.0)
    with pytest.raises(ValueError, match="same number of rounds, at least two"):
        reach_verdict([[(0.0, 0.1), (96.0, 0.2)], [(0.0, 0.1)]], [0.5, 0.6], 288.0)
    with pytest.raises(ValueError, match="at least two"):
        reach_verdict([[(0.0, 0.1)]], [0.5], 288.0)


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
