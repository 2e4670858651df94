"""Starting a reward model on fewer training pairs than the study asks for: a warning, not an error."""

from __future__ import annotations

from rest_framework.test import APIClient

from server.jobs.models import Job
from server.training.models import PreferenceSnapshot
from tests.server.api.world import World

STUDY = "/api/studies/poems"


def test_too_few_training_pairs_start_the_job_with_a_warning(world: World, staff_client: APIClient) -> None:
    # given a snapshot with fewer training pairs than the study's minimum (50 by default)
    train_pairs = PreferenceSnapshot.objects.get(id=world.snapshot.id).train_count
    assert 0 < train_pairs < world.study_a.min_training_pairs == 50

    # when staff start a reward model on it
    response = staff_client.post(f"{STUDY}/jobs/train-reward-model/", {}, format="json")

    # then the job is queued, and both the answer and the job say why it may disappoint
    assert response.status_code == 202, response.json()
    warning = (
        f"The snapshot has {train_pairs} training pairs, fewer than the study's minimum of 50: "
        "the reward model's accuracy will rest on little data."
    )
    assert response.json()["warnings"] == [warning]
    assert Job.objects.get(id=response.json()["id"]).params["warnings"] == [warning]


def test_enough_training_pairs_start_the_job_without_a_warning(world: World, staff_client: APIClient) -> None:
    train_pairs = PreferenceSnapshot.objects.get(id=world.snapshot.id).train_count
    world.study_a.min_training_pairs = train_pairs
    world.study_a.save(update_fields=["min_training_pairs"])

    response = staff_client.post(f"{STUDY}/jobs/train-reward-model/", {}, format="json")

    assert response.status_code == 202, response.json()
    assert response.json()["warnings"] == []
    assert "warnings" not in Job.objects.get(id=response.json()["id"]).params


def test_the_minimum_is_a_study_setting_of_the_api(world: World, staff_client: APIClient) -> None:
    response = staff_client.post(
        "/api/studies/",
        {"name": "Small", "slug": "small", "question": "Which is better?", "min_training_pairs": 20},
        format="json",
    )
    assert response.status_code == 201, response.json()
    assert response.json()["min_training_pairs"] == 20

    refused = staff_client.post(
        "/api/studies/",
        {"name": "Zero", "slug": "zero", "question": "Which is better?", "min_training_pairs": 0},
        format="json",
    )
    assert refused.status_code == 400
    assert Job.objects.filter(study__slug="zero").count() == 0


def test_dpo_on_too_few_training_pairs_starts_with_a_warning_too(
    world: World, staff_client: APIClient
) -> None:
    train_pairs = PreferenceSnapshot.objects.get(id=world.snapshot.id).train_count
    assert 0 < train_pairs < world.study_a.min_training_pairs == 50

    response = staff_client.post(f"{STUDY}/jobs/train-policy/", {"method": "dpo"}, format="json")

    assert response.status_code == 202, response.json()
    warning = (
        f"The snapshot has {train_pairs} training pairs, fewer than the study's minimum of 50: "
        "DPO will fit a handful of preferences, and its child may overfit them."
    )
    assert response.json()["warnings"] == [warning]
    assert Job.objects.get(id=response.json()["id"]).params["warnings"] == [warning]
