"""Every page fits the screen at 1280×800 and on a 390×844 phone: no sideways scrolling of the
page (``document.scrollWidth <= innerWidth``); at 1280 px the leaderboard, models and raters tables
fit their cards whole; on a phone a wide table scrolls inside its card. The raters table comes in
pages. Screenshots of each page at both sizes go to test-artifacts/browser/."""

from __future__ import annotations

from pathlib import Path

import pytest

from server.ratings.models import Platform, Rater
from tests.browser.conftest import PHONE
from tests.browser.test_dashboard import sign_in, watch_errors
from tests.browser.test_rating_page import pair, rating_study
from tests.server.api.world import World, build_world

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

LAPTOP = {"width": 1280, "height": 800}
SIZES = {"laptop": LAPTOP, "phone": PHONE}

# Elements that stick out of the viewport (for the failure message), and the page's own width.
OVERFLOW = """() => {
  const width = window.innerWidth;
  const out = [...document.querySelectorAll('body *')]
    .filter((node) => node.getBoundingClientRect().right > width + 1 && node.getClientRects().length)
    .filter((node) => !node.closest('.dash-scroll'))  // scrolled inside its card, by design
    .slice(0, 8)
    .map((node) => `${node.tagName.toLowerCase()}#${node.id}.${node.className}`);
  return {scrollWidth: document.documentElement.scrollWidth, innerWidth: width, out};
}"""

# For each table: its width against the width its card shows without scrolling.
TABLE_FIT = """(ids) => ids.map((id) => {
  const table = document.getElementById(id);
  const card = table.closest('.dash-card');
  const width = table.getBoundingClientRect().width;
  return {id, fits: width <= card.clientWidth + 1, width: Math.round(width), card: card.clientWidth};
})"""


@pytest.fixture
def world(settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> World:  # type: ignore[no-untyped-def]
    settings.VAR_DIR = tmp_path
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    monkeypatch.setattr("server.jobs.services._dispatch", lambda job_id, kind, queue: None)
    built = build_world(hostile_text=True)
    # Enough raters for three pages, some with long crowd ids.
    Rater.objects.bulk_create(
        Rater(study=built.study_a, platform=Platform.PROLIFIC, external_id=f"participant-{n:03d}-{'x' * 30}")
        for n in range(120)
    )
    return built


def assert_fits(page, name: str) -> None:  # type: ignore[no-untyped-def]
    """No sideways scrolling. Against the screen's own width too: a phone browser zooms a page that
    overflows out to fit, and then its innerWidth grows with the page."""
    measured = page.evaluate(OVERFLOW)
    screen = page.viewport_size["width"]
    assert measured["scrollWidth"] <= measured["innerWidth"] == screen, (name, measured)


@pytest.mark.parametrize("size", SIZES)
def test_the_dashboard_pages_fit_the_screen(
    live_server, open_page, screenshot, world: World, size: str
) -> None:  # type: ignore[no-untyped-def]
    viewport = SIZES[size]
    page = open_page(viewport=viewport, **({"is_mobile": True, "has_touch": True} if size == "phone" else {}))
    errors = watch_errors(page)
    sign_in(page, live_server, "/dashboard/")
    assert_fits(page, "home")
    screenshot(page, f"layout-{size}-dashboard-home", full_page=True)

    page.goto(f"{live_server.url}/dashboard/studies/poems/")
    page.wait_for_function("window.lovelaceCharts && window.lovelaceCharts.metrics")
    page.wait_for_selector("#jobs-body tr")
    assert_fits(page, "study")
    screenshot(page, f"layout-{size}-dashboard-study", full_page=True)
    tables = ["leaderboard-table", "reward-models-table", "raters-table", "jobs-table"]
    if size == "laptop":
        fitted = page.evaluate(TABLE_FIT, tables)
        assert [(row["id"], row["fits"]) for row in fitted] == [(table, True) for table in tables], fitted
    else:
        # Wider than a phone: each scrolls inside its own card, and the page does not.
        scrollers = page.evaluate(
            "(ids) => ids.map((id) => "
            "getComputedStyle(document.getElementById(id).closest('.dash-card')).overflowX)",
            tables,
        )
        assert scrollers == ["auto"] * len(tables)
    for section in ("leaderboard", "raters", "jobs", "models"):
        page.locator(f"#{section}").screenshot(path=str(_artifact(f"layout-{size}-{section}")))

    page.goto(f"{live_server.url}/dashboard/token/")
    assert_fits(page, "token")
    assert errors == []


@pytest.mark.parametrize("size", SIZES)
def test_the_rating_page_fits_the_screen(live_server, open_page, screenshot, size: str) -> None:  # type: ignore[no-untyped-def]
    study = rating_study(name="A study whose name is rather long for a small phone screen")
    pair(study, left="Unbroken" * 40, right="A right text.")
    pair(study, prompt="Rain on the city")
    page = open_page(
        viewport=SIZES[size], **({"is_mobile": True, "has_touch": True} if size == "phone" else {})
    )
    page.goto(f"{live_server.url}/rate/{study.slug}/join/{study.invite_token}/")
    page.wait_for_selector("#ack-button:not([hidden])")
    assert_fits(page, "guidelines step")
    page.keyboard.press("Enter")
    join_done = page.wait_for_selector("#task:not([hidden])")
    assert join_done is not None
    assert_fits(page, "pair")
    screenshot(page, f"layout-{size}-rating", full_page=True)
    page.keyboard.press("g")
    page.wait_for_selector("#guidelines.open")
    assert_fits(page, "guidelines drawer")


def test_the_raters_table_comes_in_pages_of_fifty(live_server, open_page, world: World) -> None:  # type: ignore[no-untyped-def]
    total = Rater.objects.filter(study=world.study_a).count()
    assert total > 100  # the world's raters and the 120 crowd participants
    page = open_page(viewport=LAPTOP)
    sign_in(page, live_server, "/dashboard/studies/poems/")

    assert page.locator("#raters-table tbody tr").count() == 50
    assert page.text_content("#raters-pager span") == f"Raters 1–50 of {total}"
    first_page = set(
        page.locator("#raters-table tbody tr").evaluate_all("rows => rows.map((r) => r.dataset.raterId)")
    )
    page.click("#raters-pager a[rel=next]")
    page.wait_for_url("**/?raters_page=2#raters")
    second_page = set(
        page.locator("#raters-table tbody tr").evaluate_all("rows => rows.map((r) => r.dataset.raterId)")
    )
    assert len(second_page) == 50 and not first_page & second_page
    assert page.text_content("#raters-pager span") == f"Raters 51–100 of {total}"
    height = page.evaluate("document.getElementById('raters').getBoundingClientRect().height")
    assert height < 4_000, height  # 311 raters on one page made the page 24,000 px tall

    page.goto(f"{live_server.url}/dashboard/studies/poems/?raters_page=3#raters")
    assert page.locator("#raters-table tbody tr").count() == total - 100
    assert page.locator("#raters-pager a[rel=next]").count() == 0


def _artifact(name: str) -> Path:
    from tests.browser.conftest import ARTIFACTS

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS / f"{name}.png"
