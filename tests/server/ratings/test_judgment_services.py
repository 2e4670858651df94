"""Judgments: outcome in comparison terms, idempotency, refusals, undo window, corrections, flags."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.utils import timezone

from server.core.exceptions import ApplicationError
from server.ratings.models import Assignment, AssignmentStatus, Comparison, Judgment, Outcome, RaterStatus
from server.ratings.services import (
    assignment_expire_stale,
    assignment_next_for_rater,
    assignment_skip,
    judgment_correct,
    judgment_submit,
    judgment_undo,
)
from tests import factories
from tests.server.ratings.conftest import expire, make_comparisons, make_study

pytestmark = pytest.mark.django_db


def reserved(*, left_is_a: bool = True, **rules: object):  # type: ignore[no-untyped-def]
    """A rater holding a fresh reservation whose sides are as asked."""
    study = make_study(overlap=2, **rules)
    make_comparisons(study, 1)
    rater = factories.rater(study=study)
    assignment = assignment_next_for_rater(rater=rater).assignment
    Assignment.objects.filter(id=assignment.id).update(left_is_a=left_is_a)
    assignment.refresh_from_db()
    return rater, assignment


@pytest.mark.parametrize(
    ("choice", "left_is_a", "outcome", "chose_left"),
    [
        ("left", True, Outcome.A, True),
        ("left", False, Outcome.B, True),
        ("right", True, Outcome.B, False),
        ("right", False, Outcome.A, False),
        ("tie", False, Outcome.TIE, None),
        ("both_bad", True, Outcome.BOTH_BAD, None),
    ],
)
def test_the_outcome_is_stored_in_comparison_terms(choice, left_is_a, outcome, chose_left) -> None:  # type: ignore[no-untyped-def]
    rater, assignment = reserved(left_is_a=left_is_a)

    submission = judgment_submit(rater=rater, token=assignment.token, choice=choice, idempotency_key="k-1")

    judgment = Judgment.objects.get()
    assert (judgment.outcome, judgment.chose_left) == (outcome, chose_left)
    assert submission.created is True
    assignment.refresh_from_db()
    assert assignment.status == AssignmentStatus.COMPLETED
    comparison = Comparison.objects.get()
    assert (comparison.active_assignments, comparison.completed_assignments) == (1, 1)


def test_strength_rationale_and_timings_are_stored() -> None:
    rater, assignment = reserved()
    shown = timezone.now() - timedelta(seconds=30)

    judgment_submit(
        rater=rater,
        token=assignment.token,
        choice="right",
        idempotency_key="k-1",
        strength=3,
        rationale="  The second one rhymes.  ",
        shown_at=shown,
        first_input_at=shown + timedelta(seconds=12),
        active_seconds=21.5,
    )

    judgment = Judgment.objects.get()
    assert judgment.strength == 3
    assert judgment.rationale == "The second one rhymes."
    assert judgment.shown_at == shown
    assert judgment.first_input_at == shown + timedelta(seconds=12)
    assert judgment.active_seconds == 21.5
    assert judgment.is_flagged is False
    assert judgment.flag_reasons == []


def test_the_same_idempotency_key_twice_stores_one_judgment_and_returns_it() -> None:
    rater, assignment = reserved()
    first = judgment_submit(rater=rater, token=assignment.token, choice="left", idempotency_key="k-1")

    again = judgment_submit(rater=rater, token=assignment.token, choice="left", idempotency_key="k-1")

    assert again.created is False
    assert again.judgment.id == first.judgment.id
    assert Judgment.objects.count() == 1
    assert Comparison.objects.get().completed_assignments == 1


def test_a_second_vote_with_another_key_on_a_judged_pair_is_refused() -> None:
    rater, assignment = reserved()
    judgment_submit(rater=rater, token=assignment.token, choice="left", idempotency_key="k-1")

    with pytest.raises(ApplicationError, match=re.escape("You have already judged this pair.")) as refused:
        judgment_submit(rater=rater, token=assignment.token, choice="right", idempotency_key="k-2")

    assert refused.value.status == 409
    assert list(Judgment.objects.values_list("outcome", flat=True)) == [Outcome.A]


def test_a_vote_on_someone_elses_pair_is_refused() -> None:
    rater, assignment = reserved()
    intruder = factories.rater(study=rater.study)

    with pytest.raises(ApplicationError, match=re.escape("This pair was given to someone else.")) as refused:
        judgment_submit(rater=intruder, token=assignment.token, choice="left", idempotency_key="k-1")

    assert refused.value.status == 403
    assert Judgment.objects.count() == 0


def test_a_late_vote_on_a_reservation_not_yet_returned_to_the_pool_is_kept() -> None:
    rater, assignment = reserved()
    expire(assignment.id)  # its time ran out a second ago; the sweeper has not run

    submission = judgment_submit(rater=rater, token=assignment.token, choice="left", idempotency_key="k-1")

    assert submission.created is True
    assignment.refresh_from_db()
    comparison = Comparison.objects.get()
    assert assignment.status == AssignmentStatus.COMPLETED
    assert (comparison.active_assignments, comparison.completed_assignments) == (1, 1)


def test_a_late_vote_takes_its_slot_again_when_the_pair_still_has_room() -> None:
    rater, assignment = reserved()  # overlap 2
    expire(assignment.id)
    assert assignment_expire_stale() == 1  # back in the pool
    assert Comparison.objects.get().active_assignments == 0

    judgment_submit(rater=rater, token=assignment.token, choice="left", idempotency_key="k-1")

    assignment.refresh_from_db()
    comparison = Comparison.objects.get()
    assert assignment.status == AssignmentStatus.COMPLETED
    assert (comparison.active_assignments, comparison.completed_assignments) == (1, 1)
    assert Judgment.objects.get().assignment_id == assignment.id


def test_a_late_vote_is_refused_when_other_raters_took_the_pairs_slots() -> None:
    rater, assignment = reserved()  # overlap 2
    expire(assignment.id)
    assignment_expire_stale()
    others = [factories.rater(study=rater.study) for _ in range(2)]
    for other in others:
        assert assignment_next_for_rater(rater=other).assignment.comparison_id == assignment.comparison_id

    with pytest.raises(ApplicationError, match="another rater has taken it since") as refused:
        judgment_submit(rater=rater, token=assignment.token, choice="left", idempotency_key="k-1")

    assert refused.value.status == 409
    assert Judgment.objects.count() == 0
    assignment.refresh_from_db()
    assert assignment.status == AssignmentStatus.EXPIRED
    assert Comparison.objects.get().active_assignments == 2


def test_a_vote_on_a_skipped_pair_is_refused() -> None:
    rater, assignment = reserved()
    assignment_skip(rater=rater, token=assignment.token, reason="Offensive or harmful content")

    with pytest.raises(ApplicationError, match="You skipped this pair"):
        judgment_submit(rater=rater, token=assignment.token, choice="left", idempotency_key="k-1")
    assert Judgment.objects.count() == 0


def test_a_strength_with_a_tie_is_refused() -> None:
    rater, assignment = reserved()

    with pytest.raises(ApplicationError, match=re.escape("A strength goes with a preference for one side.")):
        judgment_submit(rater=rater, token=assignment.token, choice="tie", strength=2, idempotency_key="k-1")
    assert Judgment.objects.count() == 0


def test_undo_within_ten_seconds_revokes_the_vote_and_reserves_the_pair_again() -> None:
    rater, assignment = reserved()
    judgment_submit(rater=rater, token=assignment.token, choice="left", idempotency_key="k-1")

    again = judgment_undo(rater=rater, idempotency_key="k-1")

    assert again.id == assignment.id
    assert again.status == AssignmentStatus.RESERVED
    assert again.expires_at > timezone.now()
    undone = Judgment.objects.get()
    assert undone.revoked_reason == "undo"
    assert undone.revoked_at is not None
    comparison = Comparison.objects.get()
    assert (comparison.active_assignments, comparison.completed_assignments) == (1, 0)


def test_the_vote_after_an_undo_replaces_the_undone_judgment() -> None:
    rater, assignment = reserved(left_is_a=True)
    judgment_submit(rater=rater, token=assignment.token, choice="left", idempotency_key="k-1")
    judgment_undo(rater=rater, idempotency_key="k-1")

    second = judgment_submit(rater=rater, token=assignment.token, choice="right", idempotency_key="k-2")

    first = Judgment.objects.get(idempotency_key="k-1")
    assert second.judgment.replaces_id == first.id
    assert second.judgment.outcome == Outcome.B
    live = Judgment.objects.filter(revoked_at__isnull=True)
    assert list(live.values_list("idempotency_key", flat=True)) == ["k-2"]
    assert Comparison.objects.get().completed_assignments == 1


def test_a_retry_of_an_undone_vote_returns_the_stored_judgment_and_creates_nothing() -> None:
    rater, assignment = reserved()
    judgment_submit(rater=rater, token=assignment.token, choice="left", idempotency_key="k-1")
    judgment_undo(rater=rater, idempotency_key="k-1")

    retried = judgment_submit(rater=rater, token=assignment.token, choice="left", idempotency_key="k-1")

    assert retried.created is False
    assert retried.judgment.revoked_reason == "undo"
    assert Judgment.objects.count() == 1


def test_undo_after_ten_seconds_is_refused() -> None:
    rater, assignment = reserved()
    judgment_submit(rater=rater, token=assignment.token, choice="left", idempotency_key="k-1")
    Judgment.objects.update(submitted_at=timezone.now() - timedelta(seconds=11))

    with pytest.raises(
        ApplicationError, match=re.escape("Too late to undo: a vote can be taken back within 10 seconds.")
    ):
        judgment_undo(rater=rater, idempotency_key="k-1")

    judgment = Judgment.objects.get()
    assert judgment.revoked_at is None
    assignment.refresh_from_db()
    assert assignment.status == AssignmentStatus.COMPLETED


def test_undo_of_someone_elses_vote_is_refused() -> None:
    rater, assignment = reserved()
    judgment_submit(rater=rater, token=assignment.token, choice="left", idempotency_key="k-1")

    with pytest.raises(ApplicationError, match=re.escape("There is no such vote of yours to undo.")):
        judgment_undo(rater=factories.rater(study=rater.study), idempotency_key="k-1")
    assert Judgment.objects.get().revoked_at is None


def test_a_correction_revokes_the_old_judgment_and_chains_the_new_one() -> None:
    rater, assignment = reserved(left_is_a=False)
    judgment_submit(rater=rater, token=assignment.token, choice="left", idempotency_key="k-1")

    corrected = judgment_correct(rater=rater, idempotency_key="k-1", choice="tie", new_idempotency_key="k-2")
    twice = judgment_correct(
        rater=rater, idempotency_key="k-2", choice="right", strength=2, new_idempotency_key="k-3"
    )

    chain = list(
        Judgment.objects.order_by("id").values_list("outcome", "revoked_reason", "replaces__idempotency_key")
    )
    assert chain == [
        (Outcome.B, "correction", None),
        (Outcome.TIE, "correction", "k-1"),
        (Outcome.A, "", "k-2"),
    ]
    assert corrected.replaces.idempotency_key == "k-1"
    assert twice.strength == 2
    assignment.refresh_from_db()
    assert assignment.status == AssignmentStatus.COMPLETED
    assert Comparison.objects.get().completed_assignments == 1


def test_correcting_a_revoked_judgment_is_refused() -> None:
    rater, assignment = reserved()
    judgment_submit(rater=rater, token=assignment.token, choice="left", idempotency_key="k-1")
    judgment_correct(rater=rater, idempotency_key="k-1", choice="tie", new_idempotency_key="k-2")

    with pytest.raises(ApplicationError, match="correct the newest one"):
        judgment_correct(rater=rater, idempotency_key="k-1", choice="right", new_idempotency_key="k-3")
    assert Judgment.objects.count() == 2


def test_an_implausibly_fast_judgment_is_flagged_fast() -> None:
    rater, assignment = reserved(fast_judgment_seconds=2.0)

    judgment_submit(
        rater=rater, token=assignment.token, choice="left", idempotency_key="k-1", active_seconds=1.2
    )

    judgment = Judgment.objects.get()
    assert (judgment.is_flagged, judgment.flag_reasons) == (True, ["fast"])


def test_a_judgment_at_the_fast_threshold_is_not_flagged() -> None:
    rater, assignment = reserved(fast_judgment_seconds=2.0)

    judgment_submit(
        rater=rater, token=assignment.token, choice="left", idempotency_key="k-1", active_seconds=2.0
    )

    assert Judgment.objects.get().is_flagged is False


def test_a_judgment_of_a_paused_rater_is_stored_and_flagged() -> None:
    rater, assignment = reserved()
    rater.status, rater.paused_reason = RaterStatus.PAUSED, "Paused by staff."
    rater.save()

    judgment_submit(
        rater=rater, token=assignment.token, choice="left", idempotency_key="k-1", active_seconds=0.5
    )

    judgment = Judgment.objects.get()
    assert (judgment.is_flagged, judgment.flag_reasons) == (True, ["fast", "rater_paused"])
