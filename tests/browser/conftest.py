"""A real headless Chromium (Debian's) driven by Playwright's sync API against the live server."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

# Playwright's sync API keeps an event loop running in the test thread; the ORM calls the tests
# make between browser steps are ordinary synchronous calls, so Django's guard does not apply.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "browser"
DESKTOP = {"width": 1280, "height": 860}
PHONE = {"width": 390, "height": 844}


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is missing: apt-get install chromium (make test does)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def open_page(browser):  # type: ignore[no-untyped-def]
    """open_page(viewport=DESKTOP) -> a fresh page in its own context (its own cookies)."""
    contexts = []

    def opener(viewport: dict[str, int] = DESKTOP, **options: object):  # type: ignore[no-untyped-def]
        context = browser.new_context(viewport=viewport, **options)
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(15_000)
        return page

    yield opener
    for context in contexts:
        context.close()


@pytest.fixture
def screenshot():  # type: ignore[no-untyped-def]
    ARTIFACTS.mkdir(parents=True, exist_ok=True)

    def take(page, name: str, *, full_page: bool = False) -> Path:  # type: ignore[no-untyped-def]
        path = ARTIFACTS / f"{name}.png"
        page.screenshot(path=str(path), full_page=full_page)
        return path

    return take


@pytest.fixture(autouse=True)
def fresh_rate_limits(settings) -> None:  # type: ignore[no-untyped-def]
    """Every browser joins from 127.0.0.1, and the live server's database is not rolled back between
    tests: a key prefix of its own gives each test fresh crowd-entry counters (deleting nothing)."""
    settings.CACHES = {
        alias: {**options, "KEY_PREFIX": f"test-{uuid.uuid4().hex}"}
        for alias, options in settings.CACHES.items()
    }


# A browser test that outlives this has a wedged Chromium: once, in CI, `Browser.new_context` waited
# forever (Playwright's sync API gives it no timeout) and held the whole run. The thread method
# dumps every thread's stack and ends the worker process; pytest-xdist reports the test as failed
# and starts a fresh worker, with a fresh Chromium, for the tests still to run.
BROWSER_TEST_TIMEOUT = 300


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    browser_tests = Path(__file__).parent
    for item in items:
        if browser_tests in item.path.parents:
            item.add_marker(pytest.mark.timeout(BROWSER_TEST_TIMEOUT, method="thread"))
