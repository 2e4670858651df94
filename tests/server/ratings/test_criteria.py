"""Several questions (criteria) about one pair: study creation, one vote answering all of them
(all or nothing, errors naming the question), the one-question path unchanged, corrections."""

from __future__ import annotations

import pytest
from django.db import IntegrityError, transaction

from server.core.exceptions import ApplicationError
from server.ratings.models import Assignment, Judgment, JudgmentAnswer, Outcome
from server.ratings.services import assignment_next_for_rater, judgment_correct, judgment_submit
from server.studies.models import Criterion
from server.studies.selectors import study_criteria, study_criterion
from server.studies.services import CriterionInput, study_create
from tests import factories
from tests.server.ratings.conftest import make_comparisons

pytestmark = pytest.mark.django_db

QUIET = {
    "require_guidelines_ack": False,
    "gold_rate": 0.0,
    "repeat_rate": 0.0,
    "min_gold_accuracy": 0.0,
    "min_self_consistency": 0.0,
    "max_position_bias": 1.0,
}


def creativity_pair(*, left_is_a: bool = True):  # type: ignore[no-untyped-def]
    study = study_create(name="Poems", slug="poems", template="creativity", **QUIET)
    make_comparisons(study, 1)
    rater = factories.rater(study=study)
    assignment = assignment_next_for_rater(rater=rater).assignment
    Assignment.objects.filter(id=assignment.id).update(left_is_a=left_is_a)
    return study, rater, assignment


def test_the_creativity_template_asks_more_original_then_better() -> None:
    study = study_create(name="Poems", slug="poems", template="creativity")

    criteria = study_criteria(study=study)
    assert [(c.key, c.question, c.position, c.is_primary) for c in criteria] == [
        ("original", "Which is more original?", 0, True),
        ("better", "Which is better?", 1, False),
    ]
    assert (study.question, study.criterion_key) == ("Which is more original?", "original")
    assert study.guidelines.startswith("Judge originality only")
    assert criteria[1].guidelines.startswith("Judge overall value only")
    assert study_criterion(study=study, key="better").id == Criterion.objects.get().id
    assert study_criterion(study=study, key=None).key == "original"
    with pytest.raises(LookupError, match="no criterion 'worse'; it has original, better"):
        study_criterion(study=study, key="worse")


def test_a_study_without_criteria_has_its_own_question_as_the_only_one() -> None:
    study = factories.study(question="Which text is better?")

    assert [(c.key, c.question, c.id) for c in study_criteria(study=study)] == [
        ("primary", "Which text is better?", None)
    ]


def test_criteria_are_checked_naming_the_question() -> None:
    too_many = [CriterionInput(key=f"q{n}", question=f"Question {n}?") for n in range(5)]
    with pytest.raises(ApplicationError) as error:
        study_create(name="S", slug="s", criteria=too_many)
    assert error.value.extra["fields"] == {"criteria": "A study asks 1 to 4 questions (this has 5)."}

    with pytest.raises(ApplicationError) as error:
        study_create(
            name="S",
            slug="s",
            criteria=[CriterionInput(key="a", question="A?"), CriterionInput(key="a", question=" ")],
        )
    assert error.value.extra["fields"] == {
        "criteria[1].key": "The key 'a' is used by another question of this study.",
        "criteria[1].question": "A criterion needs a question.",
    }
    with pytest.raises(ApplicationError, match="Unknown study template 'poetry'"):
        study_create(name="S", slug="s", template="poetry")


def test_the_database_holds_a_study_to_four_criteria() -> None:
    study = factories.study()
    for position in (1, 2, 3):
        Criterion.objects.create(study=study, key=f"q{position}", question="?", position=position)
    with pytest.raises(IntegrityError), transaction.atomic():
        Criterion.objects.create(study=study, key="q4", question="?", position=4)
    with pytest.raises(IntegrityError), transaction.atomic():
        Criterion.objects.create(study=study, key="q5", question="?", position=1)


