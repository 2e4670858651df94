from __future__ import annotations

import json
from pathlib import Path

import pytest
from datasets import Dataset
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import DPOConfig as TRLDPOConfig
from trl import DPOTrainer

from tests.workers.ml.policy_helpers import CHAT_TEMPLATE
from tests.workers.ml.tiny_models import build_tiny_gpt2
from workers.ml.chat_format import (
    completion_text,
    is_chat_model,
    preference_row,
    prompt_ids,
    training_prompt,
    truncate_prompt,
)
from workers.ml.dpo import DPOConfig, train_dpo
from workers.ml.preference_data import PreferencePair
from workers.ml.sampling import (
    SampleRequest,
    SamplingConfig,
    clear_model_cache,
    encode_prompt,
    generate_samples,
)


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_gpt2(tmp_path_factory.mktemp("plain"))


@pytest.fixture(scope="module")
def chat(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = build_tiny_gpt2(tmp_path_factory.mktemp("chat"))
    tokenizer = AutoTokenizer.from_pretrained(folder)
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.save_pretrained(folder)
    return folder


def trl_prompt_ids(folder: Path, row: dict) -> list[int]:
    """The prompt ids TRL's DPOTrainer trains on for ``row``."""
    tokenizer = AutoTokenizer.from_pretrained(folder)
    arguments = TRLDPOConfig(
        output_dir=str(folder.parent / "trl-output"),
        bf16=False,
        use_cpu=True,
        gradient_checkpointing=False,
        report_to=[],
    )
    trainer = DPOTrainer(
        model=AutoModelForCausalLM.from_pretrained(folder),
        args=arguments,
        train_dataset=Dataset.from_list([row]),
        processing_class=tokenizer,
    )
    return list(trainer.train_dataset[0]["prompt_ids"])


def test_a_chat_model_sees_the_prompt_through_its_template_in_generation_and_training(chat: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(chat)
    assert is_chat_model(tokenizer)
    prompt = "the cat sat"

    # generation: one user turn, then the assistant's cue
    expected = tokenizer("<|user|>the cat sat\n<|assistant|>", add_special_tokens=False)["input_ids"]
    assert encode_prompt(tokenizer, prompt) == expected == prompt_ids(tokenizer, prompt)

    # DPO rows are conversational, and TRL renders their prompt to the same ids
    row = preference_row(tokenizer, prompt=prompt, chosen=" yes", rejected=" no")
    assert row == {
        "prompt": [{"role": "user", "content": prompt}],
        "chosen": [{"role": "assistant", "content": " yes"}],
        "rejected": [{"role": "assistant", "content": " no"}],
    }
    assert trl_prompt_ids(chat, row) == expected
    # online RL prompts too (TRL applies the template with the generation cue to them)
    assert training_prompt(tokenizer, prompt) == row["prompt"]
    assert completion_text([{"role": "assistant", "content": "hello"}]) == "hello"


def test_a_plain_model_sees_the_bos_then_the_text_in_generation_and_training(plain: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(plain)
    assert not is_chat_model(tokenizer)
    prompt = "the cat sat"
    expected = [tokenizer.bos_token_id, *tokenizer(prompt)["input_ids"]]
    assert encode_prompt(tokenizer, prompt) == expected
    row = preference_row(tokenizer, prompt=prompt, chosen=" yes", rejected=" no")
    assert row == {"prompt": "<|endoftext|>the cat sat", "chosen": " yes", "rejected": " no"}
    assert trl_prompt_ids(plain, row) == expected
    assert encode_prompt(tokenizer, "") == [tokenizer.bos_token_id]


def test_a_long_prompt_keeps_its_end(plain: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(plain)
    prompt = "the cat sat on a mat by the river"
    kept = truncate_prompt(tokenizer, prompt, 3)
    assert len(tokenizer(kept)["input_ids"]) == 3 and prompt.endswith(kept)
    assert truncate_prompt(tokenizer, prompt, 100) == prompt


def test_dpo_on_a_chat_model_trains_and_the_child_keeps_its_template(chat: Path, tmp_path: Path) -> None:
    pairs = [PreferencePair(prompt=f"say {i}", chosen=" yes yes", rejected=" no no") for i in range(8)]
    config = DPOConfig(learning_rate=1e-2, epochs=2, per_device_batch_size=4, checkpoint_every=1000)
    result = train_dpo(pairs, chat, tmp_path / "child", config, tmp_path / "c")
    assert result.steps == 4 and result.final_train_margin > 0.0
    assert json.loads((tmp_path / "child" / "adapter_config.json").read_text())[
        "base_model_name_or_path"
    ] == str(chat)
    clear_model_cache()
    samples = generate_samples(
        tmp_path / "child",
        [SampleRequest(prompt="say 1", seed=0)],
        config=SamplingConfig(max_new_tokens=4, device="cpu"),
    ).samples
    child_tokenizer = AutoTokenizer.from_pretrained(tmp_path / "child")
    assert child_tokenizer.chat_template == CHAT_TEMPLATE
    assert samples[0].token_count >= 1
