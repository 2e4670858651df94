"""The policy trainers' settings that decide precision and lengths (workers/ml/policy_config.py,
policy_training.py): pure functions, no training."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from workers.ml.policy_config import (
    DPOConfig,
    LoraSettings,
    OnlineRLConfig,
    combination_problem,
    config_from_options,
    fitted_lengths,
    length_cuts,
    local_position_limit,
)
from workers.ml.policy_training import floating_cast, weights_dtype


def test_full_fine_tuning_keeps_float32_master_weights_and_lora_loads_the_run_dtype() -> None:
    # On a CPU the run's dtype is float32 either way; what differs is whom the choice follows.
    assert weights_dtype(DPOConfig(lora=None, dtype="float32")) == torch.float32
    assert weights_dtype(DPOConfig(lora=LoraSettings(), dtype="float32")) == torch.float32
    # bfloat16 asked without CUDA: full fine-tuning still holds float32 weights, LoRA refuses
    assert weights_dtype(DPOConfig(lora=None, dtype="bfloat16", device="cpu")) == torch.float32
    with pytest.raises(ValueError, match="dtype 'bfloat16' needs a CUDA device"):
        weights_dtype(DPOConfig(lora=LoraSettings(), dtype="bfloat16", device="cpu"))


def test_floating_cast_converts_floats_keeps_integers_and_keeps_tied_weights_tied() -> None:
    embedding = torch.randn(5, 3)
    state = {
        "wte.weight": embedding,
        "lm_head.weight": embedding,  # tied: the same tensor
        "layer.weight": torch.randn(3, 3),
        "position_ids": torch.arange(5),
    }
    cast = floating_cast(state, torch.bfloat16)
    assert {name: tensor.dtype for name, tensor in cast.items()} == {
        "wte.weight": torch.bfloat16,
        "lm_head.weight": torch.bfloat16,
        "layer.weight": torch.bfloat16,
        "position_ids": torch.int64,
    }
    assert cast["wte.weight"] is cast["lm_head.weight"]
    assert torch.equal(cast["layer.weight"], state["layer.weight"].bfloat16())
    # two different views of one storage stay two tensors
    flat = torch.randn(8)
    views = floating_cast({"a": flat[:4], "b": flat[4:]}, torch.bfloat16)
    assert torch.equal(views["b"], flat[4:].bfloat16()) and views["a"] is not views["b"]


def test_lengths_beyond_the_parents_positions_are_cut_to_fit_and_each_cut_is_named() -> None:
    # given a parent of 128 positions and DPO's defaults (512 tokens, prompts of 256)
    fitted = fitted_lengths(DPOConfig(), 128)
    assert (fitted.max_length, fitted.max_prompt_length) == (128, 64)  # the prompt leaves room
    assert length_cuts(DPOConfig(), 128) == [
        ("max_length", "max_length 512 is cut to 128: the parent model has 128 positions"),
        ("max_prompt_length", "max_prompt_length 256 is cut to 64: the parent model has 128 positions"),
    ]
    # lengths that fit are kept
    short = DPOConfig(max_length=100, max_prompt_length=32)
    assert fitted_lengths(short, 128) == short and length_cuts(short, 128) == []
    # online RL: the completion keeps its length and the prompt takes the rest; a completion
    # that would fill every position shares them half and half
    assert fitted_lengths(OnlineRLConfig(max_completion_length=64), 128).max_prompt_length == 64
    filling = fitted_lengths(OnlineRLConfig(max_completion_length=128), 128)
    assert (filling.max_prompt_length, filling.max_completion_length) == (64, 64)
    assert [name for name, _ in length_cuts(OnlineRLConfig(max_completion_length=128), 128)] == [
        "max_prompt_length",
        "max_completion_length",
    ]
    # an unknown limit (a hub parent before it is loaded) cuts nothing
    assert fitted_lengths(DPOConfig(max_length=4096), None) == DPOConfig(max_length=4096)


def test_the_position_limit_of_a_local_folder_follows_adapters_to_their_base(tmp_path: Path) -> None:
    base = tmp_path / "base"
    base.mkdir()
    (base / "config.json").write_text(json.dumps({"model_type": "gpt2", "n_positions": 128}))
    child = tmp_path / "child"
    child.mkdir()
    (child / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": str(base)}))
    grandchild = tmp_path / "grandchild"
    grandchild.mkdir()
    (grandchild / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": str(child)}))
    qwen = tmp_path / "qwen"
    qwen.mkdir()
    (qwen / "config.json").write_text(json.dumps({"max_position_embeddings": 32768, "n_positions": 7}))
    assert [local_position_limit(path) for path in (base, child, grandchild, qwen)] == [128, 128, 128, 32768]
    # a hub id, a broken file or a config without positions: unknown, not an error
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "config.json").write_text("{not json")
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "config.json").write_text(json.dumps({"model_type": "x"}))
    assert [local_position_limit(p) for p in ("org/model", tmp_path / "broken", tmp_path / "plain")] == [
        None,
        None,
        None,
    ]


def test_options_that_the_others_would_make_a_run_ignore_are_refused() -> None:
    with pytest.raises(ValueError, match="lora_rank shape LoRA adapters, and lora false trains the whole"):
        config_from_options("dpo", {"lora": False, "lora_rank": 8})
    assert "acts only with loss_type 'robust'" in str(combination_problem(DPOConfig(label_smoothing=0.1)))
    assert combination_problem(DPOConfig(loss_type="robust", label_smoothing=0.1)) is None
    assert "has no warmup" in str(combination_problem(DPOConfig(lr_scheduler="constant", warmup_ratio=0.1)))
    assert combination_problem(DPOConfig(lr_scheduler="constant_with_warmup", warmup_ratio=0.1)) is None
    assert "dtype must be 'auto' or 'bfloat16'" in str(
        combination_problem(DPOConfig(qlora_4bit=True, dtype="float32"))
    )
    # online RL: a generation batch spans the processes of a run
    two_ranks = OnlineRLConfig(per_device_batch_size=2, num_generations=4, distributed="ddp", processes=2)
    assert combination_problem(two_ranks) is None
    assert "(2) must be a multiple of num_generations (4)" in str(
        combination_problem(OnlineRLConfig(per_device_batch_size=2, num_generations=4))
    )
