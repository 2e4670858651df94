"""Reward-model jobs on TRL's RewardTrainer: a sequence classifier with LoRA on the policy's own
base, recorded with provenance and its accuracy interval; a killed worker's re-run resumes."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.conf import settings

from server.core.exceptions import ApplicationError
from server.jobs.models import Job, JobKind
from server.training.jobs import reward_model_train_run
from server.training.models import RewardModel
from server.training.services import reward_model_options
from server.training.snapshots import snapshot_create
from tests.server.training.test_training_chain import judged_study
from workers.ml.reward_model import load_reward_ensemble, reward_function, weights_content_hash

pytestmark = pytest.mark.django_db

LORA_CONFIG = {
    "kind": "sequence_classification",
    "ensemble_size": 2,
    "epochs": 3,
    "batch_size": 4,
    "learning_rate": 0.01,
    "max_length": 64,
    "lora": {"rank": 4, "alpha": 8, "dropout": 0.0},
    "checkpoint_every": 2,
}


class Killed(Exception):
    """The worker process died (not a cancel: nothing is saved at this step)."""


def test_a_lora_reward_model_on_the_policy_base_is_recorded_with_provenance(
    tiny_model_allowed: Path,
) -> None:
    # given a judged study whose versions are the tiny base model
    study, *_ = judged_study(tiny_model_allowed, prompts=8)
    snapshot = snapshot_create(study=study)
    job = Job.objects.create(
        kind=JobKind.TRAIN_REWARD_MODEL,
        queue="gpu",
        study=study,
        params={
            "snapshot_id": snapshot.id,
            "config": {**LORA_CONFIG, "backbone_path": str(tiny_model_allowed)},
        },
    )

    # when the job runs
    result = reward_model_train_run(job=job, report=lambda **_: None)

    # then the model is recorded with its kind, n, interval and the base it references
    model = RewardModel.objects.get(job=job)
    assert result["reward_model_id"] == model.id
    assert model.metrics["kind"] == "sequence_classification"
    assert model.metrics["validation_pairs"] == snapshot.validation_count
    assert result["validation_pairs"] == snapshot.validation_count
    low, high = model.metrics["validation_accuracy_interval"]
    assert low <= model.validation_accuracy <= high
    assert model.metrics["dropped_pairs"] == 0
    # with the reliability diagram's bins, every validation pair in one of them
    assert sum(item["count"] for item in model.metrics["reliability_bins"]) == snapshot.validation_count
    provenance = model.metrics["provenance"]
    assert provenance["backbone_path"] == str(tiny_model_allowed)
    assert provenance["content_sha256"] == weights_content_hash(tiny_model_allowed)
    assert provenance["dtype"] == "float32"
    assert model.config["lora"] == {"rank": 4, "alpha": 8, "dropout": 0.0, "target_modules": None}
    # the members are adapters; the checkpoints of the job are gone
    assert sorted(p.name for p in Path(model.path).glob("member_*/adapter_model.safetensors")) == [
        "adapter_model.safetensors",
        "adapter_model.safetensors",
    ]
    assert not (Path(settings.VAR_DIR) / "checkpoints" / f"job-{job.id}").exists()
    # and the RL reward reads it like any reward model
    rewards = reward_function(load_reward_ensemble(Path(model.path)))(["Write about lamps, 0"], ["A lamp."])
    assert len(rewards) == 1


def test_a_killed_reward_model_job_resumes_from_its_checkpoint(tiny_model_allowed: Path) -> None:
    # given a job whose worker dies at step 5 of member 1 (checkpoints every 2 steps)
    study, *_ = judged_study(tiny_model_allowed, prompts=8)
    snapshot = snapshot_create(study=study)
    config = {**LORA_CONFIG, "backbone_path": str(tiny_model_allowed), "ensemble_size": 1}
    job = Job.objects.create(
        kind=JobKind.TRAIN_REWARD_MODEL,
        queue="gpu",
        study=study,
        params={"snapshot_id": snapshot.id, "config": config},
    )

    def dies_at_step_5(*, step: int, total: int, message: str = "", metrics: dict | None = None) -> None:  # type: ignore[type-arg]
        if step == 5 and metrics and "loss" in metrics:
            raise Killed

    with pytest.raises(Killed):
        reward_model_train_run(job=job, report=dies_at_step_5)
    assert RewardModel.objects.filter(job=job).count() == 0
    checkpoints = Path(settings.VAR_DIR) / "checkpoints" / f"job-{job.id}" / "reward_model" / "member_0"
    assert sorted(path.name for path in checkpoints.glob("checkpoint-*")) == ["checkpoint-4"]

    # when the reaper runs the job again
    steps: list[int] = []

    def records(*, step: int, total: int, message: str = "", metrics: dict | None = None) -> None:  # type: ignore[type-arg]
        if metrics and "loss" in metrics:
            steps.append(step)

    reward_model_train_run(job=job, report=records)

    # then it continued from step 4 instead of starting over, and recorded one model
    model = RewardModel.objects.get(job=job)
    assert model.metrics["resumed_from_step"] == 4
    assert steps[0] == 5
    assert model.metrics["steps"] == steps[-1]


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (
            {"distributed": "ddp", "processes": 2},
            "The reward-model option 'distributed' does not apply to this run: the embedding_heads "
            "ensemble trains in one process",
        ),
        (
            {"kind": "sequence_classification", "distributed": "tp"},
            "The reward-model option 'distributed' must be one of 'none', 'ddp', 'fsdp', 'zero3'",
        ),
        (
            {"kind": "sequence_classification", "processes": 65},
            "The reward-model option 'processes' must be a whole number from 1 to 64 (got 65).",
        ),
        (
            {"kind": "sequence_classification", "processes": 2},
            "The reward-model options do not fit together: processes 2 needs distributed 'ddp', "
            "'fsdp' or 'zero3' (distributed 'none' trains in one process).",
        ),
        (
            {"kind": "sequence_classification", "distributed": "fsdp", "processes": 8, "lora": {}},
            "The reward-model options do not fit together: distributed 'fsdp' shards full "
            "fine-tuning: it needs lora false (LoRA adapters are small enough for 'ddp').",
        ),
        (
            {"kind": "sequence_classification", "distributed": "ddp", "lora": True, "qlora_4bit": True},
            "The reward-model options do not fit together: qlora_4bit trains in one process: it "
            "needs distributed 'none'.",
        ),
    ],
)
def test_distribution_options_of_a_reward_model_are_checked_when_the_job_is_started(
    config: dict[str, object], message: str
) -> None:
    with pytest.raises(ApplicationError) as error:
        reward_model_options(config)
    assert str(error.value).startswith(message)


def test_a_reward_model_on_eight_sharded_gpus_or_two_ddp_ranks_with_lora_is_accepted() -> None:
    sharded = {"kind": "sequence_classification", "distributed": "zero3", "processes": 8, "lora": False}
    assert reward_model_options(sharded) == sharded
    adapters = {"kind": "sequence_classification", "distributed": "ddp", "processes": 2, "lora": {"rank": 8}}
    assert reward_model_options(adapters) == adapters
