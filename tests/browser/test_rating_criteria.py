"""A study with several questions about each pair: the same keys answer question 1, Enter goes on
to question 2 (Backspace back), Enter on the last submits one vote with every answer."""

from __future__ import annotations

import pytest

from server.ratings.models import Assignment, AssignmentStatus, Judgment, JudgmentAnswer, Outcome
from server.studies.services import study_create
from tests.browser.test_rating_page import pair, press_start, wait_for_judgments, wait_for_pair

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_two_questions_are_answered_in_one_keyboard_flow(live_server, open_page, screenshot) -> None:  # type: ignore[no-untyped-def]
    study = study_create(name="Poems", slug="poems", template="creativity", gold_rate=0.0, repeat_rate=0.0)
    pair(study)
    pair(study, left="A second left text.", right="A second right text.", prompt="Rain on the city")
    page = open_page()
    page.goto(f"{live_server.url}/rate/{study.slug}/join/{study.invite_token}/")
    # The guidelines step shows each question with its own guidelines.
    page.wait_for_selector("#ack-button:not([hidden])")
    guidelines = page.text_content("#state-guidelines")
    assert "Question 1 of 2: Which is more original?" in guidelines
    assert "Judge originality only" in guidelines
    assert "Question 2 of 2: Which is better?" in guidelines
    assert "Judge overall value only" in guidelines
    press_start(page)
    wait_for_pair(page)

    assert page.text_content("#question-step") == "Question 1 of 2"
    assert page.text_content("#question") == "Which is more original?"
    assert page.text_content("#submit-button").startswith("Next question")
    page.keyboard.press("1")
    page.keyboard.press("e")
    page.keyboard.press("Enter")
    assert page.text_content("#question-step") == "Question 2 of 2"
    assert page.text_content("#question") == "Which is better?"
    assert page.get_attribute("#submit-button", "disabled") is not None  # not answered yet
    assert page.text_content("#submit-button").startswith("Submit")
    # Back to question 1: its answer is still chosen; forward again.
    page.keyboard.press("Backspace")
    assert page.text_content("#question-step") == "Question 1 of 2"
    assert page.get_attribute('button[data-choice="left"]', "aria-pressed") == "true"
    page.keyboard.press("Enter")
    page.keyboard.press("2")
    screenshot(page, "criteria-question-2")
    # The guidelines stay reachable on every question.
    page.keyboard.press("g")
    assert page.is_visible("#guidelines [data-criterion='better']")
    page.keyboard.press("Escape")
    assert Judgment.objects.count() == 0  # nothing is sent before the last answer
    page.keyboard.press("Enter")
    page.wait_for_selector("#toast:not([hidden])")
    wait_for_judgments(1)

    assignment = Assignment.objects.get(status=AssignmentStatus.COMPLETED)
    judgment = Judgment.objects.get()
    assert (judgment.outcome, judgment.chose_left, judgment.strength) == (
        Outcome.A if assignment.left_is_a else Outcome.B,
        True,
        3,
    )
    answer = JudgmentAnswer.objects.get()
    assert (answer.judgment_id, answer.criterion.key, answer.outcome, answer.chose_left) == (
        judgment.id,
        "better",
        Outcome.B if assignment.left_is_a else Outcome.A,
        False,
    )
    # The next pair starts again at question 1.
    wait_for_pair(page)
    assert page.text_content("#question-step") == "Question 1 of 2"
    assert page.text_content("#question") == "Which is more original?"
