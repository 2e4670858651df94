"""Onboarding a rater: the guidelines acknowledged before the first pair, then an optional
qualification on gold checks that staff supplied.

Why staff checks only: a generated check (a sample against a sample of another prompt) tests
whether the rater reads the prompt; a study that asks for a qualification wants to know whether
the rater judges as its staff would, which only staff's own pairs with their expected answers say.

The qualification is the rater's first ``Study.qualification_pairs`` pairs. Its answers are final
(no undo: a test answered twice measures the second thought), flagged ``qualification`` so that no
leaderboard, snapshot or export counts them (they are gold pairs too, which those leave out
anyway), and left out of the rater's quality signals: the qualification has judged them already.
When the last one is answered, a rater with at least ``qualification_min_correct`` answers as
expected is qualified (``Rater.qualified_at``); any other gets the status ``unqualified``, a reason
in plain words, and no more pairs. Staff can let an unqualified rater in (``rater_resume``).
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import Q, QuerySet
from django.utils import timezone

from server.ratings import sql
from server.ratings.models import (
    Assignment,
    AssignmentStatus,
    Comparison,
    ComparisonKind,
    Judgment,
    Rater,
    RaterStatus,
)
from server.ratings.pair_selection import GOLD_GENERATOR, STAFF_GOLD_LABEL
from server.ratings.selectors import CONTENT_FIELDS, CONTENT_RELATIONS
from server.studies.models import Study

logger = logging.getLogger(__name__)

FLAG_QUALIFICATION = "qualification"
UNAVAILABLE_MESSAGE = (
    "This study starts with a few qualification questions, and they are not ready yet. "
    "Please check back later; the study's staff have been told."
)


@dataclass(frozen=True)
class QualificationProgress:
    number: int  # the pair being asked now, from 1
    total: int


@dataclass(frozen=True)
class QualificationResult:
    decided: bool  # all the qualification pairs are answered
    passed: bool
    correct: int
    total: int
    message: str  # for the rater: what happened, in plain words


# --- Reads -----------------------------------------------------------------------------------------


def staff_gold_comparisons(*, study: Study) -> QuerySet[Comparison]:
    """The study's gold checks that staff supplied (``gold_pairs_import``), not the generated ones."""
    return Comparison.objects.filter(
        study=study,
        kind=ComparisonKind.GOLD,
        sample_a__version__generator__name=GOLD_GENERATOR,
        sample_a__version__label=STAFF_GOLD_LABEL,
    )


def qualification_problem(*, study: Study, staff_gold: int | None = None) -> str | None:
    """What stops raters from qualifying in this study (for staff), or None."""
    if not study.qualification_pairs:
        return None
    if staff_gold is None:
        staff_gold = staff_gold_comparisons(study=study).count()
    if staff_gold >= study.qualification_pairs:
        return None
    return (
        f"The study asks each rater to qualify on {study.qualification_pairs} gold checks supplied by "
        f"staff, and it has {staff_gold}. New raters wait at the qualification until you add "
        f"{study.qualification_pairs - staff_gold} more under Gold checks, or lower the number."
    )


def needs_guidelines(*, rater: Rater, study: Study) -> bool:
    return study.require_guidelines_ack and rater.guidelines_acknowledged_at is None


def needs_qualification(*, rater: Rater, study: Study) -> bool:
    return bool(study.qualification_pairs) and rater.qualified_at is None


def _answered(rater_id: int) -> QuerySet[Assignment]:
    return Assignment.objects.filter(
        rater_id=rater_id, is_qualification=True, status=AssignmentStatus.COMPLETED
    )


def qualification_progress(*, rater_id: int, study: Study) -> QualificationProgress:
    """Which qualification pair the rater is at (its open one counts as being asked)."""
    return QualificationProgress(number=_answered(rater_id).count() + 1, total=study.qualification_pairs)


# --- Writes ----------------------------------------------------------------------------------------


def rater_guidelines_acknowledge(*, rater: Rater) -> Rater:
    """Record that the rater has read the guidelines (the first press counts; a second is a no-op)."""
    if rater.guidelines_acknowledged_at is None:
        now = timezone.now()
        Rater.objects.filter(id=rater.id, guidelines_acknowledged_at__isnull=True).update(
            guidelines_acknowledged_at=now
        )
        rater.guidelines_acknowledged_at = now
        logger.info("rater %s acknowledged the guidelines", rater.id)
    return rater


def qualification_reserve(
    *, rater: Rater, study: Study, now: datetime, rng: random.Random
) -> Assignment | None:
    """Reserve the rater's next qualification pair: a staff gold check it has not seen, sides drawn
    at random. None when the study has none left for it (the caller says so to the rater)."""
    seen = Assignment.objects.filter(rater_id=rater.id).values("comparison_id")
    comparison = (
        staff_gold_comparisons(study=study)
        .exclude(id__in=seen)
        .select_related(*CONTENT_RELATIONS)
        .only("id", "study_id", "kind", *CONTENT_FIELDS)
        .order_by("?")
        .first()
    )
    if comparison is None:
        logger.warning(
            "rater %s: no staff gold check left for the qualification of study %s", rater.id, study.id
        )
        return None
    sql.comparison_take_slot(comparison_id=comparison.id, overlap=None)  # gold is exempt from overlap
    assignment = Assignment(
        comparison=comparison,
        rater=rater,
        left_is_a=rng.random() < 0.5,
        reserved_at=now,
        expires_at=now + timedelta(seconds=study.reservation_seconds),
        is_qualification=True,
    )
    sql.insert(assignment)
    assignment.comparison = comparison
    return assignment


def rater_qualification_evaluate(*, rater: Rater, study: Study) -> QualificationResult:
    """Decide the qualification once every qualification pair is answered; before that, or when it
    is decided already, nothing changes. Updates ``rater`` (status, reason, qualified_at)."""
    total = study.qualification_pairs
    answers = list(
        Judgment.objects.filter(
            assignment__rater_id=rater.id,
            assignment__is_qualification=True,
            revoked_at__isnull=True,
        ).values_list("outcome", "assignment__comparison__gold_answer")
    )
    correct = sum(outcome == expected for outcome, expected in answers)
    if len(answers) < total or rater.qualified_at is not None or rater.status != RaterStatus.ACTIVE:
        return QualificationResult(decided=False, passed=False, correct=correct, total=total, message="")
    if correct >= study.qualification_min_correct:
        now = timezone.now()
        Rater.objects.filter(id=rater.id, qualified_at__isnull=True).update(qualified_at=now)
        rater.qualified_at = now
        message = (
            f"You passed the qualification ({correct} of {len(answers)} answered as expected). "
            "The study's pairs start now."
        )
        logger.info("rater %s qualified: %s of %s", rater.id, correct, len(answers))
        return QualificationResult(decided=True, passed=True, correct=correct, total=total, message=message)
    message = (
        f"Thank you for taking the qualification. You answered {correct} of {len(answers)} "
        f"qualification questions as the study expects, and it needs {study.qualification_min_correct}, "
        "so this study has no pairs for you. Thank you for your time."
    )
    updated = Rater.objects.filter(Q(id=rater.id), Q(status=RaterStatus.ACTIVE)).update(
        status=RaterStatus.UNQUALIFIED, paused_reason=message, paused_at=timezone.now()
    )
    if updated:
        rater.status, rater.paused_reason = RaterStatus.UNQUALIFIED, message
        logger.info("rater %s did not qualify: %s of %s", rater.id, correct, len(answers))
    return QualificationResult(decided=True, passed=False, correct=correct, total=total, message=message)
