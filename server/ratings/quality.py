"""Per-rater quality signals and the tests that pause a rater.

Pure functions over plain rows (no queries here; ``sql.py`` loads the rows), so each signal
can be pinned by a hand-computed test. Outcomes are in comparison terms: "A", "B", "tie",
"both_bad"; a repeat comparison has its samples swapped, so its "A" is the original's "B".

A study's thresholds (60 % of gold checks right, ...) are what an acceptable rater achieves, not
what each handful of answers must show: an honest rater at 70 % misses 2 of 3 checks one time in
five. So a rater is paused only when an exact binomial test rejects "this rater meets the
threshold" at the study's significance level (``Study.quality_alpha``), and only once the study's
minimum number of checks of that kind is reached (``Study.quality_min_checks``).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any, NamedTuple

import numpy as np

# The exact binomial tails that scipy.stats.binomtest's one-sided p-values are (the tests pin them
# against binomtest). scipy.special, not scipy.stats: this module is loaded by every web worker,
# and scipy.stats would add 0.6 s and ~70 MB to each (scipy.special: 0.08 s, ~16 MB).
from scipy.special import bdtr, bdtrc

FLAG_FAST = "fast"
FLAG_RATER_PAUSED = "rater_paused"
# Fairness: never pause on fewer than two checks of a kind, whatever the study says
# (Prolific's rule for attention checks; one slip is not evidence).
MIN_FAIR_CHECKS = 2
# How each reason ends: the rating page adds that the study's staff will look at it.
_PAUSED = "is too many to be bad luck, so it has paused your rating."

_SWAP = {"A": "B", "B": "A", "tie": "tie", "both_bad": "both_bad"}


class QualityRow(NamedTuple):
    """One live judgment of the rater, with what its comparison is. A named tuple: the check after
    a vote builds one per judgment of the rater (hundreds), a frozen dataclass cost 2.5 µs each."""

    comparison_id: int
    kind: str  # regular / gold / repeat
    gold_answer: str  # "A" / "B" / "tie" for gold, "" otherwise
    repeat_of_id: int | None
    outcome: str
    chose_left: bool | None
    active_seconds: float | None
    since_resume: bool  # submitted after staff last resumed the rater (always, if never)


@dataclass(frozen=True)
class Signals:
    judgments: int
    gold_checks: int
    gold_accuracy: float | None  # share of gold answers equal to the known answer
    majority_comparisons: int
    majority_agreement: float | None  # agreement with the other raters' plurality (leave-one-out)
    decisive_judgments: int  # left or right clicked (ties and "both bad" say nothing about sides)
    left_rate: float | None  # share of decisive votes for the left side
    position_bias: float | None  # max(left_rate, 1 - left_rate): 0.5 is none, 1.0 is one side always
    repeat_pairs: int
    self_consistency: float | None  # share of repeats answered as the original (sides swapped back)
    median_active_seconds: float | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class QualityUpdate:
    signals: Signals
    status: str
    paused_reason: str


def _share(hits: list[bool]) -> float | None:
    return float(np.mean(hits)) if hits else None


def compute_signals(rows: list[QualityRow], *, other_outcomes: dict[int, list[str]]) -> Signals:
    """Quality signals of one rater from its live judgments.

    ``other_outcomes`` maps a comparison id to the live outcomes of the *other* raters on it; a
    comparison whose other votes have no strict plurality counts for no agreement. Each share is
    None when there is nothing to measure it on (no gold, no repeat, no decisive vote).
    """
    gold_hits = [row.outcome == row.gold_answer for row in rows if row.kind == "gold"]

    agreement_hits = []
    for row in rows:
        if row.kind != "regular" or not other_outcomes.get(row.comparison_id):
            continue
        ranked = Counter(other_outcomes[row.comparison_id]).most_common(2)
        if len(ranked) == 2 and ranked[0][1] == ranked[1][1]:
            continue  # no plurality among the others
        agreement_hits.append(row.outcome == ranked[0][0])

    decisive = [row.chose_left for row in rows if row.chose_left is not None]
    left_rate = _share([bool(chose) for chose in decisive])

    own_outcome = {row.comparison_id: row.outcome for row in rows if row.kind == "regular"}
    consistency_hits = [
        _SWAP[row.outcome] == own_outcome[row.repeat_of_id]
        for row in rows
        if row.kind == "repeat" and row.repeat_of_id in own_outcome
    ]

    times = [row.active_seconds for row in rows if row.active_seconds is not None]
    return Signals(
        judgments=len(rows),
        gold_checks=len(gold_hits),
        gold_accuracy=_share(gold_hits),
        majority_comparisons=len(agreement_hits),
        majority_agreement=_share(agreement_hits),
        decisive_judgments=len(decisive),
        left_rate=left_rate,
        position_bias=None if left_rate is None else max(left_rate, 1.0 - left_rate),
        repeat_pairs=len(consistency_hits),
        self_consistency=_share(consistency_hits),
        median_active_seconds=float(np.median(times)) if times else None,
    )


def p_value_below(successes: int, trials: int, threshold: float) -> float:
    """One-sided exact binomial test of H0 "the success rate is at least ``threshold``".

    The probability of ``successes`` or fewer in ``trials`` at rate ``threshold``: P(X <= k).
    A threshold of 0 is always met (1.0); at 1, any miss rejects (0.0). No trials: 1.0.
    """
    if trials <= 0:
        return 1.0
    return float(bdtr(successes, trials, threshold))


def p_value_above(successes: int, trials: int, threshold: float) -> float:
    """One-sided exact binomial test of H0 "the success rate is at most ``threshold``": P(X >= k)."""
    if trials <= 0 or successes <= 0:
        return 1.0
    return float(bdtrc(successes - 1, trials, threshold))


def p_value_outside(successes: int, trials: int, low: float, high: float) -> float:
    """Two-sided exact binomial test of H0 "the success rate lies within [low, high]".

    Each side is tested at its own bound and the smaller p-value doubled (each side gets half the
    level), so the test never rejects more often than its level for any rate inside the interval.
    With low = high = 0.5 this is binomtest's two-sided test of a fair coin.
    """
    return min(1.0, 2.0 * min(p_value_above(successes, trials, high), p_value_below(successes, trials, low)))


def _count(share: float | None, trials: int) -> int:
    return 0 if share is None else round(share * trials)


def pause_reason(signals: Signals, study: Any) -> str | None:
    """Why the study pauses this rater, in plain words for the rater; None when it does not.

    Each signal is a binomial test whose null hypothesis is the study's threshold; it may pause
    only once the rater has ``study.quality_min_checks`` (at least two) checks of its kind: gold
    answers, repeated pairs, and for position bias ``min_quality_judgments`` votes for a side.
    """
    level = study.quality_alpha
    enough = max(study.quality_min_checks, MIN_FAIR_CHECKS)

    checks = signals.gold_checks
    right = _count(signals.gold_accuracy, checks)
    if checks >= enough and p_value_below(right, checks, study.min_gold_accuracy) <= level:
        return (
            f"Your answers on {checks - right} of {checks} check pairs disagreed with their known "
            f"answers. This study expects at least {study.min_gold_accuracy:.0%} right, and that "
            f"many misses {_PAUSED}"
        )

    repeats = signals.repeat_pairs
    same = _count(signals.self_consistency, repeats)
    if repeats >= enough and p_value_below(same, repeats, study.min_self_consistency) <= level:
        return (
            f"Of the {repeats} pairs shown to you twice (sides swapped), {repeats - same} got a "
            f"different answer the second time. This study expects at least "
            f"{study.min_self_consistency:.0%} the same, and that many changes {_PAUSED}"
        )

    votes = signals.decisive_judgments
    left = _count(signals.left_rate, votes)
    bias = study.max_position_bias
    if (
        votes >= max(study.min_quality_judgments, enough)
        and p_value_outside(left, votes, 1.0 - bias, bias) <= level
    ):
        side, count = ("left", left) if left * 2 >= votes else ("right", votes - left)
        return (
            f"You chose the {side} side in {count} of {votes} votes, though the two pieces are "
            f"placed at random. This study expects at most {bias:.0%} on one side, and that many "
            f"{_PAUSED}"
        )
    return None
