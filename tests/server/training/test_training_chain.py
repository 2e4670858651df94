from __future__ import annotations

from pathlib import Path

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from evaluation.proportions import wilson_interval
from server.core.exceptions import ApplicationError
from server.generators.models import GeneratorVersion, VersionKind
from server.jobs.models import Job, JobKind, JobStatus
from server.ratings.models import ComparisonKind
from server.studies.models import PromptSplit, Study
from server.studies.services import study_create
from server.training.jobs import policy_train_run, reward_model_train_run, snapshot_run
from server.training.models import PreferenceSnapshot, RewardModel
from server.training.services import policy_train_start, snapshot_start, training_loops_start_due
from server.training.snapshots import snapshot_create
from tests import factories
from workers.ml.model_loading import weights_sha256
from workers.runner import run_job

pytestmark = pytest.mark.django_db

GOOD = "The lamp in the window keeps the harbour warm."
BAD = "lamp lamp the the window window."


def judged_study(model_dir: Path | None = None, *, prompts: int = 10, raters: int = 2):  # type: ignore[no-untyped-def]
    """Prompts with a good and a bad sample each; every rater prefers the good one."""
    study = factories.study(auto_train_min_judgments=5)
    kind = {"kind": VersionKind.BASE, "model_path": str(model_dir)} if model_dir else {}
    good_version = factories.version(label="good", enrol_in=study, **kind)
    bad_version = factories.version(label="bad", enrol_in=study, **kind)
    people = [factories.rater(study=study) for _ in range(raters)]
    for number in range(prompts):
        prompt = factories.prompt(study=study, text=f"Write about lamps, {number}")
        good = factories.sample(prompt=prompt, version=good_version, text=f"{GOOD} ({number})")
        bad = factories.sample(prompt=prompt, version=bad_version, text=f"{BAD} {number}")
        comparison = factories.comparison(study=study, prompt=prompt, sample_a=bad, sample_b=good)
        for person in people:
            factories.judgment(comparison=comparison, rater=person, outcome="B", strength=3)
    return study, good_version, bad_version


def test_snapshot_hash_is_stable_and_excludes_ineligible_judgments() -> None:
    study, *_ = judged_study(prompts=6)
    holdout = factories.prompt(study=study, split=PromptSplit.HOLDOUT)
    factories.judgment(comparison=factories.comparison(study=study, prompt=holdout))
    gold = factories.comparison(study=study, kind=ComparisonKind.GOLD, gold_answer="A")
    factories.judgment(comparison=gold)
    tie = factories.comparison(study=study)
    factories.judgment(comparison=tie, outcome="tie")

    first = snapshot_create(study=study)
    again = snapshot_create(study=study)

    assert again.id == first.id
    assert first.train_count + first.validation_count == 12
    assert set(first.pairs.values_list("margin", flat=True)) == {1.0}
    assert PreferenceSnapshot.objects.count() == 1
    # A prompt is never on both sides of the split.
    splits = {}
    for pair in first.pairs.select_related("chosen"):
        assert splits.setdefault(pair.chosen.prompt_id, pair.split) == pair.split


def test_a_new_judgment_changes_the_hash() -> None:
    study, _good_version, _ = judged_study(prompts=3)
    first = snapshot_create(study=study)
    comparison = study.comparisons.first()
    factories.judgment(comparison=comparison, rater=factories.rater(study=study), outcome="B")
    second = snapshot_create(study=study)
    assert second.content_hash != first.content_hash
    assert second.last_judgment_id > first.last_judgment_id


def test_snapshot_of_a_study_without_judgments_is_refused() -> None:
    with pytest.raises(ApplicationError, match="no eligible judgments"):
        snapshot_create(study=factories.study())