@pytest.mark.parametrize(
    ("left_is_a", "better", "outcome", "chose_left"),
    [(True, "right", Outcome.B, False), (False, "right", Outcome.A, False), (True, "tie", Outcome.TIE, None)],
)
def test_one_vote_answers_every_question_in_comparison_terms(left_is_a, better, outcome, chose_left) -> None:  # type: ignore[no-untyped-def]
    _, rater, assignment = creativity_pair(left_is_a=left_is_a)

    submission = judgment_submit(
        rater=rater, token=assignment.token, choice="left", idempotency_key="k-1", answers={"better": better}
    )

    judgment = Judgment.objects.get()
    assert judgment.outcome == (Outcome.A if left_is_a else Outcome.B)
    answer = JudgmentAnswer.objects.get()
    assert (answer.judgment_id, answer.criterion.key, answer.outcome, answer.chose_left) == (
        judgment.id,
        "better",
        outcome,
        chose_left,
    )
    assert submission.created is True


def test_a_vote_missing_an_answer_is_refused_whole_naming_the_question() -> None:
    _, rater, assignment = creativity_pair()

    with pytest.raises(ApplicationError) as error:
        judgment_submit(rater=rater, token=assignment.token, choice="left", idempotency_key="k-1")

    assert error.value.message == (
        "Answer the question 'better' (Which is better?) too: this study asks 2 questions about each "
        "pair, and a vote answers all of them."
    )
    assert error.value.extra == {"field": "answers.better"}
    assert (Judgment.objects.count(), JudgmentAnswer.objects.count()) == (0, 0)
    assignment.refresh_from_db()
    assert assignment.status == "reserved"


@pytest.mark.parametrize(
    ("answers", "message", "field"),
    [
        (
            {"better": "up"},
            "The answer to the question 'better': choose one of left, right, tie, both_bad.",
            "answers.better",
        ),
        (
            {"better": "left", "worse": "left"},
            "This study has no question 'worse'; its questions are better, original.",
            "answers.worse",
        ),
        (
            {"better": "left", "original": "right"},
            "Two different answers to the question 'original' (choice and answers).",
            "answers.original",
        ),
    ],
)
def test_invalid_answers_are_refused_naming_the_question(answers, message, field) -> None:  # type: ignore[no-untyped-def]
    _, rater, assignment = creativity_pair()

    with pytest.raises(ApplicationError) as error:
        judgment_submit(
            rater=rater, token=assignment.token, choice="left", idempotency_key="k-1", answers=answers
        )

    assert (error.value.message, error.value.extra) == (message, {"field": field})
    assert Judgment.objects.count() == 0


def test_the_first_answer_may_also_come_under_its_key() -> None:
    _, rater, assignment = creativity_pair()

    judgment_submit(
        rater=rater,
        token=assignment.token,
        choice="left",
        idempotency_key="k-1",
        answers={"original": "left", "better": "both_bad"},
    )

    assert list(JudgmentAnswer.objects.values_list("criterion__key", "outcome")) == [("better", "both_bad")]


def test_answers_to_a_one_question_study_are_refused_unless_they_name_its_question() -> None:
    study = factories.study(**QUIET)
    make_comparisons(study, 2)
    rater = factories.rater(study=study)
    first = assignment_next_for_rater(rater=rater).assignment

    judgment_submit(
        rater=rater, token=first.token, choice="tie", idempotency_key="k-1", answers={"primary": "tie"}
    )
    second = assignment_next_for_rater(rater=rater).assignment
    with pytest.raises(
        ApplicationError, match=r"This study has no question 'better'; its questions are primary\."
    ):
        judgment_submit(
            rater=rater, token=second.token, choice="tie", idempotency_key="k-2", answers={"better": "tie"}
        )
    assert (Judgment.objects.count(), JudgmentAnswer.objects.count()) == (1, 0)


def test_a_correction_keeps_the_other_answers_unless_it_gives_new_ones() -> None:
    _, rater, assignment = creativity_pair()
    judgment_submit(
        rater=rater, token=assignment.token, choice="left", idempotency_key="k-1", answers={"better": "right"}
    )

    kept = judgment_correct(rater=rater, idempotency_key="k-1", choice="right", new_idempotency_key="k-2")
    changed = judgment_correct(
        rater=rater,
        idempotency_key="k-2",
        choice="right",
        new_idempotency_key="k-3",
        answers={"better": "tie"},
    )

    assert list(kept.answers.values_list("outcome", "chose_left")) == [(Outcome.B, False)]
    assert list(changed.answers.values_list("outcome", "chose_left")) == [(Outcome.TIE, None)]
    assert Judgment.objects.filter(revoked_at__isnull=True).get().id == changed.id
