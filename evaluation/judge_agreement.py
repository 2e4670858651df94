"""How often a machine judge agrees with people, next to how often people agree with each other.

A judge's agreement means little alone: where raters split 50/50 no judge can agree with "the"
answer. Human votes count by side (A or B; ties and "both bad" carry no side); a judge's tie is a
miss. Three figures:

- **judge vs majority**: on each comparison whose human votes have a strict majority, does the
  judge pick that side?
- **judge vs a rater** and **rater vs rater** (the ceiling), on the same comparisons (those with
  two or more human votes): the share of (judge, vote) pairs that agree, and the share of
  (vote, vote) pairs that agree. Both estimate the chance of agreeing with one random rater on
  one of these pairs, so they compare directly; the judge can exceed the ceiling only by siding
  with majorities more consistently than the raters themselves do.

Pairs of votes within one comparison are not independent, so an interval computed on the pair
counts is somewhat narrow; the counts say how much each figure rests on.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

Side = Literal["A", "B"]
MachineOutcome = Literal["A", "B", "tie"]


@dataclass(frozen=True)
class JudgeAgreement:
    agree_with_majority: int
    """Comparisons where the judge picked the strict human majority's side."""
    with_majority: int
    """Comparisons with a strict human majority that the judge judged."""
    ties: int
    """Of those, how many the judge called a tie."""
    judge_rater_agree: int
    """(Judge, vote) pairs that agree, on comparisons with two or more human votes."""
    judge_rater_pairs: int
    rater_rater_agree: int
    """(Vote, vote) pairs that agree, on the same comparisons: the ceiling."""
    rater_rater_pairs: int
    comparisons_with_two_votes: int
    """The comparisons the last four figures rest on."""


def strict_majority(votes: Sequence[Side]) -> Side | None:
    """ "A" or "B" when one side has more votes than the other, else None."""
    a = sum(1 for vote in votes if vote == "A")
    b = len(votes) - a
    return "A" if a > b else "B" if b > a else None


def judge_agreement(
    human_votes: Mapping[int, Sequence[Side]], machine: Mapping[int, MachineOutcome]
) -> JudgeAgreement:
    """Agreement figures of one judge; both mappings are keyed by comparison id. Comparisons the
    judge did not judge count for none of the figures.

    >>> result = judge_agreement({1: ["A", "A", "B"], 2: ["B"], 3: ["A", "B"]}, {1: "A", 2: "A", 3: "B"})
    >>> (result.agree_with_majority, result.with_majority)
    (1, 2)
    >>> (result.judge_rater_agree, result.judge_rater_pairs)
    (3, 5)
    >>> (result.rater_rater_agree, result.rater_rater_pairs)
    (1, 4)
    """
    agree = compared = ties = 0
    judge_agree = judge_pairs = rater_agree = rater_pairs = comparisons = 0
    for comparison, votes in human_votes.items():
        judged = machine.get(comparison)
        if judged is None:
            continue
        majority = strict_majority(votes)
        if majority is not None:
            compared += 1
            agree += judged == majority
            ties += judged == "tie"
        if len(votes) < 2:
            continue
        comparisons += 1
        judge_pairs += len(votes)
        judge_agree += sum(1 for vote in votes if vote == judged)
        a = sum(1 for vote in votes if vote == "A")
        b = len(votes) - a
        rater_pairs += len(votes) * (len(votes) - 1) // 2
        rater_agree += a * (a - 1) // 2 + b * (b - 1) // 2
    return JudgeAgreement(
        agree_with_majority=agree,
        with_majority=compared,
        ties=ties,
        judge_rater_agree=judge_agree,
        judge_rater_pairs=judge_pairs,
        rater_rater_agree=rater_agree,
        rater_rater_pairs=rater_pairs,
        comparisons_with_two_votes=comparisons,
    )


def combine_orders(first: MachineOutcome | None, second: MachineOutcome | None) -> MachineOutcome | None:
    """One verdict from a judge asked in both orders (answers already mapped back to A / B).

    The same side both times is that side; two different sides, or a tie either time, is a tie
    (what position bias alone would produce); an unusable answer in either order gives no verdict.
    """
    if first is None or second is None:
        return None
    return first if first == second and first != "tie" else "tie"
