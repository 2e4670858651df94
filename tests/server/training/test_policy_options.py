from __future__ import annotations

from pathlib import Path

import pytest

from server.core.exceptions import ApplicationError
from server.jobs.models import Job
from server.training.services import policy_train_start
from server.training.snapshots import snapshot_create
from tests.server.training.test_training_chain import judged_study

pytestmark = pytest.mark.django_db


@pytest.fixture()
def dpo_study(tiny_model_allowed: Path):  # type: ignore[no-untyped-def]
    study, good_version, _ = judged_study(tiny_model_allowed, prompts=3)
    snapshot_create(study=study)
    return study, good_version


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (
            {"dtype": "float16"},
            "The DPO option 'dtype' must be one of 'auto', 'float32', 'bfloat16' (got 'float16').",
        ),
        (
            {"loss_type": "hinge"},
            "The DPO option 'loss_type' must be one of 'sigmoid', 'ipo', 'robust' (got 'hinge').",
        ),
        (
            {"label_smoothing": 0.5},
            "The DPO option 'label_smoothing' must be a number from 0 up to (not including) 0.5 (got 0.5).",
        ),
        (
            {"warmup_ratio": -0.1},
            "The DPO option 'warmup_ratio' must be a number from 0 up to (not including) 1 (got -0.1).",
        ),
        ({"lora_rank": 0}, "The DPO option 'lora_rank' must be a whole number from 1 to 1,024 (got 0)."),
        (
            {"lora_target_modules": ["q_proj", "v proj"]},
            "The DPO option 'lora_target_modules' must be \"all-linear\" or a list of 1 to 64 module names "
            "(like [\"q_proj\", \"v_proj\"]) (got ['q_proj', 'v proj']).",
        ),
        (
            {"gradient_checkpointing": "yes"},
            "The DPO option 'gradient_checkpointing' must be true or false (got 'yes').",
        ),
        ({"num_generations": 4}, "Unknown DPO option 'num_generations'; known: "),
        (
            {"max_length": 128},
            "The DPO options do not fit together: max_prompt_length (256) must be below max_length (128), "
            "to leave room for the response.",
        ),
        (
            {"qlora_4bit": True, "lora": False},
            "The DPO options do not fit together: "
            "qlora_4bit trains adapters on a 4-bit parent: it needs lora true.",
        ),
    ],
)
def test_dpo_options_are_checked_by_type_range_and_combination(dpo_study, config, message) -> None:  # type: ignore[no-untyped-def]
    study, version = dpo_study
    with pytest.raises(ApplicationError) as error:
        policy_train_start(study=study, parent_version_id=version.id, method="dpo", config=config)
    assert error.value.message.startswith(message)
    assert Job.objects.count() == 0


def test_online_rl_batches_must_hold_whole_groups_of_completions(tiny_model_allowed: Path) -> None:
    study, version, _ = judged_study(tiny_model_allowed, prompts=3)
    # (the study has no reward model: the options are refused before that is looked at)
    with pytest.raises(ApplicationError) as error:
        policy_train_start(
            study=study,
            parent_version_id=version.id,
            method="grpo",
            config={"per_device_batch_size": 6, "num_generations": 4},
        )
    assert error.value.message == (
        "The GRPO options do not fit together: per_device_batch_size × gradient_accumulation_steps (6) "
        "must be a multiple of num_generations (4): a prompt's completions are sampled together."
    )
    assert Job.objects.count() == 0


def test_real_model_settings_are_stored_on_the_job(dpo_study) -> None:  # type: ignore[no-untyped-def]
    study, version = dpo_study
    config = {
        "dtype": "auto",
        "gradient_checkpointing": True,
        "gradient_accumulation_steps": 4,
        "per_device_batch_size": 2,
        "max_prompt_length": 128,
        "max_length": 384,
        "lr_scheduler": "cosine",
        "warmup_ratio": 0.1,
        "max_steps": 200,
        "lora_rank": 8,
        "lora_alpha": 16,
        "lora_dropout": 0.05,
        "lora_target_modules": ["c_attn"],
        "merge_adapter": True,
        "loss_type": "robust",
        "label_smoothing": 0.1,
    }
    job = policy_train_start(study=study, parent_version_id=version.id, method="dpo", config=config)
    assert job.params["config"] == config
