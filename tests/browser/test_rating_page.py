"""The rating page in a real browser: keyboard voting, undo, skip, guidelines, phone layout,
escaping, crowd completion and the paused message."""

from __future__ import annotations

import re

import pytest

from server.ratings.models import Assignment, AssignmentStatus, Judgment, Outcome, Rater, RaterStatus
from tests import factories
from tests.browser.conftest import PHONE

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

POEM_LEFT = "The sea at night\nholds the moon like a coin\nit will not spend."
POEM_RIGHT = "Night. Sea. Water is wet and the moon is up there, which is nice."


def rating_study(**rules: object):  # type: ignore[no-untyped-def]
    rules.setdefault("gold_rate", 0.0)
    rules.setdefault("repeat_rate", 0.0)
    rules.setdefault("name", "Short pieces")
    rules.setdefault("question", "Which piece is more creative while still making sense?")
    rules.setdefault(
        "guidelines",
        "Read both pieces. Prefer the one that surprises you in a good way.\n\n"
        "Use 'tie' when both are equally good and 'both bad' when neither works.",
    )
    return factories.study(**rules)


def pair(study, left: str = POEM_LEFT, right: str = POEM_RIGHT, prompt: str = "The sea at night"):  # type: ignore[no-untyped-def]
    the_prompt = factories.prompt(study=study, text=prompt)
    return factories.comparison(
        prompt=the_prompt,
        sample_a=factories.sample(prompt=the_prompt, text=left),
        sample_b=factories.sample(prompt=the_prompt, text=right),
    )


def join(page, live_server, study) -> None:  # type: ignore[no-untyped-def]
    page.goto(f"{live_server.url}/rate/{study.slug}/join/{study.invite_token}/")
    press_start(page)
    wait_for_pair(page)


def press_start(page) -> None:  # type: ignore[no-untyped-def]
    """A new crowd participant's first pair waits for the person to press Start, or, in a study
    that asks for it (the default), "I have read the guidelines" (focused, so Enter presses it)."""
    page.wait_for_selector("#start-button:not([hidden]), #ack-button:not([hidden])")
    page.keyboard.press("Enter")


def wait_for_pair(page) -> None:  # type: ignore[no-untyped-def]
    page.wait_for_selector("#task:not([hidden])")
    page.wait_for_function("document.getElementById('left-text').textContent.length > 0")
    page.wait_for_function("document.getElementById('task').getAttribute('aria-busy') === 'false'")


def wait_for_judgments(count: int, **filters: object) -> None:
    import time

    deadline = time.monotonic() + 10
    while Judgment.objects.filter(**filters).count() < count:
        assert time.monotonic() < deadline, f"fewer than {count} judgments stored"
        time.sleep(0.05)


def test_keyboard_vote_stores_the_outcome_of_the_side_shown_left(live_server, open_page, screenshot) -> None:  # type: ignore[no-untyped-def]
    study = rating_study()
    comparison = pair(study)
    pair(study, left="A second left text.", right="A second right text.", prompt="Rain on the city")
    page = open_page()
    join(page, live_server, study)
    shown_left = page.text_content("#left-text")
    assignment = Assignment.objects.get(status=AssignmentStatus.RESERVED)
    assert assignment.comparison_id in {comparison.id, comparison.id + 1}
    shown_a = assignment.comparison.sample_a.text
    assert (shown_left == shown_a) == assignment.left_is_a

    page.wait_for_timeout(300)  # a human-ish pause, so active time is measurable
    page.keyboard.press("1")
    page.keyboard.press("w")
    screenshot(page, "desktop-choice-made")
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    page.keyboard.press("Enter")
    page.wait_for_selector("#toast:not([hidden])")
    wait_for_judgments(1)

    judgment = Judgment.objects.get()
    assert judgment.outcome == (Outcome.A if assignment.left_is_a else Outcome.B)
    assert (judgment.chose_left, judgment.strength) == (True, 2)
    assert judgment.assignment_id == assignment.id
    assert judgment.shown_at is not None and judgment.first_input_at is not None
    assert judgment.shown_at <= judgment.first_input_at <= judgment.submitted_at
    assert 0.2 < judgment.active_seconds < 30
    wait_for_pair(page)
    assert page.text_content("#left-text") != shown_left  # auto-advanced to the other pair
    # One request per judgment: the vote's answer carried the next pair.
    assert [url.rsplit("/", 1)[-1] for url in requests if "/api/" in url] == ["vote"]
    screenshot(page, "desktop-after-vote")


