"""Onboarding: the guidelines acknowledged before the first pair, and the qualification on staff
gold checks (server/ratings/onboarding.py)."""

from __future__ import annotations

import json
import random

import pytest
from django.core.exceptions import ValidationError
from django.test import Client
from django.urls import reverse

from server.core.exceptions import Conflict
from server.ratings import onboarding, services, sql
from server.ratings.gold_import import GoldRow, gold_pairs_import
from server.ratings.models import Assignment, ComparisonKind, GoldAnswer, Judgment, RaterStatus
from server.ratings.pair_selection import gold_comparisons_create
from server.ratings.selectors import judgments_trusted
from server.studies.models import Study
from tests import factories
from tests.server.ratings.conftest import make_comparisons, make_study

pytestmark = pytest.mark.django_db


def staff_gold(study: Study, count: int) -> None:
    rows = [
        GoldRow(
            line=number,
            prompt=f"Describe a harbour, take {number}.",
            text_a=f"Boats knock softly against the pier; gulls argue over rope {number}.",
            text_b=f"Spreadsheet quarterly synergy {number}.",
            expected=GoldAnswer.A,
        )
        for number in range(1, count + 1)
    ]
    gold_pairs_import(study=study, rows=rows)


def qualifying_study(*, pairs: int = 2, min_correct: int = 2, staff: int = 3, regular: int = 3) -> Study:
    study = make_study(qualification_pairs=pairs, qualification_min_correct=min_correct, gold_rate=0.0)
    staff_gold(study, staff)
    make_comparisons(study, regular)
    return study


def answer(rater, assignment: Assignment, *, correct: bool, key: str):  # type: ignore[no-untyped-def]
    """Vote on a gold pair as expected (or the other way round)."""
    comparison = assignment.comparison
    comparison.refresh_from_db()
    expected_left = (comparison.gold_answer == GoldAnswer.A) == assignment.left_is_a
    choice = "left" if expected_left == correct else "right"
    return services.judgment_submit(rater=rater, token=assignment.token, choice=choice, idempotency_key=key)


def api(client: Client, study: Study, name: str, body: dict[str, object]):  # type: ignore[no-untyped-def]
    return client.post(
        reverse(f"ratings:api-{name}", args=[study.slug]), json.dumps(body), content_type="application/json"
    )


# --- The guidelines ---------------------------------------------------------------------------------


def test_a_new_rater_gets_no_pair_before_acknowledging_the_guidelines(rng: random.Random) -> None:
    study = make_study(require_guidelines_ack=True)
    make_comparisons(study, 2)
    rater = factories.rater(study=study, guidelines_acknowledged_at=None)

    before = services.assignment_next_for_rater(rater=rater, rng=rng)
    assert (before.assignment, before.no_work) == (None, services.NoWork.GUIDELINES)
    assert Assignment.objects.count() == 0

    onboarding.rater_guidelines_acknowledge(rater=rater)
    rater.refresh_from_db()
    after = services.assignment_next_for_rater(rater=rater, rng=rng)
    assert after.assignment is not None and after.no_work is None
    assert rater.guidelines_acknowledged_at is not None


def test_a_second_acknowledgement_keeps_the_first_time() -> None:
    rater = factories.rater(study=make_study(), guidelines_acknowledged_at=None)
    onboarding.rater_guidelines_acknowledge(rater=rater)
    rater.refresh_from_db()
    first = rater.guidelines_acknowledged_at
    onboarding.rater_guidelines_acknowledge(rater=rater)
    rater.refresh_from_db()
    assert rater.guidelines_acknowledged_at == first


def test_a_study_without_the_acknowledgement_gives_the_first_pair_at_once(rng: random.Random) -> None:
    study = make_study(require_guidelines_ack=False)
    make_comparisons(study, 1)
    rater = factories.rater(study=study, guidelines_acknowledged_at=None)
    assert services.assignment_next_for_rater(rater=rater, rng=rng).assignment is not None


