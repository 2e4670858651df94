from __future__ import annotations

import math
import random
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from tests.workers.ml.tiny_models import RecordingReporter, build_tiny_gpt2, filler_sentence
from workers.ml.dpo import (
    DPOConfig,
    LoraSettings,
    dpo_loss,
    response_log_probs,
    token_log_probs,
    train_dpo,
)
from workers.ml.preference_data import PreferencePair
from workers.ml.progress import Cancelled


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


def yes_no_pairs(count: int, seed: int) -> list[PreferencePair]:
    """Raters prefer an answer of "yes" words to one of "no" words, whatever the prompt."""
    rng = random.Random(seed)
    return [
        PreferencePair(prompt=filler_sentence(rng, 3), chosen=" yes yes yes", rejected=" no no no")
        for _ in range(count)
    ]


def fast_config(**overrides: object) -> DPOConfig:
    settings: dict[str, object] = {
        "learning_rate": 1e-3,
        "epochs": 5,
        "batch_size": 8,
        "checkpoint_every": 1000,
    }
    settings.update(overrides)
    return DPOConfig(**settings)  # type: ignore[arg-type]


def preference_gap(model_path: Path, pairs: list[PreferencePair]) -> float:
    """Mean log π(chosen) − log π(rejected) over response tokens, computed from the saved folder."""
    model = AutoModelForCausalLM.from_pretrained(model_path).eval()
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    gaps = []
    with torch.no_grad():
        for pair in pairs:
            prompt = tokenizer(pair.prompt)["input_ids"]
            sides = []
            for response in (pair.chosen, pair.rejected):
                ids = [*prompt, *tokenizer(response)["input_ids"], tokenizer.eos_token_id]
                sides.append(response_log_probs(model, [ids], [len(prompt)], 0, torch.device("cpu")).item())
            gaps.append(sides[0] - sides[1])
    return sum(gaps) / len(gaps)


def test_dpo_loss_matches_the_formula() -> None:
    # given summed log-probs: the policy gained 1 nat on the chosen side and lost 1 on the rejected
    policy_chosen, reference_chosen = torch.tensor([-1.0]), torch.tensor([-2.0])
    policy_rejected, reference_rejected = torch.tensor([-3.0]), torch.tensor([-2.0])

    # when
    loss, margins = dpo_loss(policy_chosen, policy_rejected, reference_chosen, reference_rejected, beta=0.1)

    # then margin = β·(1 − (−1)) and loss = −log σ(margin)
    assert margins.item() == pytest.approx(0.2)
    assert loss.item() == pytest.approx(math.log1p(math.exp(-0.2)))


def test_response_log_probs_count_response_tokens_only(parent: Path) -> None:
    # given one sequence of 3 prompt tokens and 2 response tokens, padded on the right
    model = AutoModelForCausalLM.from_pretrained(parent).eval()
    sequence = [10, 11, 12, 13, 14]
    with torch.no_grad():
        per_token = token_log_probs(model, torch.tensor([sequence]), torch.ones(1, 5, dtype=torch.long))[0]

        # when only the response is summed, with and without padding after it
        summed = response_log_probs(model, [sequence], [3], 0, torch.device("cpu"))
        padded = response_log_probs(model, [sequence, [*sequence, 15, 16]], [3, 3], 0, torch.device("cpu"))

    # then it is log π(13 | 10 11 12) + log π(14 | 10 .. 13), padding ignored
    assert summed.item() == pytest.approx((per_token[2] + per_token[3]).item(), abs=1e-5)
    assert padded[0].item() == pytest.approx(summed.item(), abs=1e-5)


