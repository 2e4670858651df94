"""Writing ratings: raters joining, assignments, judgments, undo / correction, quality control.

Concurrency. Two raters asking for work at the same moment must never push a comparison past the
study's overlap. On PostgreSQL the candidate comparison is locked with ``SELECT ... FOR UPDATE SKIP
LOCKED`` (a rater never waits for another one: it takes the next free row) and its counter is
raised by a conditional ``UPDATE ... WHERE active_assignments < overlap`` in the same transaction.
On SQLite ``select_for_update`` is a no-op, but every transaction there starts ``IMMEDIATE`` (see
the settings), so writers are serialised and the conditional update is the whole guard.

Lock order is always assignment → comparison (judgments are only inserted, never locked by a
writer that then wants an assignment), so these services cannot deadlock one another.

Hot paths (next assignment, submit) skip ``full_clean()``: each foreign-key and unique check it
runs is one more query, and the database constraints refuse the same invalid states. The input
is validated by the forms and by the checks below before anything is written.
"""

from __future__ import annotations

import dataclasses
import enum
import logging
import random
import secrets
from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F, Min, Q
from django.utils import timezone

from server.core import rate_limits
from server.core.exceptions import ApplicationError, Conflict, NotFound
from server.ratings import onboarding, quality, selectors, sql
from server.ratings.models import (
    Assignment,
    AssignmentStatus,
    Comparison,
    ComparisonKind,
    Judgment,
    Outcome,
    Platform,
    Rater,
    RaterEntryConflict,
    RaterStatus,
)
from server.studies.models import Study

logger = logging.getLogger(__name__)

UNDO_WINDOW_SECONDS = 10
# A full quality recompute costs ~3 queries; it runs after every gold or repeat judgment (the
# evidence that can pause a rater) and after every QUALITY_EVERY-th judgment for position bias.
QUALITY_EVERY = 10
# A repeat is never drawn from the rater's last few judgments: an immediate re-show is recognised
# and answered from memory, which measures recall instead of consistency.
REPEAT_MIN_DISTANCE = 3
CROWD_PLATFORMS = frozenset({Platform.PROLIFIC, Platform.MTURK, Platform.INVITE})
CHOICES = ("left", "right", "tie", "both_bad")
STALE_EXPIRY_BATCH = 200  # reservations expired inline when a rater finds the pool empty
# A crowd rater held back by the first-pair limit asks again this soon (its window may be an hour
# long; asking is cheap and a refused ask spends no budget).
THROTTLED_RETRY_SECONDS = 60
MAX_RATIONALE_CHARACTERS = 5000

_random = random.Random()


class NoWork(enum.StrEnum):
    """Why ``assignment_next_for_rater`` returned no assignment."""

    PAUSED = "paused"
    FINISHED = "finished"  # a crowd participant whose quota is done
    QUOTA = "quota"  # an account holder at the study's per-rater cap
    EMPTY = "empty"  # nothing left for this rater right now
    CLOSED = "closed"  # the study is not active
    START = "start"  # a crowd rater with no vote yet must ask for its first pair itself (``started``)
    THROTTLED = "throttled"  # too many first pairs from the rater's address or on the study's link
    GUIDELINES = "guidelines"  # the rater must acknowledge the guidelines first (``onboarding``)
    UNQUALIFIED = "unqualified"  # the rater failed the study's qualification
    QUALIFICATION_UNAVAILABLE = "qualification_unavailable"  # too few staff gold checks to qualify on


@dataclass(frozen=True)
class NextAssignment:
    assignment: Assignment | None
    judged: int  # the rater's completed assignments, for the progress bar
    quota: int | None  # the study's per-rater cap
    no_work: NoWork | None = None
    retry_seconds: int | None = None  # THROTTLED: when to ask again
    qualification: onboarding.QualificationProgress | None = None  # a qualification pair: which one


@dataclass(frozen=True)
class CrowdEntry:
    rater: Rater
    binding: str  # the secret the entering browser session keeps (``Rater.session_binding``)


@dataclass(frozen=True)
class JudgmentSubmission:
    judgment: Judgment
    created: bool  # False when the idempotency key was seen before: the stored judgment is returned
    judged: int
    quota: int | None
    rater_status: str
    paused_reason: str
    undoable: bool = True  # qualification answers are final
    qualification: onboarding.QualificationResult | None = None  # decided by this vote


# --- Raters ------------------------------------------------------------------------------------


def rater_for_account(*, study: Study, user: Any) -> Rater:
    """The rater row of a logged-in user; staff are enrolled on their first visit."""
    rater = Rater.objects.select_related("study").filter(study=study, user=user).first()
    if rater is not None:
        return rater
    if not user.is_staff:
        raise ApplicationError(
            "Your account is not enrolled in this study. Ask the study's staff for an invitation.",
            status=403,
        )
    rater, _ = Rater.objects.get_or_create(study=study, user=user, defaults={"platform": Platform.ACCOUNT})
    return rater


def _in_words(seconds: int) -> str:
    if seconds < 90:
        return f"{seconds} seconds"
    return f"{-(-seconds // 60)} minutes"


