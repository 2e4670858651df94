from __future__ import annotations

import json
import math
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
import torch

from tests.workers.ml.policy_helpers import StepReporter
from tests.workers.ml.tiny_models import build_tiny_gpt2
from workers.ml.online_rl import OnlineRLConfig, ensemble_reward, train_online_rl
from workers.ml.policy_config import LoraSettings
from workers.ml.progress import Cancelled
from workers.ml.reward_model import EnsembleScores
from workers.ml.sampling import SampleRequest, SamplingConfig, clear_model_cache, generate_samples

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
    """A planted reward: how often the target letter occurs in the completion."""
    return [float(completion.count(TARGET)) for completion in completions]


def fast_config(**overrides: object) -> OnlineRLConfig:
    settings: dict[str, object] = {
        "max_steps": 30,
        "learning_rate": 3e-3,
        "per_device_batch_size": 16,
        "num_generations": 4,
        "max_completion_length": 12,
        "checkpoint_every": 1000,
        "lora": None,
    }
    settings.update(overrides)
    return OnlineRLConfig(**settings)  # type: ignore[arg-type]


def mean_reward_of(model_path: Path, samples: int = 64) -> float:
    """Mean planted reward of completions drawn (fixed seeds) from the saved model, as a generate job
    would draw them."""
    clear_model_cache()
    requests = [SampleRequest(prompt=PROMPTS[i % len(PROMPTS)], seed=i) for i in range(samples)]
    result = generate_samples(model_path, requests, config=SamplingConfig(max_new_tokens=12, device="cpu"))
    return sum(count_target([], [sample.text for sample in result.samples])) / samples


@pytest.mark.parametrize("method", ["rloo", "grpo"])
def test_online_rl_raises_a_planted_reward(parent: Path, tmp_path: Path, method: str) -> None:
    # when the trainer optimises the letter count for 30 steps of 16 completions
    result = train_online_rl(
        PROMPTS, parent, count_target, tmp_path / "child", fast_config(method=method), tmp_path / "c"
    )

    # then the completions of the last steps score far higher than those of the first
    assert (result.method, result.steps, result.resumed_from_step) == (method, 30, 0)
    assert sum(result.reward_curve[-5:]) / 5 > sum(result.reward_curve[:5]) / 5 + 0.7
    # the KL to the reference is 0 at the first step (policy = parent), then finite and positive
    assert result.first_kl == pytest.approx(0.0, abs=1e-6)
    assert math.isfinite(result.last_kl) and result.last_kl > 0.0
    # and the saved child, sampled afresh by the generation code, beats its parent
    assert mean_reward_of(tmp_path / "child") > mean_reward_of(parent) + 0.5
    record = json.loads((tmp_path / "child" / "lovelace_training.json").read_text())
    assert (record["algorithm"], record["provenance"]["saved_as"]) == (method, "full")
    assert record["config"]["beta"] == 0.05  # β > 0 by default, also for GRPO


def test_online_rl_with_lora_uses_the_adapter_free_model_as_reference(parent: Path, tmp_path: Path) -> None:
    config = fast_config(max_steps=3, learning_rate=3e-2, lora=LoraSettings(rank=4, alpha=8))
    result = train_online_rl(PROMPTS, parent, count_target, tmp_path / "child", config, tmp_path / "c")
    assert result.first_kl == pytest.approx(0.0, abs=1e-6)
    assert result.kl_curve[-1] > 0.0
    adapter = json.loads((tmp_path / "child" / "adapter_config.json").read_text())
    assert adapter["base_model_name_or_path"] == str(parent)


def test_cancelled_online_rl_resumes_from_its_checkpoint(parent: Path, tmp_path: Path) -> None:
    # given a run of 4 steps cancelled at step 2
    config = fast_config(max_steps=4, method="grpo")
    with pytest.raises(Cancelled):
        train_online_rl(
            PROMPTS,
            parent,
            count_target,
            tmp_path / "child",
            config,
            tmp_path / "c",
            StepReporter(cancel_at=2),
        )
    assert sorted(path.name for path in (tmp_path / "c").glob("checkpoint-*")) == ["checkpoint-2"]
    assert not (tmp_path / "child").exists()

    # when it runs again
    reporter = StepReporter()
    resumed = train_online_rl(
        PROMPTS, parent, count_target, tmp_path / "child", config, tmp_path / "c", reporter
    )

    # then it continued after step 2 and finished
    assert (resumed.resumed_from_step, resumed.steps) == (2, 4)
    assert reporter.training_steps == [3, 4]
    assert (tmp_path / "child" / "model.safetensors").is_file()


