from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from tests.workers.ml.tiny_models import RecordingReporter, build_tiny_gpt2
from workers.ml.dpo import LoraSettings
from workers.ml.online_rl import RLOOConfig, rloo_advantages, sample_completions, train_online_rl
from workers.ml.progress import Cancelled

PROMPTS = ["the cat", "a dog", "blue sky", "old house"]
TARGET = "e"


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    # Two threads on two cores shared with other jobs run tiny matmuls ~6× slower than one.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def parent(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_gpt2(tmp_path_factory.mktemp("parent"))


def count_target(prompts: Sequence[str], completions: Sequence[str]) -> list[float]:
    """A simple reward: how often the target letter occurs in the completion."""
    return [float(completion.count(TARGET)) for completion in completions]


def fast_config(**overrides: object) -> RLOOConfig:
    settings: dict[str, object] = {
        "iterations": 30,
        "learning_rate": 3e-3,
        "beta": 0.05,
        "max_new_tokens": 12,
        "prompts_per_iteration": 4,
        "samples_per_prompt": 4,
        "checkpoint_every": 1000,
    }
    settings.update(overrides)
    return RLOOConfig(**settings)  # type: ignore[arg-type]


def mean_reward_of(model_path: Path, samples: int = 64) -> float:
    """Mean reward of ``samples`` completions drawn from the saved model with a fixed seed."""
    model = AutoModelForCausalLM.from_pretrained(model_path).eval()
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    prompts = [tokenizer(PROMPTS[i % len(PROMPTS)])["input_ids"] for i in range(samples)]
    batch = sample_completions(
        model,
        prompts,
        max_new_tokens=12,
        eos_id=tokenizer.eos_token_id,
        pad_id=tokenizer.pad_token_id,
        generator=torch.Generator().manual_seed(123),
        device=torch.device("cpu"),
    )
    ids = batch.input_ids[:, batch.prompt_width :].masked_fill(
        batch.completion_mask == 0, tokenizer.pad_token_id
    )
    completions = tokenizer.batch_decode(ids.tolist(), skip_special_tokens=True)
    rewards = count_target([""] * samples, completions)
    return sum(rewards) / samples


def test_leave_one_out_advantages() -> None:
    # given one prompt's three shaped rewards
    # when
    advantages = rloo_advantages(torch.tensor([[1.0, 2.0, 3.0]]))

    # then each is compared with the mean of the other two
    assert advantages.tolist() == [[1.0 - 2.5, 2.0 - 2.0, 3.0 - 1.5]]


def test_rloo_raises_the_reward_and_stays_at_finite_positive_kl(parent: Path, tmp_path: Path) -> None:
    # when RLOO optimises the letter count for 30 iterations of 16 samples
    result = train_online_rl(PROMPTS, parent, count_target, tmp_path / "child", fast_config(), tmp_path / "c")

    # then the samples of the last iterations score far higher than those of the first
    assert result.iterations == 30
    assert sum(result.reward_curve[-5:]) / 5 > 2.0 * sum(result.reward_curve[:5]) / 5 + 0.5
    assert result.last_mean_reward > result.first_mean_reward
    # the KL to the reference is 0 at the first iteration, then finite and positive
    assert result.first_kl == pytest.approx(0.0, abs=1e-4)
    assert math.isfinite(result.last_kl) and result.last_kl > 0.0
    # and the saved child, sampled afresh, beats its parent
    assert mean_reward_of(tmp_path / "child") > mean_reward_of(parent) + 1.0


def test_rloo_with_lora_uses_the_adapter_free_model_as_reference(parent: Path, tmp_path: Path) -> None:
    # when adapters train for three iterations
    config = fast_config(iterations=3, learning_rate=3e-2, lora=LoraSettings(rank=4, alpha=8))
    result = train_online_rl(PROMPTS, parent, count_target, tmp_path / "child", config, tmp_path / "c")

    # then the first iteration's policy equals the reference, later ones moved, and the child is merged
    assert result.first_kl == pytest.approx(0.0, abs=1e-4)
    assert result.kl_curve[-1] != 0.0
    assert not (tmp_path / "child" / "adapter_config.json").exists()
    assert AutoModelForCausalLM.from_pretrained(tmp_path / "child") is not None


def test_cancelled_rloo_resumes_from_its_checkpoint(parent: Path, tmp_path: Path) -> None:
    # given an uninterrupted run of 6 iterations
    config = fast_config(iterations=6)
    uninterrupted = train_online_rl(
        PROMPTS, parent, count_target, tmp_path / "a", config, tmp_path / "a.ckpt"
    )

    # when the same run is cancelled at iteration 3 and started again
    with pytest.raises(Cancelled):
        train_online_rl(
            PROMPTS,
            parent,
            count_target,
            tmp_path / "b",
            config,
            tmp_path / "b.ckpt",
            RecordingReporter(cancel_at=3),
        )
    reporter = RecordingReporter()
    resumed = train_online_rl(
        PROMPTS, parent, count_target, tmp_path / "b", config, tmp_path / "b.ckpt", reporter
    )

    # then it continued at iteration 3 and sampled and learned what the uninterrupted run did
    assert reporter.first_step == 3
    assert reporter.training_steps == [4, 5, 6]
    assert resumed.resumed_from_iteration == 3
    assert resumed.reward_curve == uninterrupted.reward_curve
    assert resumed.kl_curve == pytest.approx(uninterrupted.kl_curve, abs=1e-4)
    before = AutoModelForCausalLM.from_pretrained(tmp_path / "a").state_dict()
    after = AutoModelForCausalLM.from_pretrained(tmp_path / "b").state_dict()
    assert max((after[name] - before[name]).abs().max().item() for name in before) < 1e-5
