"""Per-rater quality signals and the study thresholds that pause a rater.

Pure functions over plain rows (no queries here; ``sql.py`` loads the rows), so each signal
can be pinned by a hand-computed test. Outcomes are in comparison terms: "A", "B", "tie",
"both_bad"; a repeat comparison has its samples swapped, so its "A" is the original's "B".
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any, NamedTuple

import numpy as np

FLAG_FAST = "fast"
FLAG_RATER_PAUSED = "rater_paused"
# Fairness: never pause on fewer than two checks of a kind, whatever the study says
# (Prolific's rule for attention checks; one slip is not evidence).
MIN_FAIR_CHECKS = 2

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


def pause_reason(signals: Signals, study: Any) -> str | None:
    """Why the study's thresholds pause this rater, in words for the rater; None when they don't.

    Gold accuracy counts after ``min_gold_checks`` gold answers (at least two); self-consistency
    and position bias count once the rater has ``min_quality_judgments`` judgments (and at least
    two repeats for consistency).
    """
    enough_gold = max(study.min_gold_checks, MIN_FAIR_CHECKS)
    if (
        signals.gold_accuracy is not None
        and signals.gold_checks >= enough_gold
        and signals.gold_accuracy < study.min_gold_accuracy
    ):
        return (
            f"{round(signals.gold_accuracy * signals.gold_checks)} of {signals.gold_checks} check questions "
            f"were answered as expected ({signals.gold_accuracy:.0%}); this study needs "
            f"{study.min_gold_accuracy:.0%}."
        )
    if signals.judgments < study.min_quality_judgments:
        return None
    if (
        signals.self_consistency is not None
        and signals.repeat_pairs >= MIN_FAIR_CHECKS
        and signals.self_consistency < study.min_self_consistency
    ):
        return (
            f"Pairs shown twice got the same answer {signals.self_consistency:.0%} of the time "
            f"({signals.repeat_pairs} pairs); this study needs {study.min_self_consistency:.0%}."
        )
    if (
        signals.position_bias is not None
        and signals.decisive_judgments >= study.min_quality_judgments
        and signals.position_bias > study.max_position_bias
    ):
        side = "left" if (signals.left_rate or 0.0) >= 0.5 else "right"
        return (
            f"The {side} side was chosen in {signals.position_bias:.0%} of {signals.decisive_judgments} "
            f"votes; this study allows at most {study.max_position_bias:.0%} for one side."
        )
    return None
