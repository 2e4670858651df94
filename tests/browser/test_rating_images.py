"""Image pairs on the rating page in a real browser: the keyboard vote, the large view (a key and
a click open it, Escape closes it), sharp upscaling of small images, the phone layout, and
nothing on the page or in its requests that names a generator or a version."""

from __future__ import annotations

from typing import Any

import pytest

from server.ratings.models import Assignment, AssignmentStatus, Judgment
from tests import factories
from tests.browser.conftest import PHONE
from tests.browser.test_rating_page import press_start, rating_study, wait_for_judgments

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("image_storage"),
]

DESKTOP = {"width": 1280, "height": 800}
SECRETS = ("secret-gan-alpha", "secret-vae-beta", "label-e17", "label-e42")


def image_pair(study, number: int):  # type: ignore[no-untyped-def]
    """A small image (28 px, an MNIST digit's size) against a larger one, from named sources."""
    prompt = factories.prompt(study=study, text=f"Draw the digit {number}")
    small = factories.image_sample(
        prompt=prompt,
        version=_version(SECRETS[0], SECRETS[2]),
        data=factories.image_bytes(28, 28, color=(number * 40, 30, 30)),
    )
    large = factories.image_sample(
        prompt=prompt,
        version=_version(SECRETS[1], SECRETS[3]),
        data=factories.image_bytes(1200, 900, color=(30, number * 40, 200), fmt="JPEG"),
    )
    return factories.comparison(prompt=prompt, sample_a=small, sample_b=large)


def _version(generator: str, label: str):  # type: ignore[no-untyped-def]
    from server.generators.models import Generator, GeneratorVersion, VersionKind

    named, _ = Generator.objects.get_or_create(name=generator)
    version, _ = GeneratorVersion.objects.get_or_create(
        generator=named, label=label, kind=VersionKind.EXTERNAL
    )
    return version


def image_study():  # type: ignore[no-untyped-def]
    study = rating_study(modality="image", name="Digits", question="Which image looks more like the digit?")
    image_pair(study, 1)
    image_pair(study, 2)
    return study


def wait_for_images(page) -> None:  # type: ignore[no-untyped-def]
    page.wait_for_selector("#task:not([hidden])")
    page.wait_for_function("document.getElementById('task').getAttribute('aria-busy') === 'false'")
    page.wait_for_function(
        "['left-image', 'right-image'].every((id) => {"
        " const img = document.getElementById(id); return img.complete && img.naturalWidth > 0; })"
    )


def join(page, live_server, study) -> list[Any]:  # type: ignore[no-untyped-def]
    """Joins and waits for the first pair; answers the list that collects the page's API answers."""
    answers: list[Any] = []
    page.on("response", lambda response: answers.append(response) if "/api/" in response.url else None)
    page.goto(f"{live_server.url}/rate/{study.slug}/join/{study.invite_token}/")
    press_start(page)
    wait_for_images(page)
    return answers


def no_horizontal_overflow(page) -> bool:  # type: ignore[no-untyped-def]
    return page.evaluate(
        "document.documentElement.scrollWidth <= window.innerWidth"
        " && document.body.scrollWidth <= window.innerWidth"
    )


def assert_nothing_names_the_source(page, answers: list[Any]) -> None:  # type: ignore[no-untyped-def]
    html = page.content()
    bodies = [answer.text() for answer in answers]
    assert bodies, "the page made no API request"
    for secret in SECRETS:
        assert secret not in html
        assert all(secret not in body for body in bodies)
    # Image URLs are content hashes: no sample id, no file name.
    sources = page.eval_on_selector_all("img[src]", "images => images.map((img) => img.getAttribute('src'))")
    assert sources and all(
        src.startswith("/rate/") and len(src.rsplit("/", 1)[1]) == 64 for src in sources
    ), sources


