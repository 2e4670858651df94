from __future__ import annotations

import json
import math
import random
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from tests.workers.ml.policy_helpers import StepReporter, response_log_prob
from tests.workers.ml.tiny_models import build_tiny_gpt2, filler_sentence
from workers.ml.dpo import DPOConfig, train_dpo
from workers.ml.model_loading import adapter_chain, weights_sha256
from workers.ml.policy_config import LoraSettings
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
        "per_device_batch_size": 8,
        "checkpoint_every": 1000,
        "lora": None,
    }
    settings.update(overrides)
    return DPOConfig(**settings)  # type: ignore[arg-type]


def preference_gap(model_path: Path, pairs: list[PreferencePair]) -> float:
    """Mean log π(chosen) − log π(rejected) over the pairs, from the saved folder."""
    gaps = [
        response_log_prob(model_path, pair.prompt, pair.chosen)
        - response_log_prob(model_path, pair.prompt, pair.rejected)
        for pair in pairs
    ]
    return sum(gaps) / len(gaps)


def test_dpo_learns_a_planted_preference(parent: Path, tmp_path: Path) -> None:
    # given pairs preferring "yes" answers, and held-out validation pairs
    pairs = yes_no_pairs(16, seed=0)
    validation = yes_no_pairs(8, seed=1)

    # when DPO fine-tunes all weights for 10 steps
    result = train_dpo(
        pairs,
        parent,
        tmp_path / "child",
        fast_config(),
        tmp_path / "checkpoints",
        validation_pairs=validation,
    )

    # then the implicit reward margin rose from 0, on training and on held-out pairs
    assert (result.steps, result.resumed_from_step, result.train_pairs, result.validation_pairs) == (
        10,
        0,
        16,
        8,
    )
    assert result.initial_train_margin == 0.0
    assert result.final_train_margin > 1.0
    assert result.final_train_reward_accuracy == 1.0
    assert result.final_validation_margin is not None and result.final_validation_margin > 1.0
    assert result.final_validation_reward_accuracy == 1.0
    # the loss started at log 2 (policy = reference) and fell
    assert result.first_loss == pytest.approx(math.log(2.0), abs=1e-5)
    assert result.last_loss < 0.5 * result.first_loss
    assert len(result.loss_curve) == 10 and result.loss_curve[0] == result.first_loss
    # the saved child prefers the chosen answers far more than its parent does
    assert preference_gap(tmp_path / "child", validation) > preference_gap(parent, validation) + 10.0
    # a full fine-tune is saved as plain weights, with its provenance
    assert (tmp_path / "child" / "model.safetensors").is_file()
    assert not (tmp_path / "child" / "adapter_config.json").exists()
    record = json.loads((tmp_path / "child" / "lovelace_training.json").read_text())
    assert record["provenance"] == {
        "base": {"path": str(parent), "sha256": weights_sha256(parent)},
        "base_is_adapter": False,
        "dtype": "float32",
        "weights_dtype": "float32",
        "saved_as": "full",
        "qlora_4bit": False,
    }


def test_dpo_with_lora_saves_an_adapter_that_names_its_parent(parent: Path, tmp_path: Path) -> None:
    # given the default: LoRA adapters on the attention projections, on a parent its version pins
    # to a revision (a local folder has none to choose, so loading it is the same)
    config = fast_config(learning_rate=1e-2, lora=LoraSettings(rank=4, alpha=8), parent_revision="v1.0")
    pairs = yes_no_pairs(16, seed=0)

    # when
    result = train_dpo(pairs, parent, tmp_path / "child", config, tmp_path / "checkpoints")

    # then the margin rose and the child is the adapter alone, naming the parent folder
    assert result.final_train_margin > 0.3 and result.last_loss < result.first_loss
    child = tmp_path / "child"
    assert not (child / "model.safetensors").exists()
    adapter = json.loads((child / "adapter_config.json").read_text())
    assert adapter["base_model_name_or_path"] == str(parent)
    assert (adapter["r"], adapter["lora_alpha"]) == (4, 8)
    # the revision stays with the child: whoever loads it gets the base at that revision
    assert adapter["revision"] == "v1.0"
    assert adapter_chain(child) == ([child], str(parent), "v1.0")
    record = json.loads((child / "lovelace_training.json").read_text())
    assert record["provenance"]["saved_as"] == "adapter"
    assert record["provenance"]["base"] == {"path": str(parent), "sha256": weights_sha256(parent)}
    # and generation loads it (parent + adapter) with the learned preference
    assert preference_gap(child, pairs[:4]) > preference_gap(parent, pairs[:4]) + 1.0


