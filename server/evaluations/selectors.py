from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from django.db.models import Count, F, Max, Q, QuerySet

from server.evaluations.models import LeaderboardSnapshot
from server.ratings.models import ComparisonKind, Judgment, Outcome, RaterStatus
from server.ratings.selectors import judgments_trusted, with_criterion_outcome
from server.studies.models import PromptSplit, Study, StudyVersion


def last_judgment_id(*, study: Study) -> int:
    """Id of the study's newest judgment (0 when none): leaderboards and the loop compare it."""
    return Judgment.objects.filter(assignment__comparison__study=study).aggregate(last=Max("id"))["last"] or 0


def leaderboard_latest(*, study: Study, criterion_id: int | None = None) -> LeaderboardSnapshot | None:
    """The newest leaderboard of the criterion (None: the study's own question)."""
    return (
        study.leaderboards.filter(criterion_id=criterion_id).order_by("-created_at", "-id").first()
        if criterion_id is not None
        else study.leaderboards.filter(criterion__isnull=True).order_by("-created_at", "-id").first()
    )


def _between_enrolled_versions(study: Study) -> Q:
    """Both samples from versions enrolled in the study, and from two different versions (a
    version against itself says nothing about ratings)."""
    enrolled = StudyVersion.objects.filter(study=study).values("version_id")
    return (
        Q(assignment__comparison__sample_a__version_id__in=enrolled)
        & Q(assignment__comparison__sample_b__version_id__in=enrolled)
        & ~Q(assignment__comparison__sample_a__version_id=F("assignment__comparison__sample_b__version_id"))
    )


def leaderboard_judgments(*, study: Study, split: str | None) -> QuerySet[Judgment]:
    """The judgments a leaderboard counts: trusted ones (``judgments_trusted``: live, unflagged,
    raters not paused, regular comparisons), on ``split`` when given, between two different
    versions enrolled in the study."""
    judgments = judgments_trusted(study=study).filter(_between_enrolled_versions(study))
    if split in PromptSplit.values:
        judgments = judgments.filter(assignment__comparison__prompt__split=split)
    return judgments


def leaderboard_split(*, study: Study) -> str | None:
    """Holdout when any counted holdout judgment exists (the leaderboard is reported on prompts
    nothing trains on), else None: all prompts."""
    has_holdout = leaderboard_judgments(study=study, split=PromptSplit.HOLDOUT).exists()
    return PromptSplit.HOLDOUT if has_holdout else None


@dataclass(frozen=True)
class CountBreakdown:
    """Why each live judgment of a study does or does not count for the leaderboard.

    Every live judgment (not undone, not corrected) falls under the first reason that applies, in
    this order, so the numbers add up to ``live``: gold checks (they test raters), swapped repeats
    (one rater's opinion twice), flagged (too fast, or made while the rater was paused), raters
    paused now, prompts of the other split (the leaderboard uses holdout prompts once any holdout
    judgment counts), a version not enrolled or against itself; the rest are ``counted``.
    ``ties`` and ``both_bad`` are among the counted: a tie is half a win to each side, "both bad"
    counts as a tie.
    """

    split: str  # "holdout" or "all"
    live: int
    gold: int
    repeat: int
    flagged: int
    paused_rater: int
    other_split: int
    versions: int
    counted: int
    ties: int
    both_bad: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def leaderboard_count_breakdown(
    *, study: Study, split: str | None, up_to_id: int | None = None, criterion_id: int | None = None
) -> CountBreakdown:
    """``CountBreakdown`` of the study's live judgments (with id ≤ ``up_to_id`` when given), in
    one query. ``split`` as the leaderboard's (``leaderboard_split``); ties and "both bad" are the
    criterion's answers (None: the study's own question)."""
    live = with_criterion_outcome(
        Judgment.objects.filter(assignment__comparison__study=study, revoked_at__isnull=True),
        criterion_id=criterion_id,
    )
    if up_to_id is not None:
        live = live.filter(id__lte=up_to_id)
    regular = Q(assignment__comparison__kind=ComparisonKind.REGULAR)
    unflagged = regular & Q(is_flagged=False)
    active = unflagged & ~Q(assignment__rater__status=RaterStatus.PAUSED)
    on_split = active & (
        Q(assignment__comparison__prompt__split=split) if split in PromptSplit.values else Q()
    )
    counted = on_split & _between_enrolled_versions(study)
    totals = live.aggregate(
        live=Count("id"),
        gold=Count("id", filter=Q(assignment__comparison__kind=ComparisonKind.GOLD)),
        repeat=Count("id", filter=Q(assignment__comparison__kind=ComparisonKind.REPEAT)),
        regular=Count("id", filter=regular),
        unflagged=Count("id", filter=unflagged),
        active=Count("id", filter=active),
        on_split=Count("id", filter=on_split),
        counted=Count("id", filter=counted),
        ties=Count("id", filter=counted & Q(criterion_outcome=Outcome.TIE)),
        both_bad=Count("id", filter=counted & Q(criterion_outcome=Outcome.BOTH_BAD)),
    )
    return CountBreakdown(
        split=split if split in PromptSplit.values else "all",  # type: ignore[arg-type]
        live=totals["live"],
        gold=totals["gold"],
        repeat=totals["repeat"],
        flagged=totals["regular"] - totals["unflagged"],
        paused_rater=totals["unflagged"] - totals["active"],
        other_split=totals["active"] - totals["on_split"],
        versions=totals["on_split"] - totals["counted"],
        counted=totals["counted"],
        ties=totals["ties"],
        both_bad=totals["both_bad"],
    )
