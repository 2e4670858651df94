"""A study with several questions about each pair: the same keys answer question 1, Enter goes on
to question 2 (Backspace back), Enter on the last submits one vote with every answer; the answer
buttons say what they answer ("Left is more original", then "Left is better"), on a phone too."""

from __future__ import annotations

import pytest

from server.ratings.models import Assignment, AssignmentStatus, Judgment, JudgmentAnswer, Outcome
from server.studies.services import CriterionInput, study_create
from tests.browser.conftest import PHONE
from tests.browser.test_rating_page import join, pair, press_start, wait_for_judgments, wait_for_pair

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def button_labels(page) -> list[str]:  # type: ignore[no-untyped-def]
    """The four answer buttons' words, in order, each checked to be its button's whole accessible
    name (the key hint is hidden from screen readers)."""
    labels = page.eval_on_selector_all(
        "#choices button", "buttons => buttons.map((b) => b.querySelector('.choice-label').textContent)"
    )
    for label in labels:
        assert page.get_by_role("button", name=label, exact=True).count() == 1, label
    return labels


def choices_group_name(page) -> str:  # type: ignore[no-untyped-def]
    return page.evaluate(
        "document.getElementById(document.getElementById('choices').getAttribute('aria-labelledby')).textContent"
    )


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
    assert button_labels(page) == ["Left is more original", "Right is more original", "Tie", "Both bad"]
    assert choices_group_name(page) == "Which is more original?"
    assert page.text_content("#submit-button").startswith("Next question")
    page.keyboard.press("1")
    page.keyboard.press("e")
    page.keyboard.press("Enter")
    assert page.text_content("#question-step") == "Question 2 of 2"
    assert page.text_content("#question") == "Which is better?"
    assert button_labels(page) == ["Left is better", "Right is better", "Tie", "Both bad"]
    assert choices_group_name(page) == "Which is better?"
    assert page.get_attribute("#submit-button", "disabled") is not None  # not answered yet
    assert page.text_content("#submit-button").startswith("Submit")
    # Back to question 1: its answer is still chosen; forward again.
    page.keyboard.press("Backspace")
    assert page.text_content("#question-step") == "Question 1 of 2"
    assert page.get_attribute('button[data-choice="left"]', "aria-pressed") == "true"
    assert button_labels(page)[:2] == ["Left is more original", "Right is more original"]
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
    # The next pair starts again at question 1, with its buttons.
    wait_for_pair(page)
    assert page.text_content("#question-step") == "Question 1 of 2"
    assert page.text_content("#question") == "Which is more original?"
    assert button_labels(page)[0] == "Left is more original"


def test_long_answer_phrases_wrap_inside_their_buttons_on_a_phone(live_server, open_page, screenshot) -> None:  # type: ignore[no-untyped-def]
    # Given three questions, one with the longest phrase allowed and one with plain Left / Right
    longest = "more clearly the work of someone who loves the sea and ships"
    assert len(longest) == 60
    study = study_create(
        name="Sea poems",
        slug="sea-poems",
        criteria=[
            CriterionInput(key="love", question="Which loves the sea more?", answer_phrase=longest),
            CriterionInput(key="plain", question="Which would you keep?"),
            CriterionInput(key="better", question="Which is better?"),
        ],
        gold_rate=0.0,
        repeat_rate=0.0,
    )
    pair(study)
    page = open_page(viewport=PHONE, is_mobile=True, has_touch=True)
    join(page, live_server, study)

    seen = []
    for _ in range(3):
        seen.append(button_labels(page)[:2])
        # No button's words stick out of it, and the page does not scroll sideways.
        overflowing = page.eval_on_selector_all(
            "#choices button", "buttons => buttons.filter((b) => b.scrollWidth > b.clientWidth).length"
        )
        assert overflowing == 0
        assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
        if len(seen) == 1:
            screenshot(page, "criteria-phone-long-phrase", full_page=True)
        page.tap("[data-choice='tie']")
        page.tap("#submit-button")
    wait_for_judgments(1)
    assert seen == [
        [f"Left is {longest}", f"Right is {longest}"],
        ["Left", "Right"],
        ["Left is better", "Right is better"],
    ]
