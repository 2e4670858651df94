"""Registering an endpoint version from the study page."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.test import Client

from server.generators.models import GeneratorVersion, VersionKind
from tests.server.api.world import World, build_world

STUDY_URL = "/dashboard/studies/poems/"
FORM = {
    "endpoint-generator": "local-vllm",
    "endpoint-label": "qwen-0.5b",
    "endpoint-base_url": "http://gpu-box:8000/v1",
    "endpoint-model": "Qwen/Qwen2.5-0.5B",
    "endpoint-mode": "completions",
    "endpoint-api_key_env": "VLLM_API_KEY",
    "endpoint-concurrency": "16",
    "endpoint-timeout_seconds": "30",
    "endpoint-max_retries": "2",
    "endpoint-decoding": '{"temperature": 0.8}',
}


@pytest.fixture
def staff(db: None, settings, tmp_path: Path) -> Client:  # type: ignore[no-untyped-def]
    settings.VAR_DIR = tmp_path
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    world: World = build_world()
    client = Client()
    client.force_login(world.staff)
    return client


def test_staff_register_an_endpoint_version_and_it_is_enrolled(staff: Client) -> None:
    assert 'id="endpoint-form"' in staff.get(STUDY_URL).content.decode()
    response = staff.post(f"{STUDY_URL}endpoint-versions/", FORM)
    assert response.status_code == 303 and response["Location"] == f"{STUDY_URL}#actions"
    version = GeneratorVersion.objects.get(generator__name="local-vllm", label="qwen-0.5b")
    assert version.kind == VersionKind.ENDPOINT and version.decoding == {"temperature": 0.8}
    assert version.endpoint == {
        "base_url": "http://gpu-box:8000/v1",
        "model": "Qwen/Qwen2.5-0.5B",
        "mode": "completions",
        "api_key_env": "VLLM_API_KEY",
        "concurrency": 16,
        "timeout_seconds": 30.0,
        "max_retries": 2,
        "backoff_seconds": 1.0,
    }
    assert version.studies.filter(slug="poems").exists()
    assert "local-vllm/qwen-0.5b is registered and enrolled" in staff.get(STUDY_URL).content.decode()


def test_a_refused_setting_is_shown_next_to_the_form_and_registers_nothing(staff: Client) -> None:
    response = staff.post(f"{STUDY_URL}endpoint-versions/", {**FORM, "endpoint-base_url": "gpu-box:8000"})
    assert response.status_code == 400
    assert "The base URL must start with http:// or https://" in response.content.decode()
    assert not GeneratorVersion.objects.filter(kind=VersionKind.ENDPOINT).exists()
