"""Reads behind the dashboard: one study's progress, leaderboard, raters, jobs, models, evaluations.

Everything here returns plain data (dataclasses, dicts, lists) that the templates render and the
page's script reads through ``json_script``; nothing here writes.

The estimate of time to the target interval width (``ci_width_eta``) is documented there.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db.models import Count, F, Max, OuterRef, Q, QuerySet, Subquery, Sum, Value
from django.db.models.functions import Coalesce, Least, TruncDay, TruncHour
from django.template.defaultfilters import pluralize
from django.utils import timezone

from evaluation.proportions import wilson_interval
from server.core.exceptions import NotFound
from server.evaluations.models import Evaluation, LeaderboardSnapshot
from server.evaluations.reports import (
    latest_evaluations,
    memorisation_grid,
    novelty_axis_label,
    novelty_value_series,
    scalar_metric_names,
)
from server.evaluations.selectors import (
    CountBreakdown,
    leaderboard_count_breakdown,
    leaderboard_judgments,
    leaderboard_latest,
    leaderboard_split,
)
from server.generators.models import GeneratorVersion, Sample
from server.jobs.descriptions import job_error_in_words, job_params_summary
from server.jobs.models import Job, JobKind, JobStatus
from server.ratings.models import (
    Comparison,
    ComparisonKind,
    Judgment,
    Platform,
    Rater,
    RaterEntryConflict,
)
from server.ratings.onboarding import qualification_problem
from server.ratings.pair_selection import GOLD_GENERATOR, STAFF_GOLD_LABEL
from server.studies.models import Study
from server.studies.selectors import CriterionView, study_criteria
from server.training.exports import DATASET_FOLDER, IMAGES_FOLDER
from server.training.models import PreferenceSnapshot, RewardModel
from server.training.services import ParentChoice, policy_parent_choose, too_few_pairs_warning
from server.training.snapshots import eligible_judgments

RECENT_JOBS = 25
METRIC_POINTS_SHOWN = 400  # per job curve: enough for the shape, small enough to poll every few seconds
RATE_WINDOW = timedelta(hours=24)
RATE_FALLBACK_WINDOW = timedelta(days=7)
RATE_MIN_JUDGMENTS = 10  # fewer than this in the last 24 h: use the 7-day average instead
# A snapshot of fewer counted judgments gives no ETA: its interval width (from a handful of
# prompts) is too unstable to extrapolate by 1/√n ("124 weeks" from 2 judgments).
ETA_MIN_JUDGMENTS = 10
RATERS_SHOWN = 500
# Fewer validation pairs than this and a reward model's accuracy is shown as "too few pairs to
# judge", not as a number: at 10 pairs the 95 % interval of 70 % is already 40–89 %.
MIN_VALIDATION_PAIRS = 10
RATERS_PER_PAGE = 50  # 311 raters on one page made it 24,000 px tall


# --- The estimate -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class CiEstimate:
    """How far the leaderboard's intervals are from the study's target width, and when they get there.

    ``state``: "reached" (the mean width is at or below the target), "estimated" (an ETA exists),
    "no_leaderboard" (no snapshot with intervals yet), "too_few_judgments" (the snapshot rests on
    fewer than ``ETA_MIN_JUDGMENTS``: its width says too little to extrapolate from), "no_rate"
    (too few judgments lately to measure a rate, so no ETA).
    """

    state: str
    target_width: float
    mean_width: float | None = None
    snapshot_judgments: int | None = None
    counted_judgments: int | None = None
    judgments_needed: int | None = None  # total counted judgments at which the target is met
    rate_per_hour: float | None = None
    eta_hours: float | None = None


def ci_width_eta(
    *,
    mean_width: float | None,
    snapshot_judgments: int,
    counted_judgments: int,
    target_width: float,
    rate_per_hour: float | None,
) -> CiEstimate:
    """Estimate when the leaderboard's mean interval width reaches ``target_width``.

    Model: a bootstrap interval of a Bradley–Terry rating shrinks like the standard error of a
    mean, 1/sqrt(n) in the number of judgments n. From the latest snapshot's mean width W0 at n0
    judgments, W(n) = W0 · sqrt(n0 / n), so the target width T is met at
    n* = n0 · (W0 / T)². The judgments still needed, n* − n_now (n_now counted the same way as
    the snapshot's, since judgments may have arrived after it), divided by the recent rate of
    counted judgments (``judgment_rate``), give the ETA. No ETA from a snapshot of fewer than
    ``ETA_MIN_JUDGMENTS`` judgments or without a measured rate.

    What it ignores, on purpose: new versions joining (more parameters, wider intervals), pair
    selection that concentrates judgments (faster for the pairs it targets), and ties. It is an
    order of magnitude to plan rater time with, not a promise.
    """
    if mean_width is None or snapshot_judgments <= 0 or not math.isfinite(mean_width):
        return CiEstimate(state="no_leaderboard", target_width=target_width)
    if snapshot_judgments < ETA_MIN_JUDGMENTS:
        return CiEstimate(
            state="too_few_judgments",
            target_width=target_width,
            mean_width=mean_width,
            snapshot_judgments=snapshot_judgments,
            counted_judgments=counted_judgments,
            rate_per_hour=rate_per_hour,
        )
    common = {
        "target_width": target_width,
        "mean_width": mean_width,
        "snapshot_judgments": snapshot_judgments,
        "counted_judgments": counted_judgments,
        "rate_per_hour": rate_per_hour,
    }
    if mean_width <= target_width:
        return CiEstimate(state="reached", judgments_needed=snapshot_judgments, eta_hours=0.0, **common)
    if target_width <= 0:
        return CiEstimate(state="no_rate", **common)  # a zero width is never reached
    needed = math.ceil(snapshot_judgments * (mean_width / target_width) ** 2)
    remaining = max(0, needed - counted_judgments)
    if remaining == 0:
        return CiEstimate(state="estimated", judgments_needed=needed, eta_hours=0.0, **common)
    if not rate_per_hour:
        return CiEstimate(state="no_rate", judgments_needed=needed, **common)
    return CiEstimate(
        state="estimated", judgments_needed=needed, eta_hours=remaining / rate_per_hour, **common
    )


def mean_interval_width(rows: list[dict[str, Any]]) -> float | None:
    widths = [
        row["upper"] - row["lower"]
        for row in rows
        if isinstance(row.get("upper"), int | float)
        and isinstance(row.get("lower"), int | float)
        and row.get("battles", 0) > 0
    ]
    return sum(widths) / len(widths) if widths else None


# --- Counting ------------------------------------------------------------------------------------------


def live_judgments(*, study: Study) -> QuerySet[Judgment]:
    return Judgment.objects.filter(assignment__comparison__study=study, revoked_at__isnull=True)


@dataclass(frozen=True)
class JudgmentRate:
    """Counted judgments per hour over a window that starts no earlier than the study's first
    vote (where the chart starts) and covers at least the last hour (the chart's smallest bucket).

    ``state``: "measured" (``per_hour`` is set) or "too_little_data" (fewer than
    ``RATE_MIN_JUDGMENTS`` counted judgments even in the 7-day window: a rate from a handful of
    votes would turn into an ETA of years or minutes). ``judgments`` and ``hours`` are the window's.
    """

    state: str
    judgments: int
    hours: float
    per_hour: float | None = None


def judgment_rate(
    *, judgments: QuerySet[Judgment], first_vote_at: datetime | None, now: datetime
) -> JudgmentRate:
    """The recent rate of ``judgments`` (the counted ones): the last 24 hours, or the last 7 days
    when those had fewer than ``RATE_MIN_JUDGMENTS``; each window cut to start at the first vote
    (a study two hours old has had two hours to collect votes, not seven days) but spanning at
    least one hour."""
    window = JudgmentRate(state="too_little_data", judgments=0, hours=0.0)
    if first_vote_at is None:
        return window
    for span in (RATE_WINDOW, RATE_FALLBACK_WINDOW):
        start = min(max(now - span, first_vote_at), now - timedelta(hours=1))
        hours = (now - start).total_seconds() / 3600
        count = judgments.filter(submitted_at__gte=start, submitted_at__lte=now).count()
        window = JudgmentRate(state="too_little_data", judgments=count, hours=hours)
        if count >= RATE_MIN_JUDGMENTS:
            return JudgmentRate(state="measured", judgments=count, hours=hours, per_hour=count / hours)
        if start > now - span:
            break  # the window already reaches back to the first vote: a longer one adds nothing
    return window


@dataclass(frozen=True)
class Progress:
    """Progress to the study's target: each regular comparison judged by ``overlap`` raters."""

    comparisons: int
    overlap: int
    target: int
    done: int  # completed assignments, each comparison counted up to the overlap

    @property
    def fraction(self) -> float | None:
        return self.done / self.target if self.target else None


def study_progress(*, study: Study) -> Progress:
    totals = Comparison.objects.filter(study=study, kind=ComparisonKind.REGULAR).aggregate(
        comparisons=Count("id"),
        done=Sum(Least(F("completed_assignments"), Value(study.overlap))),
    )
    comparisons = totals["comparisons"] or 0
    return Progress(
        comparisons=comparisons,
        overlap=study.overlap,
        target=comparisons * study.overlap,
        done=int(totals["done"] or 0),
    )


def judgments_over_time(*, study: Study, split: str | None, now: datetime) -> dict[str, Any]:
    """Live judgments per hour (a study whose first vote is under three days old) or per day, from
    the first vote to now with quiet periods as zeros, those of them the leaderboard counts (on
    ``split``), and the running total."""
    judgments = live_judgments(study=study)
    first = judgments.order_by("submitted_at").values_list("submitted_at", flat=True).first()
    if first is None:
        return {"unit": "day", "labels": [], "counts": [], "counted": [], "cumulative": []}
    hourly = now - first < timedelta(days=3)
    step = timedelta(hours=1) if hourly else timedelta(days=1)
    bucket = TruncHour("submitted_at") if hourly else TruncDay("submitted_at")
    per_bucket = dict(
        judgments.annotate(bucket=bucket)
        .values("bucket")
        .annotate(count=Count("id"))
        .values_list("bucket", "count")
    )
    counted_per_bucket = dict(
        leaderboard_judgments(study=study, split=split)
        .annotate(bucket=bucket)
        .values("bucket")
        .annotate(count=Count("id"))
        .values_list("bucket", "count")
    )
    start = min(per_bucket)
    end = now.replace(minute=0, second=0, microsecond=0)
    if not hourly:
        end = end.replace(hour=0)
    labels, counts, counted, cumulative, total = [], [], [], [], 0
    moment = start
    while moment <= max(end, max(per_bucket)):
        total += per_bucket.get(moment, 0)
        labels.append(moment.strftime("%Y-%m-%d %H:00" if hourly else "%Y-%m-%d"))
        counts.append(per_bucket.get(moment, 0))
        counted.append(counted_per_bucket.get(moment, 0))
        cumulative.append(total)
        moment += step
    return {
        "unit": "hour" if hourly else "day",
        "labels": labels,
        "counts": counts,
        "counted": counted,
        "cumulative": cumulative,
    }


# --- Sections -----------------------------------------------------------------------------------------


def leaderboard_payload(board: LeaderboardSnapshot | None) -> dict[str, Any] | None:
    if board is None:
        return None
    matrices = board.matrices or {}
    params = board.params or {}
    battles = matrices.get("battles", [])
    win_rate = matrices.get("win_rate", [])
    return {
        "id": board.id,
        "created_at": board.created_at.isoformat(),
        "created_display": board.created_at.strftime("%Y-%m-%d %H:%M"),
        "judgment_count": board.judgment_count,
        "split": params.get("split", "all"),
        # Snapshots from before cluster resampling resampled judgments one by one.
        "bootstrap_clusters": params.get("bootstrap_clusters", "none"),
        "clusters": params.get("clusters", {}),
        "warnings": params.get("warnings", []),
        "breakdown": params.get("breakdown"),
        "count_lines": count_explanation(CountBreakdown(**params["breakdown"]))
        if params.get("breakdown")
        else [],
        "rows": board.rows,
        "version_ids": matrices.get("version_ids", []),
        "labels": matrices.get("labels", []),
        "win_rate": win_rate,
        "win_rate_interval": _pair_win_rate_intervals(win_rate, battles),
        "battles": battles,
    }


def _pair_win_rate_intervals(win_rate: list[list[Any]], battles: list[list[Any]]) -> list[list[Any]]:
    """Wilson 95 % interval of each head-to-head win rate ([low, high], None where the two never
    met), a tie counting half a win. It treats the battles as independent, so it is a floor on the
    uncertainty when raters share prompts; the ratings' intervals come from the cluster bootstrap."""
    intervals: list[list[Any]] = []
    for rates, counts in zip(win_rate, battles, strict=False):
        row: list[Any] = []
        for rate, count in zip(rates, counts, strict=False):
            if not isinstance(rate, int | float) or not isinstance(count, int) or count <= 0:
                row.append(None)
                continue
            interval = wilson_interval(min(count, max(0.0, rate * count)), count)  # type: ignore[arg-type]
            row.append([round(interval[0], 4), round(interval[1], 4)] if interval else None)
        intervals.append(row)
    return intervals


@dataclass(frozen=True)
class RaterRow:
    id: int
    name: str
    platform: str
    status: str
    paused_reason: str
    judgments: int
    flagged: int
    quality: dict[str, Any]
    # Entries refused because another browser session owns this participant (``RaterEntryConflict``).
    entry_conflicts: int = 0
    releasable: bool = False  # staff can let the participant continue in another browser


@dataclass(frozen=True)
class RaterPage:
    rows: list[RaterRow]
    number: int  # from 1
    pages: int
    total: int  # raters in the study
    first: int  # position of the first row shown, from 1 (0 when there are none)
    last: int

    @property
    def numbers(self) -> list[int | None]:
        """Page numbers to link: the first, the last and two around this one; None for a gap."""
        wanted = sorted(
            {1, self.pages, *range(self.number - 2, self.number + 3)} & set(range(1, self.pages + 1))
        )
        shown: list[int | None] = []
        for previous, number in zip([0, *wanted], wanted, strict=False):
            if previous and number - previous > 1:
                shown.append(None)
            shown.append(number)
        return shown


def rater_page(*, study: Study, number: int = 1, per_page: int = RATERS_PER_PAGE) -> RaterPage:
    """One page of the study's raters in the table's order (paused first, then by judgments): two
    queries whatever the page (the count, and the page's rows with their counts)."""
    total = Rater.objects.filter(study=study).count()
    pages = max(1, math.ceil(total / per_page))
    number = min(max(1, number), pages)
    offset = (number - 1) * per_page
    rows = rater_rows(study=study, offset=offset, limit=per_page)
    return RaterPage(
        rows=rows,
        number=number,
        pages=pages,
        total=total,
        first=offset + 1 if rows else 0,
        last=offset + len(rows),
    )


def rater_rows(*, study: Study, offset: int = 0, limit: int = RATERS_PER_PAGE) -> list[RaterRow]:
    live = Q(assignments__judgments__revoked_at__isnull=True)
    conflicts = (
        RaterEntryConflict.objects.filter(rater=OuterRef("pk"))
        .order_by()
        .values("rater")
        .annotate(count=Count("id"))
        .values("count")
    )
    raters = (
        Rater.objects.filter(study=study)
        .select_related("user")
        .annotate(
            judgment_count=Count("assignments__judgments", filter=live),
            flagged_count=Count(
                "assignments__judgments", filter=live & Q(assignments__judgments__is_flagged=True)
            ),
            conflict_count=Coalesce(Subquery(conflicts), 0),
        )
        .order_by("status", "-judgment_count", "id")[offset : offset + limit]
    )
    return [
        RaterRow(
            id=rater.id,
            name=rater.user.get_username() if rater.user_id else f"{rater.platform}:{rater.external_id}",
            platform=rater.platform,
            status=rater.status,
            paused_reason=rater.paused_reason,
            judgments=rater.judgment_count,
            flagged=rater.flagged_count,
            quality=rater.quality or {},
            entry_conflicts=rater.conflict_count,
            releasable=bool(rater.session_binding) and rater.platform in (Platform.PROLIFIC, Platform.MTURK),
        )
        for rater in raters
    ]


def _thinned(points: list[dict[str, Any]], limit: int) -> list[dict[str, Any]]:
    if len(points) <= limit:
        return points
    # Evenly spaced, first and last kept: the curve's shape at a fixed cost.
    last = len(points) - 1
    return [points[round(index * last / (limit - 1))] for index in range(limit)]


def job_duration_seconds(job: Job, *, now: datetime | None = None) -> float | None:
    """How long the job has run (until now, while it runs); None before it starts."""
    if job.started_at is None:
        return None
    end = job.finished_at or now or timezone.now()
    return max(0.0, (end - job.started_at).total_seconds())


def job_payload(job: Job, *, with_metrics: bool, resumable: bool = False) -> dict[str, Any]:
    from server.training.services import checkpoint_kept_until

    kept_until = checkpoint_kept_until(job) if resumable else None
    payload: dict[str, Any] = {
        "id": job.id,
        "kind": job.kind,
        "status": job.status,
        "step": job.progress_step,
        "total": job.progress_total,
        "fraction": job.progress_fraction,
        "steps_per_second": job.steps_per_second,
        "eta_seconds": job.eta_seconds,
        "message": job.progress_message,
        "error": job.error,
        "error_in_words": job_error_in_words(job.error) if job.status == JobStatus.FAILED else "",
        "params_summary": job_params_summary(job.params if isinstance(job.params, dict) else {}),
        "duration_seconds": job_duration_seconds(job),
        "cancel_requested": job.cancel_requested,
        # A failed or cancelled training job with a checkpoint, not resumed yet: the page offers it.
        "resumable": resumable,
        # After this the scheduler deletes the checkpoints (LOVELACE_CHECKPOINT_RETENTION_DAYS).
        "resumable_until": kept_until.isoformat() if kept_until else None,
        "created_at": job.created_at.isoformat(),
        "started_at": job.started_at.isoformat() if job.started_at else None,
        "finished_at": job.finished_at.isoformat() if job.finished_at else None,
        "is_finished": job.is_finished,
        # Downloadable files only: the saved dataset and the images are folders (zips in the list).
        "files": sorted(
            name
            for name in (job.result or {}).get("files", {})
            if name not in (DATASET_FOLDER, IMAGES_FOLDER)
        )
        if job.kind == JobKind.EXPORT
        else [],
    }
    if with_metrics:
        points = [point for point in job.metrics or [] if isinstance(point, dict)]
        names = sorted({key for point in points for key in point if key not in ("step", "time")})
        payload["metrics"] = {
            "names": names,
            "points": [
                {"step": point.get("step"), **{name: point.get(name) for name in names}}
                for point in _thinned(points, METRIC_POINTS_SHOWN)
            ],
        }
    return payload


def study_jobs(*, study: Study) -> list[dict[str, Any]]:
    """The study's recent jobs, newest first, with the metric curves of those that have any."""
    from server.training.services import training_job_resumable

    jobs = Job.objects.filter(study=study).order_by("-created_at", "-id")[:RECENT_JOBS]
    resumed = set(
        Job.objects.filter(study=study, params__has_key="resumes_job").values_list("parent_id", flat=True)
    )
    return [
        job_payload(
            job,
            with_metrics=bool(job.metrics),
            resumable=job.id not in resumed and training_job_resumable(job),
        )
        for job in jobs
    ]


def _share_interval(share: Any, n: Any) -> tuple[float | None, float | None]:
    """95 % Wilson interval of a share of ``n`` trials; (None, None) without both."""
    if not isinstance(share, int | float) or not isinstance(n, int) or n <= 0:
        return None, None
    interval = wilson_interval(min(n, max(0, round(share * n))), n)
    return interval if interval else (None, None)


def _stored_interval(value: Any) -> tuple[float | None, float | None]:
    if isinstance(value, list | tuple) and len(value) == 2 and all(isinstance(x, int | float) for x in value):
        return float(value[0]), float(value[1])
    return None, None


def reward_models_payload(*, study: Study) -> list[dict[str, Any]]:
    """The study's reward models: accuracy with the validation pairs and comparisons it rests on
    and its 95 % Wilson interval clustered by comparison (several raters' votes on one comparison
    are not independent); the human ceiling with the comparisons it rests on and its interval;
    and the model's own agreement with the raters on those same comparisons, the number to set
    beside the ceiling. Models trained before a figure was recorded get None or, for the
    intervals, a plain Wilson interval over the recorded n. ``too_few_pairs``: below
    ``MIN_VALIDATION_PAIRS`` an accuracy is not shown as a number."""
    models = RewardModel.objects.filter(study=study).order_by("created_at", "id")
    payload = []
    for model in models:
        metrics = model.metrics if isinstance(model.metrics, dict) else {}
        low, high = _stored_interval(metrics.get("validation_accuracy_interval"))
        pairs = metrics.get("validation_pairs")
        if low is None:
            low, high = _share_interval(model.validation_accuracy, pairs)
        ceiling_low, ceiling_high = _stored_interval(metrics.get("ceiling_interval"))
        if ceiling_low is None:
            ceiling_low, ceiling_high = _share_interval(
                model.human_agreement_ceiling, metrics.get("ceiling_comparisons")
            )
        same = metrics.get("on_ceiling_comparisons")
        same = same if isinstance(same, dict) else {}
        same_low, same_high = _stored_interval(same.get("interval"))
        payload.append(
            {
                "id": model.id,
                "label": f"RM {model.id}",
                "snapshot_id": model.snapshot_id,
                "backbone": model.backbone,
                "kind": metrics.get("kind", "embedding_heads"),
                "ensemble_size": model.ensemble_size,
                "validation_accuracy": model.validation_accuracy,
                "validation_pairs": pairs,
                "validation_comparisons": metrics.get("validation_comparisons"),
                "too_few_pairs": isinstance(pairs, int) and pairs < MIN_VALIDATION_PAIRS,
                "validation_accuracy_low": low,
                "validation_accuracy_high": high,
                "human_agreement_ceiling": model.human_agreement_ceiling,
                "ceiling_comparisons": metrics.get("ceiling_comparisons"),
                "ceiling_low": ceiling_low,
                "ceiling_high": ceiling_high,
                "accuracy_on_ceiling_comparisons": same.get("accuracy"),
                "accuracy_on_ceiling_comparisons_low": same_low,
                "accuracy_on_ceiling_comparisons_high": same_high,
                "votes_on_ceiling_comparisons": same.get("votes"),
                "expected_calibration_error": model.expected_calibration_error,
                "warnings": metrics.get("warnings", []),
                "created_at": model.created_at.isoformat(),
            }
        )
    return payload


def evaluations_payload(*, study: Study, evaluations: list[Evaluation] | None = None) -> dict[str, Any]:
    """Latest evaluation per version: the metrics table, and the novelty–value scatter with fronts."""
    if evaluations is None:
        evaluations = latest_evaluations(study=study)
    names = scalar_metric_names(evaluations)
    versions = []
    for evaluation in evaluations:
        points, front = novelty_value_series(evaluation)
        versions.append(
            {
                "evaluation_id": evaluation.id,
                "version_id": evaluation.version_id,
                "label": str(evaluation.version),
                "created_at": evaluation.created_at.isoformat(),
                "points": [{"x": x, "y": y} for x, y in points],
                "front": [{"x": x, "y": y} for x, y in sorted(front)],
                "metrics": {
                    name: evaluation.metrics[name]
                    for name in names
                    if isinstance(evaluation.metrics.get(name), dict)
                },
            }
        )
    return {"metric_names": names, "versions": versions, "novelty_axis": novelty_axis_label(study)}


def memorisation_grids_payload(evaluations: list[Evaluation]) -> list[dict[str, Any]]:
    """Per image evaluation: its label and the sample / nearest-training-image pairs (data URIs).
    Kept out of ``evaluations_payload``, which the page also embeds as JSON for its charts."""
    grids = []
    for evaluation in evaluations:
        cells = memorisation_grid(evaluation)
        if cells:
            grids.append({"label": str(evaluation.version), "cells": cells})
    return grids


@dataclass
class StudyDashboard:
    study: Study
    progress: Progress
    estimate: CiEstimate
    live_judgment_count: int
    over_time: dict[str, Any]
    leaderboard: dict[str, Any] | None
    raters: RaterPage
    jobs: list[dict[str, Any]]
    reward_models: list[dict[str, Any]]
    evaluations: dict[str, Any]
    versions: list[GeneratorVersion]
    snapshots: list[PreferenceSnapshot]
    sample_counts: dict[int, int] = field(default_factory=dict)
    gold_checks: dict[str, int] = field(default_factory=dict)  # {"generated": n, "staff": n}
    memorisation_grids: list[dict[str, Any]] = field(default_factory=list)  # image evaluations' grids
    next_parent: ParentChoice | None = None  # where the loop trains from next, and why
    breakdown: CountBreakdown | None = None  # which live judgments count for the leaderboard, and why
    count_lines: list[str] = field(default_factory=list)  # the breakdown in words
    rate: JudgmentRate | None = None  # the recent rate of counted judgments behind the estimate
    training_warning: str | None = None  # before training: too few pairs in the latest snapshot
    eligible_pairs: int = 0  # judgments that prefer a side and a snapshot taken now would hold
    qualification_problem: str | None = None  # too few staff gold checks for the qualification
    # The study's questions; the leaderboard shown is the one of ``criterion`` (a key).
    criteria: list[CriterionView] = field(default_factory=list)
    criterion: str = ""


def training_data_warning(*, study: Study, eligible: int) -> str | None:
    """What the training forms say before a reward model or DPO starts, when the latest snapshot
    (the one they train on unless another is chosen) holds fewer training pairs than the study's
    minimum: the count, and whether a new snapshot would hold more."""
    latest = PreferenceSnapshot.objects.filter(study=study).order_by("-created_at", "-id").first()
    if latest is None:
        return (
            f"No snapshot yet: take one first (Take a snapshot). {eligible} judgments that prefer a side "
            f"could go into it now; the study's minimum is {study.min_training_pairs} training pairs."
        )
    warning = too_few_pairs_warning(
        study=study, train_pairs=latest.train_count, consequence="training still runs, on little data"
    )
    if warning is None:
        return None
    newer = (
        f" A new snapshot would hold {eligible} judgments that prefer a side (training and validation)."
        if eligible > latest.train_count + latest.validation_count
        else ""
    )
    return f"Latest snapshot #{latest.id}: {warning}{newer}"


def gold_check_counts(*, study: Study) -> dict[str, int]:
    """The study's gold checks: generated from its samples, and supplied by staff."""
    staff = Q(sample_a__version__generator__name=GOLD_GENERATOR, sample_a__version__label=STAFF_GOLD_LABEL)
    counts = Comparison.objects.filter(study=study, kind=ComparisonKind.GOLD).aggregate(
        total=Count("id"), staff=Count("id", filter=staff)
    )
    return {"generated": counts["total"] - counts["staff"], "staff": counts["staff"]}


def study_dashboard(
    *, study: Study, now: datetime | None = None, raters_page: int = 1, criterion: str | None = None
) -> StudyDashboard:
    """Everything the study page shows. ``criterion`` (a key; unknown or None: the study's own
    question) chooses the leaderboard shown; the estimate and counts are the same judgments for
    every criterion, and follow the study's own question."""
    now = now or timezone.now()
    board = leaderboard_latest(study=study)
    criteria = study_criteria(study=study)
    chosen = next((c for c in criteria if c.key == criterion), criteria[0])
    shown = board if chosen.is_primary else leaderboard_latest(study=study, criterion_id=chosen.id)
    # The split a recompute would use now: the overview counts, charts and rates on it.
    split = leaderboard_split(study=study)
    breakdown = leaderboard_count_breakdown(study=study, split=split)
    counted = leaderboard_judgments(study=study, split=split)
    first_vote_at = (
        live_judgments(study=study).order_by("submitted_at").values_list("submitted_at", flat=True).first()
    )
    rate = judgment_rate(judgments=counted, first_vote_at=first_vote_at, now=now)
    estimate = ci_width_eta(
        mean_width=mean_interval_width(board.rows) if board else None,
        snapshot_judgments=board.judgment_count if board else 0,
        counted_judgments=breakdown.counted,
        target_width=study.target_ci_width,
        rate_per_hour=rate.per_hour,
    )
    gold_checks = gold_check_counts(study=study)
    eligible = eligible_judgments(study=study).count()
    sample_counts = dict(
        Sample.objects.filter(prompt__study=study)
        .values("version_id")
        .annotate(n=Count("id"))
        .values_list("version_id", "n")
    )
    evaluations = latest_evaluations(study=study)
    return StudyDashboard(
        study=study,
        progress=study_progress(study=study),
        estimate=estimate,
        live_judgment_count=breakdown.live,
        over_time=judgments_over_time(study=study, split=split, now=now),
        leaderboard=leaderboard_payload(shown),
        raters=rater_page(study=study, number=raters_page),
        jobs=study_jobs(study=study),
        reward_models=reward_models_payload(study=study),
        evaluations=evaluations_payload(study=study, evaluations=evaluations),
        memorisation_grids=memorisation_grids_payload(evaluations),
        versions=list(study.versions.select_related("generator").order_by("id")),
        snapshots=list(PreferenceSnapshot.objects.filter(study=study).order_by("-created_at", "-id")[:20]),
        sample_counts=sample_counts,
        gold_checks=gold_checks,
        next_parent=policy_parent_choose(study=study),
        breakdown=breakdown,
        count_lines=count_explanation(breakdown),
        rate=rate,
        training_warning=training_data_warning(study=study, eligible=eligible),
        eligible_pairs=eligible,
        qualification_problem=qualification_problem(study=study, staff_gold=gold_checks["staff"]),
        criteria=criteria,
        criterion=chosen.key,
    )


@dataclass(frozen=True)
class StudySummary:
    study: Study
    judgments: int
    raters: int
    versions: int
    active_jobs: int
    leaderboard_at: datetime | None


def study_summaries() -> list[StudySummary]:
    studies = Study.objects.order_by("-is_active", "-created_at").annotate(
        rater_count=Count("raters", distinct=True), version_count=Count("versions", distinct=True)
    )
    judgments = dict(
        Judgment.objects.filter(revoked_at__isnull=True)
        .values("assignment__comparison__study_id")
        .annotate(n=Count("id"))
        .values_list("assignment__comparison__study_id", "n")
    )
    active = dict(
        Job.objects.filter(status__in=[JobStatus.QUEUED, JobStatus.RUNNING], study__isnull=False)
        .values("study_id")
        .annotate(n=Count("id"))
        .values_list("study_id", "n")
    )
    boards = dict(
        LeaderboardSnapshot.objects.values("study_id")
        .annotate(last=Max("created_at"))
        .values_list("study_id", "last")
    )
    return [
        StudySummary(
            study=study,
            judgments=judgments.get(study.id, 0),
            raters=study.rater_count,
            versions=study.version_count,
            active_jobs=active.get(study.id, 0),
            leaderboard_at=boards.get(study.id),
        )
        for study in studies
    ]


def study_get(*, slug: str) -> Study:
    study = Study.objects.filter(slug=slug).first()
    if study is None:
        raise NotFound("There is no such study.")
    return study


def export_job_get(*, job_id: int) -> Job:
    job = Job.objects.filter(id=job_id, kind=JobKind.EXPORT).first()
    if job is None:
        raise NotFound(f"There is no export {job_id}.")
    return job


def job_get(*, job_id: int) -> Job:
    job = Job.objects.select_related("study").filter(id=job_id).first()
    if job is None:
        raise NotFound(f"There is no job {job_id}.")
    return job


def user_has_token(*, user: Any) -> bool:
    from rest_framework.authtoken.models import Token

    return Token.objects.filter(user=user).exists()


def count_explanation(breakdown: CountBreakdown) -> list[str]:
    """Why the live judgments that do not count for the leaderboard do not, one line per reason
    that applies (largest first), after the line on those that count."""
    on = "holdout prompts" if breakdown.split == "holdout" else "all prompts"
    counted = f"{breakdown.counted} count, on {on}"
    if breakdown.ties or breakdown.both_bad:
        counted += (
            f" ({breakdown.ties} tie{pluralize(breakdown.ties)}, half a win to each side, and "
            f"{breakdown.both_bad} “both bad”, counted as ties)"
        )
    reasons = [
        (breakdown.gold, "gold checks: they test raters, not versions"),
        (breakdown.repeat, "swapped repeats: the same rater's opinion a second time"),
        (breakdown.flagged, "flagged: too fast, or made while the rater was paused"),
        (breakdown.paused_rater, "by raters who are paused now"),
        (
            breakdown.other_split,
            "on train prompts: the leaderboard uses holdout prompts once any holdout judgment counts",
        ),
        (breakdown.versions, "between versions not enrolled in the study, or a version against itself"),
    ]
    lines = [f"{count} {text}" for count, text in sorted(reasons, key=lambda item: -item[0]) if count]
    return [counted, *lines]
