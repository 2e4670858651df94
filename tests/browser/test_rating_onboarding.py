"""The rating page for a newcomer, in a real browser: the guidelines acknowledged before the first
pair, the qualification passed and failed, Enter after closing the guidelines, the undo toast on a
phone, and two look-alike pairs in a row."""

from __future__ import annotations

import pytest

from server.ratings.gold_import import GoldRow, gold_pairs_import
from server.ratings.models import Assignment, AssignmentStatus, GoldAnswer, Judgment, Rater, RaterStatus
from tests.browser.conftest import PHONE
from tests.browser.test_rating_page import pair, rating_study, wait_for_judgments, wait_for_pair

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

GUIDELINE_LINE = "Prefer the one that surprises you in a good way."


def open_invite(page, live_server, study) -> None:  # type: ignore[no-untyped-def]
    page.goto(f"{live_server.url}/rate/{study.slug}/join/{study.invite_token}/")


def acknowledge(page) -> None:  # type: ignore[no-untyped-def]
    page.wait_for_selector("#ack-button:not([hidden])")
    page.click("#ack-button")


def staff_checks(study, count: int) -> None:  # type: ignore[no-untyped-def]
    gold_pairs_import(
        study=study,
        rows=[
            GoldRow(
                line=number,
                prompt=f"Describe a harbour at dawn, take {number}.",
                text_a=f"Boats knock against the pier; gulls argue over a rope, take {number}.",
                text_b=f"Quarterly synergy metrics were aligned across verticals, take {number}.",
                expected=GoldAnswer.A,
            )
            for number in range(1, count + 1)
        ],
    )


def key_for(assignment: Assignment, *, as_expected: bool) -> str:
    """The key ("1" left, "2" right) that answers the reserved gold pair as expected, or not."""
    expected_left = (assignment.comparison.gold_answer == GoldAnswer.A) == assignment.left_is_a
    return "1" if expected_left == as_expected else "2"


def reserved() -> Assignment:
    return Assignment.objects.select_related("comparison").get(status=AssignmentStatus.RESERVED)


def test_the_guidelines_are_acknowledged_before_the_first_pair(live_server, open_page, screenshot) -> None:  # type: ignore[no-untyped-def]
    study = rating_study()
    pair(study)
    page = open_page()
    open_invite(page, live_server, study)

    page.wait_for_selector("#ack-button:not([hidden])")
    assert page.text_content("#state-title") == "Before you start: the guidelines"
    assert GUIDELINE_LINE in page.text_content("#state-guidelines")
    assert page.locator("#task").is_hidden()
    assert Assignment.objects.count() == 0  # nothing reserved before the acknowledgement
    assert page.evaluate("document.activeElement.id") == "ack-button"
    screenshot(page, "desktop-guidelines-step")

    page.keyboard.press("1")  # a choice key does nothing here: there is no pair yet
    assert Assignment.objects.count() == 0
    page.click("#ack-button")
    wait_for_pair(page)
    rater = Rater.objects.get()
    assert rater.guidelines_acknowledged_at is not None
    assert Assignment.objects.get().rater_id == rater.id

    # A reload does not ask again.
    page.reload()
    wait_for_pair(page)
    assert page.locator("#ack-button").is_hidden()


def test_enter_after_closing_the_guidelines_submits_the_vote(live_server, open_page) -> None:  # type: ignore[no-untyped-def]
    study = rating_study()
    pair(study)
    pair(study, left="A second left text.", right="A second right text.", prompt="Rain on the city")
    pair(study, left="A third left text.", right="A third right text.", prompt="Snow on the hills")
    page = open_page()
    open_invite(page, live_server, study)
    acknowledge(page)
    wait_for_pair(page)

    # With the mouse: the Guidelines button, then Close (the focus was on the button before).
    page.keyboard.press("1")
    page.click("#guidelines-button")
    page.wait_for_selector("#guidelines.open")
    page.click("#guidelines-close")
    page.wait_for_function("!document.getElementById('guidelines').classList.contains('open')")
    page.keyboard.press("Enter")
    wait_for_judgments(1)
    wait_for_pair(page)
    assert not page.evaluate("document.getElementById('guidelines').classList.contains('open')")

    # With the keys: G, then Escape.
    page.keyboard.press("2")
    page.keyboard.press("g")
    page.wait_for_selector("#guidelines.open")
    page.keyboard.press("Escape")
    page.keyboard.press("Enter")
    wait_for_judgments(2)
    assert not page.evaluate("document.getElementById('guidelines').classList.contains('open')")
    assert sorted(Judgment.objects.values_list("chose_left", flat=True)) == [False, True]


