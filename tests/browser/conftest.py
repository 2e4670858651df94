"""A real headless Chromium (Debian's) driven by Playwright's sync API against the live server."""

from __future__ import annotations

import contextlib
import faulthandler
import os
import signal
import sys
import threading
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


class Chromium:
    """The worker process's Chromium, launched on first use and again after a wedge.

    Chromium has wedged in CI twice in some thirty runs (a call such as ``Browser.new_context``
    never answered; Playwright's sync API gives such calls no timeout). A watchdog thread kills
    the wedged Chromium, which makes the waiting call raise; the next page gets a fresh Chromium.
    """

    def __init__(self, playwright) -> None:  # type: ignore[no-untyped-def]
        self.playwright = playwright
        self.launched = None
        self.killed = 0
        self.new_context_timeout: float = NEW_CONTEXT_TIMEOUT

    def get(self):  # type: ignore[no-untyped-def]
        if self.launched is None or not self.launched.is_connected():
            self.launched = self.playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        return self.launched

    def kill(self) -> int:
        """SIGKILL every Chromium process under this one (the driver's child and its helpers)."""
        doomed = chromium_descendants(os.getpid())
        for pid in doomed:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.killed += 1
        # The next get() launches afresh: Playwright may not have seen the disconnection yet.
        self.launched = None
        return len(doomed)

    @contextlib.contextmanager
    def watchdog(self, seconds: float, what: str) -> Iterator[threading.Event]:
        """Kill Chromium if the block outlives ``seconds``; the yielded event says it fired."""
        fired = threading.Event()

        def bite() -> None:
            fired.set()
            count = self.kill()
            print(f"\n{what} outlived {seconds:.0f} s: Chromium wedged, {count} processes killed", flush=True)

        timer = threading.Timer(seconds, bite)
        timer.daemon = True
        timer.start()
        try:
            yield fired
        finally:
            timer.cancel()


def chromium_descendants(root: int) -> list[int]:
    """Pids of the Chromium processes descending from ``root``, read from /proc."""
    children: dict[int, list[int]] = {}
    names: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # gone meanwhile
        # pid (comm) state ppid …; comm may hold spaces and parentheses: split at the last ")".
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        parent = int(stat[stat.rindex(")") + 2 :].split()[1])
        children.setdefault(parent, []).append(int(entry.name))
        names[int(entry.name)] = name
    found: list[int] = []
    stack = [root]
    while stack:
        for child in children.get(stack.pop(), []):
            stack.append(child)
            if names[child].startswith("chrom"):
                found.append(child)
    return found


@pytest.fixture(scope="session")
def chromium() -> Iterator[Chromium]:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is missing: apt-get install chromium (make test does)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        holder = Chromium(playwright)
        yield holder
        if holder.launched is not None and holder.launched.is_connected():
            holder.launched.close()


@pytest.fixture
def open_page(chromium: Chromium):  # type: ignore[no-untyped-def]
    """open_page(viewport=DESKTOP) -> a fresh page in its own context (its own cookies)."""
    contexts = []

    def opener(viewport: dict[str, int] = DESKTOP, **options: object):  # type: ignore[no-untyped-def]
        # A fresh context is browser work alone, none of the test's: where Chromium wedges on it,
        # a fresh Chromium gets the same request once more.
        for attempt in (1, 2):
            with chromium.watchdog(chromium.new_context_timeout, "Browser.new_context") as fired:
                try:
                    context = chromium.get().new_context(viewport=viewport, **options)
                    page = context.new_page()
                    break
                except Exception:
                    if not fired.is_set() or attempt == 2:
                        raise
        contexts.append(context)
        page.set_default_timeout(15_000)
        return page

    with chromium.watchdog(BROWSER_TEST_WATCHDOG, "this browser test"):
        yield opener
    close_contexts(chromium, contexts, CLOSE_TIMEOUT)


def close_contexts(chromium: Chromium, contexts: list, timeout: float) -> None:  # type: ignore[type-arg]
    """Close a test's contexts; a Chromium that wedges on it is killed (the close then raises,
    and is let go): a close has no timeout of its own, and one that hung once outlived every
    watchdog and ended the worker (and with it, pytest-xdist's run)."""
    with chromium.watchdog(timeout, "BrowserContext.close"):
        for context in contexts:
            with contextlib.suppress(Exception):  # gone with a killed Chromium
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


# Three watchdogs (Chromium.watchdog) kill a wedged Chromium rather than the worker: a fresh context
# that takes over NEW_CONTEXT_TIMEOUT (it takes well under a second) is asked again of a fresh
# Chromium, a test that outlives BROWSER_TEST_WATCHDOG fails with its Chromium killed, and closing
# its contexts afterwards gets CLOSE_TIMEOUT. The
# pytest-timeout thread method comes last: it dumps every thread's stack and ends the worker
# process, which pytest-xdist has once failed to survive (its master waited forever with every
# worker idle), so it is only for a hang outside Chromium.
NEW_CONTEXT_TIMEOUT = 60
BROWSER_TEST_WATCHDOG = 240
CLOSE_TIMEOUT = 60  # closing the test's contexts, after the test: its own watchdog
BROWSER_TEST_TIMEOUT = 330  # > BROWSER_TEST_WATCHDOG + CLOSE_TIMEOUT


@pytest.fixture(autouse=True)
def stacks_before_the_timeout(request: pytest.FixtureRequest) -> Iterator[None]:
    """Every thread's stack on the worker's stderr (which reaches the run's log, where
    pytest-timeout's own dump from inside a pytest-xdist worker does not) shortly before
    pytest-timeout would end a hung browser test: what hung, for the next time it happens."""
    faulthandler.dump_traceback_later(BROWSER_TEST_TIMEOUT - 15, file=sys.__stderr__)
    try:
        yield
    finally:
        faulthandler.cancel_dump_traceback_later()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    browser_tests = Path(__file__).parent
    for item in items:
        if browser_tests in item.path.parents:
            item.add_marker(pytest.mark.timeout(BROWSER_TEST_TIMEOUT, method="thread"))
