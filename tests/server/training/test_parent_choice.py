"""The loop's next parent: a child takes over only when it beats its parent beyond the interval."""

from __future__ import annotations

import pytest
from django.test import Client

from server.evaluations.models import LeaderboardSnapshot
from server.generators.models import VersionKind
from server.jobs.models import Job
from server.training.services import policy_parent_choose
from tests import factories

pytestmark = pytest.mark.django_db


def lineage():  # type: ignore[no-untyped-def]
    study = factories.study()
    base = factories.version(enrol_in=study, kind=VersionKind.BASE, label="base", model_path="/nowhere")
    job = Job.objects.create(kind="train_policy", queue="gpu")
    child = factories.version(
        enrol_in=study,
        kind=VersionKind.TRAINED,
        label="child",
        generator=base.generator,
        parent=base,
        training_job=job,
        model_path="/nowhere-child",
    )
    return study, base, child


def board(study, *rows: tuple[int, float, float, float, int], split: str | None = None) -> None:  # type: ignore[no-untyped-def]
    LeaderboardSnapshot.objects.create(
        study=study,
        params={"split": split} if split else {},
        rows=[
            {"version_id": v, "rating": r, "lower": lo, "upper": up, "battles": n, "rank": 1}
            for v, r, lo, up, n in rows
        ],
    )


def test_a_child_that_beats_its_parent_beyond_the_interval_becomes_the_parent() -> None:
    study, base, child = lineage()
    board(study, (child.id, 1100, 1060, 1140, 80), (base.id, 1000, 960, 1040, 80))

    choice = policy_parent_choose(study=study)

    assert choice.version == child
    assert choice.reason == (
        f"{child} beat its parent {base} beyond the interval "
        "(child 1100 [1060, 1140] over 80 battles; parent 1000 [960, 1040] over 80 battles)"
    )


def test_a_child_better_only_within_the_noise_leaves_the_parent_in_place_and_says_why() -> None:
    study, base, child = lineage()
    board(study, (child.id, 1030, 990, 1070, 40), (base.id, 1000, 960, 1040, 40))

    choice = policy_parent_choose(study=study)

    assert choice.version == base
    assert choice.reason == (
        f"{base} stays the parent: its child {child} does not beat it beyond the interval "
        "(child 1030 [990, 1070] over 40 battles; parent 1000 [960, 1040] over 40 battles)."
    )


@pytest.mark.parametrize(
    ("split", "said"),
    [
        ("holdout", "; on holdout prompts)"),
        (
            "all",
            "; on all prompts: the study has no rated holdout prompts yet, so the child's training "
            "prompts count too)",
        ),
    ],
)
def test_the_reason_says_which_prompts_the_leaderboard_counted(split: str, said: str) -> None:
    study, base, child = lineage()
    board(study, (child.id, 1100, 1060, 1140, 80), (base.id, 1000, 960, 1040, 80), split=split)
    promoted = policy_parent_choose(study=study)
    assert promoted.version == child and promoted.reason.endswith(said)

    board(study, (child.id, 1030, 990, 1070, 40), (base.id, 1000, 960, 1040, 40), split=split)
    kept = policy_parent_choose(study=study)
    assert kept.version == base and kept.reason.endswith(said + ".")


def test_a_child_not_yet_rated_does_not_take_over() -> None:
    study, base, _ = lineage()

    choice = policy_parent_choose(study=study)

    assert choice.version == base
    assert "child" in choice.reason and "not on the leaderboard yet" in choice.reason


def test_the_dashboard_says_where_the_loop_trains_next_and_why() -> None:
    study, base, child = lineage()
    board(study, (child.id, 1030, 990, 1070, 40), (base.id, 1000, 960, 1040, 40))
    client = Client()
    client.force_login(factories.user(is_staff=True))

    page = client.get(f"/dashboard/studies/{study.slug}/").content.decode()

    assert f"The loop trains next from {base}." in page
    assert "does not beat it beyond the interval" in page


@pytest.mark.parametrize(
    ("child_row", "expected"),
    [((1030, 990, 1070, 40), "base"), ((1100, 1060, 1140, 80), "child")],
    ids=["within-the-noise", "beyond-the-interval"],
)
def test_the_automatic_loop_of_an_image_study_keeps_the_parent_by_the_same_rule(
    settings, tmp_path, child_row, expected
) -> None:  # type: ignore[no-untyped-def]
    """The image loop's policy step (started by its reward model step, no parent named) trains
    from the version the text loop would: the child only when it beats its parent beyond the
    interval of the holdout leaderboard."""
    from server.studies.models import Modality
    from server.training.jobs import reward_model_train_run
    from server.training.models import PreferenceSnapshot, RewardModel
    from server.training.services import IMAGE_POLICY_METHOD

    settings.LOVELACE_MODEL_ROOTS = [*settings.LOVELACE_MODEL_ROOTS, tmp_path]
    for folder in ("base", "child", "reward"):
        (tmp_path / folder).mkdir()
    image = {"modality": "image", "architecture": "dcgan"}
    study = factories.study(modality=Modality.IMAGE)
    base = factories.version(
        enrol_in=study, kind=VersionKind.BASE, label="base", model_path=str(tmp_path / "base"), metadata=image
    )
    child = factories.version(
        enrol_in=study,
        kind=VersionKind.TRAINED,
        label="child",
        generator=base.generator,
        parent=base,
        training_job=Job.objects.create(kind="train_policy", queue="gpu"),
        model_path=str(tmp_path / "child"),
        metadata=image,
    )
    board(study, (child.id, *child_row), (base.id, 1000, 960, 1040, 40))
    snapshot = PreferenceSnapshot.objects.create(study=study, content_hash="0" * 64, rule="test")
    reward_job = Job.objects.create(
        kind="train_reward_model", queue="gpu", study=study, params={"then": ["policy"]}
    )
    # The reward model is recorded: the step only starts the next one (as after a kill).
    RewardModel.objects.create(
        study=study,
        snapshot=snapshot,
        backbone="image-cnn",
        ensemble_size=1,
        path=str(tmp_path / "reward"),
        metrics={"modality": "image"},
        job=reward_job,
    )

    reward_model_train_run(job=reward_job, report=lambda **_: None)

    policy = Job.objects.get(kind="train_policy", parent=reward_job)
    assert policy.params["method"] == IMAGE_POLICY_METHOD
    assert policy.params["parent_version_id"] == {"base": base, "child": child}[expected].id
    assert policy.params["parent_reason"] == policy_parent_choose(study=study).reason
    assert ("stays the parent" in policy.params["parent_reason"]) == (expected == "base")