def test_dpo_merge_adapter_saves_plain_weights(parent: Path, tmp_path: Path) -> None:
    config = fast_config(epochs=1, lora=LoraSettings(rank=4, alpha=8), merge_adapter=True)
    train_dpo(yes_no_pairs(8, seed=0), parent, tmp_path / "child", config, tmp_path / "checkpoints")
    assert (tmp_path / "child" / "model.safetensors").is_file()
    assert not (tmp_path / "child" / "adapter_config.json").exists()
    record = json.loads((tmp_path / "child" / "lovelace_training.json").read_text())
    assert record["provenance"]["saved_as"] == "merged"


@pytest.mark.parametrize(("loss_type", "label_smoothing"), [("ipo", 0.0), ("robust", 0.1), ("robust", 0.0)])
def test_other_losses_learn_the_preference_too(
    parent: Path, tmp_path: Path, loss_type: str, label_smoothing: float
) -> None:
    config = fast_config(epochs=3, loss_type=loss_type, label_smoothing=label_smoothing)
    result = train_dpo(yes_no_pairs(16, seed=0), parent, tmp_path / "child", config, tmp_path / "c")
    assert result.steps == 6
    assert result.final_train_margin > 0.2
    assert result.last_loss < result.first_loss


def test_long_prompts_are_truncated_not_dropped(parent: Path, tmp_path: Path) -> None:
    # given prompts and responses far longer than the length limits
    rng = random.Random(2)
    pairs = [
        PreferencePair(prompt=filler_sentence(rng, 30), chosen=filler_sentence(rng, 30), rejected=" no")
        for _ in range(4)
    ]

    # when
    config = fast_config(epochs=1, max_length=24, max_prompt_length=8)
    result = train_dpo(pairs, parent, tmp_path / "child", config, tmp_path / "c")

    # then all four pairs trained
    assert (result.train_pairs, result.truncated_pairs, result.steps) == (4, 4, 1)


def test_cancelled_dpo_saves_and_resumes_from_its_checkpoint(parent: Path, tmp_path: Path) -> None:
    # given a run of 6 steps (12 pairs, batches of 4, 2 epochs), cancelled at step 2
    pairs = yes_no_pairs(12, seed=3)
    config = fast_config(epochs=2, per_device_batch_size=4)
    with pytest.raises(Cancelled):
        train_dpo(pairs, parent, tmp_path / "child", config, tmp_path / "c", StepReporter(cancel_at=2))

    # then the trainer saved step 2 and no child was written
    assert sorted(path.name for path in (tmp_path / "c").glob("checkpoint-*")) == ["checkpoint-2"]
    assert not (tmp_path / "child").exists()

    # when the job runs again
    reporter = StepReporter()
    resumed = train_dpo(pairs, parent, tmp_path / "child", config, tmp_path / "c", reporter)

    # then it continued after step 2 and finished
    assert resumed.resumed_from_step == 2
    assert reporter.training_steps == [3, 4, 5, 6]
    assert resumed.steps == 6
    assert len(resumed.loss_curve) == 6  # the log history came back with the checkpoint
    assert (tmp_path / "child" / "model.safetensors").is_file()


def test_a_killed_dpo_worker_resumes_from_the_last_periodic_checkpoint(parent: Path, tmp_path: Path) -> None:
    # given checkpoints every 2 steps and a worker that dies at step 3 (nothing saved then)
    pairs = yes_no_pairs(12, seed=3)
    config = fast_config(epochs=2, per_device_batch_size=4, checkpoint_every=2)
    with pytest.raises(RuntimeError, match="worker lost"):
        train_dpo(pairs, parent, tmp_path / "child", config, tmp_path / "c", StepReporter(crash_at=3))

    # when the job is delivered again
    reporter = StepReporter()
    resumed = train_dpo(pairs, parent, tmp_path / "child", config, tmp_path / "c", reporter)

    # then step 3 is done again from checkpoint-2, and the run completes
    assert resumed.resumed_from_step == 2
    assert reporter.training_steps == [3, 4, 5, 6]
    assert resumed.steps == 6


def test_settings_this_machine_cannot_run_are_refused_before_loading(parent: Path, tmp_path: Path) -> None:
    pairs = yes_no_pairs(4, seed=0)
    with pytest.raises(ValueError, match="dtype 'bfloat16' needs a CUDA device"):
        train_dpo(pairs, parent, tmp_path / "a", fast_config(dtype="bfloat16", device="cpu"), tmp_path / "c")
    qlora = fast_config(qlora_4bit=True, lora=LoraSettings(), device="cpu")
    with pytest.raises(ValueError, match="qlora_4bit needs"):
        train_dpo(pairs, parent, tmp_path / "a", qlora, tmp_path / "c")
    with pytest.raises(ValueError, match=r"max_prompt_length \(256\) must be below max_length \(200\)"):
        train_dpo(pairs, parent, tmp_path / "a", fast_config(max_length=200), tmp_path / "c")
    assert not (tmp_path / "a").exists() and not (tmp_path / "c").exists()