def _take_join(*, study: Study, client_address: str) -> None:
    """Spend one crowd join of the client's address and of the study's link, or refuse with 429."""
    try:
        rate_limits.take(
            [
                rate_limits.Limit(
                    "crowd-join-address", settings.LOVELACE_CROWD_JOINS_PER_ADDRESS, client_address
                ),
                rate_limits.Limit("crowd-join-link", settings.LOVELACE_CROWD_JOINS_PER_LINK, str(study.id)),
            ]
        )
    except rate_limits.LimitReached as reached:
        wait = _in_words(reached.retry_after)
        if reached.limit.name == "crowd-join-address":
            message = (
                "Too many people have started this study from your network recently. "
                f"Please try again in {wait}."
            )
        else:
            message = f"Too many people are starting this study right now. Please try again in {wait}."
        logger.warning("crowd join refused: %s", reached)
        raise ApplicationError(message, status=429, extra={"retry_after": reached.retry_after}) from None


def rater_join_invite(*, study: Study, invite_token: str, client_address: str) -> CrowdEntry:
    """A new session-only participant who arrived through the study's invite link."""
    if not study.is_active:
        raise ApplicationError("This study is closed.", status=410)
    if not secrets.compare_digest(invite_token.encode(), study.invite_token.encode()):
        raise NotFound("This invitation link is not valid (it may have been replaced).")
    _take_join(study=study, client_address=client_address)
    binding = secrets.token_hex(32)
    rater = Rater.objects.create(
        study=study,
        platform=Platform.INVITE,
        external_id=f"invite-{secrets.token_hex(12)}",
        session_binding=binding,
    )
    return CrowdEntry(rater=rater, binding=binding)


def rater_join_platform(
    *,
    study: Study,
    platform: str,
    external_id: str,
    session_info: dict[str, str],
    held_bindings: Mapping[str, str],
    client_address: str,
) -> CrowdEntry:
    """The rater of a crowd participant (Prolific, MTurk) entering through the study's crowd link.

    The participant id in the link is no secret, so it only names the rater; the browser session
    that created the rater owns it (``Rater.session_binding``; ``held_bindings`` are the bindings
    the entering session holds, by rater id). The owner coming back (a reload, a second HIT) gets
    its rater, with the latest session details (a completion goes to the submission open now).
    Another session naming an owned participant is refused with 409 and recorded as a
    ``RaterEntryConflict`` for the study's staff; nothing of the rater changes.

    A new participant, a claim of an unbound rater and a conflict each spend one crowd join of the
    client's address and of the study's link (429 when spent), so an address cannot mint raters
    or try participant ids without bound.
    """
    if platform not in (Platform.PROLIFIC, Platform.MTURK):
        raise ApplicationError(f"Unknown platform {platform!r}.")
    external_id = external_id.strip()
    if not external_id or len(external_id) > 200:
        raise ApplicationError("The participant id from the platform is missing or too long.")
    if not study.is_active:
        raise ApplicationError("This study is closed.", status=410)
    identity = {"study": study, "platform": platform, "external_id": external_id}
    rater = Rater.objects.filter(**identity).first()
    if rater is not None:
        rater.study = study  # the caller reads it; no second query
    if rater is not None and _holds(held_bindings, rater):
        _update_session_info(rater, session_info)
        return CrowdEntry(rater=rater, binding=rater.session_binding)

    _take_join(study=study, client_address=client_address)
    binding = secrets.token_hex(32)
    if rater is None:
        try:
            with transaction.atomic():
                rater = Rater.objects.create(**identity, session_info=session_info, session_binding=binding)
            return CrowdEntry(rater=rater, binding=binding)
        except IntegrityError:  # another session's first request created it a moment ago
            rater = Rater.objects.get(**identity)
            rater.study = study
    if not rater.session_binding:
        # Unbound (created before binding, or released by staff): the first session to enter owns it.
        claimed = Rater.objects.filter(id=rater.id, session_binding="").update(session_binding=binding)
        if claimed:
            rater.session_binding = binding
            _update_session_info(rater, session_info)
            logger.info("rater %s claimed by a new session", rater.id)
            return CrowdEntry(rater=rater, binding=binding)
    RaterEntryConflict.objects.create(rater=rater, client_address=client_address, session_info=session_info)
    logger.warning("rater %s: participant id opened from another browser session (refused)", rater.id)
    raise Conflict(
        "This participant id is already taking part in this study in another browser. Please "
        "continue in the browser where you started. If that is not possible, send the study's staff "
        "a message: they can let you continue here."
    )


def _holds(held_bindings: Mapping[str, str], rater: Rater) -> bool:
    held = held_bindings.get(str(rater.id), "")
    return bool(rater.session_binding) and secrets.compare_digest(
        held.encode(), rater.session_binding.encode()
    )


def _update_session_info(rater: Rater, session_info: dict[str, str]) -> None:
    if session_info and rater.session_info != {**rater.session_info, **session_info}:
        rater.session_info = {**rater.session_info, **session_info}
        rater.save(update_fields=["session_info"])


