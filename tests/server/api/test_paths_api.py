"""Through the API a staff token cannot point the server at its own files: a system file and a
missing one get the same answer, and nothing is registered or started."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from rest_framework.test import APIClient

from server.generators.models import GeneratorVersion
from server.jobs.models import Job
from tests.conftest import DEMO_CORPUS
from tests.server.api.world import World

STUDY = "/api/studies/poems"
CORPUS_REFUSED = {
    "error": "reference_corpus_path must be the absolute path of a text file in the allowed data folders "
    "(the var folder, the project's corpus folder, LOVELACE_DATA_ROOTS).",
    "details": {"field": "reference_corpus_path"},
}


def register(client: APIClient, **fields: str):  # type: ignore[no-untyped-def]
    body = {"generator": "probe", "label": "v1", "kind": "external", **fields}
    return client.post(f"{STUDY}/versions/", body, format="json")


def test_a_system_file_as_reference_corpus_is_refused_like_a_missing_one(
    world: World, staff_client: APIClient
) -> None:
    versions_before = GeneratorVersion.objects.count()
    answers = [
        register(staff_client, reference_corpus_path=path)
        for path in ["/etc/passwd", "/etc/no-such-file", str(Path(settings.VAR_DIR) / "missing.txt")]
    ]
    assert [response.status_code for response in answers] == [400, 400, 400]
    assert [response.json() for response in answers] == [CORPUS_REFUSED] * 3
    assert GeneratorVersion.objects.count() == versions_before


def test_a_model_path_outside_the_model_folders_is_refused(world: World, staff_client: APIClient) -> None:
    for path in ["/", "/etc", "/root/.ssh", "gpt2"]:
        response = register(staff_client, kind="base", model_path=path)
        assert response.status_code == 400
        assert response.json()["details"] == {"field": "model_path"}
    assert not GeneratorVersion.objects.filter(generator__name="probe").exists()


def test_the_shipped_corpus_and_a_model_in_var_are_accepted(world: World, staff_client: APIClient) -> None:
    model = Path(settings.VAR_DIR) / "models" / "tiny"
    response = register(
        staff_client, kind="base", model_path=str(model), reference_corpus_path=str(DEMO_CORPUS)
    )
    assert response.status_code == 201, response.json()
    version = GeneratorVersion.objects.get(generator__name="probe")
    assert (version.model_path, version.reference_corpus_path) == (str(model), str(DEMO_CORPUS))


def test_a_backbone_outside_the_model_folders_starts_no_training(
    world: World, staff_client: APIClient
) -> None:
    jobs_before = Job.objects.count()
    response = staff_client.post(
        f"{STUDY}/jobs/train-reward-model/", {"config": {"backbone_path": "/etc"}}, format="json"
    )
    assert response.status_code == 400
    assert response.json()["details"] == {"field": "config.backbone_path"}
    assert Job.objects.count() == jobs_before
