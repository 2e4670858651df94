"""The dashboard in a real browser: job rows with duration, parameters and the error in plain words
(the full text behind Details, shown as text), the too-few-pairs warning beside the training
buttons, and "Take a snapshot" queuing its job, which the live jobs table then shows."""

from __future__ import annotations

from pathlib import Path

import pytest

from server.jobs.models import Job, JobKind, JobStatus
from tests.browser.test_dashboard import sign_in, watch_errors
from tests.server.api.world import World, build_world

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

LAPTOP = {"width": 1280, "height": 800}


@pytest.fixture
def world(settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> World:  # type: ignore[no-untyped-def]
    settings.VAR_DIR = tmp_path
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    monkeypatch.setattr("server.jobs.services._dispatch", lambda job_id, kind, queue: None)
    return build_world(hostile_text=True)


def test_job_rows_say_how_long_with_what_and_why_it_failed(live_server, open_page, world: World) -> None:  # type: ignore[no-untyped-def]
    page = open_page(viewport=LAPTOP)
    errors = watch_errors(page)
    sign_in(page, live_server, "/dashboard/studies/poems/")
    failed = Job.objects.get(kind=JobKind.GENERATE, status=JobStatus.FAILED)
    row = page.locator(f'#jobs-body tr[data-job-id="{failed.id}"]')
    row.wait_for()

    assert row.locator(".job-duration").inner_text() == "ran 10:00"
    assert row.locator(".job-error").inner_text().startswith("The GPU ran out of memory.")
    details = row.locator("details.job-error-details")
    assert not details.locator("pre").is_visible()
    details.locator("summary").click()
    assert details.locator("pre").inner_text() == failed.error  # the markup in it is text
    assert page.evaluate("() => window.__pwned") is None

    export = Job.objects.get(kind=JobKind.EXPORT)
    assert (
        page.locator(f'#jobs-body tr[data-job-id="{export.id}"] .job-params').inner_text()
        == "kind=leaderboard"
    )
    running = page.locator(f'#jobs-body tr[data-job-id="{world.running_job.id}"] .job-duration').inner_text()
    assert running.startswith("running 3:")
    page.locator("#jobs").screenshot(path=str(_artifact("dashboard-job-rows")))
    assert errors == []


def test_the_training_warning_is_beside_the_buttons_and_a_snapshot_can_be_taken(
    live_server, open_page, world: World
) -> None:  # type: ignore[no-untyped-def]
    page = open_page(viewport=LAPTOP)
    sign_in(page, live_server, "/dashboard/studies/poems/")
    for form in ("#action-train-reward-model", "#action-train-policy"):
        warning = page.locator(f"{form} .dash-train-warning")
        assert warning.is_visible()
        assert f"has {world.snapshot.train_count} training pairs, fewer than the study's minimum of 50" in (
            warning.inner_text()
        )
        # Right above the button that starts the training.
        below = page.evaluate(
            "(form) => { const f = document.querySelector(form); "
            "return f.querySelector('.dash-train-warning').nextElementSibling.type; }",
            form,
        )
        assert below == "submit"

    page.fill("#action-snapshot input[name=validation_fraction]", "0.3")
    page.click("#action-snapshot button[type=submit]")
    page.wait_for_url("**/dashboard/studies/poems/#jobs")
    job = Job.objects.get(kind=JobKind.SNAPSHOT)
    assert job.params == {"validation_fraction": 0.3, "then": []}
    assert "Take a snapshot: job" in page.locator(".dash-messages").inner_text()
    row = page.locator(f'#jobs-body tr[data-job-id="{job.id}"]')
    row.wait_for()
    assert row.locator(".job-kind div").first.inner_text() == "snapshot"
    assert row.locator(".job-params").inner_text() == "validation_fraction=0.3"


def _artifact(name: str) -> Path:
    from tests.browser.conftest import ARTIFACTS

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS / f"{name}.png"