def rater_release(*, rater_id: int) -> Rater:
    """Staff let a crowd participant continue in another browser: the next browser session that
    opens the participant's link owns the rater (its progress and open reservation), and the session
    that owned it loses it then."""
    rater = Rater.objects.filter(id=rater_id).first()
    if rater is None:
        raise NotFound(f"There is no rater {rater_id}.")
    if rater.platform not in (Platform.PROLIFIC, Platform.MTURK):
        raise Conflict("Only a Prolific or MTurk participant can be released to another browser.")
    Rater.objects.filter(id=rater_id).update(session_binding="")
    rater.session_binding = ""
    logger.info("rater %s released to the next browser that opens its link", rater_id)
    return rater


def rater_pause(*, rater_id: int, reason: str) -> bool:
    """Pause an active rater and flag its live judgments. False when it was not active."""
    reason = reason.strip()[:300] or "Paused by staff."
    with transaction.atomic():
        paused = Rater.objects.filter(id=rater_id, status=RaterStatus.ACTIVE).update(
            status=RaterStatus.PAUSED, paused_reason=reason, paused_at=timezone.now()
        )
        if paused:
            _set_paused_flag(rater_id=rater_id, flagged=True)
    if paused:
        logger.info("rater %s paused: %s", rater_id, reason)
    return paused == 1


def rater_resume(*, rater_id: int) -> Rater:
    """Staff let a paused rater continue, or let a rater who failed the qualification in (it
    counts as qualified from now on).

    Staff resuming a rater is a verdict that its work is fine, so the ``rater_paused`` flags are
    removed (other flags such as ``fast`` stay). The automatic quality tests then judge only the
    judgments submitted after the resume, so one old bad streak cannot pause the rater again.
    """
    with transaction.atomic():
        rater = Rater.objects.select_for_update().filter(id=rater_id).first()
        if rater is None:
            raise NotFound(f"There is no rater {rater_id}.")
        if rater.status == RaterStatus.UNQUALIFIED:
            rater.status = RaterStatus.ACTIVE
            rater.paused_reason = ""
            rater.paused_at = None
            rater.qualified_at = timezone.now()
            rater.save(update_fields=["status", "paused_reason", "paused_at", "qualified_at"])
            logger.info("rater %s let in by staff after failing the qualification", rater_id)
            return rater
        if rater.status != RaterStatus.PAUSED:
            raise Conflict("This rater is not paused.")
        rater.status = RaterStatus.ACTIVE
        rater.paused_reason = ""
        rater.paused_at = None
        rater.quality = {**rater.quality, "resumed_at": timezone.now().isoformat()}
        rater.save(update_fields=["status", "paused_reason", "paused_at", "quality"])
        _set_paused_flag(rater_id=rater_id, flagged=False)
    return rater


def _set_paused_flag(*, rater_id: int, flagged: bool) -> None:
    # JSON list edits differ between PostgreSQL and SQLite; a pause is rare, so do it in Python.
    judgments = list(
        Judgment.objects.filter(assignment__rater_id=rater_id, revoked_at__isnull=True).only(
            "id", "flag_reasons", "is_flagged"
        )
    )
    changed = []
    for judgment in judgments:
        reasons = [reason for reason in judgment.flag_reasons if reason != quality.FLAG_RATER_PAUSED]
        if flagged:
            reasons.append(quality.FLAG_RATER_PAUSED)
        if reasons != judgment.flag_reasons:
            judgment.flag_reasons = reasons
            judgment.is_flagged = bool(reasons)
            changed.append(judgment)
    Judgment.objects.bulk_update(changed, ["flag_reasons", "is_flagged"], batch_size=500)


def _rater_finish(*, rater: Rater) -> None:
    if rater.platform in CROWD_PLATFORMS and rater.status == RaterStatus.ACTIVE:
        Rater.objects.filter(id=rater.id, status=RaterStatus.ACTIVE).update(status=RaterStatus.FINISHED)
        rater.status = RaterStatus.FINISHED


# --- Assignments -------------------------------------------------------------------------------


def _with_content(queryset):  # type: ignore[no-untyped-def]
    return queryset.select_related(
        *(f"comparison__{relation}" for relation in selectors.CONTENT_RELATIONS)
    ).only(
        "id",
        "token",
        "comparison_id",
        "rater_id",
        "left_is_a",
        "status",
        "reserved_at",
        "expires_at",
        "is_qualification",
        "comparison__kind",
        "comparison__study_id",
        *(f"comparison__{field}" for field in selectors.CONTENT_FIELDS),
    )


