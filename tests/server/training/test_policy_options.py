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
        # Options the others would make the run ignore are refused, not dropped.
        (
            {"lora": False, "lora_rank": 8, "lora_alpha": 16},
            "The DPO options do not fit together: lora_rank, lora_alpha shape LoRA adapters, and "
            "lora false trains the whole model: remove them or set lora true.",
        ),
        (
            {"label_smoothing": 0.1},
            "The DPO options do not fit together: label_smoothing 0.1 acts only with loss_type "
            "'robust' (TRL's 'sigmoid' loss ignores it): set loss_type 'robust' for noisy labels, "
            "or label_smoothing 0.",
        ),
        (
            {"loss_type": "ipo", "label_smoothing": 0.2},
            "The DPO options do not fit together: label_smoothing 0.2 acts only with loss_type 'robust'",
        ),
        (
            {"lr_scheduler": "constant", "warmup_ratio": 0.1},
            "The DPO options do not fit together: lr_scheduler 'constant' has no warmup, so "
            "warmup_ratio 0.1 would be ignored: use lr_scheduler 'constant_with_warmup', or warmup_ratio 0.",
        ),
        (
            {"qlora_4bit": True, "dtype": "float32"},
            "The DPO options do not fit together: qlora_4bit computes in bfloat16 on its 4-bit "
            "parent: dtype must be 'auto' or 'bfloat16', not 'float32'.",
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
        "The GRPO options do not fit together: per_device_batch_size × gradient_accumulation_steps "
        "× processes (6) must be a multiple of num_generations (4): a prompt's completions are "
        "sampled together."
    )
    assert Job.objects.count() == 0


def test_online_rl_groups_may_span_the_processes_of_a_run(tiny_model_allowed: Path) -> None:
    # TRL samples per_device_batch_size × accumulation × processes completions per generation
    # batch: 2 completions on each of 2 ranks hold one group of 4.
    study, version, _ = judged_study(tiny_model_allowed, prompts=3)
    options = {"per_device_batch_size": 2, "num_generations": 4, "distributed": "ddp", "processes": 2}
    options["max_completion_length"] = 16
    with pytest.raises(ApplicationError) as error:
        policy_train_start(study=study, parent_version_id=version.id, method="rloo", config=options)
    # (refused only for the missing reward model, which is looked at after the options)
    assert "reward model" in error.value.message
    with pytest.raises(ApplicationError) as error:
        policy_train_start(
            study=study, parent_version_id=version.id, method="rloo", config={**options, "processes": 1}
        )
    assert "× processes (2) must be a multiple of num_generations (4)" in error.value.message


def test_lengths_beyond_a_local_parents_positions_are_stored_as_given_and_the_cut_is_warned(
    dpo_study,  # type: ignore[no-untyped-def]
) -> None:
    # given the tiny parent's 64 positions, and a max_length of 4096 typed by the operator
    study, version = dpo_study
    job = policy_train_start(
        study=study, parent_version_id=version.id, method="dpo", config={"max_length": 4096}
    )
    # then the job holds what was asked, and says before it starts what the run will cut; the
    # prompt length, left at its default, is cut without a word
    assert job.params["config"] == {"max_length": 4096}
    cut = "max_length 4096 is cut to 64: the parent model has 64 positions."
    assert job.params["warnings"][0] == cut
    # and lengths that fit warn of nothing (but the study's few pairs, as before)
    quiet = policy_train_start(
        study=study,
        parent_version_id=version.id,
        method="dpo",
        config={"max_length": 64, "max_prompt_length": 32},
    )
    assert job.params["warnings"][1:] == quiet.params["warnings"]
    assert len(quiet.params["warnings"]) == 1
    assert "training pairs, fewer than the study's minimum of 50" in quiet.params["warnings"][0]


def test_real_model_settings_are_stored_on_the_job(dpo_study) -> None:  # type: ignore[no-untyped-def]
    study, version = dpo_study
    config = {
        "dtype": "auto",
        "gradient_checkpointing": True,
        "gradient_accumulation_steps": 4,
        "per_device_batch_size": 2,
        "max_prompt_length": 16,
        "max_length": 48,
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
