from __future__ import annotations

import math

import numpy as np
import pytest

from workers.ml.active_selection import (
    pair_disagreement,
    preference_margin,
    preference_probabilities,
    select_double_thompson,
    select_most_uncertain,
    select_random,
    select_widest_margin,
)


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


# Three members score four samples. Members agree on samples 0 and 1, and split on 2 versus 3.
MEMBER_SCORES = np.array(
    [
        [2.0, -2.0, 3.0, -3.0],
        [2.0, -2.0, -3.0, 3.0],
        [2.0, -2.0, 0.0, 0.0],
    ]
)
CANDIDATES = np.array([[0, 1], [2, 3], [0, 2], [1, 0]])


def test_preference_probabilities_are_sigmoids_of_score_differences() -> None:
    # given the hand-made ensemble
    # when the probabilities of "a preferred over b" are computed
    probabilities = preference_probabilities(MEMBER_SCORES, CANDIDATES)

    # then each is σ(r_a − r_b) of that member
    assert probabilities.shape == (3, 4)
    assert probabilities[0, 0] == pytest.approx(sigmoid(4.0))
    assert probabilities[1, 1] == pytest.approx(sigmoid(-6.0))
    assert probabilities[2, 2] == pytest.approx(sigmoid(2.0))
    assert probabilities[0, 3] == pytest.approx(sigmoid(-4.0))


def test_disagreement_is_the_variance_across_members() -> None:
    # when
    disagreement = pair_disagreement(MEMBER_SCORES, CANDIDATES)

    # then pairs every member judges alike have none; the split pair has the variance of
    # {σ(6), σ(−6), σ(0)}
    split = [sigmoid(6.0), sigmoid(-6.0), 0.5]
    mixed = [sigmoid(-1.0), sigmoid(5.0), sigmoid(2.0)]
    assert disagreement[0] == pytest.approx(0.0, abs=1e-15)
    assert disagreement[3] == pytest.approx(0.0, abs=1e-15)
    assert disagreement[1] == pytest.approx(np.var(split))
    assert disagreement[2] == pytest.approx(np.var(mixed))


def test_selects_the_pairs_with_highest_disagreement_first() -> None:
    # when the two most uncertain pairs are asked for
    chosen = select_most_uncertain(MEMBER_SCORES, CANDIDATES, 2)

    # then the split pair comes first, the mixed one second
    assert chosen.tolist() == [1, 2]


def test_selection_of_more_pairs_than_candidates_returns_all_in_uncertainty_order() -> None:
    # when more pairs are asked for than exist
    chosen = select_most_uncertain(MEMBER_SCORES, CANDIDATES, 10)

    # then every candidate comes back once, the uncertain ones first
    assert chosen[:2].tolist() == [1, 2]
    assert sorted(chosen.tolist()) == [0, 1, 2, 3]


def test_equal_disagreement_keeps_the_candidates_order() -> None:
    # given the split pair three times, the agreed pair once in between
    candidates = np.array([[2, 3], [0, 1], [2, 3], [2, 3]])

    # when
    chosen = select_most_uncertain(MEMBER_SCORES, candidates, 3)

    # then
    assert chosen.tolist() == [0, 2, 3]


def test_a_single_member_has_no_disagreement() -> None:
    # given one member
    # when
    disagreement = pair_disagreement(MEMBER_SCORES[:1], CANDIDATES)

    # then
    assert disagreement.tolist() == pytest.approx([0.0, 0.0, 0.0, 0.0], abs=1e-15)


def test_random_selection_is_reproducible_and_distinct() -> None:
    # when the baseline draws 5 of 20 candidates twice with one seed and once with another
    first = select_random(20, 5, seed=7)
    again = select_random(20, 5, seed=7)
    other = select_random(20, 5, seed=8)

    # then one seed gives one selection, of distinct valid indices
    assert first.tolist() == again.tolist()
    assert first.tolist() != other.tolist()
    assert len(set(first.tolist())) == 5
    assert all(0 <= index < 20 for index in first.tolist())


def test_random_selection_of_more_than_available_returns_a_permutation() -> None:
    # when
    chosen = select_random(4, 10, seed=0)

    # then
    assert sorted(chosen.tolist()) == [0, 1, 2, 3]


def test_double_thompson_pairs_the_best_samples_of_the_drawn_members() -> None:
    # One member: both draws are it, so each pair joins its best sample with that sample's best
    # remaining partner. Four samples of group 7; by score, 2 > 1 > 3 > 0.
    scores = np.array([[0.0, 2.0, 3.0, 1.0]])
    candidates = np.array([[0, 1], [0, 2], [1, 2], [2, 3], [0, 3], [1, 3]])
    chosen = select_double_thompson(scores, candidates, [7] * 6, per_group=3, seed=0)
    # Best sample 2; its best partner 1 → (1, 2). Then 2 is still the best sample with partners
    # left: 3 (score 1) → (2, 3), then 0 → (0, 2).
    assert chosen.tolist() == [2, 3, 1]


