from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM, AutoTokenizer

from tests.workers.ml.tiny_models import build_tiny_gpt2
from workers.ml.model_loading import HASH_CACHE, load_causal_lm, weights_identity, weights_sha256
from workers.ml.sampling import clear_model_cache, load_model

IDS = torch.tensor([[0, 17, 42, 99, 5, 230]])


def random_adapter(base: Path, folder: Path, *, seed: int) -> torch.Tensor:
    """Save an adapter with random (non-zero) weights on ``base``; return the in-memory logits."""
    torch.manual_seed(seed)
    model = load_causal_lm(base, dtype=torch.float32)
    model.config._name_or_path = str(base)
    peft_model = get_peft_model(
        model, LoraConfig(r=4, lora_alpha=8, init_lora_weights=False, task_type="CAUSAL_LM")
    ).eval()
    peft_model.peft_config["default"].base_model_name_or_path = str(base)
    with torch.no_grad():
        logits = peft_model(input_ids=IDS).logits
    peft_model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(base).save_pretrained(folder)
    return logits


def test_an_adapter_folder_loads_for_generation_with_the_in_memory_logits(tmp_path: Path) -> None:
    # given a parent and an adapter saved on it
    parent = build_tiny_gpt2(tmp_path / "parent")
    expected = random_adapter(parent, tmp_path / "child", seed=1)

    # when generation loads the adapter folder
    clear_model_cache()
    loaded = load_model(tmp_path / "child", device="cpu")
    with torch.no_grad():
        logits = loaded.model(input_ids=IDS).logits

    # then it runs the parent with the adapter merged: the same logits as the in-memory model
    assert torch.allclose(logits, expected, atol=1e-5)
    plain = AutoModelForCausalLM.from_pretrained(parent).eval()
    with torch.no_grad():
        assert not torch.allclose(plain(input_ids=IDS).logits, expected, atol=1e-3)


def test_a_child_of_a_child_loads_through_the_chain_of_adapters(tmp_path: Path) -> None:
    parent = build_tiny_gpt2(tmp_path / "parent")
    random_adapter(parent, tmp_path / "child", seed=1)
    expected = random_adapter(tmp_path / "child", tmp_path / "grandchild", seed=2)
    assert json.loads((tmp_path / "grandchild" / "adapter_config.json").read_text())[
        "base_model_name_or_path"
    ] == str(tmp_path / "child")
    with torch.no_grad():
        logits = load_causal_lm(tmp_path / "grandchild", dtype=torch.float32).eval()(input_ids=IDS).logits
    assert torch.allclose(logits, expected, atol=1e-5)


def test_the_weights_hash_is_cached_next_to_the_weights_and_follows_them(tmp_path: Path) -> None:
    folder = build_tiny_gpt2(tmp_path / "model")
    first = weights_sha256(folder)
    assert json.loads((folder / HASH_CACHE).read_text())["sha256"] == first
    assert weights_identity(folder) == {"path": str(folder), "sha256": first}
    # the same weights in another folder hash alike; changed weights do not
    other = build_tiny_gpt2(tmp_path / "other")
    assert weights_sha256(other) == first
    build_tiny_gpt2(tmp_path / "model", seed=1)
    assert weights_sha256(folder) != first
    with pytest.raises(ValueError, match="holds no weight files"):
        weights_sha256(tmp_path)
