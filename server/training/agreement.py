"""How a reward model's accuracy compares with the raters' agreement with each other.

A validation accuracy from tens of pairs is a share with a wide interval; several raters' votes on
one comparison are not independent trials, so intervals are clustered by comparison. The human
agreement ceiling (InstructGPT: raters agreed 72.6–77.3 %) rests only on the comparisons two or
more raters judged, so the model is also measured on exactly those comparisons: like with like.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from evaluation.proportions import clustered_wilson_interval
from server.training.models import PreferenceSnapshot


@dataclass(frozen=True)
class Ceiling:
    """How often raters agree with each other, on the validation comparisons two or more judged.

    ``rate`` is the share of agreeing rater pairs (None: no such comparison), over ``comparisons``
    comparisons (their ids in ``comparison_ids``), with a 95 % Wilson interval clustered by
    comparison (the rater pairs of one comparison share votes).
    """

    rate: float | None
    comparisons: int
    interval: tuple[float, float] | None
    comparison_ids: frozenset[int]


def human_agreement_ceiling(*, snapshot: PreferenceSnapshot) -> Ceiling:
    """The ceiling a reward model is judged against (InstructGPT: raters agreed 72.6–77.3 %): on a
    comparison where people disagree, no model can match "the" human answer.

    From the snapshot's own validation pairs, one per vote (ties are not pairs): the votes the
    model is scored on, as frozen, whatever was judged, revoked or paused since. Two votes on a
    comparison agree when they chose the same sample.
    """
    outcomes: dict[int, list[int]] = defaultdict(list)
    for comparison_id, chosen_id in (
        snapshot.pairs.filter(split="validation")
        .order_by("id")
        .values_list("judgment__assignment__comparison_id", "chosen_id")
    ):
        outcomes[comparison_id].append(chosen_id)
    agreeing: list[int] = []
    rater_pairs: list[int] = []
    used: set[int] = set()
    for comparison_id, votes in outcomes.items():
        if len(votes) < 2:
            continue
        used.add(comparison_id)
        combinations = list(itertools.combinations(votes, 2))
        agreeing.append(sum(first == second for first, second in combinations))
        rater_pairs.append(len(combinations))
    total = sum(rater_pairs)
    return Ceiling(
        rate=sum(agreeing) / total if total else None,
        comparisons=len(used),
        interval=clustered_wilson_interval(agreeing, rater_pairs),
        comparison_ids=frozenset(used),
    )


def agreement_on_ceiling_comparisons(
    by_comparison: list[list[int]], ceiling: Ceiling
) -> dict[str, Any] | None:
    """The reward model's agreement with the raters' votes on the ceiling's own comparisons: the
    number to set beside the ceiling (its validation accuracy also counts comparisons one rater
    judged). None when the ceiling rests on no comparison."""
    rows = [(hits, size) for comparison, hits, size in by_comparison if comparison in ceiling.comparison_ids]
    votes = sum(size for _, size in rows)
    if not votes:
        return None
    interval = clustered_wilson_interval([hits for hits, _ in rows], [size for _, size in rows])
    return {
        "accuracy": sum(hits for hits, _ in rows) / votes,
        "interval": list(interval) if interval else None,
        "votes": votes,
        "comparisons": len(rows),
    }


def accuracy_metrics(
    *, snapshot: PreferenceSnapshot, right: Sequence[bool], comparisons: Sequence[int]
) -> dict[str, Any]:
    """A reward model's figures for its metrics, from its verdict on each validation pair
    (``right``) and the comparison each pair's vote judged (``comparisons``, the same order):
    the accuracy's interval clustered by comparison, the ceiling's n and interval, and the model
    on the ceiling's comparisons. ``ceiling`` itself goes to the ``human_agreement_ceiling`` field."""
    counts: dict[int, list[int]] = {}
    for hit, comparison in zip(right, comparisons, strict=True):
        cell = counts.setdefault(comparison, [0, 0])
        cell[0] += int(hit)
        cell[1] += 1
    by_comparison = [[comparison, hits, size] for comparison, (hits, size) in counts.items()]
    interval = clustered_wilson_interval(
        [hits for _, hits, _ in by_comparison], [n for *_, n in by_comparison]
    )
    ceiling = human_agreement_ceiling(snapshot=snapshot)
    return {
        "validation_comparisons": len(by_comparison),
        "validation_accuracy_interval": list(interval) if interval else None,
        "ceiling": ceiling.rate,
        "ceiling_comparisons": ceiling.comparisons,
        "ceiling_interval": list(ceiling.interval) if ceiling.interval else None,
        "on_ceiling_comparisons": agreement_on_ceiling_comparisons(by_comparison, ceiling),
    }
