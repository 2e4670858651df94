"""Registering an endpoint version through the API: the settings come back, the key never does."""

from __future__ import annotations

from rest_framework.test import APIClient

from server.generators.models import GeneratorVersion
from tests.server.api.world import World

STUDY = "/api/studies/poems"


def test_staff_register_an_endpoint_version_by_the_key_s_variable_name(
    world: World, staff_client: APIClient
) -> None:
    body = {
        "generator": "hosted",
        "label": "gpt",
        "kind": "endpoint",
        "endpoint": {
            "base_url": "https://api.openai.com/v1",
            "model": "gpt-4o-mini",
            "mode": "chat",
            "api_key_env": "OPENAI_API_KEY",
            "concurrency": 8,
        },
        "decoding": {"temperature": 0.9, "max_new_tokens": 80},
    }
    response = staff_client.post(f"{STUDY}/versions/", body, format="json")
    assert response.status_code == 201, response.json()
    answer = response.json()
    assert (answer["kind"], answer["model_path"]) == ("endpoint", "")
    assert answer["endpoint"] == {
        "base_url": "https://api.openai.com/v1",
        "model": "gpt-4o-mini",
        "mode": "chat",
        "api_key_env": "OPENAI_API_KEY",
        "concurrency": 8,
        "timeout_seconds": 60.0,
        "max_retries": 4,
        "backoff_seconds": 1.0,
    }
    assert world.study_a.versions.filter(id=answer["id"]).exists()
    listed = staff_client.get(f"{STUDY}/versions/").json()["results"]
    assert [v["endpoint"] for v in listed if v["id"] == answer["id"]] == [answer["endpoint"]]


def test_a_key_pasted_as_a_setting_is_refused_and_not_echoed(world: World, staff_client: APIClient) -> None:
    before = GeneratorVersion.objects.count()
    body = {
        "generator": "hosted",
        "label": "gpt",
        "kind": "endpoint",
        "endpoint": {
            "base_url": "https://api.openai.com/v1",
            "model": "gpt-4o-mini",
            "api_key_env": "sk-live-123",
        },
    }
    response = staff_client.post(f"{STUDY}/versions/", body, format="json")
    assert response.status_code == 400
    assert response.json() == {
        "error": "api_key_env must be the NAME of an environment variable (letters, digits and _, not "
        "starting with a digit), e.g. OPENAI_API_KEY — not the key itself.",
        "details": {"field": "endpoint.api_key_env"},
    }
    assert GeneratorVersion.objects.count() == before
