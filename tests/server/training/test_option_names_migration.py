"""Jobs stored with the options' old names (before the trainers moved to TRL) run under the
current names after the data migration."""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from server.training.services import DPO_OPTIONS, ONLINE_RL_OPTIONS, REWARD_MODEL_OPTIONS
from workers.ml.policy_config import config_from_options
from workers.ml.reward_model_config import RewardModelConfig

BEFORE = [("training", "0002_one_result_per_job"), ("jobs", "0005_one_result_per_job")]
AFTER = [("training", "0003_job_options_current_names")]


def _migrate(targets: list[tuple[str, str]]):  # type: ignore[no-untyped-def]
    executor = MigrationExecutor(connection)
    executor.migrate(targets)
    executor.loader.build_graph()
    return executor.loader.project_state(targets).apps


def _finished(status: str) -> dict[str, object]:
    # What the jobs table's constraints ask of a finished row.
    if status == "queued":
        return {}
    return {"finished_at": timezone.now(), "error": "worker killed" if status == "failed" else ""}


@pytest.mark.django_db(transaction=True)
def test_old_option_names_in_job_params_become_the_current_ones() -> None:
    # given jobs queued, failed and finished before the rename, and one with today's names
    old = _migrate(BEFORE)
    Job = old.get_model("jobs", "Job")
    stored = {
        "dpo": (
            "train_policy",
            "failed",
            {"method": "dpo", "then": [], "config": {"batch_size": 4, "beta": 0.2, "lora": True}},
        ),
        "rloo": (
            "train_policy",
            "queued",
            {
                "method": "rloo",
                "config": {
                    "iterations": 30,
                    "samples_per_prompt": 2,
                    "prompts_per_iteration": 8,
                    "max_new_tokens": 48,
                    "beta": 0.05,
                },
            },
        ),
        "rloo-default-samples": (
            "train_policy",
            "succeeded",
            {"method": "rloo", "config": {"prompts_per_iteration": 3}},
        ),
        "rm-fine-tuned": (
            "train_reward_model",
            "queued",
            {"snapshot_id": 1, "config": {"freeze_backbone": False, "epochs": 2}},
        ),
        "rm-frozen": (
            "train_reward_model",
            "failed",
            {"config": {"freeze_backbone": True, "ensemble_size": 3}},
        ),
        "current": ("train_policy", "queued", {"method": "grpo", "config": {"num_generations": 2}}),
        "not-training": ("generate", "queued", {"samples_per_prompt": 2, "config": {"batch_size": 3}}),
    }
    ids = {
        name: Job.objects.create(kind=kind, status=status, queue="gpu", params=params, **_finished(status)).id
        for name, (kind, status, params) in stored.items()
    }
    try:
        # when the data migration runs
        new = _migrate(AFTER)
        params = {
            name: new.get_model("jobs", "Job").objects.get(id=job_id).params for name, job_id in ids.items()
        }

        # then each config carries today's names, with the same meaning
        assert params["dpo"] == {
            "method": "dpo",
            "then": [],
            "config": {"per_device_batch_size": 4, "beta": 0.2, "lora": True},
        }
        assert params["rloo"]["config"] == {
            "max_steps": 30,
            "num_generations": 2,
            "per_device_batch_size": 16,  # 8 prompts × 2 completions: TRL counts completions
            "max_completion_length": 48,
            "beta": 0.05,
        }
        assert params["rloo-default-samples"]["config"] == {"per_device_batch_size": 12}
        assert params["rm-fine-tuned"]["config"] == {"kind": "sequence_classification", "epochs": 2}
        assert params["rm-frozen"]["config"] == {"ensemble_size": 3}
        assert params["current"] == stored["current"][2]
        assert params["not-training"] == stored["not-training"][2]
        # and every option is one the service declares, which the trainers' configs accept
        for name in ("dpo", "rloo", "rloo-default-samples"):
            method = params[name]["method"]
            config = params[name]["config"]
            assert set(config) <= set(DPO_OPTIONS if method == "dpo" else ONLINE_RL_OPTIONS)
            config_from_options(method, config)
        for name in ("rm-fine-tuned", "rm-frozen"):
            assert set(params[name]["config"]) <= set(REWARD_MODEL_OPTIONS)
            RewardModelConfig(backbone_path="unused", **params[name]["config"])
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())