def assignment_next_for_rater(
    *,
    rater: Rater,
    rng: random.Random | None = None,
    started: bool = True,
    client_address: str = "",
) -> NextAssignment:
    """The rater's next pair: its open reservation if it has one, otherwise a new reservation.

    A crowd rater with no vote yet gets a new reservation only when it asks for it itself
    (``started``: the page sends it after a click or a key press, so a link opened by a script, a
    link-preview robot or someone who walks away holds no pair) and within the first-pair limits
    of its client address and of the study's link (``NoWork.THROTTLED`` beyond them). Once it has
    voted, neither applies, and nothing here costs a query more.

    A new reservation is a gold comparison with probability ``study.gold_rate``, a swapped repeat
    of a pair the rater already judged with probability ``study.repeat_rate``, and a regular
    comparison otherwise (also when no gold or repeat is available). Regular comparisons hold at
    most ``study.overlap`` live (reserved or completed) assignments; gold comparisons are exempt,
    since every rater should meet the same checks, and a repeat belongs to one rater. The side each
    sample is shown on is drawn at random and recorded (a repeat shows the original's pair the
    other way round).
    """
    study = rater.study
    rng = rng or _random
    now = timezone.now()
    quota = study.per_rater_cap
    judged, live, open_id = sql.assignment_counts(rater_id=rater.id, now=now)

    def nothing(reason: NoWork) -> NextAssignment:
        return NextAssignment(assignment=None, judged=judged, quota=quota, no_work=reason)

    if rater.status == RaterStatus.PAUSED:
        return nothing(NoWork.PAUSED)
    if rater.status == RaterStatus.FINISHED:
        return nothing(NoWork.FINISHED)
    if rater.status == RaterStatus.UNQUALIFIED:
        return nothing(NoWork.UNQUALIFIED)
    if not study.is_active:
        return nothing(NoWork.CLOSED)
    if open_id is not None:
        assignment = _with_content(Assignment.objects).get(id=open_id)
        progress = (
            onboarding.qualification_progress(rater_id=rater.id, study=study)
            if assignment.is_qualification
            else None
        )
        return NextAssignment(assignment=assignment, judged=judged, quota=quota, qualification=progress)
    if quota is not None and live >= quota:
        _rater_finish(rater=rater)
        return nothing(NoWork.FINISHED if rater.status == RaterStatus.FINISHED else NoWork.QUOTA)
    if onboarding.needs_guidelines(rater=rater, study=study):
        return nothing(NoWork.GUIDELINES)
    qualifying = onboarding.needs_qualification(rater=rater, study=study)
    if qualifying:
        # Every answer given already (a decision lost to a failure after the last vote): decide now.
        decided = onboarding.rater_qualification_evaluate(rater=rater, study=study)
        if decided.decided and not decided.passed:
            return nothing(NoWork.UNQUALIFIED)
        qualifying = not decided.decided

    taken = None
    if judged == 0 and rater.platform in CROWD_PLATFORMS:
        if not started:
            return nothing(NoWork.START)
        try:
            taken = rate_limits.take(_first_pair_limits(study=study, client_address=client_address))
        except rate_limits.LimitReached as reached:
            logger.info("rater %s: first pair held back: %s", rater.id, reached)
            return NextAssignment(
                assignment=None,
                judged=judged,
                quota=quota,
                no_work=NoWork.THROTTLED,
                retry_seconds=min(reached.retry_after, THROTTLED_RETRY_SECONDS),
            )
    try:
        if qualifying:
            assignment = onboarding.qualification_reserve(rater=rater, study=study, now=now, rng=rng)
        else:
            assignment = _reserve(rater=rater, study=study, now=now, rng=rng)
    except IntegrityError:
        # The same rater asked twice at once and both requests picked one comparison: the unique
        # (comparison, rater) constraint refused the second, whose answer is the first's pair.
        if taken is not None:
            rate_limits.give_back(taken)
            taken = None
        open_id = Assignment.objects.filter(
            rater_id=rater.id, status=AssignmentStatus.RESERVED, expires_at__gt=now
        ).aggregate(open_id=Min("id"))["open_id"]
        if open_id is None:
            raise
        assignment = _with_content(Assignment.objects).get(id=open_id)
    except BaseException:
        if taken is not None:
            rate_limits.give_back(taken)
        raise
    if assignment is None and taken is not None:
        rate_limits.give_back(taken)  # nothing was reserved: an empty pool spends no budget
    if assignment is None and qualifying:
        return nothing(NoWork.QUALIFICATION_UNAVAILABLE)
    if assignment is None:
        if judged > 0:
            _rater_finish(rater=rater)
        return nothing(NoWork.FINISHED if rater.status == RaterStatus.FINISHED else NoWork.EMPTY)
    progress = (
        onboarding.qualification_progress(rater_id=rater.id, study=study)
        if assignment.is_qualification
        else None
    )
    return NextAssignment(assignment=assignment, judged=judged, quota=quota, qualification=progress)


def _first_pair_limits(*, study: Study, client_address: str) -> list[rate_limits.Limit]:
    return [
        rate_limits.Limit(
            "crowd-first-pair-address",
            settings.LOVELACE_CROWD_FIRST_PAIRS_PER_ADDRESS,
            client_address or "unknown",
        ),
        rate_limits.Limit(
            "crowd-first-pair-link", settings.LOVELACE_CROWD_FIRST_PAIRS_PER_LINK, str(study.id)
        ),
    ]


@transaction.atomic
def _reserve(*, rater: Rater, study: Study, now: datetime, rng: random.Random) -> Assignment | None:
    draw = rng.random()
    assignment = None
    if draw < study.gold_rate:
        assignment = _reserve_gold(rater=rater, study=study, now=now, rng=rng)
    elif draw < study.gold_rate + study.repeat_rate:
        assignment = _reserve_repeat(rater=rater, study=study, now=now)
    if assignment is None:
        assignment = _reserve_regular(rater=rater, study=study, now=now, rng=rng)
    if assignment is None and _expire_reservations(
        Q(comparison__study_id=study.id), now=now, limit=STALE_EXPIRY_BATCH
    ):
        # Abandoned reservations were holding the last free slots: they are free again now.
        assignment = _reserve_regular(rater=rater, study=study, now=now, rng=rng)
    return assignment