def test_chain_snapshot_reward_model_policy_generate_with_full_lineage(
    tiny_model_allowed: Path, django_capture_on_commit_callbacks
) -> None:  # type: ignore[no-untyped-def]
    study, good_version, bad_version = judged_study(tiny_model_allowed)
    with django_capture_on_commit_callbacks(execute=False):
        snapshot_job = snapshot_start(study=study, then=["reward_model", "policy"])
        assert run_job(snapshot_job.id, snapshot_run) == "succeeded"
        reward_job = Job.objects.get(parent=snapshot_job, kind=JobKind.TRAIN_REWARD_MODEL)
        reward_job.params["config"] = {"ensemble_size": 2, "epochs": 30}
        reward_job.save(update_fields=["params"])
        assert run_job(reward_job.id, reward_model_train_run) == "succeeded", Job.objects.get(
            id=reward_job.id
        ).error
        policy_job = Job.objects.get(parent=reward_job, kind=JobKind.TRAIN_POLICY)
        policy_job.params["config"] = {"learning_rate": 1e-2, "epochs": 2}
        policy_job.save(update_fields=["params"])
        assert run_job(policy_job.id, policy_train_run) == "succeeded", Job.objects.get(
            id=policy_job.id
        ).error

    reward_model = RewardModel.objects.get(study=study)
    assert reward_model.ensemble_size == 2
    assert reward_model.validation_accuracy is not None and reward_model.validation_accuracy >= 0.9
    assert reward_model.human_agreement_ceiling == 1.0  # both raters always agreed
    # Two votes per comparison: the accuracy's interval counts comparisons, and the model is set
    # beside the ceiling on the ceiling's own comparisons (here every validation comparison).
    metrics = reward_model.metrics
    pairs = metrics["validation_pairs"]
    assert pairs == reward_model.snapshot.validation_count and pairs % 2 == 0
    assert metrics["validation_comparisons"] == metrics["ceiling_comparisons"] == pairs // 2
    same = metrics["on_ceiling_comparisons"]
    assert (same["votes"], same["comparisons"]) == (pairs, pairs // 2)
    assert same["accuracy"] == pytest.approx(reward_model.validation_accuracy)
    low, high = metrics["validation_accuracy_interval"]
    naive_low, _ = wilson_interval(round(reward_model.validation_accuracy * pairs), pairs)
    assert low < naive_low and high <= 1.0  # wider than if the two votes were independent
    assert metrics["ceiling_interval"][1] == 1.0
    assert reward_model.snapshot.job_id == snapshot_job.id

    child = GeneratorVersion.objects.get(kind=VersionKind.TRAINED)
    assert child.parent_id in {good_version.id, bad_version.id}
    assert child.training_job_id == policy_job.id
    assert child.snapshot_id == reward_model.snapshot_id
    assert child.reward_model_id is None  # DPO learns from the snapshot, not from the reward model
    assert child.training_config["method"] == "dpo"
    # saved as an adapter on the parent, which is referenced (path + content hash), never copied
    parent = GeneratorVersion.objects.get(id=child.parent_id)
    assert (Path(child.model_path) / "adapter_config.json").is_file()
    assert not (Path(child.model_path) / "model.safetensors").exists()
    provenance = child.metadata["provenance"]
    assert provenance["base"] == {"path": parent.model_path, "sha256": weights_sha256(parent.model_path)}
    assert (provenance["dtype"], provenance["saved_as"]) == ("float32", "adapter")
    assert child.training_config["provenance"] == provenance
    assert child.training_config["lora"]["rank"] == 16
    assert study.versions.filter(id=child.id).exists()
    policy_job.refresh_from_db()
    assert policy_job.result["final_train_margin"] > policy_job.result["initial_train_margin"]
    generate = Job.objects.get(parent=policy_job, kind=JobKind.GENERATE)
    assert (generate.status, generate.params["version_ids"]) == (JobStatus.QUEUED, [child.id])


def test_policy_training_refuses_an_external_parent() -> None:
    study, good_version, _ = judged_study()
    snapshot_create(study=study)
    with pytest.raises(ApplicationError, match="is external: it has no weights"):
        policy_train_start(study=study, parent_version_id=good_version.id, method="dpo")
    with pytest.raises(ApplicationError, match="Method must be 'dpo', 'rloo' or 'grpo'"):
        policy_train_start(study=study, parent_version_id=good_version.id, method="ppo")


def test_loop_starts_for_studies_with_enough_new_judgments(django_capture_on_commit_callbacks) -> None:  # type: ignore[no-untyped-def]
    study, *_ = judged_study(prompts=3)  # 6 judgments, threshold 5
    with django_capture_on_commit_callbacks(execute=False):
        started = training_loops_start_due()
        assert [Job.objects.get(id=job_id).kind for job_id in started] == [JobKind.SNAPSHOT]
        assert training_loops_start_due() == []  # a step is in flight
    Job.objects.filter(id__in=started).update(status="cancelled", finished_at=timezone.now())
    snapshot_create(study=study)
    with django_capture_on_commit_callbacks(execute=False):
        assert training_loops_start_due() == []  # nothing new since the snapshot


def test_rloo_child_records_the_reward_model_it_was_trained_against(
    tiny_model_allowed: Path, django_capture_on_commit_callbacks
) -> None:  # type: ignore[no-untyped-def]
    study, good_version, _ = judged_study(tiny_model_allowed, prompts=6)
    with django_capture_on_commit_callbacks(execute=False):
        snapshot = snapshot_create(study=study)
        reward_job = Job.objects.create(
            kind=JobKind.TRAIN_REWARD_MODEL,
            queue="gpu",
            study=study,
            params={"snapshot_id": snapshot.id, "config": {"ensemble_size": 2}},
        )
        assert run_job(reward_job.id, reward_model_train_run) == "succeeded"
        reward_model = RewardModel.objects.get(study=study)
        job = policy_train_start(
            study=study,
            parent_version_id=good_version.id,
            method="rloo",
            config={
                "max_steps": 2,
                "num_generations": 2,
                "per_device_batch_size": 4,
                "max_completion_length": 6,
                "reward_std_penalty": 0.5,
            },
        )
        assert run_job(job.id, policy_train_run) == "succeeded", Job.objects.get(id=job.id).error
    child = GeneratorVersion.objects.get(kind=VersionKind.TRAINED)
    assert (child.parent_id, child.reward_model_id, child.snapshot_id) == (
        good_version.id,
        reward_model.id,
        snapshot.id,
    )
    assert child.training_config["method"] == "rloo"
    assert (child.training_config["max_steps"], child.training_config["reward_std_penalty"]) == (2, 0.5)
    assert child.metadata["result"]["steps"] == 2


def test_the_loop_trains_a_grpo_child_when_the_study_asks_for_grpo(
    tiny_model_allowed: Path, django_capture_on_commit_callbacks
) -> None:  # type: ignore[no-untyped-def]
    # given a study whose loop is set to GRPO, with its own settings for the loop's jobs (small,
    # for the CPU)
    study, good_version, bad_version = judged_study(tiny_model_allowed, prompts=6)
    study.auto_train_policy = "grpo"
    study.auto_reward_model_config = {"ensemble_size": 2}
    grpo = {"max_steps": 2, "num_generations": 2, "per_device_batch_size": 4, "max_completion_length": 6}
    study.auto_policy_config = grpo
    study.full_clean()
    study.save(update_fields=["auto_train_policy", "auto_reward_model_config", "auto_policy_config"])
    with django_capture_on_commit_callbacks(execute=False):
        # when the loop's snapshot and reward-model steps run
        snapshot_job = snapshot_start(study=study, then=["reward_model", "policy"])
        assert run_job(snapshot_job.id, snapshot_run) == "succeeded"
        reward_job = Job.objects.get(parent=snapshot_job, kind=JobKind.TRAIN_REWARD_MODEL)
        assert reward_job.params["config"] == {"ensemble_size": 2}  # the study's, untouched
        assert run_job(reward_job.id, reward_model_train_run) == "succeeded"
        reward_model = RewardModel.objects.get(study=study)
        assert reward_model.ensemble_size == 2

        # then the policy step is a GRPO job against that reward model, with the study's settings
        policy_job = Job.objects.get(parent=reward_job, kind=JobKind.TRAIN_POLICY)
        assert policy_job.status == JobStatus.QUEUED
        assert (policy_job.params["method"], policy_job.params["reward_model_id"]) == (
            "grpo",
            reward_model.id,
        )
        assert (policy_job.params["config"], policy_job.params["then"]) == (grpo, ["generate"])
        # and it trains a GRPO child, whose samples are asked for next
        assert run_job(policy_job.id, policy_train_run) == "succeeded", Job.objects.get(
            id=policy_job.id
        ).error
    child = GeneratorVersion.objects.get(kind=VersionKind.TRAINED)
    assert child.parent_id in {good_version.id, bad_version.id}
    assert (child.training_config["method"], child.reward_model_id) == ("grpo", reward_model.id)
    assert child.metadata["result"]["steps"] == 2
    generate = Job.objects.get(parent=policy_job, kind=JobKind.GENERATE)
    assert (generate.status, generate.params["version_ids"]) == (JobStatus.QUEUED, [child.id])


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        (
            "auto_reward_model_config",
            {"kind": "linear"},
            "The reward-model option 'kind' must be one of 'embedding_heads', 'sequence_classification'",
        ),
        ("auto_reward_model_config", {"epochs": 0}, "The reward-model option 'epochs' must be"),
        ("auto_policy_config", {"beta": -1}, "The DPO option 'beta' must be"),
        ("auto_policy_config", {"num_generations": 4}, "Unknown DPO option 'num_generations'"),
        ("auto_policy_config", {"label_smoothing": 0.1}, "The DPO options do not fit together"),
        ("auto_policy_config", ["beta", 0.1], "Must be an object of options"),
    ],
)
def test_a_study_refuses_loop_settings_the_training_jobs_would_refuse(field, value, message) -> None:  # type: ignore[no-untyped-def]
    # through the service (the API's path): nothing is saved, and the error names the field
    with pytest.raises(ApplicationError) as error:
        study_create(name="Loop", slug="loop", question="Which is better?", **{field: value})
    assert error.value.extra["fields"][field][0].startswith(message)
    assert not Study.objects.filter(slug="loop").exists()


