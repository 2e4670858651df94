"""The browser tests' own safety net: a wedged Chromium is killed and replaced, not waited on."""

from __future__ import annotations

import os
import signal

from tests.browser.conftest import Chromium, chromium_descendants, close_contexts


def test_a_wedged_chromium_is_killed_and_the_page_comes_from_a_fresh_one(  # type: ignore[no-untyped-def]
    chromium: Chromium, open_page
) -> None:
    first = open_page()
    first.set_content("<p id=x>first</p>")
    assert first.text_content("#x") == "first"
    wedged = chromium.get()
    processes = chromium_descendants(os.getpid())
    assert processes, "Chromium runs under this process"
    # Stopped, Chromium answers nothing: Browser.new_context would wait forever.
    for pid in processes:
        os.kill(pid, signal.SIGSTOP)
    killed_before = chromium.killed
    chromium.new_context_timeout = 3
    try:
        page = open_page()
    finally:
        chromium.new_context_timeout = 60
    assert chromium.killed == killed_before + 1
    assert not wedged.is_connected()
    assert chromium.get() is not wedged
    page.set_content("<p id=x>second</p>")
    assert page.text_content("#x") == "second"
    assert not set(processes) & set(chromium_descendants(os.getpid())), "the stopped ones are gone"


def test_the_watchdog_leaves_a_quick_block_alone(chromium: Chromium) -> None:
    killed_before = chromium.killed
    with chromium.watchdog(5, "a quick block") as fired:
        pass
    assert not fired.is_set()
    assert chromium.killed == killed_before


def test_a_chromium_that_wedges_while_its_contexts_close_is_killed(chromium: Chromium) -> None:
    context = chromium.get().new_context()
    context.new_page().set_content("<p>closing</p>")
    processes = chromium_descendants(os.getpid())
    for pid in processes:  # wedged: BrowserContext.close would wait forever
        os.kill(pid, signal.SIGSTOP)
    killed_before = chromium.killed

    close_contexts(chromium, [context], timeout=3)

    assert chromium.killed == killed_before + 1
    assert not set(processes) & set(chromium_descendants(os.getpid())), "the stopped ones are gone"
    page = chromium.get().new_context().new_page()  # a fresh Chromium serves the next test
    page.set_content("<p id=x>after</p>")
    assert page.text_content("#x") == "after"
    page.context.close()