def _create_assignment(
    *, comparison: Comparison, rater: Rater, left_is_a: bool, study: Study, now: datetime
) -> Assignment:
    assignment = Assignment(
        comparison=comparison,
        rater=rater,
        left_is_a=left_is_a,
        reserved_at=now,
        expires_at=now + timedelta(seconds=study.reservation_seconds),
    )
    sql.insert(assignment)
    assignment.comparison = comparison  # keeps the prompt and samples loaded with it
    return assignment


def _reserve_regular(*, rater: Rater, study: Study, now: datetime, rng: random.Random) -> Assignment | None:
    # Fullest first: pairs reach their overlap (and become usable data) before new ones start.
    comparison = sql.lock_regular_candidate(study_id=study.id, rater_id=rater.id, overlap=study.overlap)
    if comparison is None:
        return None
    # The row lock makes the overlap condition hold already on PostgreSQL; on SQLite it is the guard.
    if not sql.comparison_take_slot(comparison_id=comparison.id, overlap=study.overlap):
        return None
    return _create_assignment(
        comparison=comparison, rater=rater, left_is_a=rng.random() < 0.5, study=study, now=now
    )


def _reserve_gold(*, rater: Rater, study: Study, now: datetime, rng: random.Random) -> Assignment | None:
    comparison = sql.lock_gold_candidate(study_id=study.id, rater_id=rater.id)
    if comparison is None:
        return None
    sql.comparison_take_slot(comparison_id=comparison.id, overlap=None)  # gold is exempt from overlap
    return _create_assignment(
        comparison=comparison, rater=rater, left_is_a=rng.random() < 0.5, study=study, now=now
    )


def _reserve_repeat(*, rater: Rater, study: Study, now: datetime) -> Assignment | None:
    """A new repeat comparison (samples swapped) of a regular pair this rater judged before."""
    found = sql.repeat_original(rater_id=rater.id, skip_latest=REPEAT_MIN_DISTANCE)
    if found is None:
        return None
    source, source_left_is_a = found
    # The swapped copy of a valid comparison is valid (two different samples of one prompt; the
    # database's constraints and trigger check again), so no model validation round trips here.
    repeat = Comparison.objects.create(
        study_id=source.study_id,
        prompt_id=source.prompt_id,
        sample_a_id=source.sample_b_id,
        sample_b_id=source.sample_a_id,
        kind=ComparisonKind.REPEAT,
        repeat_of=source,
        active_assignments=1,
    )
    repeat.prompt, repeat.sample_a, repeat.sample_b = source.prompt, source.sample_b, source.sample_a
    # The repeat's A is the original's B; showing A on the left exactly when the original showed
    # its A on the left puts every sample on the side opposite to where the rater first saw it.
    return _create_assignment(
        comparison=repeat, rater=rater, left_is_a=source_left_is_a, study=study, now=now
    )


def _expire_reservations(condition: Q, *, now: datetime, limit: int) -> int:
    """Mark reservations past their expiry as expired and free their comparisons' slots."""
    with transaction.atomic():
        stale = list(
            Assignment.objects.select_for_update(skip_locked=True)
            .filter(condition, status=AssignmentStatus.RESERVED, expires_at__lte=now)
            .order_by("id")
            .values_list("id", "comparison_id")[:limit]
        )
        if not stale:
            return 0
        Assignment.objects.filter(id__in=[assignment_id for assignment_id, _ in stale]).update(
            status=AssignmentStatus.EXPIRED
        )
        freed = Counter(comparison_id for _, comparison_id in stale)
        by_amount: dict[int, list[int]] = defaultdict(list)
        for comparison_id, amount in freed.items():
            by_amount[amount].append(comparison_id)
        # Lock the comparisons in id order so that two expiry runs cannot deadlock.
        list(Comparison.objects.select_for_update().filter(id__in=list(freed)).order_by("id").values("id"))
        for amount, comparison_ids in by_amount.items():
            Comparison.objects.filter(id__in=comparison_ids).update(
                active_assignments=F("active_assignments") - amount
            )
    return len(stale)


def assignment_expire_stale(*, limit: int = 1000) -> int:
    """Return expired reservations to the pool; the number expired. Scheduled every minute."""
    return _expire_reservations(Q(), now=timezone.now(), limit=limit)


def assignment_skip(*, rater: Rater, token: str, reason: str) -> Assignment:
    """The rater passes on a pair, saying why; the slot goes to another rater."""
    reason = reason.strip()
    if not reason:
        raise ApplicationError("Say why you skip this pair.", extra={"field": "reason"})
    if len(reason) > 300:
        raise ApplicationError("The reason is too long (300 characters at most).", extra={"field": "reason"})
    with transaction.atomic():
        assignment = _lock_own_assignment(rater=rater, token=token)
        if assignment.status == AssignmentStatus.SKIPPED:
            return assignment  # a retried request
        if assignment.status != AssignmentStatus.RESERVED:
            raise Conflict(f"This pair cannot be skipped: it is {assignment.status}.")
        assignment.status = AssignmentStatus.SKIPPED
        assignment.skip_reason = reason
        assignment.save(update_fields=["status", "skip_reason"])
        Comparison.objects.filter(id=assignment.comparison_id).update(
            active_assignments=F("active_assignments") - 1
        )
    return assignment