def test_batches_that_split_a_prompts_completions_are_refused(parent: Path, tmp_path: Path) -> None:
    config = fast_config(per_device_batch_size=6, num_generations=4)
    with pytest.raises(ValueError, match=r"\(6\) must be a multiple of num_generations \(4\)"):
        train_online_rl(PROMPTS, parent, count_target, tmp_path / "child", config, tmp_path / "c")


class FixedEnsemble:
    """A reward ensemble whose normalised (mean, std over members) score of each text is given.
    Its raw scores are the texts' positions in ``scores``, which ``normalise`` maps back."""

    def __init__(self, scores: dict[str, tuple[float, float]]) -> None:
        self.texts = list(scores)
        self.scores = scores

    def raw_scores(self, prompts: Sequence[str], responses: Sequence[str]) -> torch.Tensor:
        return torch.tensor([[float(self.texts.index(text)) for text in responses]])

    def normalise(self, raw: torch.Tensor) -> EnsembleScores:
        chosen = [self.scores[self.texts[int(position)]] for position in raw[0]]
        return EnsembleScores(
            mean=torch.tensor([mean for mean, _ in chosen]),
            std=torch.tensor([std for _, std in chosen]),
            member_scores=raw,
        )


def test_the_pessimistic_reward_subtracts_k_times_the_members_spread() -> None:
    ensemble = FixedEnsemble({"sure": (1.0, 0.1), "contested": (1.5, 2.0)})
    plain = ensemble_reward(ensemble, std_penalty=0.0)
    pessimistic = ensemble_reward(ensemble, std_penalty=0.5)
    assert plain(["p", "p"], ["sure", "contested"]) == pytest.approx([1.0, 1.5])
    assert pessimistic(["p", "p"], ["sure", "contested"]) == pytest.approx([0.95, 0.5])


@pytest.mark.parametrize("method", ["rloo", "grpo"])
def test_online_rl_on_a_chat_model_samples_through_its_template_and_rewards_the_plain_texts(
    parent: Path, tmp_path: Path, method: str
) -> None:
    from transformers import AutoTokenizer

    from tests.workers.ml.policy_helpers import CHAT_TEMPLATE

    # given a chat model (the tiny GPT-2 with a chat template)
    chat = tmp_path / "chat"
    shutil.copytree(parent, chat)
    tokenizer = AutoTokenizer.from_pretrained(chat)
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.save_pretrained(chat)
    seen: list[tuple[str, str]] = []

    def reward(prompts: Sequence[str], completions: Sequence[str]) -> list[float]:
        seen.extend(zip(prompts, completions, strict=True))
        return count_target(prompts, completions)

    # when RLOO / GRPO train two steps of LoRA on it
    config = fast_config(max_steps=2, method=method, lora=LoraSettings(rank=4, alpha=8))
    result = train_online_rl(PROMPTS, chat, reward, tmp_path / "child", config, tmp_path / "c")

    # then the reward function saw the user's prompt text (not the template's rendering) and the
    # completion as text (not a list of messages), as the reward model scores them
    assert result.steps == 2 and len(seen) == 2 * 16
    assert {prompt for prompt, _ in seen} <= set(PROMPTS)
    assert all(isinstance(completion, str) for _, completion in seen)
    # and the child is an adapter whose tokenizer keeps the template, so it generates as trained
    assert AutoTokenizer.from_pretrained(tmp_path / "child").chat_template == CHAT_TEMPLATE
    clear_model_cache()
    samples = generate_samples(
        tmp_path / "child",
        [SampleRequest(prompt=PROMPTS[0], seed=0)],
        config=SamplingConfig(max_new_tokens=4, device="cpu"),
    ).samples
    assert samples[0].token_count >= 1
