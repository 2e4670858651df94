"""What the dashboard and the API show of machine judges: agreement with people, with intervals."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from django.db.models import Count

from evaluation.judge_agreement import judge_agreement
from evaluation.proportions import wilson_interval
from server.judges.models import MachineJudge, MachineJudgment
from server.ratings.models import Outcome
from server.ratings.selectors import judgments_trusted
from server.studies.models import Study


def proportion(successes: int, n: int) -> dict[str, Any]:
    """A share with its n and 95 % Wilson interval (None for n = 0: no data, no figure)."""
    interval = wilson_interval(successes, n)
    return {
        "k": successes,
        "n": n,
        "share": successes / n if n else None,
        "low": interval[0] if interval else None,
        "high": interval[1] if interval else None,
    }


def machine_judges_overview(*, study: Study) -> list[dict[str, Any]]:
    """Each judge of the study with its verdict count, its agreement with the human majority, its
    agreement with single raters next to the raters' agreement with each other on the same
    comparisons (``evaluation.judge_agreement``), and its own leaderboard. Three queries."""
    judges = list(
        MachineJudge.objects.filter(study=study)
        .select_related("reward_model")
        .annotate(verdicts=Count("judgments"))
        .order_by("id")
    )
    if not judges:
        return []
    human: dict[int, list[str]] = defaultdict(list)
    # Only comparisons some judge judged count for any figure (judge_agreement), so only their votes
    # are read: a semi-join in the same query, not every vote of a study with 10^5 of them per view.
    judged = MachineJudgment.objects.filter(judge__in=judges).values("comparison_id")
    for comparison_id, outcome in (
        judgments_trusted(study=study)
        .filter(outcome__in=[Outcome.A, Outcome.B], assignment__comparison_id__in=judged)
        .values_list("assignment__comparison_id", "outcome")
    ):
        human[comparison_id].append(outcome)
    verdicts: dict[int, dict[int, str]] = defaultdict(dict)
    for judge_id, comparison_id, outcome in MachineJudgment.objects.filter(judge__in=judges).values_list(
        "judge_id", "comparison_id", "outcome"
    ):
        verdicts[judge_id][comparison_id] = outcome
    overview = []
    for judge in judges:
        figures = judge_agreement(human, verdicts[judge.id])  # type: ignore[arg-type]
        overview.append(
            {
                "judge": judge,
                "verdicts": judge.verdicts,  # type: ignore[attr-defined]
                "with_majority": proportion(figures.agree_with_majority, figures.with_majority),
                "ties": proportion(figures.ties, figures.with_majority),
                "judge_vs_rater": proportion(figures.judge_rater_agree, figures.judge_rater_pairs),
                "rater_vs_rater": proportion(figures.rater_rater_agree, figures.rater_rater_pairs),
                "comparisons_with_two_votes": figures.comparisons_with_two_votes,
                "leaderboard": judge.leaderboard.get("rows", []),
            }
        )
    return overview
