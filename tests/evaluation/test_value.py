from __future__ import annotations

import math

import numpy as np
import pytest

from evaluation.outcomes import Outcome
from evaluation.value import normalised_reward, win_rate_against

A, B, TIE, BAD = Outcome.A_WINS, Outcome.B_WINS, Outcome.TIE, Outcome.BOTH_BAD


def test_win_rate_against_counts_both_sides_and_ties_as_half() -> None:
    # Given (version 0 against 1): win as A, loss as B, tie, both-bad, win as B, and a battle of 0
    # against 2 that does not count.
    a = [0, 1, 0, 1, 1, 0]
    b = [1, 0, 1, 0, 0, 2]
    outcome = [A, A, TIE, BAD, B, A]
    # When
    as_tie = win_rate_against(a, b, outcome, version=0, opponent=1)
    excluded = win_rate_against(a, b, outcome, version=0, opponent=1, both_bad="exclude")
    # Then: (1 + 0 + ½ + ½ + 1) / 5 and (1 + 0 + ½ + 1) / 4.
    assert as_tie.win_rate == pytest.approx(0.6, abs=1e-15)
    assert (as_tie.wins, as_tie.ties, as_tie.losses) == (2, 2, 1)
    assert excluded.win_rate == 0.625
    assert (excluded.wins, excluded.ties, excluded.losses) == (2, 1, 1)
    assert as_tie.lower <= as_tie.win_rate <= as_tie.upper


def test_win_rate_against_resamples_prompts_when_given() -> None:
    # Given: on prompt 7 version 0 wins all four battles, on prompt 8 it loses both.
    a = [0] * 6
    b = [1] * 6
    outcome = [A, A, A, A, B, B]
    prompts = [7, 7, 7, 7, 8, 8]
    # When
    result = win_rate_against(a, b, outcome, version=0, opponent=1, prompt_ids=prompts, rounds=500)
    # Then: battle-weighted rate 4/6; resamples are {7, 7} → 1, {8, 8} → 0, {7, 8} → 4/6.
    assert result.win_rate == pytest.approx(4 / 6, abs=1e-15)
    assert (result.lower, result.upper) == (0.0, 1.0)


def test_win_rate_against_degenerate_inputs() -> None:
    none = win_rate_against([0], [2], [A], version=0, opponent=1)
    assert math.isnan(none.win_rate) and math.isnan(none.lower)
    assert (none.wins, none.ties, none.losses) == (0, 0, 0)
    itself = win_rate_against([0], [0], [A], version=0, opponent=0)
    assert math.isnan(itself.win_rate)


def test_normalised_reward_is_a_z_score_on_the_reference_set() -> None:
    # Reference 1, 2, 3: mean 2, population std √(2/3).
    result = normalised_reward([2.0, 3.0], [1.0, 2.0, 3.0, np.nan])
    assert result.tolist() == pytest.approx([0.0, 1 / math.sqrt(2 / 3)], abs=1e-15)


def test_normalised_reward_degenerate_inputs() -> None:
    assert np.isnan(normalised_reward([1.0, 2.0], [])).all()
    assert np.isnan(normalised_reward([1.0], [5.0])).all()
    assert np.isnan(normalised_reward([1.0], [5.0, 5.0])).all()
    assert normalised_reward([], [1.0, 2.0]).shape == (0,)
