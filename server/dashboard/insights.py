"""Reads behind the dashboard's insight sections: what the statistics compute, shown with their
uncertainty and their n, and the reason whenever there is nothing to show.

- agreement: Krippendorff's α of one criterion (the one chosen on the page; the study's own
  question by default) with a bootstrap interval over comparisons; Cohen's κ for the rater pairs
  that judged enough of the same comparisons, on the same answers;
- the length-controlled leaderboard and the Davidson tie parameter, as the latest recompute
  stored them for that criterion (``server.evaluations.leaderboard``);
- the "both bad" rate per version, on that criterion's answers;
- the lineage of versions with their ratings round by round, on that criterion's leaderboards;
- rater quality and the reward models' reliability diagrams (SVG, ``server.dashboard.charts``);
- the evaluation report's forest plots;
- rationales and skip reasons, browsable by version and pair.

Nothing here writes. SVG strings are marked safe only where they come from ``charts`` or
``server.evaluations.reports``, which escape every piece of text they draw.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from django.core.paginator import Page, Paginator
from django.db.models import Count, Q, QuerySet
from django.utils.safestring import SafeString, mark_safe

from evaluation.agreement import (
    AlphaEstimate,
    KappaEstimate,
    bootstrap_cohens_kappa,
    bootstrap_krippendorff_alpha,
    ordinal_outcome_codes,
)
from evaluation.outcomes import Outcome as OutcomeCode
from evaluation.proportions import wilson_interval
from server.dashboard.charts import (
    LineageNode,
    QualityMeasure,
    svg_lineage,
    svg_rater_quality,
    svg_reliability,
)
from server.evaluations.models import LeaderboardSnapshot
from server.evaluations.reports import (
    Series,
    latest_evaluations,
    metric_forest_plots,
    scalar_metric_names,
    svg_line_plot,
)
from server.evaluations.selectors import leaderboard_latest
from server.generators.models import GeneratorVersion
from server.jobs.models import Job
from server.ratings.models import Assignment, AssignmentStatus, Judgment, Outcome, Rater
from server.ratings.selectors import judgments_trusted, with_criterion_outcome
from server.studies.models import Study, StudyVersion
from server.studies.selectors import CriterionView, study_criteria
from server.training.models import RewardModel

OUTCOME_CODES = {
    Outcome.A: OutcomeCode.A_WINS,
    Outcome.B: OutcomeCode.B_WINS,
    Outcome.TIE: OutcomeCode.TIE,
    Outcome.BOTH_BAD: OutcomeCode.BOTH_BAD,
}
# Page-time bootstrap: at 10,000 comparisons 500 rounds cost ~0.1 s and put α's percentile bounds
# within 0.001 of 10,000 rounds' (bench/insights.py).
AGREEMENT_ROUNDS = 500
# A κ from fewer shared comparisons than this is noise (its 95 % interval spans most of [−1, 1]).
MIN_KAPPA_OVERLAP = 10
KAPPA_PAIRS_SHOWN = 10
RATERS_PLOTTED = 40
LEADERBOARD_ROUNDS_SHOWN = 30
LINEAGE_NODES_SHOWN = 60
RATIONALES_PER_PAGE = 20
RATIONALES_PREVIEW = 3


def _finite_or_none(value: float) -> float | None:
    return value if isinstance(value, int | float) and math.isfinite(value) else None


# --- Agreement ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AlphaRow:
    """α of one criterion (its key) on one scale."""

    criterion: str
    level: str
    scale: str
    alpha: float | None
    lower: float | None
    upper: float | None
    units: int
    values: int
    rounds: int


@dataclass(frozen=True)
class KappaRow:
    first: str
    second: str
    kappa: float | None
    lower: float | None
    upper: float | None
    items: int
    agreement: float | None


@dataclass
class AgreementSummary:
    criterion: str  # the key of the criterion whose answers these are
    question: str
    judgments: int
    raters: int
    rows: list[AlphaRow] = field(default_factory=list)
    kappas: list[KappaRow] = field(default_factory=list)
    kappa_pairs_considered: int = 0  # rater pairs with any shared comparison
    empty_reason: str = ""


SCALES = (
    ("ordinal", "A < tie < B; “both bad” left out (it is not on that scale)"),
    ("nominal", "A, B, tie, both bad as four unordered answers"),
)


def _alpha_row(criterion: str, level: str, scale: str, estimate: AlphaEstimate) -> AlphaRow:
    return AlphaRow(
        criterion=criterion,
        level=level,
        scale=scale,
        alpha=_finite_or_none(estimate.alpha),
        lower=_finite_or_none(estimate.lower),
        upper=_finite_or_none(estimate.upper),
        units=estimate.units,
        values=estimate.values,
        rounds=estimate.defined_rounds,
    )


def study_agreement(
    *, study: Study, criterion: CriterionView | None = None, rounds: int = AGREEMENT_ROUNDS
) -> AgreementSummary:
    """Agreement among the raters on the judgments every statistic uses (``judgments_trusted``:
    live, unflagged, raters not paused, regular comparisons), all prompts, in their answers to
    ``criterion`` (None: the study's own question). Units are comparisons; the outcome is in the
    comparison's own terms (A / B are its samples, not the sides shown)."""
    criterion = criterion or study_criteria(study=study)[0]
    rows = list(
        with_criterion_outcome(judgments_trusted(study=study), criterion_id=criterion.id).values_list(
            "assignment__comparison_id", "assignment__rater_id", "criterion_outcome"
        )
    )
    rater_ids = sorted({row[1] for row in rows})
    summary = AgreementSummary(
        criterion=criterion.key, question=criterion.question, judgments=len(rows), raters=len(rater_ids)
    )
    if not rows:
        summary.empty_reason = "No judgments yet: agreement needs comparisons judged by two or more raters."
        return summary
    unit_ids = sorted({row[0] for row in rows})
    rater_index = {rater: index for index, rater in enumerate(rater_ids)}
    unit_index = {unit: index for index, unit in enumerate(unit_ids)}
    codes = np.full((len(rater_ids), len(unit_ids)), np.nan)
    for comparison_id, rater_id, outcome in rows:
        codes[rater_index[rater_id], unit_index[comparison_id]] = OUTCOME_CODES[outcome]
    for level, scale in SCALES:
        data = ordinal_outcome_codes(np.nan_to_num(codes, nan=0).astype(int)) if level == "ordinal" else codes
        if level == "ordinal":
            data = np.where(np.isnan(codes), np.nan, data)
        estimate = bootstrap_krippendorff_alpha(data, level=level, rounds=rounds)  # type: ignore[arg-type]
        summary.rows.append(_alpha_row(criterion.key, level, scale, estimate))
    if all(row.units == 0 for row in summary.rows):
        summary.empty_reason = (
            "No comparison has been judged by two or more raters yet: α needs comparisons judged by two or "
            "more raters (the study's overlap sets how many)."
        )
    summary.kappas, summary.kappa_pairs_considered = _kappa_rows(codes, rater_ids, rounds=rounds)
    return summary


def _kappa_rows(codes: np.ndarray, rater_ids: list[int], *, rounds: int) -> tuple[list[KappaRow], int]:
    """Cohen's κ (nominal, four answers) for the rater pairs with the most shared comparisons,
    at least ``MIN_KAPPA_OVERLAP``; and how many pairs shared any comparison."""
    judged = (~np.isnan(codes)).astype(np.float64)
    overlap = judged @ judged.T
    first, second = np.nonzero(np.triu(overlap, 1))
    considered = int(first.size)
    order = np.argsort(-overlap[first, second], kind="stable")
    chosen = [
        (int(first[k]), int(second[k])) for k in order if overlap[first[k], second[k]] >= MIN_KAPPA_OVERLAP
    ][:KAPPA_PAIRS_SHOWN]
    if not chosen:
        return [], considered
    names = dict(
        (rater.id, _rater_name(rater))
        for rater in Rater.objects.filter(
            id__in=[rater_ids[i] for pair in chosen for i in pair]
        ).select_related("user")
    )
    result = []
    for i, j in chosen:
        estimate: KappaEstimate = bootstrap_cohens_kappa(codes[i], codes[j], rounds=rounds)
        result.append(
            KappaRow(
                first=names.get(rater_ids[i], str(rater_ids[i])),
                second=names.get(rater_ids[j], str(rater_ids[j])),
                kappa=_finite_or_none(estimate.kappa),
                lower=_finite_or_none(estimate.lower),
                upper=_finite_or_none(estimate.upper),
                items=estimate.items,
                agreement=_finite_or_none(estimate.agreement),
            )
        )
    return result, considered


def _rater_name(rater: Rater) -> str:
    return rater.user.get_username() if rater.user_id else f"{rater.platform}:{rater.external_id}"


# --- Length control and ties ------------------------------------------------------------------------------


@dataclass
class LengthControl:
    """The latest leaderboard's diagnostics: the Davidson tie parameter and the length-controlled
    board. ``rows`` is empty (with ``missing_reason``) when the board has no intervals for it."""

    board_id: int | None = None
    tie_parameter: float | None = None
    tie_probability_between_equals: float | None = None
    coefficient: float | None = None
    coefficient_lower: float | None = None
    coefficient_upper: float | None = None
    odds_twice_as_long: float | None = None  # odds multiplier of a sample twice as long as its rival
    rounds: int | None = None
    rows: list[dict[str, Any]] = field(default_factory=list)
    missing_reason: str = ""
    tie_missing_reason: str = ""


def length_control(*, board: LeaderboardSnapshot | None) -> LengthControl:
    if board is None:
        return LengthControl(
            missing_reason="No leaderboard yet: recompute it under Actions once judgments arrive.",
            tie_missing_reason="No leaderboard yet.",
        )
    diagnostics = (board.matrices or {}).get("diagnostics") or {}
    result = LengthControl(board_id=board.id)
    davidson = diagnostics.get("davidson")
    if isinstance(davidson, dict):
        result.tie_parameter = davidson.get("tie_parameter")
        result.tie_probability_between_equals = davidson.get("tie_probability_between_equals")
    else:
        result.tie_missing_reason = "The latest leaderboard counted no judgments, so there is no tie model."
    style = diagnostics.get("style_control")
    if not isinstance(style, dict):
        result.missing_reason = "The latest leaderboard has no length-controlled ratings: " + (
            "some samples have no token count (imported samples carry none)."
            if diagnostics.get("style_control_missing")
            else "it counted no judgments."
            if not board.judgment_count
            else "it was computed before they were stored; recompute it."
        )
        return result
    result.coefficient = style.get("length_coefficient")
    interval = style.get("length_coefficient_interval") or [None, None]
    result.coefficient_lower, result.coefficient_upper = interval[0], interval[1]
    if isinstance(result.coefficient, int | float):
        # x = (len_A − len_B) / (len_A + len_B) is 1/3 for a sample twice as long as its rival.
        result.odds_twice_as_long = math.exp(result.coefficient / 3.0)
    result.rounds = style.get("rounds")
    result.rows = list(style.get("rows") or [])
    if not result.rows:
        result.missing_reason = (
            "This leaderboard stored length-controlled ratings without intervals (computed before they "
            "were added); recompute it to see them with intervals and ranks."
        )
    return result


# --- Both bad --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BothBadRow:
    version_id: int
    label: str
    both_bad: int
    judgments: int
    share: float | None
    low: float | None
    high: float | None


def both_bad_rates(*, study: Study, criterion_id: int | None = None) -> list[BothBadRow]:
    """Per enrolled version: the share of trusted judgments of its comparisons (all prompts) that
    said "both bad", with its 95 % Wilson interval. A judgment counts for both of its versions.
    The judgments of one prompt share their samples, so the interval is a floor on the
    uncertainty, as for the head-to-head win rates. ``criterion_id``: whose answers (None: the
    study's own question)."""
    per_pair = (
        with_criterion_outcome(judgments_trusted(study=study), criterion_id=criterion_id)
        .values(
            "assignment__comparison__sample_a__version_id", "assignment__comparison__sample_b__version_id"
        )
        .annotate(total=Count("id"), both_bad=Count("id", filter=Q(criterion_outcome=Outcome.BOTH_BAD)))
        .order_by()
    )
    totals: dict[int, list[int]] = {}
    for row in per_pair:
        for version_id in {
            row["assignment__comparison__sample_a__version_id"],
            row["assignment__comparison__sample_b__version_id"],
        }:
            counts = totals.setdefault(version_id, [0, 0])
            counts[0] += row["both_bad"]
            counts[1] += row["total"]
    rows = []
    for version in study.versions.select_related("generator").order_by("id"):
        both_bad, total = totals.get(version.id, [0, 0])
        interval = wilson_interval(both_bad, total)
        rows.append(
            BothBadRow(
                version_id=version.id,
                label=str(version),
                both_bad=both_bad,
                judgments=total,
                share=both_bad / total if total else None,
                low=interval[0] if interval else None,
                high=interval[1] if interval else None,
            )
        )
    return rows


# --- Lineage and ratings round by round ---------------------------------------------------------------------


@dataclass
class Lineage:
    svg: SafeString | str = ""
    rounds_svg: SafeString | str = ""
    rounds: list[dict[str, Any]] = field(default_factory=list)  # [{"id", "created", "judgments"}]
    table: list[dict[str, Any]] = field(default_factory=list)  # per version: label, cells per round
    trained: int = 0
    empty_reason: str = ""
    rounds_empty_reason: str = ""
    truncated: int = 0  # versions left out of the graph beyond ``LINEAGE_NODES_SHOWN``
    # Why the boxes carry no ratings: the chosen criterion has no leaderboard yet.
    ratings_missing_reason: str = ""


def _edge_label(version: GeneratorVersion, jobs: dict[int, Job]) -> str:
    job = jobs.get(version.training_job_id) if version.training_job_id else None
    method = (job.params or {}).get("method") if job else None
    method = method or (version.training_config or {}).get("method") or "trained"
    source = []
    if version.snapshot_id:
        source.append(f"snapshot #{version.snapshot_id}")
    if version.reward_model_id:
        source.append(f"RM {version.reward_model_id}")
    return " · ".join([str(method), *source])


def _no_board_yet(criterion: CriterionView) -> str:
    """Why there are no ratings of ``criterion``: no recompute has stored its leaderboard yet."""
    return (
        "No leaderboard yet"
        if criterion.is_primary
        else f"No leaderboard of “{criterion.question}” yet (a recompute stores one per question)"
    )


def study_lineage(*, study: Study, criterion: CriterionView | None = None) -> Lineage:
    """The study's versions and their ancestors as a graph (parent → child, labelled with the
    training method and the snapshot or reward model it trained on), each with its latest rating;
    and every version's rating with its interval on each of the last leaderboards. The ratings are
    those of ``criterion`` (None: the study's own question); a criterion without a leaderboard yet
    gets none, with the reason, never another question's."""
    criterion = criterion or study_criteria(study=study)[0]
    enrolled = list(study.versions.select_related("generator").order_by("id"))
    if not enrolled:
        return Lineage(
            empty_reason="No versions enrolled yet.", rounds_empty_reason="No versions enrolled yet."
        )
    versions = {version.id: version for version in enrolled}
    frontier = {version.parent_id for version in enrolled if version.parent_id}
    while frontier - set(versions):
        parents = GeneratorVersion.objects.select_related("generator").filter(id__in=frontier - set(versions))
        found = {parent.id: parent for parent in parents}
        if not found:
            break
        versions.update(found)
        frontier = {parent.parent_id for parent in found.values() if parent.parent_id}
    ordered = sorted(versions.values(), key=lambda version: version.id)
    truncated = max(0, len(ordered) - LINEAGE_NODES_SHOWN)
    ordered = ordered[:LINEAGE_NODES_SHOWN]
    jobs = {
        job.id: job
        for job in Job.objects.filter(id__in=[v.training_job_id for v in ordered if v.training_job_id])
    }
    of_criterion = (
        study.leaderboards.filter(criterion__isnull=True)
        if criterion.is_primary
        else study.leaderboards.filter(criterion_id=criterion.id)
    )
    boards = list(of_criterion.order_by("-created_at", "-id")[:LEADERBOARD_ROUNDS_SHOWN])[::-1]
    latest = {row.get("version_id"): row for row in (boards[-1].rows if boards else [])}
    enrolled_ids = set(StudyVersion.objects.filter(study=study).values_list("version_id", flat=True))
    nodes = [
        LineageNode(
            id=version.id,
            label=str(version),
            kind=version.kind,
            parent_id=version.parent_id,
            enrolled=version.id in enrolled_ids,
            rating=latest.get(version.id, {}).get("rating"),
            lower=latest.get(version.id, {}).get("lower"),
            upper=latest.get(version.id, {}).get("upper"),
            rank=latest.get(version.id, {}).get("rank"),
            battles=latest.get(version.id, {}).get("battles"),
            edge_label=_edge_label(version, jobs) if version.parent_id else "",
        )
        for version in ordered
    ]
    lineage = Lineage(
        # safe: charts escape every label
        svg=mark_safe(svg_lineage(nodes, leaderboard=bool(boards))),
        trained=sum(1 for version in ordered if version.parent_id),
        truncated=truncated,
    )
    if not boards:
        lineage.ratings_missing_reason = f"{_no_board_yet(criterion)}: the boxes carry no ratings."
        lineage.rounds_empty_reason = (
            f"{_no_board_yet(criterion)}: ratings round by round start with the first recompute."
        )
        return lineage
    lineage.rounds = [
        {
            "id": board.id,
            "created": board.created_at.strftime("%Y-%m-%d %H:%M"),
            "judgments": board.judgment_count,
        }
        for board in boards
    ]
    series = []
    for version in enrolled:
        cells, points, band = [], [], []
        for number, board in enumerate(boards, start=1):
            row = next((row for row in board.rows if row.get("version_id") == version.id), None)
            if row is not None and row.get("battles") == 0:
                row = None  # on the board, but rated by the prior alone: nothing to show
            cells.append(row)
            if row and isinstance(row.get("rating"), int | float):
                points.append((float(number), float(row["rating"])))
                if isinstance(row.get("lower"), int | float) and isinstance(row.get("upper"), int | float):
                    band.append((float(number), float(row["lower"]), float(row["upper"])))
        lineage.table.append({"version_id": version.id, "label": str(version), "cells": cells})
        if points:
            series.append(Series(str(version), points, band or None))
    if len(boards) < 2:
        lineage.rounds_empty_reason = (
            "One leaderboard so far: the plot of ratings over rounds starts with the second."
        )
    elif series:
        lineage.rounds_svg = mark_safe(  # safe: reports' plots escape every label
            svg_line_plot(
                series, title="Ratings round by round", x_label="leaderboard round", y_label="rating"
            )
        )
    return lineage


# --- Rater quality ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RaterPoint:
    name: str
    status: str
    quality: dict[str, Any]
    judgments: int


@dataclass
class RaterQuality:
    svg: SafeString | str = ""
    shown: int = 0
    total: int = 0
    plotted: int = RATERS_PLOTTED  # at most this many raters are considered
    empty_reason: str = ""


def rater_quality(*, study: Study) -> RaterQuality:
    """Gold accuracy, agreement with the others' majority and self-consistency per rater (the
    quality signals the pause rule tests), as dots with 95 % Wilson intervals, the raters with the
    most judgments first, paused ones in red."""
    raters = (
        Rater.objects.filter(study=study)
        .select_related("user")
        .annotate(
            judgment_count=Count(
                "assignments__judgments", filter=Q(assignments__judgments__revoked_at__isnull=True)
            )
        )
        .order_by("-judgment_count", "id")
    )
    total = raters.count()
    if total == 0:
        return RaterQuality(empty_reason="No raters yet.")
    points = [
        RaterPoint(
            name=_rater_name(rater),
            status=rater.status,
            quality=rater.quality or {},
            judgments=rater.judgment_count,
        )
        for rater in raters[:RATERS_PLOTTED]
    ]
    measured = [
        p
        for p in points
        if any(p.quality.get(key) for key in ("gold_checks", "majority_comparisons", "repeat_pairs"))
    ]
    if not measured:
        return RaterQuality(
            total=total,
            empty_reason="No quality signal yet: they come from gold checks, comparisons shared with other "
            "raters "
            "and repeated pairs, computed as judgments arrive.",
        )
    measures = [
        QualityMeasure("gold_accuracy", "gold_checks", "gold checks right", study.min_gold_accuracy),
        QualityMeasure("majority_agreement", "majority_comparisons", "agrees with the others", None),
        QualityMeasure(
            "self_consistency", "repeat_pairs", "repeats answered alike", study.min_self_consistency
        ),
    ]
    return RaterQuality(
        svg=mark_safe(svg_rater_quality(measured, measures)),  # safe: charts escape names
        shown=len(measured),
        total=total,
    )


# --- Reward models ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReliabilityPanel:
    reward_model_id: int
    label: str
    ece: float | None
    pairs: int | None
    svg: SafeString | str
    empty_reason: str


def reliability_diagrams(*, study: Study) -> list[ReliabilityPanel]:
    panels = []
    for model in RewardModel.objects.filter(study=study).order_by("created_at", "id"):
        metrics = model.metrics if isinstance(model.metrics, dict) else {}
        bins = metrics.get("reliability_bins")
        svg = svg_reliability(bins, title=f"Reliability of RM {model.id}") if isinstance(bins, list) else ""
        if bins is None:
            reason = "No bins recorded: this model was trained before reliability bins were stored."
        elif not svg:
            reason = "No validation pairs: the snapshot kept none apart for validation."
        else:
            reason = ""
        panels.append(
            ReliabilityPanel(
                reward_model_id=model.id,
                label=f"RM {model.id}",
                ece=model.expected_calibration_error,
                pairs=metrics.get("validation_pairs"),
                svg=mark_safe(svg),  # safe: charts escape every label
                empty_reason=reason,
            )
        )
    return panels


# --- Evaluations --------------------------------------------------------------------------------------------


def forest_plots(*, study: Study) -> list[tuple[str, SafeString]]:
    """The evaluation report's per-metric forest plots (one row per version, 95 % intervals)."""
    evaluations = latest_evaluations(study=study)
    return [
        (name, mark_safe(svg))  # safe: the report's plots escape every label
        for name, svg in metric_forest_plots(evaluations, scalar_metric_names(evaluations))
    ]


# --- Rationales and skip reasons ----------------------------------------------------------------------------


@dataclass(frozen=True)
class RationaleFilters:
    version_id: int | None = None
    versus_id: int | None = None
    comparison_id: int | None = None
    kind: str = "all"  # "all", "rationales" or "skips"


@dataclass(frozen=True)
class RationaleEntry:
    kind: str  # "rationale" or "skip"
    when: Any
    rater: str
    comparison_id: int
    prompt: str
    text_a: str
    text_b: str
    # The image samples' content hashes (None for a text sample): the page shows them through the
    # rating app's image route, which staff may read and which names no sample or generator.
    image_a: str | None
    image_b: str | None
    version_a: str
    version_b: str
    version_a_id: int
    version_b_id: int
    outcome: str  # in words; empty for a skip
    note: str  # the rationale or the skip reason


def _entry_filter(prefix: str, filters: RationaleFilters) -> Q:
    condition = Q()
    if filters.comparison_id is not None:
        condition &= Q(**{f"{prefix}comparison_id": filters.comparison_id})
    if filters.version_id is not None:
        involves = Q(**{f"{prefix}comparison__sample_a__version_id": filters.version_id}) | Q(
            **{f"{prefix}comparison__sample_b__version_id": filters.version_id}
        )
        condition &= involves
        if filters.versus_id is not None:
            condition &= Q(**{f"{prefix}comparison__sample_a__version_id": filters.versus_id}) | Q(
                **{f"{prefix}comparison__sample_b__version_id": filters.versus_id}
            )
    return condition


def _rationale_judgments(study: Study, filters: RationaleFilters) -> QuerySet[Judgment]:
    return Judgment.objects.filter(
        _entry_filter("assignment__", filters),
        assignment__comparison__study=study,
        revoked_at__isnull=True,
    ).exclude(rationale="")


def _skipped_assignments(study: Study, filters: RationaleFilters) -> QuerySet[Assignment]:
    return Assignment.objects.filter(
        _entry_filter("", filters), comparison__study=study, status=AssignmentStatus.SKIPPED
    ).exclude(skip_reason="")


OUTCOME_WORDS = {Outcome.TIE: "tie", Outcome.BOTH_BAD: "both bad"}


def rationale_counts(*, study: Study) -> dict[str, int]:
    everything = RationaleFilters()
    return {
        "rationales": _rationale_judgments(study, everything).count(),
        "skips": _skipped_assignments(study, everything).count(),
    }


def rationale_page(
    *, study: Study, filters: RationaleFilters, page: int | str = 1, per_page: int = RATIONALES_PER_PAGE
) -> Page:
    """Rationales (live judgments with a written reason) and skip reasons, newest first, with the
    pair they were about; a Django ``Page`` of ``RationaleEntry``. Texts are returned as stored:
    generated and typed text is untrusted, and the template escapes it; an image sample comes as
    its content hash."""
    items: list[tuple[Any, str, int]] = []
    if filters.kind in ("all", "rationales"):
        items += [
            (when, "rationale", pk)
            for pk, when in _rationale_judgments(study, filters).values_list("id", "submitted_at")
        ]
    if filters.kind in ("all", "skips"):
        items += [
            (when, "skip", pk)
            for pk, when in _skipped_assignments(study, filters).values_list("id", "reserved_at")
        ]
    items.sort(key=lambda item: (item[0], item[2]), reverse=True)
    paginator = Paginator(items, per_page)
    current = paginator.get_page(page)
    judgment_ids = [pk for _, kind, pk in current.object_list if kind == "rationale"]
    assignment_ids = [pk for _, kind, pk in current.object_list if kind == "skip"]
    related = (
        "assignment__rater__user",
        "assignment__comparison__prompt",
        "assignment__comparison__sample_a__version__generator",
        "assignment__comparison__sample_b__version__generator",
        "assignment__comparison__sample_a__image",
        "assignment__comparison__sample_b__image",
    )
    judgments = {j.id: j for j in Judgment.objects.filter(id__in=judgment_ids).select_related(*related)}
    assignments = {
        a.id: a
        for a in Assignment.objects.filter(id__in=assignment_ids).select_related(
            *(name.removeprefix("assignment__") for name in related)
        )
    }
    entries = []
    for when, kind, pk in current.object_list:
        assignment = judgments[pk].assignment if kind == "rationale" else assignments[pk]
        comparison = assignment.comparison
        judgment = judgments.get(pk) if kind == "rationale" else None
        outcome = ""
        if judgment is not None:
            winner = comparison.sample_a if judgment.outcome == Outcome.A else comparison.sample_b
            outcome = OUTCOME_WORDS.get(judgment.outcome, f"{winner.version} better")
        entries.append(
            RationaleEntry(
                kind=kind,
                when=when,
                rater=_rater_name(assignment.rater),
                comparison_id=comparison.id,
                prompt=comparison.prompt.text,
                text_a=comparison.sample_a.text,
                text_b=comparison.sample_b.text,
                image_a=comparison.sample_a.image.sha256 if comparison.sample_a.image else None,
                image_b=comparison.sample_b.image.sha256 if comparison.sample_b.image else None,
                version_a=str(comparison.sample_a.version),
                version_b=str(comparison.sample_b.version),
                version_a_id=comparison.sample_a.version_id,
                version_b_id=comparison.sample_b.version_id,
                outcome=outcome,
                note=judgment.rationale if judgment is not None else assignment.skip_reason,
            )
        )
    current.object_list = entries
    return current


# --- Everything for the study page --------------------------------------------------------------------------


@dataclass
class StudyInsights:
    agreement: AgreementSummary
    length_control: LengthControl
    both_bad: list[BothBadRow]
    lineage: Lineage
    rater_quality: RaterQuality
    reliability: list[ReliabilityPanel]
    forest_plots: list[tuple[str, SafeString]]
    rationale_counts: dict[str, int]
    rationale_preview: list[RationaleEntry]
    # Whose answers agreement, length control, both bad and the lineage's ratings are.
    criterion: CriterionView | None = None
    several_criteria: bool = False  # the sections then name the criterion


def study_insights(*, study: Study, criterion: CriterionView | None = None) -> StudyInsights:
    """The insight sections; agreement, the length-controlled board, "both bad" and the lineage's
    ratings are those of ``criterion`` (the one chosen on the page; None: the study's own question)."""
    criteria = study_criteria(study=study)
    criterion = criterion or criteria[0]
    board = leaderboard_latest(study=study, criterion_id=criterion.id)
    return StudyInsights(
        criterion=criterion,
        several_criteria=len(criteria) > 1,
        agreement=study_agreement(study=study, criterion=criterion),
        length_control=length_control(board=board),
        both_bad=both_bad_rates(study=study, criterion_id=criterion.id),
        lineage=study_lineage(study=study, criterion=criterion),
        rater_quality=rater_quality(study=study),
        reliability=reliability_diagrams(study=study),
        forest_plots=forest_plots(study=study),
        rationale_counts=rationale_counts(study=study),
        rationale_preview=list(
            rationale_page(
                study=study, filters=RationaleFilters(kind="rationales"), per_page=RATIONALES_PREVIEW
            ).object_list
        ),
    )