def _lock_own_assignment(*, rater: Rater, token: str) -> Assignment:
    assignment = Assignment.objects.select_for_update().filter(token=token).first()
    if assignment is None:
        raise NotFound("This pair does not exist.")
    if assignment.rater_id != rater.id:
        raise ApplicationError("This pair was given to someone else.", status=403)
    return assignment


# --- Judgments ---------------------------------------------------------------------------------


def outcome_for_choice(*, choice: str, left_is_a: bool) -> tuple[str, bool | None]:
    """(outcome in comparison terms, chose_left) for what the rater clicked."""
    if choice == "left":
        return (Outcome.A if left_is_a else Outcome.B), True
    if choice == "right":
        return (Outcome.B if left_is_a else Outcome.A), False
    if choice == "tie":
        return Outcome.TIE, None
    if choice == "both_bad":
        return Outcome.BOTH_BAD, None
    raise ApplicationError(f"Choose one of {', '.join(CHOICES)}.", extra={"field": "choice"})


def _check_vote(*, choice: str, strength: int | None, idempotency_key: str, rationale: str) -> None:
    if choice not in CHOICES:
        raise ApplicationError(f"Choose one of {', '.join(CHOICES)}.", extra={"field": "choice"})
    if strength is not None and choice not in ("left", "right"):
        raise ApplicationError("A strength goes with a preference for one side.", extra={"field": "strength"})
    if strength is not None and not 1 <= strength <= 3:
        raise ApplicationError("Strength is 1, 2 or 3.", extra={"field": "strength"})
    if not idempotency_key or len(idempotency_key) > 64:
        raise ApplicationError("A vote needs an idempotency key.", extra={"field": "idempotency_key"})
    if len(rationale) > MAX_RATIONALE_CHARACTERS:
        raise ApplicationError(
            f"The reason is too long ({MAX_RATIONALE_CHARACTERS} characters at most).",
            extra={"field": "rationale"},
        )


def _flags(
    *, rater: Rater, study: Study, active_seconds: float | None, qualification: bool = False
) -> list[str]:
    flags = []
    if active_seconds is not None and active_seconds < study.fast_judgment_seconds:
        flags.append(quality.FLAG_FAST)
    if rater.status == RaterStatus.PAUSED:
        flags.append(quality.FLAG_RATER_PAUSED)
    if qualification:
        flags.append(onboarding.FLAG_QUALIFICATION)  # a test of the rater: never counted
    return flags


def judgment_submit(
    *,
    rater: Rater,
    token: str,
    choice: str,
    idempotency_key: str,
    strength: int | None = None,
    rationale: str = "",
    shown_at: datetime | None = None,
    first_input_at: datetime | None = None,
    active_seconds: float | None = None,
) -> JudgmentSubmission:
    """Record a vote on the rater's own assignment (the one with ``token``), in one transaction.

    The same idempotency key sent again (a double click, a retried request) returns the judgment
    stored the first time. A vote that arrives after its reservation ran out is kept while the
    pair still has a free slot for it (a slow rater, a vote resent after a network failure). A
    vote on someone else's pair, on a pair whose slot another rater took meanwhile, or on a
    skipped pair is refused with a message for the rater.
    """
    _check_vote(choice=choice, strength=strength, idempotency_key=idempotency_key, rationale=rationale)
    study = rater.study
    now = timezone.now()
    if active_seconds is not None:
        active_seconds = max(0.0, float(active_seconds))
    expired = False
    try:
        with transaction.atomic():
            # One round trip: the locked assignment, its comparison's kind, whether it expired, the
            # judgment an undo left behind (this vote replaces it) and the rater's completed count.
            assignment = sql.lock_assignment_for_vote(token=token, now=now)
            if assignment is None:
                raise NotFound("This pair does not exist.")
            if assignment.rater_id != rater.id:
                raise ApplicationError("This pair was given to someone else.", status=403)
            if assignment.status == AssignmentStatus.COMPLETED:
                existing = Judgment.objects.filter(idempotency_key=idempotency_key).first()
                if existing is not None and existing.assignment_id == assignment.id:
                    return dataclasses.replace(
                        _submission(existing, created=False, rater=rater, judged=assignment.judged),
                        undoable=not assignment.is_qualification,
                    )
                raise Conflict("You have already judged this pair.")
            if assignment.status == AssignmentStatus.SKIPPED:
                raise Conflict("You skipped this pair, so it can no longer be judged.")
            # A reservation past its time that nobody swept yet still holds its slot. One the
            # sweeper returned to the pool takes a slot again if the pair has room (gold and
            # repeat pairs are not bound by the overlap); if not, another rater has it.
            if assignment.status == AssignmentStatus.EXPIRED and not sql.comparison_take_slot(
                comparison_id=assignment.comparison_id,
                overlap=study.overlap if assignment.comparison.kind == ComparisonKind.REGULAR else None,
            ):
                expired = True
            else:
                outcome, chose_left = outcome_for_choice(choice=choice, left_is_a=assignment.left_is_a)
                flags = _flags(
                    rater=rater,
                    study=study,
                    active_seconds=active_seconds,
                    qualification=assignment.is_qualification,
                )
                judgment = Judgment(
                    assignment=assignment,
                    outcome=outcome,
                    chose_left=chose_left,
                    strength=strength,
                    rationale=rationale.strip(),
                    idempotency_key=idempotency_key,
                    shown_at=shown_at,
                    first_input_at=first_input_at,
                    submitted_at=now,
                    active_seconds=active_seconds,
                    is_flagged=bool(flags),
                    flag_reasons=flags,
                    replaces_id=assignment.undone_id,
                )
                sql.insert(judgment)
                sql.assignment_complete(assignment_id=assignment.id)
                sql.comparison_count_completed(comparison_id=assignment.comparison_id)
    except IntegrityError:
        # The key was used before on this assignment (a retry that arrived after an undo) or,
        # wrongly, by another vote: return the stored judgment only in the first case.
        existing = (
            Judgment.objects.select_related("assignment").filter(idempotency_key=idempotency_key).first()
        )
        if (
            existing is not None
            and existing.assignment.token == token
            and existing.assignment.rater_id == rater.id
        ):
            judged = Assignment.objects.filter(rater_id=rater.id, status=AssignmentStatus.COMPLETED).count()
            return _submission(existing, created=False, rater=rater, judged=judged)
        raise Conflict("This vote could not be stored; reload the page and vote again.") from None
    if expired:
        raise Conflict(
            "This pair was reserved for you for a limited time and the reservation ran out; another "
            "rater has taken it since. Your vote was not recorded; here is a new pair."
        )
    judged = assignment.judged + 1
    kind = assignment.comparison.kind
    if assignment.is_qualification:
        # The qualification, not the quality tests, judges these answers (they are left out of them).
        decided = onboarding.rater_qualification_evaluate(rater=rater, study=study)
        submission = _submission(judgment, created=True, rater=rater, judged=judged)
        return dataclasses.replace(
            submission, undoable=False, qualification=decided if decided.decided else None
        )
    if kind != ComparisonKind.REGULAR or judged % QUALITY_EVERY == 0:
        try:
            signals = rater_quality_update(rater_id=rater.id, study=study, with_agreement=False)
            rater.status, rater.paused_reason = signals.status, signals.paused_reason
        except Exception:
            # The vote is committed; a failed quality check must not make the rater send it again.
            # The next gold, repeat or tenth vote (or staff's recompute) runs the check again.
            logger.exception("quality update of rater %s failed", rater.id)
    return _submission(judgment, created=True, rater=rater, judged=judged)