def test_a_study_keeps_loop_settings_the_training_jobs_accept() -> None:
    study = study_create(
        name="Loop",
        slug="loop",
        question="Which is better?",
        auto_train_policy="rloo",
        auto_reward_model_config={"kind": "sequence_classification", "lora": {"rank": 8}},
        auto_policy_config={"num_generations": 2, "reward_std_penalty": 1.0},
    )
    study.refresh_from_db()
    assert study.auto_reward_model_config == {"kind": "sequence_classification", "lora": {"rank": 8}}
    assert study.auto_policy_config == {"num_generations": 2, "reward_std_penalty": 1.0}


def test_a_study_refuses_an_unknown_loop_method() -> None:
    study = factories.study()
    study.auto_train_policy = "ppo"
    with pytest.raises(ValidationError):
        study.full_clean()
    with pytest.raises(IntegrityError), transaction.atomic():
        Study.objects.filter(id=study.id).update(auto_train_policy="ppo")


def test_a_small_study_still_gets_one_validation_prompt_and_one_training_prompt() -> None:
    from server.training.snapshots import prompt_position, prompt_splits

    ids = {11, 12, 13, 14}
    lowest = min(ids, key=lambda prompt_id: prompt_position(study_id=7, prompt_id=prompt_id))
    splits = prompt_splits(study_id=7, prompt_ids=ids, validation_fraction=1e-12)
    assert [prompt_id for prompt_id, split in splits.items() if split == "validation"] == [lowest]
    assert set(prompt_splits(study_id=7, prompt_ids=ids, validation_fraction=0).values()) == {"train"}
    # A single prompt is never forced out of training.
    assert prompt_splits(study_id=7, prompt_ids={11}, validation_fraction=1e-12) == {11: "train"}
    # and a study whose prompts all fall below the fraction still trains on its highest one
    study_id = next(
        study
        for study in range(1, 10_000)
        if all(prompt_position(study_id=study, prompt_id=prompt_id) < 0.5 for prompt_id in ids)
    )
    highest = max(ids, key=lambda prompt_id: prompt_position(study_id=study_id, prompt_id=prompt_id))
    splits = prompt_splits(study_id=study_id, prompt_ids=ids, validation_fraction=0.5)
    assert [prompt_id for prompt_id, split in splits.items() if split == "train"] == [highest]
    # Stable: the same prompts give the same split.
    assert prompt_splits(study_id=7, prompt_ids=ids, validation_fraction=0.3) == prompt_splits(
        study_id=7, prompt_ids=ids, validation_fraction=0.3
    )


