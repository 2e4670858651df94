"""A reward model's accuracy beside the raters' agreement: intervals clustered by comparison, and
the model measured on the ceiling's own comparisons (text models in test_training_chain)."""

from __future__ import annotations

from pathlib import Path

import pytest

from evaluation.proportions import wilson_interval
from server.jobs.models import Job
from server.training.agreement import (
    Ceiling,
    agreement_on_ceiling_comparisons,
    human_agreement_ceiling,
)
from server.training.jobs import reward_model_train_run
from server.training.models import RewardModel
from server.training.snapshots import snapshot_create
from tests import factories

pytestmark = pytest.mark.django_db

RED, BLUE = (220, 0, 0), (0, 0, 220)


def two_rater_image_study(prompts: int = 12):  # type: ignore[no-untyped-def]
    """Red against blue on every prompt, judged by two raters who prefer red, except on the first
    prompt, where the second prefers blue."""
    study = factories.study(modality="image")
    red_version, blue_version = (factories.version(enrol_in=study) for _ in range(2))
    raters = [factories.rater(study=study) for _ in range(2)]
    for number in range(prompts):
        prompt = factories.prompt(study=study, text=f"shape {number}")
        red = factories.image_sample(
            prompt=prompt, version=red_version, data=factories.image_bytes(8, 8, color=RED)
        )
        blue = factories.image_sample(
            prompt=prompt, version=blue_version, data=factories.image_bytes(8, 8, color=BLUE)
        )
        comparison = factories.comparison(study=study, prompt=prompt, sample_a=red, sample_b=blue)
        factories.judgment(comparison=comparison, rater=raters[0], outcome="A")
        factories.judgment(comparison=comparison, rater=raters[1], outcome="B" if number == 0 else "A")
    return study


@pytest.mark.usefixtures("image_storage")
def test_an_image_reward_model_is_set_beside_the_ceiling_on_the_same_comparisons(
    settings, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    settings.VAR_DIR = tmp_path
    study = two_rater_image_study()
    snapshot = snapshot_create(study=study, validation_fraction=0.5)
    assert snapshot.validation_count >= 4
    job = Job.objects.create(
        kind="train_reward_model",
        queue="gpu",
        study=study,
        params={"snapshot_id": snapshot.id, "config": {"ensemble_size": 1, "epochs": 3, "bootstrap": False}},
    )

    reward_model_train_run(job=job, report=lambda **_: None)

    model = RewardModel.objects.get(job=job)
    metrics = model.metrics
    comparisons = snapshot.validation_count // 2  # two votes on each
    ceiling = human_agreement_ceiling(snapshot=snapshot)
    assert model.human_agreement_ceiling == ceiling.rate and ceiling.rate is not None
    assert metrics["validation_comparisons"] == metrics["ceiling_comparisons"] == comparisons
    same = metrics["on_ceiling_comparisons"]
    assert (same["votes"], same["comparisons"]) == (snapshot.validation_count, comparisons)
    assert same["accuracy"] == pytest.approx(model.validation_accuracy)
    low, high = metrics["validation_accuracy_interval"]
    assert low <= model.validation_accuracy <= high


def test_the_model_is_measured_only_on_comparisons_two_raters_judged() -> None:
    ceiling = Ceiling(rate=0.75, comparisons=2, interval=(0.3, 0.95), comparison_ids=frozenset({1, 2}))
    # [comparison, right, votes]; comparison 3 had one vote: it counts in the accuracy, not
    # beside the ceiling
    by_comparison = [[1, 2, 2], [2, 1, 2], [3, 0, 1]]

    same = agreement_on_ceiling_comparisons(by_comparison, ceiling)

    assert same is not None
    assert (same["accuracy"], same["votes"], same["comparisons"]) == (0.75, 4, 2)
    low, high = same["interval"]
    naive_low, naive_high = wilson_interval(3, 4)  # type: ignore[misc]
    assert low <= naive_low and high >= naive_high
    assert agreement_on_ceiling_comparisons([[3, 0, 1]], ceiling) is None
