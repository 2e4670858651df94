"""An image study's dashboard in a real browser: the image build form queues a build with its
typed settings, and a refused setting comes back next to the field it belongs to."""

from __future__ import annotations

from pathlib import Path

import pytest

from server.jobs.models import Job, JobKind
from server.studies.models import Modality
from tests import factories
from tests.browser.test_dashboard import sign_in, watch_errors

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def image_study(settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    settings.VAR_DIR = tmp_path
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    monkeypatch.setattr("server.jobs.services._dispatch", lambda job_id, kind, queue: None)
    factories.user(username="operator", password="operator-password-1", is_staff=True)
    study = factories.study(slug="shapes", modality=Modality.IMAGE, question="Which image is better?")
    factories.prompt(study=study, text="a red circle")
    return study


def test_staff_build_an_image_generator_from_the_dashboard(live_server, open_page, image_study) -> None:  # type: ignore[no-untyped-def]
    page = open_page()
    errors = watch_errors(page)
    sign_in(page, live_server, "/dashboard/studies/shapes/")
    form = page.locator("#action-build-image-generator")
    assert form.locator("input[name=steps]").get_attribute("min") == "1"
    assert page.locator("#action-train-policy select[name=method]").count() == 0  # image_reward only

    # A setting the architecture does not have, given in the advanced JSON: refused beside it.
    form.locator("select[name=architecture]").select_option("vae")
    form.locator("input[name=generator]").fill("Shapes VAE")
    form.locator("select[name=size]").select_option("tiny")
    form.locator("textarea[name=config]").fill('{"lora": true}')
    form.locator("button[type=submit]").click()
    page.wait_for_load_state()
    refused = page.locator("#action-build-image-generator")
    assert "config.lora is not a setting of a vae build" in refused.inner_text()
    assert Job.objects.count() == 0

    refused.locator("input[name=generator]").fill("Shapes VAE")
    refused.locator("select[name=size]").select_option("tiny")
    refused.locator("textarea[name=config]").fill('{"kl_weight": 0.5}')
    refused.locator("input[name=steps]").fill("5")
    refused.locator("button[type=submit]").click()
    page.wait_for_url("**/dashboard/studies/shapes/#jobs")
    job = Job.objects.get()
    assert (job.kind, job.params["architecture"], job.params["size"], job.params["config"]) == (
        JobKind.BUILD_BASE_MODEL,
        "vae",
        "tiny",
        {"steps": 5, "kl_weight": 0.5},
    )
    assert "Build an image generator: job" in page.locator(".dash-messages").inner_text()
    assert errors == []
