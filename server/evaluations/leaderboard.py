"""Leaderboard recompute: Bradley–Terry ratings with bootstrap intervals from a study's judgments.

Counted judgments: live, not flagged, from raters who are not paused, on regular comparisons
(gold checks test raters; swapped repeats would count one opinion twice) between versions
enrolled in the study (``selectors.leaderboard_judgments``; the snapshot stores why the others
do not count, ``selectors.leaderboard_count_breakdown``). A tie is half a win; "both bad" counts
as a tie (as Chatbot Arena does). The leaderboard is reported on holdout prompts when any holdout
judgment exists, else on all prompts; the split used is stored with the snapshot.

Intervals: the bootstrap resamples whole prompts by default (the study's ``bootstrap_clusters``:
prompts, raters, both crossed, or none = judgments one by one), since the raters of one prompt
judge the same samples; the snapshot stores the scheme and how many clusters it resampled.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from django.db.models import QuerySet

from evaluation.bradley_terry import (
    bootstrap_bradley_terry,
    bootstrap_bradley_terry_with_covariate,
    count_pair_outcomes,
    count_pair_outcomes_clustered,
    fit_davidson,
    normalised_length_difference,
    win_and_battle_matrices,
    win_rate_matrix,
)
from evaluation.outcomes import Outcome as OutcomeCode
from server.core.exceptions import ApplicationError
from server.evaluations.models import LeaderboardSnapshot
from server.evaluations.selectors import (
    last_judgment_id,
    leaderboard_count_breakdown,
    leaderboard_judgments,
    leaderboard_split,
)
from server.jobs.models import Job
from server.ratings.models import Judgment, Outcome
from server.ratings.selectors import judgments_trusted, with_criterion_outcome
from server.studies.models import BootstrapClusters, Criterion, Study

OUTCOME_CODES = {
    Outcome.A: OutcomeCode.A_WINS,
    Outcome.B: OutcomeCode.B_WINS,
    Outcome.TIE: OutcomeCode.TIE,
    Outcome.BOTH_BAD: OutcomeCode.BOTH_BAD,
}
DEFAULT_ROUNDS = 1000
# Fewer resampled clusters than this and the bootstrap interval is itself unreliable (a
# percentile interval over a handful of prompts is too narrow); the snapshot carries a warning.
MIN_CLUSTERS = 20
# The length-controlled board refits a per-judgment logistic model each round (bench/insights.py:
# ~0.7 s for 200 rounds of 10,000 judgments, ~5 s at 100,000, one core), so it takes at most this
# many rounds; its percentile bounds move by at most ~4 rating points between 200 and 1,000
# rounds there, against intervals ~45 points wide.
STYLE_CONTROL_ROUNDS = 200


def counted_judgments(*, study: Study, split: str | None) -> QuerySet[Judgment]:
    judgments = judgments_trusted(study=study)
    if split is not None:
        judgments = judgments.filter(assignment__comparison__prompt__split=split)
    return judgments


def _rounded(values: np.ndarray, digits: int = 3) -> list[float | None]:
    return [None if not np.isfinite(value) else round(float(value), digits) for value in values]


def leaderboard_compute(
    *,
    study: Study,
    rounds: int = DEFAULT_ROUNDS,
    seed: int = 0,
    bootstrap_clusters: str | None = None,
    job_id: int | None = None,
    criterion_id: int | None = None,
) -> LeaderboardSnapshot:
    """Fit and store a leaderboard snapshot of the study (all numbers come from evaluation/).

    ``bootstrap_clusters``: what the bootstrap resamples whole (``BootstrapClusters``); None
    takes the study's setting. ``criterion_id``: whose answers are rated (None: the study's own
    question); the same judgments count for every criterion, each with its own answer.
    """
    if not 0 <= rounds <= 10_000:
        raise ApplicationError("Bootstrap rounds must be between 0 and 10,000.", extra={"field": "rounds"})
    scheme = bootstrap_clusters or study.bootstrap_clusters
    if scheme not in BootstrapClusters.values:
        raise ApplicationError(
            f"Bootstrap clusters must be one of {', '.join(BootstrapClusters.values)}.",
            extra={"field": "bootstrap_clusters"},
        )
    # Read the newest judgment id first and count up to it: a vote arriving during the bootstrap
    # is then neither counted nor marked as seen, so the scheduler recomputes for it.
    last_seen = last_judgment_id(study=study)
    split = leaderboard_split(study=study)
    versions = list(study.versions.order_by("id"))
    index_of = {version.id: index for index, version in enumerate(versions)}
    rows = list(
        with_criterion_outcome(
            leaderboard_judgments(study=study, split=split).filter(id__lte=last_seen),
            criterion_id=criterion_id,
        )
        .order_by("id")
        .values_list(
            "criterion_outcome",
            "assignment__comparison__sample_a__version_id",
            "assignment__comparison__sample_b__version_id",
            "assignment__comparison__sample_a__token_count",
            "assignment__comparison__sample_b__token_count",
            "assignment__comparison__prompt_id",
            "assignment__rater_id",
        )
    )
    rows = [row for row in rows if row[1] in index_of and row[2] in index_of]
    model_a = np.array([index_of[row[1]] for row in rows], dtype=np.int64)
    model_b = np.array([index_of[row[2]] for row in rows], dtype=np.int64)
    outcome = np.array([int(OUTCOME_CODES[row[0]]) for row in rows], dtype=np.int64)
    prompts = np.array([row[5] for row in rows], dtype=np.int64)
    raters = np.array([row[6] for row in rows], dtype=np.int64)
    cluster_ids = {
        BootstrapClusters.PROMPT: (prompts, None),
        BootstrapClusters.RATER: (raters, None),
        BootstrapClusters.PROMPT_AND_RATER: (prompts, raters),
    }
    if scheme == BootstrapClusters.NONE:
        counts = count_pair_outcomes(model_a, model_b, outcome, n_versions=len(versions))
        clusters = None
    else:
        first, second = cluster_ids[BootstrapClusters(scheme)]
        clustered = count_pair_outcomes_clustered(
            model_a, model_b, outcome, first, second, n_versions=len(versions)
        )
        counts, clusters = clustered.counts, clustered.clusters
    board = bootstrap_bradley_terry(counts, rounds=rounds, seed=seed, clusters=clusters)
    matrices = win_and_battle_matrices(counts)
    win_rates = win_rate_matrix(matrices.wins, matrices.battles)
    overall_win_rate = matrices.wins.sum(axis=1) / np.maximum(matrices.battles.sum(axis=1), 1)
    resampled = _resampled_units(scheme, prompts=prompts, raters=raters, judgments=len(rows))
    warnings = [
        f"The bootstrap resampled only {count} {unit}: with fewer than {MIN_CLUSTERS} the intervals "
        "are too narrow to trust."
        for unit, count in resampled.items()
        if rows and count < MIN_CLUSTERS
    ]

    diagnostics: dict[str, Any] = {}
    if rows:
        davidson = fit_davidson(counts)
        diagnostics["davidson"] = {
            "tie_parameter": round(davidson.tie_parameter, 4),
            "tie_probability_between_equals": round(davidson.tie_probability_between_equals, 4),
        }
        lengths = [(row[3], row[4]) for row in rows]
        if all(a is not None and b is not None for a, b in lengths):
            diagnostics["style_control"] = _style_control(
                versions,
                model_a,
                model_b,
                outcome,
                normalised_length_difference([a for a, _ in lengths], [b for _, b in lengths]),
                (None, None) if scheme == BootstrapClusters.NONE else cluster_ids[BootstrapClusters(scheme)],
                rounds=min(rounds, STYLE_CONTROL_ROUNDS),
                seed=seed,
                battles=board.battles,
            )
        else:
            diagnostics["style_control_missing"] = "some samples have no token count"

    labels = [str(version) for version in versions]
    entries = [
        {
            "version_id": version.id,
            "label": labels[index],
            "rating": _rounded(board.ratings[index : index + 1])[0],
            "lower": _rounded(board.lower[index : index + 1])[0],
            "upper": _rounded(board.upper[index : index + 1])[0],
            "rank": int(board.rank[index]),
            "battles": int(board.battles[index]),
            "win_rate": round(float(overall_win_rate[index]), 4),
            "win_rate_lower": _rounded(board.win_rate_lower[index : index + 1], 4)[0],
            "win_rate_upper": _rounded(board.win_rate_upper[index : index + 1], 4)[0],
        }
        for index, version in enumerate(versions)
    ]
    entries.sort(key=lambda entry: (entry["rank"], -(entry["rating"] or 0)))
    return LeaderboardSnapshot.objects.create(
        study=study,
        criterion_id=criterion_id,
        job_id=job_id,
        judgment_count=len(rows),
        params={
            "rounds": rounds,
            "seed": seed,
            "confidence": 0.95,
            "split": split or "all",
            "ties": "half a win",
            "both_bad": "tie",
            "last_judgment_id": last_seen,
            "bootstrap_clusters": scheme,
            "clusters": resampled,
            "warnings": warnings,
            "breakdown": leaderboard_count_breakdown(
                study=study, split=split, up_to_id=last_seen, criterion_id=criterion_id
            ).as_dict(),
        },
        rows=entries,
        matrices={
            "version_ids": [version.id for version in versions],
            "labels": labels,
            "win_rate": [[None if np.isnan(v) else round(float(v), 4) for v in row] for row in win_rates],
            "battles": matrices.battles.astype(int).tolist(),
            "diagnostics": diagnostics,
        },
    )


def _style_control(
    versions: list[Any],
    model_a: np.ndarray,
    model_b: np.ndarray,
    outcome: np.ndarray,
    length_difference: np.ndarray,
    clusters: tuple[np.ndarray | None, np.ndarray | None],
    *,
    rounds: int,
    seed: int,
    battles: np.ndarray,
) -> dict[str, Any]:
    """Length-controlled ratings with bootstrap intervals and ranks, resampled like the plain
    board (the same clusters), and the length coefficient γ with its interval."""
    board = bootstrap_bradley_terry_with_covariate(
        model_a,
        model_b,
        outcome,
        length_difference,
        clusters[0],
        clusters[1],
        n_versions=len(versions),
        rounds=rounds,
        seed=seed,
    )
    rows = [
        {
            "version_id": version.id,
            "label": str(version),
            "rating": _rounded(board.ratings[index : index + 1])[0],
            "lower": _rounded(board.lower[index : index + 1])[0],
            "upper": _rounded(board.upper[index : index + 1])[0],
            "rank": int(board.rank[index]),
            "battles": int(battles[index]),
        }
        for index, version in enumerate(versions)
    ]
    rows.sort(key=lambda row: (row["rank"], -(row["rating"] or 0)))
    return {
        "length_coefficient": round(board.covariate_coefficient, 4),
        "length_coefficient_interval": _rounded(
            np.array([board.coefficient_lower, board.coefficient_upper]), 4
        ),
        "ratings": dict(zip([v.id for v in versions], _rounded(board.ratings), strict=True)),
        "rows": rows,
        "rounds": rounds,
        "covariate": "(tokens A − tokens B) / (tokens A + tokens B)",
    }


def _resampled_units(
    scheme: str, *, prompts: np.ndarray, raters: np.ndarray, judgments: int
) -> dict[str, int]:
    """How many units the bootstrap resampled, by kind ("prompts", "raters" or "judgments")."""
    if scheme == BootstrapClusters.NONE:
        return {"judgments": judgments}
    units: dict[str, int] = {}
    if scheme in (BootstrapClusters.PROMPT, BootstrapClusters.PROMPT_AND_RATER):
        units["prompts"] = int(np.unique(prompts).size)
    if scheme in (BootstrapClusters.RATER, BootstrapClusters.PROMPT_AND_RATER):
        units["raters"] = int(np.unique(raters).size)
    return units


def leaderboard_recompute_run(*, job: Job, report) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """One leaderboard per criterion of the study: its own question first, then each further one."""
    criteria = [
        None,
        *Criterion.objects.filter(study=job.study).order_by("position").values_list("id", flat=True),
    ]
    # A re-run keeps the boards its first run stored (a retried job must not add copies).
    done = dict(LeaderboardSnapshot.objects.filter(job=job).values_list("criterion_id", "id"))
    ids: list[int] = []
    for step, criterion_id in enumerate(criteria):
        report(step=step, total=len(criteria), message="fitting Bradley–Terry with bootstrap")
        if criterion_id in done:
            ids.append(done[criterion_id])
            continue
        snapshot = leaderboard_compute(
            study=job.study,
            rounds=int(job.params.get("rounds", DEFAULT_ROUNDS)),
            seed=int(job.params.get("seed", 0)),
            bootstrap_clusters=job.params.get("bootstrap_clusters"),
            job_id=job.id,
            criterion_id=criterion_id,
        )
        ids.append(snapshot.id)
    counted = LeaderboardSnapshot.objects.get(id=ids[0]).judgment_count  # the same for every criterion
    report(step=len(criteria), total=len(criteria), message=f"{counted} judgments counted")
    result: dict[str, Any] = {"leaderboard_id": ids[0], "judgments": counted}
    if len(ids) > 1:
        result["leaderboard_ids"] = ids
    return result