def test_an_invited_rater_acknowledges_through_the_api_and_gets_its_first_pair() -> None:
    study = make_study(require_guidelines_ack=True)
    make_comparisons(study, 2)
    client = Client()
    client.get(reverse("ratings:join", args=[study.slug, study.invite_token]))

    # The guidelines come instead of the Start button: pressing "I have read them" is the start.
    assert api(client, study, "next", {}).json() == {"status": "guidelines"}
    assert api(client, study, "next", {"start": True}).json() == {"status": "guidelines"}
    assert Assignment.objects.count() == 0

    answer_after = api(client, study, "acknowledge", {}).json()
    assert answer_after["status"] == "pair"
    assert Assignment.objects.get().token == answer_after["pair"]["token"]
    assert study.raters.get().guidelines_acknowledged_at is not None


def test_the_fast_rater_query_reads_the_onboarding_timestamps_as_the_orm_does() -> None:
    study = make_study()
    rater = factories.rater(study=study, qualified_at=None)
    loaded = sql.rater_with_study(rater_id=rater.id, study_slug=study.slug)
    assert loaded is not None
    assert loaded.guidelines_acknowledged_at == rater.guidelines_acknowledged_at
    assert loaded.qualified_at is None
    assert loaded.study.require_guidelines_ack is False
    assert (loaded.study.qualification_pairs, loaded.study.qualification_min_correct) == (0, 0)


# --- The qualification ----------------------------------------------------------------------------


def test_a_rater_who_answers_the_staff_checks_as_expected_qualifies_and_gets_regular_pairs(
    rng: random.Random,
) -> None:
    study = qualifying_study(pairs=2, min_correct=2)
    gold_comparisons_create(study=study, count=0, seed=1)  # no generated checks: staff's only
    rater = factories.rater(study=study)

    asked = []
    for number in (1, 2):
        next_pair = services.assignment_next_for_rater(rater=rater, rng=rng)
        assignment = next_pair.assignment
        assert assignment is not None and assignment.is_qualification
        assert next_pair.qualification == onboarding.QualificationProgress(number=number, total=2)
        assert assignment.comparison.kind == ComparisonKind.GOLD
        asked.append(assignment.comparison_id)
        submission = answer(rater, assignment, correct=True, key=f"q{number}")
        assert submission.undoable is False

    assert submission.qualification == onboarding.QualificationResult(
        decided=True,
        passed=True,
        correct=2,
        total=2,
        message="You passed the qualification (2 of 2 answered as expected). The study's pairs start now.",
    )
    rater.refresh_from_db()
    assert rater.qualified_at is not None and rater.status == RaterStatus.ACTIVE
    assert len(set(asked)) == 2
    regular = services.assignment_next_for_rater(rater=rater, rng=rng)
    assert regular.assignment is not None
    assert regular.assignment.is_qualification is False
    assert regular.assignment.comparison.kind == ComparisonKind.REGULAR
    assert regular.qualification is None

    # The answers are kept, flagged, and counted nowhere.
    qualification_judgments = Judgment.objects.filter(assignment__is_qualification=True)
    assert [j.flag_reasons for j in qualification_judgments] == [["qualification"], ["qualification"]]
    assert all(j.is_flagged for j in qualification_judgments)
    assert not judgments_trusted(study=study).filter(assignment__is_qualification=True).exists()
    assert sql.quality_rows(rater_id=rater.id) == []


def test_a_rater_below_the_threshold_is_told_why_and_gets_no_more_pairs(rng: random.Random) -> None:
    study = qualifying_study(pairs=3, min_correct=2)
    rater = factories.rater(study=study)
    for number, correct in enumerate([True, False, False], start=1):
        assignment = services.assignment_next_for_rater(rater=rater, rng=rng).assignment
        assert assignment is not None and assignment.is_qualification
        submission = answer(rater, assignment, correct=correct, key=f"q{number}")

    assert submission.rater_status == RaterStatus.UNQUALIFIED
    assert submission.qualification is not None and submission.qualification.passed is False
    expected = (
        "Thank you for taking the qualification. You answered 1 of 3 qualification questions as the "
        "study expects, and it needs 2, so this study has no pairs for you. Thank you for your time."
    )
    assert submission.paused_reason == expected
    rater.refresh_from_db()
    assert (rater.status, rater.paused_reason, rater.qualified_at) == (
        RaterStatus.UNQUALIFIED,
        expected,
        None,
    )
    after = services.assignment_next_for_rater(rater=rater, rng=rng)
    assert (after.assignment, after.no_work) == (None, services.NoWork.UNQUALIFIED)
    assert Assignment.objects.filter(is_qualification=False).count() == 0