def _submission(judgment: Judgment, *, created: bool, rater: Rater, judged: int) -> JudgmentSubmission:
    return JudgmentSubmission(
        judgment=judgment,
        created=created,
        judged=judged,
        quota=rater.study.per_rater_cap,
        rater_status=rater.status,
        paused_reason=rater.paused_reason,
    )


def _lock_own_live_judgment(*, rater: Rater, idempotency_key: str, action: str, revoked: str) -> Judgment:
    """The rater's live judgment with this key, locked with its assignment (inside a transaction)."""
    judgment = (
        Judgment.objects.select_for_update(of=("self", "assignment"))
        .select_related("assignment")
        .filter(idempotency_key=idempotency_key)
        .first()
    )
    if judgment is None or judgment.assignment.rater_id != rater.id:
        raise NotFound(f"There is no such vote of yours to {action}.")
    if judgment.revoked_at is not None:
        raise Conflict(revoked)
    return judgment


def _revoke(judgment: Judgment, *, reason: str, now: datetime) -> None:
    judgment.revoked_at = now
    judgment.revoked_reason = reason
    judgment.save(update_fields=["revoked_at", "revoked_reason"])


def judgment_undo(*, rater: Rater, idempotency_key: str) -> Assignment:
    """Take back the rater's vote within UNDO_WINDOW_SECONDS: the judgment is revoked (kept as a
    record) and the pair is reserved again, so the next vote on it replaces the revoked one."""
    now = timezone.now()
    with transaction.atomic():
        judgment = _lock_own_live_judgment(
            rater=rater,
            idempotency_key=idempotency_key,
            action="undo",
            revoked="This vote was already taken back.",
        )
        if judgment.assignment.is_qualification:
            raise Conflict("Answers to qualification questions are final and cannot be taken back.")
        if (now - judgment.submitted_at).total_seconds() > UNDO_WINDOW_SECONDS:
            raise ApplicationError(
                f"Too late to undo: a vote can be taken back within {UNDO_WINDOW_SECONDS} seconds.",
                status=409,
            )
        _revoke(judgment, reason="undo", now=now)
        assignment = judgment.assignment
        assignment.status = AssignmentStatus.RESERVED
        assignment.reserved_at = now
        assignment.expires_at = now + timedelta(seconds=rater.study.reservation_seconds)
        assignment.save(update_fields=["status", "reserved_at", "expires_at"])
        Comparison.objects.filter(id=assignment.comparison_id).update(
            completed_assignments=F("completed_assignments") - 1
        )
    return _with_content(Assignment.objects).get(id=assignment.id)