def test_an_image_pair_is_judged_with_the_keyboard_and_opens_large(
    live_server, open_page, screenshot
) -> None:  # type: ignore[no-untyped-def]
    study = image_study()
    page = open_page(viewport=DESKTOP)
    answers = join(page, live_server, study)
    assignment = Assignment.objects.select_related("comparison__sample_a__image").get(
        status=AssignmentStatus.RESERVED
    )
    small_side = "left" if assignment.left_is_a else "right"
    large_side = "right" if small_side == "left" else "left"
    # The 28 px image is drawn larger than it is, with sharp pixels; the larger one is not upscaled.
    assert (
        page.evaluate(f"getComputedStyle(document.getElementById('{small_side}-image')).imageRendering")
        == "pixelated"
    )
    assert page.evaluate(f"document.getElementById('{small_side}-image').clientWidth") > 28
    assert "pixelated" not in (page.get_attribute(f"#{large_side}-image", "class") or "")
    assert not page.is_visible("#left-text")
    verdicts = page.locator("[data-choice='left']").bounding_box()
    assert (
        verdicts is not None and verdicts["y"] + verdicts["height"] <= DESKTOP["height"]
    )  # no scrolling to vote
    assert no_horizontal_overflow(page)
    screenshot(page, "images-desktop")

    # Z opens the left image large, Escape closes it; a click opens, a click closes.
    page.keyboard.press("z")
    page.wait_for_selector("#image-zoom[open]")
    assert page.get_attribute("#zoom-image", "src") == page.get_attribute("#left-image", "src")
    assert page.evaluate("document.getElementById('zoom-image').clientWidth") > 600
    screenshot(page, "images-zoom-desktop")
    page.keyboard.press("Escape")
    page.wait_for_selector("#image-zoom:not([open])", state="attached")
    page.click("#right-image-button")
    page.wait_for_selector("#image-zoom[open]")
    assert page.get_attribute("#zoom-image", "src") == page.get_attribute("#right-image", "src")
    page.click("#zoom-image")
    page.wait_for_selector("#image-zoom:not([open])", state="attached")
    page.keyboard.press("x")
    page.wait_for_selector("#image-zoom[open]")
    page.keyboard.press("x")  # the same key again closes it
    page.wait_for_selector("#image-zoom:not([open])", state="attached")
    # X in the same task as the click that closed it: the dialog's late close event must not
    # forget the side that X opened, or the next X would not close it.
    page.evaluate(
        "document.getElementById('right-image-button').click();"
        "document.getElementById('zoom-image').click();"
        "document.dispatchEvent(new KeyboardEvent('keydown', {key: 'x', bubbles: true}));"
    )
    page.wait_for_selector("#image-zoom[open]")
    page.keyboard.press("x")
    page.wait_for_selector("#image-zoom:not([open])", state="attached")

    # The usual keyboard flow: 2 (right is better), Enter, and the next pair comes.
    first_src = page.get_attribute("#left-image", "src")
    page.keyboard.press("2")
    page.keyboard.press("Enter")
    wait_for_judgments(1)
    judgment = Judgment.objects.get()
    assert judgment.chose_left is False
    assert judgment.assignment_id == assignment.id
    page.wait_for_function(f"document.getElementById('left-image').getAttribute('src') !== {first_src!r}")
    wait_for_images(page)
    assert_nothing_names_the_source(page, answers)


def test_a_phone_shows_both_images_side_by_side_without_overflow(live_server, open_page, screenshot) -> None:  # type: ignore[no-untyped-def]
    study = image_study()
    page = open_page(viewport=PHONE, is_mobile=True, has_touch=True)
    answers = join(page, live_server, study)
    left = page.locator("#left-image").bounding_box()
    right = page.locator("#right-image").bounding_box()
    assert left is not None and right is not None
    assert left["x"] >= 0 and left["x"] + left["width"] <= right["x"]
    assert right["x"] + right["width"] <= PHONE["width"]
    assert max(left["y"] + left["height"], right["y"] + right["height"]) <= PHONE["height"]  # both on screen
    assert left["width"] > 120 and right["width"] > 120
    assert no_horizontal_overflow(page)
    screenshot(page, "images-phone")

    page.tap("#left-image-button")
    page.wait_for_selector("#image-zoom[open]")
    zoomed = page.locator("#zoom-image").bounding_box()
    assert zoomed is not None and zoomed["width"] <= PHONE["width"]
    assert no_horizontal_overflow(page)
    screenshot(page, "images-zoom-phone")
    page.tap("#zoom-image")
    page.wait_for_selector("#image-zoom:not([open])", state="attached")

    page.tap("[data-choice='left']")
    page.tap("#submit-button")
    wait_for_judgments(1)
    assert Judgment.objects.get().chose_left is True
    wait_for_images(page)
    assert_nothing_names_the_source(page, answers)


def test_an_image_pair_is_skipped_with_an_image_reason(live_server, open_page) -> None:  # type: ignore[no-untyped-def]
    study = image_study()
    page = open_page(viewport=DESKTOP)
    join(page, live_server, study)
    first_src = page.get_attribute("#left-image", "src")

    page.keyboard.press("s")
    page.wait_for_selector("#skip-dialog[open]")
    reasons = page.eval_on_selector_all(
        "#skip-dialog input[name=reason]", "inputs => inputs.map((input) => input.value)"
    )
    assert reasons == [
        "I cannot judge this topic",
        "An image is broken or unreadable",
        "Offensive or harmful content",
        "other",
    ]
    assert "text" not in page.inner_text("#skip-dialog").lower()
    page.check("input[value='An image is broken or unreadable']")
    page.click("#skip-confirm")
    page.wait_for_function(f"document.getElementById('left-image').getAttribute('src') !== {first_src!r}")

    skipped = Assignment.objects.get(status=AssignmentStatus.SKIPPED)
    assert skipped.skip_reason == "An image is broken or unreadable"
    assert Judgment.objects.count() == 0
