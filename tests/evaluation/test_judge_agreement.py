"""Agreement of a machine judge with people, next to people's with each other (hand-computed)."""

from __future__ import annotations

from evaluation.judge_agreement import combine_orders, judge_agreement, strict_majority


def test_strict_majority() -> None:
    assert strict_majority(["A", "A", "B"]) == "A"
    assert strict_majority(["B"]) == "B"
    assert strict_majority(["A", "B"]) is None
    assert strict_majority([]) is None


def test_a_judge_that_always_sides_with_the_majority_reaches_more_than_the_raters_themselves() -> None:
    # Three raters per pair, two agree each time: raters agree on 1 of 3 vote pairs each...
    human = {1: ["A", "A", "B"], 2: ["B", "B", "A"]}
    result = judge_agreement(human, {1: "A", 2: "B"})
    assert (result.agree_with_majority, result.with_majority, result.ties) == (2, 2, 0)
    # ... while the judge agrees with 2 of the 3 votes on each pair.
    assert (result.judge_rater_agree, result.judge_rater_pairs) == (4, 6)
    assert (result.rater_rater_agree, result.rater_rater_pairs) == (2, 6)
    assert result.comparisons_with_two_votes == 2


def test_ties_miss_and_unjudged_or_single_vote_pairs_stay_out_of_the_ceiling() -> None:
    human = {1: ["A", "A"], 2: ["B"], 3: ["A", "B"], 4: ["A", "A"]}
    result = judge_agreement(human, {1: "tie", 2: "B", 3: "A"})  # 4 not judged
    assert (result.agree_with_majority, result.with_majority, result.ties) == (1, 2, 1)
    # Pairs 1 and 3 have two votes (2 has one, 4 was not judged).
    assert result.comparisons_with_two_votes == 2
    assert (result.judge_rater_agree, result.judge_rater_pairs) == (1, 4)
    assert (result.rater_rater_agree, result.rater_rater_pairs) == (1, 2)


def test_both_orders_must_agree_for_a_side() -> None:
    assert combine_orders("A", "A") == "A"
    assert combine_orders("B", "B") == "B"
    assert combine_orders("A", "B") == "tie"  # what a judge that prefers a position gives
    assert combine_orders("tie", "tie") == "tie"
    assert combine_orders("A", "tie") == "tie"
    assert combine_orders("A", None) is None