def test_a_chain_step_run_again_after_a_kill_makes_no_duplicates(
    tiny_model_allowed: Path, django_capture_on_commit_callbacks
) -> None:  # type: ignore[no-untyped-def]
    """A worker killed after a step recorded its result but before the job succeeded: the reaper
    re-queues the job and it runs again. Each handler runs twice here, as the two attempts would."""
    study, *_ = judged_study(tiny_model_allowed, prompts=6)

    def silent(**_: object) -> None:
        return None

    with django_capture_on_commit_callbacks(execute=False):
        snapshot_job = snapshot_start(study=study, then=["reward_model", "policy"])
        first = snapshot_run(job=snapshot_job, report=silent)
        factories.judgment(  # a judgment arrives between the two attempts
            comparison=study.comparisons.first(), rater=factories.rater(study=study), outcome="B"
        )
        assert snapshot_run(job=snapshot_job, report=silent) == first
        reward_job = Job.objects.get(parent=snapshot_job, kind=JobKind.TRAIN_REWARD_MODEL)
        reward_job.params["config"] = {"ensemble_size": 1, "epochs": 2}
        reward_job.save(update_fields=["params"])
        first = reward_model_train_run(job=reward_job, report=silent)
        assert reward_model_train_run(job=reward_job, report=silent) == first
        policy_job = Job.objects.get(parent=reward_job, kind=JobKind.TRAIN_POLICY)
        policy_job.params["config"] = {"epochs": 1}
        policy_job.save(update_fields=["params"])
        first = policy_train_run(job=policy_job, report=silent)
        assert policy_train_run(job=policy_job, report=silent) == first

    assert PreferenceSnapshot.objects.filter(study=study).count() == 1
    assert RewardModel.objects.filter(study=study).count() == 1
    assert GeneratorVersion.objects.filter(kind=VersionKind.TRAINED).count() == 1
    assert sorted(Job.objects.filter(study=study).values_list("kind", flat=True)) == sorted(
        [JobKind.SNAPSHOT, JobKind.TRAIN_REWARD_MODEL, JobKind.TRAIN_POLICY, JobKind.GENERATE]
    )


def test_the_database_refuses_a_second_next_step_of_one_kind() -> None:
    from django.db import IntegrityError, transaction

    parent = Job.objects.create(kind=JobKind.SNAPSHOT, queue="cpu")
    Job.objects.create(kind=JobKind.TRAIN_REWARD_MODEL, queue="gpu", parent=parent)
    with pytest.raises(IntegrityError), transaction.atomic():
        Job.objects.create(kind=JobKind.TRAIN_REWARD_MODEL, queue="gpu", parent=parent)
    Job.objects.create(kind=JobKind.TRAIN_POLICY, queue="gpu", parent=parent)  # another kind is fine
    assert Job.objects.filter(parent=parent).count() == 2