def test_double_thompson_keeps_each_groups_quota_and_asks_no_pair_twice() -> None:
    rng = np.random.default_rng(1)
    scores = rng.normal(size=(5, 12))
    # Two prompts of six samples; every cross pair within a prompt is a candidate.
    candidates = [(a, b) for base in (0, 6) for a in range(base, base + 6) for b in range(a + 1, base + 6)]
    groups = [0 if a < 6 else 1 for a, _ in candidates]
    chosen = select_double_thompson(scores, candidates, groups, per_group=4, seed=3)
    assert len(chosen) == len(set(chosen.tolist())) == 8
    assert sorted(groups[i] for i in chosen) == [0] * 4 + [1] * 4
    assert chosen.tolist() == select_double_thompson(scores, candidates, groups, per_group=4, seed=3).tolist()
    # A group with fewer candidates than its quota gives all of them.
    assert len(select_double_thompson(scores, candidates[:2], [0, 0], per_group=5, seed=0)) == 2


def test_double_thompson_explores_with_the_members_spread() -> None:
    # Two members that disagree: they are drawn as a pair, so each one's favourite faces the
    # other's, (1, 2), whichever is drawn first.
    scores = np.array([[0.0, 5.0, -5.0], [0.0, -5.0, 5.0]])
    candidates = np.array([[0, 1], [0, 2], [1, 2]])
    asked = {int(select_double_thompson(scores, candidates, [0, 0, 0], 1, seed)[0]) for seed in range(20)}
    assert asked == {2}
    # A third member favours sample 0: over seeds every pair comes up.
    scores = np.vstack([scores, [5.0, 0.0, -5.0]])
    asked = {int(select_double_thompson(scores, candidates, [0, 0, 0], 1, seed)[0]) for seed in range(30)}
    assert asked == {0, 1, 2}


def test_double_thompson_refuses_bad_input() -> None:
    with pytest.raises(ValueError, match="one group per candidate pair"):
        select_double_thompson(MEMBER_SCORES, CANDIDATES, [0, 0], 1, 0)
    with pytest.raises(ValueError, match="members, samples"):
        select_double_thompson(np.zeros(4), CANDIDATES, [0] * 4, 1, 0)
    with pytest.raises(ValueError, match="per_group must be non-negative"):
        select_double_thompson(MEMBER_SCORES, CANDIDATES, [0] * 4, -1, 0)


def test_margin_is_the_mean_probabilitys_distance_from_a_coin_flip() -> None:
    margin = preference_margin(MEMBER_SCORES, CANDIDATES)
    # Members agree 0 beats 1 by 4; they cancel out on 2 against 3.
    assert margin[0] == pytest.approx(sigmoid(4.0) - 0.5)
    assert margin[1] == pytest.approx(0.0)
    assert margin[3] == pytest.approx(margin[0])  # the order within a pair does not matter
    expected = abs(np.mean([sigmoid(-1.0), sigmoid(5.0), sigmoid(2.0)]) - 0.5)
    assert margin[2] == pytest.approx(expected)


def test_widest_margin_asks_the_clearest_pairs_first_within_each_groups_quota() -> None:
    # One member; samples 0-5 scored 0, 1, …, 5: the margin grows with the score gap.
    scores = np.arange(6.0)[None, :]
    pairs = np.array([[0, 1], [0, 5], [2, 3], [1, 4], [2, 5], [3, 4], [0, 3]])
    groups = np.array([1, 1, 1, 1, 2, 2, 2])

    chosen = select_widest_margin(scores, pairs, groups, per_group=2, uses_per_sample=3)

    # gaps: 1, 5, 1, 3 | 3, 1, 3 → group 1: [0,5] then [1,4]; group 2: [2,5], then [0,3] (first of
    # the equal gaps in candidate order).
    assert chosen.tolist() == [1, 3, 4, 6]


def test_widest_margin_uses_each_sample_at_most_as_often_as_allowed() -> None:
    scores = np.array([[10.0, 0.0, 1.0, 2.0, 3.0]])
    pairs = np.array([[0, 1], [0, 2], [0, 3], [0, 4], [1, 4]])
    groups = np.zeros(5, dtype=np.int64)

    chosen = select_widest_margin(scores, pairs, groups, per_group=3, uses_per_sample=2)

    # Sample 0, the extreme one, is in the two widest pairs and no more; then the next widest.
    assert chosen.tolist() == [0, 1, 4]
    assert select_widest_margin(scores, pairs, groups, per_group=3, uses_per_sample=1).tolist() == [0]
    assert select_widest_margin(scores, pairs[:0], groups[:0], per_group=3).tolist() == []


def test_widest_margin_refuses_bad_input() -> None:
    with pytest.raises(ValueError, match="one group per candidate pair"):
        select_widest_margin(MEMBER_SCORES, CANDIDATES, [0, 0], per_group=1)
    with pytest.raises(ValueError, match="uses_per_sample positive"):
        select_widest_margin(MEMBER_SCORES, CANDIDATES, [0, 0, 0, 0], per_group=1, uses_per_sample=0)
