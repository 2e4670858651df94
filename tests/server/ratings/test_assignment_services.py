"""Assignment: overlap, no repeats for one rater, reservations and their expiry, sides, gold and
repeat injection, caps."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest

from server.core.exceptions import ApplicationError
from server.ratings.models import (
    Assignment,
    AssignmentStatus,
    Comparison,
    ComparisonKind,
    Platform,
    RaterStatus,
)
from server.ratings.services import (
    NoWork,
    assignment_expire_stale,
    assignment_next_for_rater,
    assignment_skip,
    judgment_submit,
)
from tests import factories
from tests.server.ratings.conftest import expire, make_comparisons, make_study

pytestmark = pytest.mark.django_db


def vote(rater, assignment, choice="tie", key=None):  # type: ignore[no-untyped-def]
    return judgment_submit(
        rater=rater, token=assignment.token, choice=choice, idempotency_key=key or f"key-{assignment.id}"
    )


def test_a_comparison_gets_at_most_overlap_live_assignments() -> None:
    study = make_study(overlap=2)
    (comparison,) = make_comparisons(study, 1)
    raters = [factories.rater(study=study) for _ in range(3)]

    results = [assignment_next_for_rater(rater=rater) for rater in raters]

    assert [result.assignment is not None for result in results] == [True, True, False]
    assert results[2].no_work == NoWork.EMPTY
    comparison.refresh_from_db()
    assert comparison.active_assignments == 2
    assert Assignment.objects.filter(comparison=comparison).count() == 2


def test_the_fullest_comparison_is_given_first_so_pairs_reach_their_overlap() -> None:
    study = make_study(overlap=3)
    _, second = make_comparisons(study, 2)
    Comparison.objects.filter(id=second.id).update(active_assignments=1)

    result = assignment_next_for_rater(rater=factories.rater(study=study))

    assert result.assignment is not None
    assert result.assignment.comparison_id == second.id


def test_a_rater_never_gets_the_same_comparison_twice() -> None:
    study = make_study(overlap=5)
    comparisons = make_comparisons(study, 3)
    rater = factories.rater(study=study)

    given = []
    for _ in range(4):
        result = assignment_next_for_rater(rater=rater)
        if result.assignment is None:
            break
        given.append(result.assignment.comparison_id)
        vote(rater, result.assignment)

    assert sorted(given) == sorted(comparison.id for comparison in comparisons)
    assert assignment_next_for_rater(rater=rater).no_work == NoWork.EMPTY


def test_the_open_reservation_is_returned_again_until_it_is_judged() -> None:
    study = make_study(overlap=3)
    make_comparisons(study, 3)
    rater = factories.rater(study=study)

    first = assignment_next_for_rater(rater=rater).assignment
    again = assignment_next_for_rater(rater=rater).assignment

    assert first is not None and again is not None
    assert again.id == first.id
    assert Assignment.objects.filter(rater=rater).count() == 1


def test_a_reservation_expires_after_the_study_reservation_time() -> None:
    study = make_study(reservation_seconds=90)
    make_comparisons(study, 1)

    assignment = assignment_next_for_rater(rater=factories.rater(study=study)).assignment

    assert assignment is not None
    assert assignment.expires_at - assignment.reserved_at == timedelta(seconds=90)


def test_expiring_stale_reservations_returns_their_slots_to_the_pool() -> None:
    study = make_study(overlap=1)
    (comparison,) = make_comparisons(study, 1)
    first_rater, second_rater = factories.rater(study=study), factories.rater(study=study)
    stale = assignment_next_for_rater(rater=first_rater).assignment
    assert stale is not None
    assert assignment_next_for_rater(rater=second_rater).assignment is None
    expire(stale.id)

    expired = assignment_expire_stale()

    assert expired == 1
    stale.refresh_from_db()
    comparison.refresh_from_db()
    assert stale.status == AssignmentStatus.EXPIRED
    assert comparison.active_assignments == 0
    given = assignment_next_for_rater(rater=second_rater).assignment
    assert given is not None and given.comparison_id == comparison.id


def test_expire_stale_leaves_live_reservations_and_respects_its_limit() -> None:
    study = make_study(overlap=1)
    make_comparisons(study, 3)
    raters = [factories.rater(study=study) for _ in range(3)]
    assignments = [assignment_next_for_rater(rater=rater).assignment for rater in raters]
    expire(assignments[0].id, assignments[1].id)

    assert assignment_expire_stale(limit=1) == 1
    assert assignment_expire_stale(limit=1) == 1
    assert assignment_expire_stale(limit=1) == 0
    statuses = list(Assignment.objects.order_by("id").values_list("status", flat=True))
    assert statuses == [AssignmentStatus.EXPIRED, AssignmentStatus.EXPIRED, AssignmentStatus.RESERVED]
    assert sorted(Comparison.objects.values_list("active_assignments", flat=True)) == [0, 0, 1]


def test_an_expired_reservation_is_free_at_selection_time_before_the_scheduled_expiry_runs() -> None:
    study = make_study(overlap=1)
    (comparison,) = make_comparisons(study, 1)
    abandoned = assignment_next_for_rater(rater=factories.rater(study=study)).assignment
    expire(abandoned.id)

    given = assignment_next_for_rater(rater=factories.rater(study=study)).assignment

    assert given is not None and given.comparison_id == comparison.id
    abandoned.refresh_from_db()
    comparison.refresh_from_db()
    assert abandoned.status == AssignmentStatus.EXPIRED
    assert comparison.active_assignments == 1


def test_the_raters_own_expired_reservation_is_not_returned() -> None:
    study = make_study(overlap=2)
    make_comparisons(study, 2)
    rater = factories.rater(study=study)
    stale = assignment_next_for_rater(rater=rater).assignment
    expire(stale.id)

    given = assignment_next_for_rater(rater=rater).assignment

    assert given is not None
    assert given.id != stale.id
    assert given.comparison_id != stale.comparison_id


def test_sides_are_randomised_and_recorded(rng: random.Random) -> None:
    study = make_study(overlap=1)
    make_comparisons(study, 40)
    rater = factories.rater(study=study)

    sides = []
    for _ in range(40):
        assignment = assignment_next_for_rater(rater=rater, rng=rng).assignment
        sides.append(assignment.left_is_a)
        vote(rater, assignment)

    assert list(Assignment.objects.order_by("id").values_list("left_is_a", flat=True)) == sides
    assert 12 <= sum(sides) <= 28  # Binomial(40, 1/2): outside this range has p < 0.02


def test_gold_rate_one_gives_gold_comparisons_while_any_is_left() -> None:
    study = make_study(gold_rate=0.5, overlap=1)
    make_comparisons(study, 3)
    golds = [factories.gold_comparison(study=study) for _ in range(2)]
    rater = factories.rater(study=study)
    always = random.Random()
    always.random = lambda: 0.0  # type: ignore[method-assign]

    kinds = []
    for _ in range(4):
        assignment = assignment_next_for_rater(rater=rater, rng=always).assignment
        kinds.append(assignment.comparison.kind)
        vote(rater, assignment)

    assert kinds == [ComparisonKind.GOLD, ComparisonKind.GOLD, ComparisonKind.REGULAR, ComparisonKind.REGULAR]
    assert {a.comparison_id for a in Assignment.objects.filter(comparison__kind="gold")} == {
        g.id for g in golds
    }


def test_gold_comparisons_are_exempt_from_overlap_so_every_rater_meets_the_same_checks() -> None:
    study = make_study(gold_rate=0.5, overlap=1)
    gold = factories.gold_comparison(study=study)
    always = random.Random()
    always.random = lambda: 0.0  # type: ignore[method-assign]

    given = [
        assignment_next_for_rater(rater=factories.rater(study=study), rng=always).assignment for _ in range(3)
    ]

    assert [assignment.comparison_id for assignment in given] == [gold.id, gold.id, gold.id]
    gold.refresh_from_db()
    assert gold.active_assignments == 3


def test_gold_rate_zero_never_gives_gold(rng: random.Random) -> None:
    study = make_study(gold_rate=0.0, overlap=1)
    make_comparisons(study, 10)
    factories.gold_comparison(study=study)
    rater = factories.rater(study=study)

    for _ in range(10):
        assignment = assignment_next_for_rater(rater=rater, rng=rng).assignment
        assert assignment.comparison.kind == ComparisonKind.REGULAR
        vote(rater, assignment)
    assert assignment_next_for_rater(rater=rater, rng=rng).assignment is None


def test_gold_and_repeat_rates_hold_statistically_with_a_fixed_seed(rng: random.Random) -> None:
    study = make_study(gold_rate=0.2, repeat_rate=0.1, overlap=1)
    make_comparisons(study, 200)
    for _ in range(60):
        factories.gold_comparison(study=study)
    rater = factories.rater(study=study)

    kinds = []
    for _ in range(200):
        assignment = assignment_next_for_rater(rater=rater, rng=rng).assignment
        kinds.append(assignment.comparison.kind)
        vote(rater, assignment, choice="tie")

    # Expected 40 gold and ~20 repeats (fewer early on, before there is anything to repeat).
    assert 27 <= kinds.count(ComparisonKind.GOLD) <= 53
    assert 10 <= kinds.count(ComparisonKind.REPEAT) <= 30


def test_a_repeat_is_the_judged_pair_again_with_samples_and_sides_swapped() -> None:
    study = make_study(repeat_rate=0.5, overlap=1)
    original_comparison = make_comparisons(study, 6)
    rater = factories.rater(study=study)
    never = random.Random()
    never.random = lambda: 0.99  # type: ignore[method-assign]
    judged = []
    for _ in range(4):  # a repeat is never drawn from the last three judgments
        assignment = assignment_next_for_rater(rater=rater, rng=never).assignment
        judged.append(assignment)
        vote(rater, assignment)
    always_repeat = random.Random()
    always_repeat.random = lambda: 0.0  # type: ignore[method-assign]

    repeat_assignment = assignment_next_for_rater(rater=rater, rng=always_repeat).assignment

    repeat = repeat_assignment.comparison
    original = judged[0]
    assert repeat.kind == ComparisonKind.REPEAT
    assert repeat.repeat_of_id == original.comparison_id
    assert (repeat.sample_a_id, repeat.sample_b_id) == (
        original.comparison.sample_b_id,
        original.comparison.sample_a_id,
    )
    original_left = original.comparison.sample_a_id if original.left_is_a else original.comparison.sample_b_id
    repeat_left = repeat.sample_a_id if repeat_assignment.left_is_a else repeat.sample_b_id
    assert repeat_left != original_left
    assert repeat.active_assignments == 1
    assert len(original_comparison) == 6


def test_repeat_rate_zero_never_creates_repeats(rng: random.Random) -> None:
    study = make_study(repeat_rate=0.0, overlap=1)
    make_comparisons(study, 15)
    rater = factories.rater(study=study)

    for _ in range(15):
        vote(rater, assignment_next_for_rater(rater=rater, rng=rng).assignment)

    assert Comparison.objects.filter(kind=ComparisonKind.REPEAT).count() == 0


def test_an_account_rater_at_the_cap_gets_no_more_work() -> None:
    study = make_study(per_rater_cap=2, overlap=1)
    make_comparisons(study, 5)
    rater = factories.rater(study=study)
    for _ in range(2):
        vote(rater, assignment_next_for_rater(rater=rater).assignment)

    result = assignment_next_for_rater(rater=rater)

    assert result.assignment is None
    assert result.no_work == NoWork.QUOTA
    assert (result.judged, result.quota) == (2, 2)
    assert Assignment.objects.filter(rater=rater).count() == 2
    rater.refresh_from_db()
    assert rater.status == RaterStatus.ACTIVE


def test_an_open_reservation_counts_toward_the_cap() -> None:
    study = make_study(per_rater_cap=1, overlap=1)
    make_comparisons(study, 3)
    rater = factories.rater(study=study)
    open_one = assignment_next_for_rater(rater=rater).assignment

    again = assignment_next_for_rater(rater=rater).assignment

    assert again.id == open_one.id
    assert Assignment.objects.filter(rater=rater).count() == 1


def test_a_crowd_participant_at_the_cap_is_finished() -> None:
    study = make_study(per_rater_cap=1, overlap=1, completion_code="CODE-1")
    make_comparisons(study, 3)
    rater = factories.crowd_rater(study=study, platform=Platform.PROLIFIC)
    vote(rater, assignment_next_for_rater(rater=rater).assignment)

    result = assignment_next_for_rater(rater=rater)

    assert result.no_work == NoWork.FINISHED
    rater.refresh_from_db()
    assert rater.status == RaterStatus.FINISHED


def test_a_crowd_participant_is_finished_when_no_work_is_left_after_judging_some() -> None:
    study = make_study(overlap=1)
    make_comparisons(study, 1)
    rater = factories.crowd_rater(study=study, platform=Platform.MTURK)
    vote(rater, assignment_next_for_rater(rater=rater).assignment)

    result = assignment_next_for_rater(rater=rater)

    assert result.no_work == NoWork.FINISHED
    rater.refresh_from_db()
    assert rater.status == RaterStatus.FINISHED


def test_a_crowd_participant_who_judged_nothing_is_not_finished_by_an_empty_pool() -> None:
    study = make_study(overlap=1)
    rater = factories.crowd_rater(study=study)

    result = assignment_next_for_rater(rater=rater)

    assert result.no_work == NoWork.EMPTY
    rater.refresh_from_db()
    assert rater.status == RaterStatus.ACTIVE


def test_a_paused_rater_gets_no_work_not_even_its_open_reservation() -> None:
    study = make_study(overlap=1)
    make_comparisons(study, 2)
    rater = factories.rater(study=study)
    assignment_next_for_rater(rater=rater)
    rater.status, rater.paused_reason = RaterStatus.PAUSED, "Too fast."
    rater.save()

    result = assignment_next_for_rater(rater=rater)

    assert result.assignment is None
    assert result.no_work == NoWork.PAUSED


def test_an_inactive_study_gives_no_work() -> None:
    study = make_study(is_active=False)
    make_comparisons(study, 1)

    result = assignment_next_for_rater(rater=factories.rater(study=study))

    assert result.no_work == NoWork.CLOSED
    assert Assignment.objects.count() == 0


def test_skipping_frees_the_slot_and_the_rater_never_sees_the_pair_again() -> None:
    study = make_study(overlap=1)
    (comparison,) = make_comparisons(study, 1)
    rater, other = factories.rater(study=study), factories.rater(study=study)
    assignment = assignment_next_for_rater(rater=rater).assignment

    skipped = assignment_skip(rater=rater, token=assignment.token, reason="I cannot judge this topic")

    assert skipped.status == AssignmentStatus.SKIPPED
    assert skipped.skip_reason == "I cannot judge this topic"
    comparison.refresh_from_db()
    assert comparison.active_assignments == 0
    assert assignment_next_for_rater(rater=rater).assignment is None
    assert assignment_next_for_rater(rater=other).assignment.comparison_id == comparison.id


def test_a_skip_needs_a_reason() -> None:
    study = make_study(overlap=1)
    make_comparisons(study, 1)
    rater = factories.rater(study=study)
    assignment = assignment_next_for_rater(rater=rater).assignment

    with pytest.raises(ApplicationError, match="Say why you skip this pair"):
        assignment_skip(rater=rater, token=assignment.token, reason="  ")
    assignment.refresh_from_db()
    assert assignment.status == AssignmentStatus.RESERVED