def test_dpo_moves_the_policy_toward_chosen_responses(parent: Path, tmp_path: Path) -> None:
    # given pairs preferring "yes" answers, and held-out validation pairs
    pairs = yes_no_pairs(16, seed=0)
    validation = yes_no_pairs(8, seed=1)

    # when DPO runs for 10 steps
    result = train_dpo(
        pairs, parent, tmp_path / "child", fast_config(), tmp_path / "run.ckpt", validation_pairs=validation
    )

    # then the implicit reward margin rose from 0, on training and on held-out pairs
    assert result.steps == 10
    assert result.initial_train_margin == 0.0
    assert result.final_train_margin > 1.0
    assert result.final_train_reward_accuracy == 1.0
    assert result.final_validation_margin is not None and result.final_validation_margin > 1.0
    # the loss started at log 2 (policy = reference) and fell
    assert result.first_loss == pytest.approx(math.log(2.0), abs=1e-5)
    assert result.last_loss < 0.5 * result.first_loss
    assert result.loss_curve[0] == result.first_loss and len(result.loss_curve) == 10
    # the policy prefers the chosen side more than the reference did, as the saved model confirms
    assert result.final_preference_gap > result.reference_preference_gap + 10.0
    assert result.chosen_log_prob_change - result.rejected_log_prob_change == pytest.approx(
        result.final_preference_gap - result.reference_preference_gap, abs=1e-3
    )
    assert preference_gap(tmp_path / "child", pairs) == pytest.approx(result.final_preference_gap, abs=1e-3)
    assert preference_gap(parent, pairs) == pytest.approx(result.reference_preference_gap, abs=1e-3)
    # parameters moved
    before = AutoModelForCausalLM.from_pretrained(parent).state_dict()
    after = AutoModelForCausalLM.from_pretrained(tmp_path / "child").state_dict()
    assert max((after[name] - before[name]).abs().max().item() for name in before) > 1e-3
    assert (tmp_path / "child" / "lovelace_training.json").exists()


def test_dpo_with_lora_saves_a_merged_model(parent: Path, tmp_path: Path) -> None:
    # given adapters on the attention projections
    config = fast_config(learning_rate=1e-2, epochs=2, lora=LoraSettings(rank=4, alpha=8))

    # when
    result = train_dpo(yes_no_pairs(16, seed=0), parent, tmp_path / "child", config, tmp_path / "run.ckpt")

    # then the margin rose, and the child is a plain model (no adapter files) whose only changed
    # weights are the adapted ones
    assert result.final_train_margin > 0.0
    assert result.last_loss < result.first_loss
    assert not (tmp_path / "child" / "adapter_config.json").exists()
    before = AutoModelForCausalLM.from_pretrained(parent).state_dict()
    after = AutoModelForCausalLM.from_pretrained(tmp_path / "child").state_dict()
    assert set(after) == set(before)
    changed = {name for name in before if not torch.equal(before[name], after[name])}
    assert changed == {"transformer.h.0.attn.c_attn.weight", "transformer.h.1.attn.c_attn.weight"}


def test_long_pairs_are_truncated_not_dropped(parent: Path, tmp_path: Path) -> None:
    # given prompts and responses far longer than the length limit
    rng = random.Random(2)
    pairs = [
        PreferencePair(prompt=filler_sentence(rng, 30), chosen=filler_sentence(rng, 30), rejected=" no")
        for _ in range(4)
    ]

    # when
    result = train_dpo(
        pairs,
        parent,
        tmp_path / "child",
        fast_config(epochs=1, max_length=24, max_prompt_length=8),
        tmp_path / "c",
    )

    # then all four pairs trained
    assert (result.train_pairs, result.truncated_pairs, result.steps) == (4, 4, 1)


def test_cancelled_dpo_resumes_from_its_checkpoint(parent: Path, tmp_path: Path) -> None:
    # given an uninterrupted run of 6 steps
    pairs = yes_no_pairs(12, seed=3)
    config = fast_config(epochs=2, batch_size=4)
    uninterrupted = train_dpo(pairs, parent, tmp_path / "a", config, tmp_path / "a.ckpt")

    # when the same run is cancelled at step 2 and started again
    with pytest.raises(Cancelled):
        train_dpo(pairs, parent, tmp_path / "b", config, tmp_path / "b.ckpt", RecordingReporter(cancel_at=2))
    assert not (tmp_path / "b").exists()
    reporter = RecordingReporter()
    resumed = train_dpo(pairs, parent, tmp_path / "b", config, tmp_path / "b.ckpt", reporter)

    # then it continued at step 2 and ended where the uninterrupted run ended
    assert reporter.first_step == 2
    assert reporter.training_steps == [3, 4, 5, 6]
    assert resumed.resumed_from_step == 2
    assert resumed.loss_curve == pytest.approx(uninterrupted.loss_curve, abs=1e-5)
    assert resumed.final_train_margin == pytest.approx(uninterrupted.final_train_margin, abs=1e-5)
    assert resumed.reference_preference_gap == pytest.approx(uninterrupted.reference_preference_gap, abs=1e-6)