def test_the_api_says_unqualified_in_the_vote_that_decides_it() -> None:
    study = qualifying_study(pairs=1, min_correct=1)
    client = Client()
    client.get(reverse("ratings:join", args=[study.slug, study.invite_token]))
    first = api(client, study, "next", {"start": True}).json()
    assert first["pair"]["qualification"] == {"number": 1, "total": 1}
    assignment = Assignment.objects.select_related("comparison").get(token=first["pair"]["token"])
    wrong = "right" if assignment.left_is_a else "left"  # every staff check here expects A

    vote = api(
        client,
        study,
        "vote",
        {"token": assignment.token, "choice": wrong, "idempotency_key": "key-00001", "next": True},
    ).json()

    assert vote["undoable"] is False
    assert vote["qualification"]["passed"] is False
    assert vote["rater"]["status"] == "unqualified"
    assert vote["next"] == {"status": "unqualified", "message": vote["rater"]["message"]}
    assert "0 of 1" in vote["rater"]["message"]
    assert api(client, study, "undo", {"idempotency_key": "key-00001"}).status_code == 409


def test_a_qualification_answer_cannot_be_undone(rng: random.Random) -> None:
    study = qualifying_study(pairs=2, min_correct=1)
    rater = factories.rater(study=study)
    assignment = services.assignment_next_for_rater(rater=rater, rng=rng).assignment
    assert assignment is not None
    answer(rater, assignment, correct=True, key="q1")
    with pytest.raises(Conflict, match="final"):
        services.judgment_undo(rater=rater, idempotency_key="q1")


def test_generated_gold_checks_never_stand_in_for_missing_staff_checks(rng: random.Random) -> None:
    study = make_study(qualification_pairs=2, qualification_min_correct=1)
    staff_gold(study, 1)
    factories.gold_comparison(study=study)  # generated-like: not filed under the staff version
    rater = factories.rater(study=study)

    assert onboarding.qualification_problem(study=study) == (
        "The study asks each rater to qualify on 2 gold checks supplied by staff, and it has 1. "
        "New raters wait at the qualification until you add 1 more under Gold checks, or lower the number."
    )
    first = services.assignment_next_for_rater(rater=rater, rng=rng).assignment
    assert first is not None
    answer(rater, first, correct=True, key="q1")
    stuck = services.assignment_next_for_rater(rater=rater, rng=rng)
    assert (stuck.assignment, stuck.no_work) == (None, services.NoWork.QUALIFICATION_UNAVAILABLE)
    rater.refresh_from_db()
    assert rater.status == RaterStatus.ACTIVE  # waiting, not finished and not failed


def test_staff_can_let_an_unqualified_rater_in(rng: random.Random) -> None:
    study = qualifying_study(pairs=1, min_correct=1)
    rater = factories.rater(study=study)
    assignment = services.assignment_next_for_rater(rater=rater, rng=rng).assignment
    assert assignment is not None
    answer(rater, assignment, correct=False, key="q1")

    services.rater_resume(rater_id=rater.id)

    rater.refresh_from_db()
    assert (rater.status, rater.paused_reason) == (RaterStatus.ACTIVE, "")
    assert rater.qualified_at is not None
    regular = services.assignment_next_for_rater(rater=rater, rng=rng).assignment
    assert regular is not None and not regular.is_qualification


def test_the_quality_tests_do_not_count_qualification_answers() -> None:
    study = qualifying_study(pairs=1, min_correct=1)
    rater = factories.rater(study=study)
    assignment = services.assignment_next_for_rater(rater=rater, rng=random.Random(3)).assignment
    assert assignment is not None
    answer(rater, assignment, correct=True, key="q1")
    signals = services.rater_quality_update(rater_id=rater.id)
    assert (signals.signals.judgments, signals.signals.gold_checks) == (0, 0)


@pytest.mark.parametrize(
    ("pairs", "min_correct", "field"),
    [(2, 3, "qualification_min_correct"), (3, 0, "qualification_min_correct")],
)
def test_a_qualification_threshold_that_cannot_work_is_refused(
    pairs: int, min_correct: int, field: str
) -> None:
    study = Study(
        name="Q",
        slug="q",
        question="Which?",
        qualification_pairs=pairs,
        qualification_min_correct=min_correct,
    )
    with pytest.raises(ValidationError) as refused:
        study.full_clean()
    assert list(refused.value.message_dict) == [field]