def judgment_correct(
    *,
    rater: Rater,
    idempotency_key: str,
    choice: str,
    new_idempotency_key: str,
    strength: int | None = None,
    rationale: str = "",
) -> Judgment:
    """Replace a live judgment with a corrected one; the old one is revoked, never overwritten.

    The new judgment carries no timings: the rater did not look at the pair for it afresh.
    """
    _check_vote(choice=choice, strength=strength, idempotency_key=new_idempotency_key, rationale=rationale)
    now = timezone.now()
    with transaction.atomic():
        old = _lock_own_live_judgment(
            rater=rater,
            idempotency_key=idempotency_key,
            action="correct",
            revoked="This vote was taken back or corrected already; correct the newest one.",
        )
        if old.assignment.is_qualification:
            raise Conflict("Answers to qualification questions are final and cannot be corrected.")
        outcome, chose_left = outcome_for_choice(choice=choice, left_is_a=old.assignment.left_is_a)
        _revoke(old, reason="correction", now=now)
        flags = _flags(rater=rater, study=rater.study, active_seconds=None)
        corrected = Judgment(
            assignment=old.assignment,
            outcome=outcome,
            chose_left=chose_left,
            strength=strength,
            rationale=rationale.strip(),
            idempotency_key=new_idempotency_key,
            submitted_at=now,
            is_flagged=bool(flags),
            flag_reasons=flags,
            replaces=old,
        )
        corrected.full_clean(exclude=["chose_left"])  # None is valid: a tie picks no side
        corrected.save()
    return corrected


# --- Quality control ---------------------------------------------------------------------------


AGREEMENT_SIGNALS = ("majority_comparisons", "majority_agreement")


def rater_quality_update(
    *, rater_id: int, study: Study | None = None, with_agreement: bool = True
) -> quality.QualityUpdate:
    """Recompute the rater's quality signals, store them, and pause it when a quality test fails.

    ``study`` saves loading the rules again when the caller has them (the vote does).
    ``with_agreement=False`` (the vote's check) leaves agreement with the other raters as last
    computed: it reads every other vote on the rater's pairs, moves as others vote (the scheduled
    refresh recomputes it) and pauses no one, while the vote's check exists to pause promptly.
    """
    state = sql.rater_quality_state(rater_id=rater_id)
    if state is None:
        raise NotFound("This rater does not exist.")
    if study is None:
        study = Study.objects.get(raters__id=rater_id)
    status, paused_reason, previous = state
    resumed_at = previous.get("resumed_at")
    rows = sql.quality_rows(
        rater_id=rater_id, since=datetime.fromisoformat(resumed_at) if resumed_at else None
    )
    others = sql.other_outcomes(rater_id=rater_id) if with_agreement else {}
    signals = quality.compute_signals(rows, other_outcomes=others)
    decisive = signals
    if resumed_at:
        recent = [row for row in rows if row.since_resume]
        decisive = quality.compute_signals(recent, other_outcomes=others)
    stored: dict[str, Any] = {**signals.as_dict(), "computed_at": timezone.now().isoformat()}
    if not with_agreement:
        for name in AGREEMENT_SIGNALS:
            del stored[name]
    # A merge: ``resumed_at`` (staff's) and, from the vote's check, the agreement signals (the
    # refresh's) stay as they are in the row now, even if they changed since the read above.
    sql.rater_merge_quality(rater_id=rater_id, signals=stored)
    reason = quality.pause_reason(decisive, study) if status == RaterStatus.ACTIVE else None
    if reason and rater_pause(rater_id=rater_id, reason=reason):
        return quality.QualityUpdate(signals=signals, status=RaterStatus.PAUSED, paused_reason=reason)
    return quality.QualityUpdate(signals=signals, status=status, paused_reason=paused_reason)


def rater_quality_refresh_recent(*, within_minutes: int = 15, max_studies: int = 20) -> int:
    """Refresh every rater of the active studies that received judgments recently (agreement with
    the majority moves as other raters vote); bounded to ``max_studies``. Returns raters refreshed."""
    since = timezone.now() - timedelta(minutes=within_minutes)
    study_ids = list(
        Judgment.objects.filter(submitted_at__gte=since, assignment__comparison__study__is_active=True)
        .values_list("assignment__comparison__study_id", flat=True)
        .distinct()[:max_studies]
    )
    return sum(rater_quality_refresh_study(study_id=study_id) for study_id in study_ids)


def rater_quality_refresh_study(*, study_id: int) -> int:
    """Recompute every rater of a study (agreement moves when other raters vote); the count."""
    rater_ids = list(Rater.objects.filter(study_id=study_id).values_list("id", flat=True))
    for rater_id in rater_ids:
        rater_quality_update(rater_id=rater_id)
    return len(rater_ids)


__all__ = [
    "UNDO_WINDOW_SECONDS",
    "JudgmentSubmission",
    "NextAssignment",
    "NoWork",
    "assignment_expire_stale",
    "assignment_next_for_rater",
    "assignment_skip",
    "judgment_correct",
    "judgment_submit",
    "judgment_undo",
    "outcome_for_choice",
    "rater_for_account",
    "rater_join_invite",
    "rater_join_platform",
    "rater_pause",
    "rater_quality_refresh_recent",
    "rater_quality_refresh_study",
    "rater_quality_update",
    "rater_resume",
]
