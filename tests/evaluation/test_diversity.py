from __future__ import annotations

import math

import numpy as np
import pytest

from evaluation.diversity import (
    bleu,
    distinct_n,
    expectation_adjusted_distinct_n,
    expected_distinct_count,
    self_bleu,
    vendi_score,
)


def test_distinct_n_hand_computed_and_never_spans_two_samples() -> None:
    samples = [[1, 2, 1, 2], [1, 2, 3]]
    # Unigrams: 7 in all, distinct {1, 2, 3} → 3/7.
    assert distinct_n(samples, 1) == 3 / 7
    # Bigrams: (1 2) (2 1) (1 2) | (1 2) (2 3) → 5 in all, distinct 3; (2 1) across samples is not one.
    assert distinct_n(samples, 2) == 3 / 5


def test_distinct_n_degenerate_inputs() -> None:
    assert math.isnan(distinct_n([], 1))
    assert math.isnan(distinct_n([[1, 2]], 3))
    assert math.isnan(distinct_n([[]], 1))
    # Three identical samples: distinct of one / three times its count.
    assert distinct_n([[4, 5, 6]] * 3, 1) == 3 / 9


def test_expectation_adjusted_distinct_hand_computed() -> None:
    # V = 10, C = 7 unigrams: expected distinct = 10 (1 − 0.9^7) = 5.217031; observed distinct 3.
    assert expected_distinct_count(10, 7) == pytest.approx(10 * (1 - 0.9**7), rel=1e-14)
    assert expectation_adjusted_distinct_n([[1, 2, 1, 2], [1, 2, 3]], 1, vocabulary_size=10) == pytest.approx(
        3 / (10 * (1 - 0.9**7)), rel=1e-14
    )
    # A huge n-gram space: every draw is expected to be new, so EAD → distinct-n.
    assert expectation_adjusted_distinct_n([[1, 2, 1, 2]], 2, vocabulary_size=1e18) == pytest.approx(2 / 3)
    assert math.isnan(expectation_adjusted_distinct_n([], 1, vocabulary_size=10))


def test_bleu_with_brevity_penalty_and_smoothing_hand_computed() -> None:
    # Hypothesis (1 2) against reference (1 2 3): p1 = 2/2, p2 = 1/1, no 3- or 4-grams → ε/1 each;
    # c = 2 < r = 3 → BP = exp(1 − 3/2). BLEU = e^−½ · (1 · 1 · 0.1 · 0.1)^¼.
    assert bleu([1, 2], [[1, 2, 3]]) == pytest.approx(math.exp(-0.5) * 0.01**0.25, rel=1e-14)
    # Clipping: hypothesis 1 1 1 1 vs reference 1 1 2 2: p1 = 2/4, p2 = 1/3, p3 = ε/2, p4 = ε/1.
    assert bleu([1, 1, 1, 1], [[1, 1, 2, 2]]) == pytest.approx(
        (0.5 * (1 / 3) * 0.05 * 0.1) ** 0.25, rel=1e-14
    )
    # Closest reference length wins: r = 4 (not 9), so no brevity penalty for c = 4.
    assert bleu([1, 2, 3, 4], [[1, 2, 3, 4], [9] * 9]) == 1.0
    assert bleu([], [[1, 2]]) == 0.0
    assert bleu([1, 2], []) == 0.0


def test_self_bleu_hand_computed() -> None:
    # Given: s1 = a b c d, s2 = a b c e, s3 = a b c d.
    samples = [[1, 2, 3, 4], [1, 2, 3, 5], [1, 2, 3, 4]]
    # s1 and s3 each have an identical sibling → BLEU 1.
    # s2 against {s1, s3}: p1 = 3/4, p2 = 2/3, p3 = 1/2, p4 = ε/1 = 0.1, BP = 1 → 0.025^¼.
    expected = (1.0 + 0.025**0.25 + 1.0) / 3
    assert self_bleu(samples) == pytest.approx(expected, rel=1e-14)


def test_self_bleu_matches_bleu_against_the_other_samples() -> None:
    rng = np.random.default_rng(0)
    samples = [rng.integers(0, 6, size) for size in (5, 9, 12, 3, 8)]
    expected = np.mean([bleu(s, [o for j, o in enumerate(samples) if j != i]) for i, s in enumerate(samples)])
    assert self_bleu(samples) == pytest.approx(expected, rel=1e-14)


def test_self_bleu_degenerate_inputs() -> None:
    assert math.isnan(self_bleu([]))
    assert math.isnan(self_bleu([[1, 2, 3]]))
    assert self_bleu([[1, 2, 3, 4, 5]] * 4) == 1.0
    # An empty sample scores 0 and is a length-0 reference for the other, which then scores ε-smoothed.
    assert self_bleu([[], [1, 2, 3, 4]]) == pytest.approx(
        (0.0 + 0.1 / 4 * 0.1 / 3 * 0.1 / 2 * 0.1) ** 0.25 / 2
    )


def test_vendi_score_hand_computed() -> None:
    # Orthogonal: K = I, K/2 has eigenvalues ½, ½ → exp(ln 2) = 2.
    assert vendi_score([[1.0, 0.0], [0.0, 3.0]]) == pytest.approx(2.0, rel=1e-14)
    # (1,0), (2,0), (0,1): K/3 has eigenvalues 2/3, 1/3 (and 0).
    expected = math.exp(-(2 / 3 * math.log(2 / 3) + 1 / 3 * math.log(1 / 3)))
    assert vendi_score([[1.0, 0.0], [2.0, 0.0], [0.0, 1.0]]) == pytest.approx(expected, rel=1e-12)
    # Same points in 5 dimensions take the n×n route instead of the d×d one.
    padded = [[1.0, 0.0, 0, 0, 0], [2.0, 0.0, 0, 0, 0], [0.0, 1.0, 0, 0, 0]]
    assert vendi_score(padded) == pytest.approx(expected, rel=1e-12)


def test_vendi_score_degenerate_inputs() -> None:
    assert vendi_score(np.zeros((0, 4))) == 0.0
    assert vendi_score([[0.3, 0.4]]) == pytest.approx(1.0, rel=1e-14)
    assert vendi_score([[1.0, 2.0, 3.0]] * 5) == pytest.approx(1.0, rel=1e-12)
    # An all-zero embedding counts as a distinct sample.
    assert vendi_score([[0.0, 0.0], [1.0, 0.0]]) == pytest.approx(2.0, rel=1e-14)