def test_with_nothing_to_rate_the_page_asks_again_and_shows_new_pairs(
    live_server, open_page, screenshot, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    from server.ratings import views

    monkeypatch.setattr(views, "EMPTY_RETRY_SECONDS", 1)
    study = rating_study()
    page = open_page()
    page.goto(f"{live_server.url}/rate/{study.slug}/join/{study.invite_token}/")
    press_start(page)
    page.wait_for_function("document.getElementById('state-text').textContent.includes('no pairs')")
    assert "There are no pairs for you right now" in page.text_content("#state-message")
    screenshot(page, "nothing-to-rate")

    # The next try fails for good (the page's own retries included): the page shows the error
    # and asks again later instead of waiting for a reload.
    refused = {"left": 3}

    def refuse_three_times(route) -> None:  # type: ignore[no-untyped-def]
        if refused["left"] > 0:
            refused["left"] -= 1
            route.abort()
        else:
            route.continue_()

    page.route("**/api/next", refuse_three_times)
    page.wait_for_function("document.getElementById('error-banner').textContent.length > 0")
    pair(study)  # staff add a pair (or another rater's reservation runs out)

    wait_for_pair(page)
    assert refused["left"] == 0
    assert page.text_content("#left-text") in {POEM_LEFT, POEM_RIGHT}
    assert page.text_content("#error-banner") == ""


def test_undo_takes_the_vote_back_and_shows_the_pair_again(live_server, open_page, screenshot) -> None:  # type: ignore[no-untyped-def]
    study = rating_study()
    pair(study)
    pair(study, left="Another left.", right="Another right.", prompt="Rain on the city")
    page = open_page()
    join(page, live_server, study)
    first_left = page.text_content("#left-text")
    page.keyboard.press("3")
    page.keyboard.press("Enter")
    page.wait_for_selector("#toast:not([hidden])")
    wait_for_pair(page)
    screenshot(page, "desktop-undo-toast")

    page.keyboard.press("u")
    page.wait_for_function(
        "text => document.getElementById('left-text').textContent === text", arg=first_left
    )
    wait_for_pair(page)
    page.keyboard.press("4")
    page.keyboard.press("Enter")
    wait_for_judgments(1, revoked_at__isnull=True)

    undone, replacement = Judgment.objects.order_by("id")
    assert (undone.outcome, undone.revoked_reason) == (Outcome.TIE, "undo")
    assert (replacement.outcome, replacement.replaces_id) == (Outcome.BOTH_BAD, undone.id)
    assert replacement.assignment_id == undone.assignment_id


def test_skip_with_a_reason(live_server, open_page, screenshot) -> None:  # type: ignore[no-untyped-def]
    study = rating_study()
    pair(study)
    pair(study, left="Another left.", right="Another right.", prompt="Rain on the city")
    page = open_page()
    join(page, live_server, study)
    first_left = page.text_content("#left-text")

    page.keyboard.press("s")
    page.wait_for_selector("#skip-dialog[open]")
    page.check("input[value='A text is broken or unreadable']")
    screenshot(page, "desktop-skip-dialog")
    page.click("#skip-confirm")
    page.wait_for_function(
        "text => document.getElementById('left-text').textContent !== text", arg=first_left
    )

    skipped = Assignment.objects.get(status=AssignmentStatus.SKIPPED)
    assert skipped.skip_reason == "A text is broken or unreadable"
    assert Judgment.objects.count() == 0


def test_the_guidelines_drawer_opens_with_g_and_closes_with_escape(
    live_server, open_page, screenshot
) -> None:  # type: ignore[no-untyped-def]
    study = rating_study()
    pair(study)
    page = open_page()
    join(page, live_server, study)

    page.keyboard.press("g")
    drawer = page.locator("#guidelines")
    page.wait_for_function(
        "document.getElementById('guidelines').getBoundingClientRect().right <= window.innerWidth + 1"
    )
    page.wait_for_timeout(300)  # the slide-in transition
    assert drawer.is_visible()
    assert "Prefer the one that surprises you in a good way." in drawer.inner_text()
    screenshot(page, "desktop-guidelines")

    page.keyboard.press("Escape")
    page.wait_for_function("!document.getElementById('guidelines').classList.contains('open')")
    page.wait_for_timeout(300)
    assert not drawer.is_visible()


def test_a_phone_sized_screen_stacks_the_samples(live_server, open_page, screenshot) -> None:  # type: ignore[no-untyped-def]
    study = rating_study()
    pair(study)
    page = open_page(viewport=PHONE, is_mobile=True, has_touch=True)
    join(page, live_server, study)

    left = page.locator("#sample-left").bounding_box()
    right = page.locator("#sample-right").bounding_box()
    assert right["y"] >= left["y"] + left["height"]
    assert abs(right["x"] - left["x"]) < 1
    assert left["width"] > 300
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    screenshot(page, "phone", full_page=True)
    page.tap("[data-choice='right']")
    page.tap("#submit-button")
    wait_for_judgments(1)
    assert Judgment.objects.get().chose_left is False


def test_markup_in_a_sample_is_shown_as_text_and_never_run(live_server, open_page, screenshot) -> None:  # type: ignore[no-untyped-def]
    study = rating_study()
    hostile = "<script>window.pwned=1</script><b>x</b>"
    pair(study, left=hostile, right=hostile + " again", prompt="<img src=x onerror='window.pwned=2'>")
    page = open_page()
    join(page, live_server, study)

    texts = {page.text_content("#left-text"), page.text_content("#right-text")}
    assert texts == {hostile, hostile + " again"}
    assert page.text_content("#prompt-text") == "<img src=x onerror='window.pwned=2'>"
    assert page.locator("#pair b, #pair script, .prompt-block img").count() == 0
    assert page.evaluate("typeof window.pwned") == "undefined"
    screenshot(page, "desktop-escaped-markup")


def test_a_prolific_participant_gets_the_completion_code_and_is_sent_back(
    live_server, open_page, screenshot
) -> None:  # type: ignore[no-untyped-def]
    study = rating_study(
        per_rater_cap=1, completion_code="LOVELACE-7Q2", completion_url=f"{live_server.url}/healthz"
    )
    pair(study)
    pair(study, left="Another left.", right="Another right.", prompt="Rain on the city")
    page = open_page()
    page.goto(
        f"{live_server.url}/rate/{study.slug}/?t={study.invite_token}&PROLIFIC_PID=pid-77&STUDY_ID=st-1&SESSION_ID=se-1"
    )
    press_start(page)
    wait_for_pair(page)
    assert page.text_content("#progress-label") == "0 of 1"

    page.keyboard.press("2")
    page.keyboard.press("Enter")
    page.wait_for_url(f"**/rate/{study.slug}/done/")
    assert page.text_content("#completion-code") == "LOVELACE-7Q2"
    screenshot(page, "desktop-completion")
    page.wait_for_url(re.compile(r"/healthz\?cc=LOVELACE-7Q2$"), timeout=15_000)

    rater = Rater.objects.get()
    assert (rater.external_id, rater.status) == ("pid-77", RaterStatus.FINISHED)
    assert Judgment.objects.count() == 1


def test_a_crowd_participant_starts_with_a_press_and_its_id_in_another_browser_is_refused(
    live_server, open_page, screenshot
) -> None:  # type: ignore[no-untyped-def]
    study = rating_study(require_guidelines_ack=False)  # the Start button (the guidelines step: below)
    pair(study)
    link = (
        f"{live_server.url}/rate/{study.slug}/"
        f"?t={study.invite_token}&PROLIFIC_PID=pid-9&STUDY_ID=st&SESSION_ID=se"
    )
    page = open_page()
    page.goto(link)
    page.wait_for_selector("#start-button:not([hidden])")
    assert page.text_content("#state-title") == "Ready when you are"
    assert page.locator("#task").is_hidden()
    assert Assignment.objects.count() == 0  # the page is open, nothing is reserved yet
    screenshot(page, "desktop-crowd-start")

    page.click("#start-button")
    wait_for_pair(page)
    assignment = Assignment.objects.get()
    assert (assignment.rater.external_id, assignment.status) == ("pid-9", AssignmentStatus.RESERVED)

    other = open_page()
    response = other.goto(link)
    assert response is not None and response.status == 409
    assert other.text_content("h1") == "Already taking part in another browser"
    screenshot(other, "desktop-crowd-conflict")

    page.keyboard.press("3")
    page.keyboard.press("Enter")
    wait_for_judgments(1, assignment__rater__external_id="pid-9")
    assert Rater.objects.get().entry_conflicts.count() == 1


def test_a_rater_paused_by_failed_checks_sees_what_happened_instead_of_pairs(
    live_server, open_page, screenshot
) -> None:  # type: ignore[no-untyped-def]
    study = rating_study()  # the default rules: 60 % of gold checks right, tested at the 1 % level
    rater = factories.crowd_rater(study=study, external_id="pid-5")
    for number in range(7):  # 1 of 7 right so far: p = 0.019, not yet significant
        earlier = factories.gold_comparison(study=study, gold_answer="B")
        factories.judgment(rater=rater, comparison=earlier, outcome=Outcome.B if number == 0 else Outcome.A)
    gold = factories.gold_comparison(study=study, gold_answer="A")
    assignment = factories.assignment(comparison=gold, rater=rater, left_is_a=True)  # reserved for it
    page = open_page()
    page.goto(
        f"{live_server.url}/rate/{study.slug}/?t={study.invite_token}&PROLIFIC_PID=pid-5&STUDY_ID=s&SESSION_ID=x"
    )
    wait_for_pair(page)

    page.keyboard.press("2" if assignment.left_is_a else "1")  # the side of the broken sample
    page.keyboard.press("Enter")
    page.wait_for_selector("#state-message:not([hidden])")

    message = (
        "Your answers on 7 of 8 check pairs disagreed with their known answers. This study expects "
        "at least 60% right, and that many misses is too many to be bad luck, so it has paused your "
        "rating."
    )
    assert page.text_content("#state-title") == "Your rating is paused"
    assert page.text_content("#state-text") == message
    assert (
        page.text_content("#state-hint") == "The study's staff will look at it; thank you for your patience."
    )
    assert page.locator("#task").is_hidden()
    screenshot(page, "desktop-paused")
    page.reload()
    assert page.text_content("#state-text") == message
    assert Rater.objects.get().status == RaterStatus.PAUSED


def test_the_space_a_continuation_starts_with_is_not_shown(live_server, open_page) -> None:  # type: ignore[no-untyped-def]
    study = rating_study()
    pair(study, left=" the tide came in\nslowly", right="\n  the lamp went out")
    page = open_page()
    join(page, live_server, study)
    texts = {page.text_content("#left-text"), page.text_content("#right-text")}
    assert texts == {"the tide came in\nslowly", "the lamp went out"}


def test_a_vote_the_network_drops_is_kept_and_resent_until_it_is_stored(
    live_server, open_page, screenshot
) -> None:  # type: ignore[no-untyped-def]
    study = rating_study()
    pair(study)
    pair(study, left="A second left text.", right="A second right text.", prompt="Rain on the city")
    page = open_page()
    join(page, live_server, study)
    shown_left = page.text_content("#left-text")
    dropped = {"left": 4}  # more failures than the old page's two retries

    def drop_votes(route) -> None:  # type: ignore[no-untyped-def]
        if dropped["left"] > 0:
            dropped["left"] -= 1
            route.abort()
        else:
            route.continue_()

    page.route("**/api/vote", drop_votes)
    page.keyboard.press("1")
    page.keyboard.press("Enter")
    page.wait_for_function(
        "document.getElementById('error-banner').textContent.includes('kept on this device')"
    )
    screenshot(page, "vote-kept-while-offline")
    assert Judgment.objects.count() == 0
    # The fifth try goes through, after 0.5 + 1 + 2 + 4 s of pauses. (Waiting in the page lets
    # Playwright run the route handler meanwhile.)
    page.wait_for_function(
        f"document.getElementById('left-text').textContent !== {shown_left!r}", timeout=30_000
    )
    wait_for_pair(page)
    wait_for_judgments(1)
    assert page.text_content("#error-banner") == ""
    assert Judgment.objects.get().chose_left is True
    assert page.evaluate("Object.keys(localStorage).filter((k) => k.startsWith('lovelace-pending'))") == []


def test_a_vote_still_unsent_at_a_reload_is_sent_when_the_page_opens_again(live_server, open_page) -> None:  # type: ignore[no-untyped-def]
    study = rating_study()
    pair(study)
    pair(study, left="A second left text.", right="A second right text.", prompt="Rain on the city")
    page = open_page()
    join(page, live_server, study)
    page.route("**/api/vote", lambda route: route.abort())  # offline
    page.keyboard.press("2")
    page.keyboard.press("Enter")
    page.wait_for_function(
        "document.getElementById('error-banner').textContent.includes('kept on this device')"
    )
    page.unroute("**/api/vote")
    page.reload()  # before the next resend: the vote lives only in this browser's storage
    wait_for_pair(page)
    wait_for_judgments(1)

    judgment = Judgment.objects.get()
    assert judgment.chose_left is False
    # The page moved on to the other pair; it did not show the judged one again.
    assert Assignment.objects.filter(status=AssignmentStatus.RESERVED).get().comparison_id != (
        judgment.assignment.comparison_id
    )