def test_a_rater_who_passes_the_qualification_goes_on_to_the_regular_pairs(
    live_server, open_page, screenshot
) -> None:  # type: ignore[no-untyped-def]
    study = rating_study(qualification_pairs=2, qualification_min_correct=2)
    staff_checks(study, 3)
    pair(study)
    page = open_page()
    open_invite(page, live_server, study)
    acknowledge(page)

    for number in (1, 2):
        wait_for_pair(page)
        page.wait_for_function(
            f"document.getElementById('qualification-banner').textContent.includes('question {number} of 2')"
        )
        if number == 1:
            screenshot(page, "desktop-qualification")
        assignment = reserved()
        assert assignment.is_qualification
        page.keyboard.press(key_for(assignment, as_expected=True))
        page.keyboard.press("Enter")
        wait_for_judgments(number)
        assert page.locator("#toast").is_hidden()  # qualification answers are final: no undo

    page.wait_for_selector("#notice:not([hidden])")
    assert page.text_content("#notice") == (
        "You passed the qualification (2 of 2 answered as expected). The study's pairs start now."
    )
    page.wait_for_function("document.getElementById('qualification-banner').hidden")
    wait_for_pair(page)
    assert reserved().is_qualification is False
    assert page.text_content("#left-text") in {
        "The sea at night\nholds the moon like a coin\nit will not spend.",
        "Night. Sea. Water is wet and the moon is up there, which is nice.",
    }
    assert Rater.objects.get().qualified_at is not None


def test_a_rater_who_fails_the_qualification_is_told_so_and_gets_no_pairs(
    live_server, open_page, screenshot
) -> None:  # type: ignore[no-untyped-def]
    study = rating_study(qualification_pairs=1, qualification_min_correct=1)
    staff_checks(study, 2)
    pair(study)
    page = open_page(viewport=PHONE, is_mobile=True, has_touch=True)
    open_invite(page, live_server, study)
    acknowledge(page)
    wait_for_pair(page)

    page.locator(
        f"[data-choice='{'left' if key_for(reserved(), as_expected=False) == '1' else 'right'}']"
    ).click()
    page.click("#submit-button")
    page.wait_for_function(
        "document.getElementById('state-title').textContent === 'The qualification is over'"
    )
    message = page.text_content("#state-text")
    assert message.startswith("Thank you for taking the qualification. You answered 0 of 1")
    assert page.locator("#task").is_hidden()
    screenshot(page, "phone-qualification-failed")
    assert Rater.objects.get().status == RaterStatus.UNQUALIFIED
    assert Assignment.objects.filter(is_qualification=False).count() == 0

    page.reload()  # the page says the same from the server, and asks for nothing
    assert page.text_content("#state-title").strip() == "The qualification is over"
    assert page.text_content("#state-text").strip() == message
    assert Assignment.objects.count() == 1


# Bounding boxes of the toast and of every choice button, in viewport coordinates, and whether any
# two overlap; at the scroll position the page is at now.
OVERLAPS = """() => {
  const box = (element) => element.getBoundingClientRect();
  const toast = box(document.getElementById('toast'));
  return [...document.querySelectorAll('button[data-choice]')].filter((button) => {
    const b = box(button);
    return b.left < toast.right && toast.left < b.right && b.top < toast.bottom && toast.top < b.bottom;
  }).map((button) => button.dataset.choice);
}"""


def test_on_a_phone_the_undo_toast_never_covers_the_choice_buttons(
    live_server, open_page, screenshot
) -> None:  # type: ignore[no-untyped-def]
    study = rating_study()
    long_text = " ".join(["The tide climbs the wall and falls back, as it has all night."] * 6)
    pair(study, left=long_text, right=long_text + " Then the lighthouse.")
    pair(study, left="Short.", right="Also short.", prompt="Rain on the city")
    page = open_page(viewport=PHONE, is_mobile=True, has_touch=True)
    open_invite(page, live_server, study)
    acknowledge(page)
    wait_for_pair(page)

    page.locator("[data-choice='left']").click()
    page.click("#submit-button")
    page.wait_for_selector("#toast:not([hidden])")
    wait_for_pair(page)
    checked = []
    # Where the rater is right after the vote (the top), with the buttons in the middle of the
    # screen, and scrolled down until the buttons are at the bottom edge.
    for where in ("top", "center", "end"):
        if where != "top":
            page.evaluate(f"document.querySelector('.choices').scrollIntoView({{block: '{where}'}})")
        assert page.locator("#toast").is_visible()
        assert page.evaluate(OVERLAPS) == [], where
        checked.append(where)
        if where == "center":
            screenshot(page, "phone-toast-and-buttons")
    assert checked == ["top", "center", "end"]
    toast = page.locator("#toast").bounding_box()
    assert toast is not None and toast["x"] >= 0 and toast["x"] + toast["width"] <= PHONE["width"]


TEXTS = "['left-text', 'right-text'].map((id) => document.getElementById(id).textContent)"


def test_two_pairs_in_a_row_that_read_alike_are_seen_to_be_two(live_server, open_page, screenshot) -> None:  # type: ignore[no-untyped-def]
    study = rating_study()
    for prompt in ("The sea at night", "The sea at night."):
        pair(study, prompt=prompt)  # the same two texts, prompts one full stop apart
    page = open_page()
    open_invite(page, live_server, study)
    acknowledge(page)
    wait_for_pair(page)
    assert page.text_content("#pair-number") == "· pair 1"
    first = page.evaluate(TEXTS)

    page.keyboard.press("3")
    page.keyboard.press("Enter")
    wait_for_judgments(1)
    page.wait_for_function("document.getElementById('pair-number').textContent === '· pair 2'")
    second = page.evaluate(TEXTS)
    assert sorted(first) == sorted(second)  # the texts alone would not tell the pairs apart
    assert page.evaluate("document.getElementById('task').classList.contains('entering')")
    assert page.evaluate("document.getElementById('task').dataset.pair") == "2"
    screenshot(page, "desktop-second-look-alike-pair")
