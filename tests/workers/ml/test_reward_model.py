from __future__ import annotations

import json
import math
import random
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from evaluation.calibration import calibration_error_from_bins, reliability_bins
from evaluation.proportions import wilson_interval
from tests.workers.ml.tiny_models import (
    RecordingReporter,
    build_tiny_gpt2,
    filler_sentence,
    planted_pairs,
)
from workers.ml.preference_data import PreferencePair
from workers.ml.progress import Cancelled
from workers.ml.reward_model import (
    RewardModelConfig,
    RewardModelResult,
    default_backbone_path,
    encode_conversation,
    expected_calibration_error,
    load_reward_ensemble,
    preference_loss,
    score_texts,
    train_reward_model,
    uses_chat_template,
    weights_content_hash,
)


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    # Two threads on two cores shared with other jobs run tiny matmuls ~6× slower than one.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def tiny_gpt2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_gpt2(tmp_path_factory.mktemp("tiny_gpt2"))


@pytest.fixture(scope="module")
def tiny_gpt2_with_dropout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_gpt2(tmp_path_factory.mktemp("tiny_gpt2_dropout"), dropout=0.1)


def reference_texts(count: int = 16) -> list[str]:
    rng = random.Random(99)
    return [filler_sentence(rng, 6) for _ in range(count)]


def tiny_config(backbone: Path, **overrides: object) -> RewardModelConfig:
    """Heads on the tiny GPT-2's frozen last-token features (the cheap kind)."""
    settings: dict[str, object] = {
        "backbone_path": str(backbone),
        "epochs": 5,
        "learning_rate": 1e-2,
        "batch_size": 16,
        "max_length": 32,
        "checkpoint_every": 1000,
    }
    settings.update(overrides)
    return RewardModelConfig(**settings)  # type: ignore[arg-type]


def test_loss_is_bradley_terry_and_the_margin_raises_it() -> None:
    # given a reward gap of 1 between the chosen and the rejected side
    chosen, rejected = torch.tensor([1.0]), torch.tensor([0.0])

    # when the loss is computed without and with a margin from preference strength
    plain = preference_loss(chosen, rejected, torch.tensor([0.0]))
    with_margin = preference_loss(chosen, rejected, torch.tensor([0.5]))
    beyond_margin = preference_loss(chosen, rejected, torch.tensor([2.0]))

    # then it is −log σ(r_c − r_r − m)
    assert plain.item() == pytest.approx(math.log1p(math.exp(-1.0)))
    assert with_margin.item() == pytest.approx(math.log1p(math.exp(-0.5)))
    assert beyond_margin.item() == pytest.approx(math.log1p(math.exp(1.0)))


def test_loss_averages_over_pairs() -> None:
    # when
    loss = preference_loss(torch.tensor([0.0, 2.0]), torch.tensor([0.0, 0.0]), torch.tensor([0.0, 0.0]))

    # then
    assert loss.item() == pytest.approx((math.log(2.0) + math.log1p(math.exp(-2.0))) / 2)


def test_expected_calibration_error_on_a_hand_computed_example() -> None:
    # given P(chosen preferred) for four pairs: confidences 0.9, 0.9 (right), 0.8 (wrong), 0.6 (right)
    probabilities = torch.tensor([0.9, 0.9, 0.2, 0.6])

    # when
    error = expected_calibration_error(probabilities, bins=10)

    # then |1 − 0.9|·½ + |0 − 0.8|·¼ + |1 − 0.6|·¼
    assert error == pytest.approx(0.05 + 0.2 + 0.1, abs=1e-6)


def test_the_reliability_bins_give_the_same_calibration_error() -> None:
    # given predictions of many validation pairs
    probabilities = torch.rand(500, generator=torch.Generator().manual_seed(0), dtype=torch.float64)

    # when the diagram's bins are computed from them
    bins = reliability_bins(probabilities.tolist(), bins=10)

    # then they describe the ECE the model reports, and every pair is in one bin
    assert calibration_error_from_bins(bins) == pytest.approx(
        expected_calibration_error(probabilities, bins=10),
        abs=1e-6,  # the torch one sums in float32
    )
    assert sum(item.count for item in bins) == 500 and all(item.lower >= 0.5 for item in bins)


def test_saved_ensemble_is_normalised_on_the_reference_texts(tiny_gpt2: Path, tmp_path: Path) -> None:
    # given a trained and saved ensemble
    texts = reference_texts()
    train_reward_model(
        planted_pairs(16, seed=1),
        [],
        texts,
        tiny_config(tiny_gpt2, epochs=1),
        tmp_path / "model",
        tmp_path / "run",
    )

    # when it is loaded and scores the reference texts
    ensemble = load_reward_ensemble(tmp_path / "model")
    scores = score_texts(ensemble, texts)

    # then the reward has mean 0 and std 1 there, and each member is normalised too
    assert ensemble.size == 3
    assert scores.mean.mean().item() == pytest.approx(0.0, abs=1e-5)
    assert scores.mean.std(unbiased=False).item() == pytest.approx(1.0, abs=1e-5)
    assert scores.member_scores.mean(dim=1).tolist() == pytest.approx([0.0, 0.0, 0.0], abs=1e-5)
    assert scores.member_scores.std(dim=1, unbiased=False).tolist() == pytest.approx(
        [1.0, 1.0, 1.0], abs=1e-5
    )
    assert scores.std.shape == (len(texts),)
    assert bool((scores.std > 0).all())
    assert not list(tmp_path.glob(".model.*"))  # no temporary folder left behind


def test_minilm_backbone_frozen_learns_a_planted_preference(tmp_path: Path) -> None:
    # given the packaged MiniLM encoder, frozen; only the three heads train
    config = RewardModelConfig(epochs=20, batch_size=16, max_length=32, checkpoint_every=1000)
    assert config.backbone_path == str(default_backbone_path())

    # when
    result = train_reward_model(
        planted_pairs(48, seed=3),
        planted_pairs(32, seed=4, split="validation"),
        reference_texts(),
        config,
        tmp_path / "model",
        tmp_path / "run",
    )

    # then
    assert result.validation_accuracy is not None and result.validation_accuracy > 0.9
    assert result.last_train_loss < result.first_train_loss
    ensemble = load_reward_ensemble(tmp_path / "model")
    assert ensemble.pooling == "mean"
    scores = score_texts(ensemble, ["the golden sky", "the blue sky"], prompts=["a b c", "a b c"])
    assert scores.mean[0].item() > scores.mean[1].item()


def test_long_pairs_are_truncated_not_dropped(tiny_gpt2: Path, tmp_path: Path) -> None:
    # given pairs longer than max_length tokens
    rng = random.Random(5)
    long_pairs = [
        PreferencePair(prompt="p", chosen=filler_sentence(rng, 40), rejected=filler_sentence(rng, 40))
        for _ in range(6)
    ]

    # when
    result = train_reward_model(
        long_pairs,
        long_pairs[:2],
        reference_texts(),
        tiny_config(tiny_gpt2, max_length=16, epochs=1),
        tmp_path / "model",
        tmp_path / "run",
    )

    # then every pair was used, and every one was truncated
    assert (result.train_pairs, result.truncated_pairs, result.steps) == (6, 8, 1)


def test_cancelled_training_resumes_from_its_checkpoint(tiny_gpt2_with_dropout: Path, tmp_path: Path) -> None:
    # given a fine-tuning run with dropout (the generator state must survive the checkpoint)
    train = planted_pairs(32, seed=1)
    validation = planted_pairs(16, seed=2, split="validation")
    config = tiny_config(tiny_gpt2_with_dropout, epochs=2, batch_size=8)  # 8 steps
    uninterrupted = train_reward_model(
        train, validation, reference_texts(), config, tmp_path / "a", tmp_path / "a-run"
    )

    # when the job is cancelled at step 3 and started again with the same checkpoint path
    with pytest.raises(Cancelled):
        train_reward_model(
            train,
            validation,
            reference_texts(),
            config,
            tmp_path / "b",
            tmp_path / "b-run",
            RecordingReporter(cancel_at=3),
        )
    resumed_reporter = RecordingReporter()
    resumed = train_reward_model(
        train, validation, reference_texts(), config, tmp_path / "b", tmp_path / "b-run", resumed_reporter
    )

    # then it continued at step 3 and ended where the uninterrupted run ended
    assert resumed_reporter.first_step == 3
    assert resumed_reporter.training_steps == [4, 5, 6, 7, 8]
    assert resumed.resumed_from_step == 3
    assert resumed.steps == uninterrupted.steps == 8
    assert resumed.validation_loss == pytest.approx(uninterrupted.validation_loss, abs=1e-5)
    assert resumed.last_train_loss == pytest.approx(uninterrupted.last_train_loss, abs=1e-5)
    assert resumed.normalisation.member_mean == pytest.approx(
        uninterrupted.normalisation.member_mean, abs=1e-5
    )


def test_crashed_training_resumes_from_the_last_periodic_checkpoint(tiny_gpt2: Path, tmp_path: Path) -> None:
    # given checkpoints every 2 steps, and a worker that dies after step 5
    train = planted_pairs(32, seed=1)
    config = tiny_config(tiny_gpt2, epochs=2, batch_size=8, checkpoint_every=2)
    with pytest.raises(RuntimeError):
        train_reward_model(
            train,
            [],
            reference_texts(),
            config,
            tmp_path / "m",
            tmp_path / "m-run",
            RecordingReporter(crash_at=5),
        )

    # when the job runs again
    reporter = RecordingReporter()
    result = train_reward_model(
        train, [], reference_texts(), config, tmp_path / "m", tmp_path / "m-run", reporter
    )

    # then it redid step 5 from the checkpoint of step 4
    assert reporter.first_step == 4
    assert reporter.training_steps == [5, 6, 7, 8]
    assert result.validation_accuracy is None


def test_a_checkpoint_of_another_config_is_refused(tiny_gpt2: Path, tmp_path: Path) -> None:
    # given a finished run
    train = planted_pairs(8, seed=1)
    train_reward_model(
        train, [], reference_texts(), tiny_config(tiny_gpt2, epochs=1), tmp_path / "m", tmp_path / "m-run"
    )

    # when the same checkpoint path is reused with another learning rate, then it refuses
    with pytest.raises(ValueError, match="another config"):
        train_reward_model(
            train,
            [],
            reference_texts(),
            tiny_config(tiny_gpt2, epochs=1, learning_rate=0.5),
            tmp_path / "m",
            tmp_path / "m-run",
        )


# --- sequence_classification: TRL's RewardTrainer ---------------------------------------------------


def classifier_config(backbone: Path, **overrides: object) -> RewardModelConfig:
    """Two members on the tiny GPT-2 as a sequence classifier (a fresh ``score`` head on a causal LM)."""
    settings: dict[str, object] = {
        "kind": "sequence_classification",
        "backbone_path": str(backbone),
        "ensemble_size": 2,
        "epochs": 5,
        "learning_rate": 2e-3,
        "batch_size": 16,
        "max_length": 32,
        "checkpoint_every": 1000,
    }
    settings.update(overrides)
    return RewardModelConfig(**settings)  # type: ignore[arg-type]


LORA = {"rank": 8, "alpha": 16, "dropout": 0.0}


class StepReporter:
    """Records the bridged reports; raises ``exception`` at the first report of step ``stop_at``
    that carries the trainer's logged metrics."""

    def __init__(self, *, stop_at: int | None = None, exception: type[BaseException] = Cancelled) -> None:
        self.calls: list[tuple[int, int, str, dict[str, float] | None]] = []
        self.stop_at = stop_at
        self.exception = exception

    def __call__(
        self, *, step: int, total: int, message: str = "", metrics: dict[str, float] | None = None
    ) -> None:
        self.calls.append((step, total, message, metrics))
        if step == self.stop_at and metrics is not None and "loss" in metrics:
            raise self.exception("stop")

    @property
    def loss_steps(self) -> list[int]:
        return [step for step, _, _, metrics in self.calls if metrics and "loss" in metrics]


@pytest.fixture(scope="module")
def lora_run(tiny_gpt2: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[RewardModelResult, Path]:
    folder = tmp_path_factory.mktemp("lora_run")
    config = classifier_config(tiny_gpt2, lora=LORA, learning_rate=1e-2)
    result = train_reward_model(
        planted_pairs(64, seed=1),
        planted_pairs(32, seed=2, split="validation"),
        reference_texts(),
        config,
        folder / "model",
        folder / "run",
    )
    return result, folder / "model"


def test_sequence_classifier_learns_a_planted_preference(tiny_gpt2: Path, tmp_path: Path) -> None:
    # given pairs whose chosen side contains a planted word, and held-out validation pairs
    config = classifier_config(tiny_gpt2)

    # when two fully fine-tuned members train through RewardTrainer
    result = train_reward_model(
        planted_pairs(64, seed=1),
        planted_pairs(32, seed=2, split="validation"),
        reference_texts(),
        config,
        tmp_path / "model",
        tmp_path / "run",
    )

    # then the ensemble ranks held-out pairs by the planted rule, with n and a Wilson interval
    assert result.kind == "sequence_classification"
    assert result.validation_accuracy is not None and result.validation_accuracy >= 0.9
    assert result.validation_pairs == 32
    assert result.validation_accuracy_interval is not None
    low, high = result.validation_accuracy_interval
    assert low < result.validation_accuracy < high
    assert result.validation_accuracy_interval == wilson_interval(round(result.validation_accuracy * 32), 32)
    assert len(result.member_validation_accuracy) == 2
    # and the reliability diagram's bins hold every validation pair and give its ECE
    assert sum(item["count"] for item in result.reliability_bins) == 32
    assert result.expected_calibration_error is not None
    assert sum(
        item["count"] / 32 * abs(item["accuracy"] - item["mean_confidence"])
        for item in result.reliability_bins
    ) == pytest.approx(result.expected_calibration_error, abs=1e-5)
    assert result.last_train_loss < result.first_train_loss
    assert (result.steps, result.resumed_from_step) == (2 * 5 * 4, 0)  # 2 members × 5 epochs × 4 steps
    assert (result.train_pairs, result.truncated_pairs, result.dropped_pairs) == (64, 0, 0)
    assert result.provenance["backbone_path"] == str(tiny_gpt2)
    assert result.provenance["dtype"] == "float32"
    assert result.provenance["content_sha256"] == weights_content_hash(tiny_gpt2)
    assert json.loads((tmp_path / "model" / "provenance.json").read_text()) == result.provenance
    # and the members disagree somewhat: the spread active selection uses is not zero
    ensemble = load_reward_ensemble(tmp_path / "model")
    scores = score_texts(ensemble, reference_texts())
    assert scores.mean.mean().item() == pytest.approx(0.0, abs=1e-5)
    assert scores.mean.std(unbiased=False).item() == pytest.approx(1.0, abs=1e-5)
    assert bool((scores.std > 0).all())
    # full members are full models of their own
    assert sorted(path.name for path in (tmp_path / "model").iterdir()) == [
        "member_0",
        "member_1",
        "provenance.json",
        "reward_model.json",
        "tokenizer",
    ]


def test_lora_members_learn_and_reload_with_the_same_scores(
    lora_run: tuple[RewardModelResult, Path], tiny_gpt2: Path
) -> None:
    result, model_dir = lora_run

    # then the adapters learned the planted rule
    assert result.validation_accuracy is not None and result.validation_accuracy >= 0.9

    # when the saved adapters are loaded onto the base again
    ensemble = load_reward_ensemble(model_dir)

    # then each member scores the reference texts as it did when the normalisation was measured
    raw = ensemble.raw_scores([""] * len(reference_texts()), reference_texts())
    assert raw.mean(dim=1).tolist() == pytest.approx(result.normalisation.member_mean, abs=1e-5)
    assert raw.std(dim=1, unbiased=False).tolist() == pytest.approx(result.normalisation.member_std, abs=1e-5)
    # and every member is an adapter that references the base by path: the base is not copied
    for member in ("member_0", "member_1"):
        files = sorted(path.name for path in (model_dir / member).iterdir())
        assert "adapter_model.safetensors" in files
        assert not [name for name in files if name.startswith("model")]
        adapter_config = json.loads((model_dir / member / "adapter_config.json").read_text())
        assert adapter_config["base_model_name_or_path"] == str(tiny_gpt2)


def test_lora_trains_the_score_head(lora_run: tuple[RewardModelResult, Path], tiny_gpt2: Path) -> None:
    from safetensors.torch import load_file
    from transformers import set_seed

    from workers.ml.reward_model import _load_classifier, _member_seed

    _, model_dir = lora_run
    config = classifier_config(tiny_gpt2, lora=LORA)
    # given the head member 0 started from (drawn from its seed when the base was loaded)
    set_seed(_member_seed(config, 0))
    initial = _load_classifier(
        tiny_gpt2, revision=None, dtype=torch.float32, quantization=None, pad_token_id=1
    ).score.weight.detach()

    # when the saved adapter is read
    saved = load_file(str(model_dir / "member_0" / "adapter_model.safetensors"))
    head = [value for key, value in saved.items() if "score" in key and key.endswith("weight")]

    # then it holds the whole head, trained away from its start
    assert len(head) == 1 and head[0].shape == initial.shape
    assert not torch.allclose(head[0], initial)


def test_cancel_saves_a_checkpoint_and_the_rerun_resumes_to_the_same_end(
    tiny_gpt2: Path, tmp_path: Path
) -> None:
    # given an uninterrupted run (1 member, 2 epochs of 4 steps)
    train = planted_pairs(64, seed=1)
    validation = planted_pairs(16, seed=2, split="validation")
    config = classifier_config(tiny_gpt2, ensemble_size=1, epochs=2)
    uninterrupted = train_reward_model(
        train, validation, reference_texts(), config, tmp_path / "a", tmp_path / "a-run"
    )

    # when the job is cancelled at step 3
    with pytest.raises(Cancelled):
        train_reward_model(
            train,
            validation,
            reference_texts(),
            config,
            tmp_path / "b",
            tmp_path / "b-run",
            StepReporter(stop_at=3),
        )

    # then the trainer saved that step, and no model was written
    assert sorted(path.name for path in (tmp_path / "b-run" / "member_0").glob("checkpoint-*")) == [
        "checkpoint-3"
    ]
    assert not (tmp_path / "b").exists()

    # when the job runs again
    reporter = StepReporter()
    resumed = train_reward_model(
        train, validation, reference_texts(), config, tmp_path / "b", tmp_path / "b-run", reporter
    )

    # then it continued after step 3 and ended where the uninterrupted run ended
    assert resumed.resumed_from_step == 3
    assert reporter.loss_steps == [4, 5, 6, 7, 8]
    assert resumed.steps == uninterrupted.steps == 8
    assert resumed.validation_loss == pytest.approx(uninterrupted.validation_loss, abs=1e-4)
    assert resumed.normalisation.member_mean == pytest.approx(
        uninterrupted.normalisation.member_mean, abs=1e-4
    )


def test_a_killed_run_resumes_from_the_last_periodic_checkpoint_and_skips_finished_members(
    tiny_gpt2: Path, tmp_path: Path
) -> None:
    # given two members, checkpoints every 2 steps, and a worker that dies in member 2's step 3
    train = planted_pairs(32, seed=1)
    config = classifier_config(tiny_gpt2, epochs=2, batch_size=8, checkpoint_every=2)  # 8 steps each
    with pytest.raises(RuntimeError):
        train_reward_model(
            train,
            [],
            reference_texts(),
            config,
            tmp_path / "m",
            tmp_path / "m-run",
            StepReporter(stop_at=8 + 3, exception=RuntimeError),
        )

    # when the job runs again
    reporter = StepReporter()
    result = train_reward_model(
        train, [], reference_texts(), config, tmp_path / "m", tmp_path / "m-run", reporter
    )

    # then member 1 was kept, and member 2 redid its step 3 from the checkpoint of step 2
    assert result.resumed_from_step == 8 + 2
    assert reporter.loss_steps == [8 + 3, 8 + 4, 8 + 5, 8 + 6, 8 + 7, 8 + 8]
    assert result.steps == 16
    assert result.validation_accuracy is None and result.validation_accuracy_interval is None


def test_a_checkpoint_folder_of_another_config_is_refused(tiny_gpt2: Path, tmp_path: Path) -> None:
    train = planted_pairs(8, seed=1)
    config = classifier_config(tiny_gpt2, ensemble_size=1, epochs=1)
    train_reward_model(train, [], reference_texts(), config, tmp_path / "m", tmp_path / "m-run")

    with pytest.raises(ValueError, match="another config"):
        train_reward_model(
            train,
            [],
            reference_texts(),
            classifier_config(tiny_gpt2, ensemble_size=1, epochs=1, learning_rate=0.5),
            tmp_path / "m",
            tmp_path / "m-run",
        )


def test_long_pairs_are_truncated_before_the_trainer_and_none_is_dropped(
    tiny_gpt2: Path, tmp_path: Path
) -> None:
    # given pairs much longer than max_length (RewardTrainer would drop them)
    rng = random.Random(5)
    long_pairs = [
        PreferencePair(prompt="p", chosen=filler_sentence(rng, 40), rejected=filler_sentence(rng, 40))
        for _ in range(6)
    ]

    # when
    result = train_reward_model(
        long_pairs,
        long_pairs[:2],
        reference_texts(),
        classifier_config(tiny_gpt2, ensemble_size=1, epochs=1, max_length=16),
        tmp_path / "model",
        tmp_path / "run",
    )

    # then every pair trained, truncated
    assert (result.train_pairs, result.truncated_pairs, result.dropped_pairs, result.steps) == (6, 8, 0, 1)


def test_bf16_and_qlora_are_refused_without_cuda(tiny_gpt2: Path, tmp_path: Path) -> None:
    pairs = planted_pairs(4, seed=1)
    with pytest.raises(
        ValueError, match="dtype bfloat16 needs a CUDA GPU with bf16 support; this run is on cpu"
    ):
        train_reward_model(
            pairs,
            [],
            reference_texts(),
            classifier_config(tiny_gpt2, dtype="bfloat16", device="cpu"),
            tmp_path / "a",
            tmp_path / "a-run",
        )
    with pytest.raises(ValueError, match="qlora_4bit needs a CUDA GPU; this run is on cpu"):
        train_reward_model(
            pairs,
            [],
            reference_texts(),
            classifier_config(tiny_gpt2, lora=LORA, qlora_4bit=True, device="cpu"),
            tmp_path / "b",
            tmp_path / "b-run",
        )
    with pytest.raises(ValueError, match="qlora_4bit needs lora"):
        classifier_config(tiny_gpt2, qlora_4bit=True)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_chat_models_read_prompt_and_response_through_the_chat_template(tiny_gpt2: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_gpt2)
    tokenizer.chat_template = (
        "{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}</{{ m['role'] }}>{% endfor %}"
    )
    assert uses_chat_template(tokenizer)

    ids, truncated = encode_conversation(tokenizer, "a cat", "the dog ran", 200, chat=True)
    assert not truncated
    assert tokenizer.decode(ids) == "<user>a cat</user><assistant>the dog ran</assistant>"

    long_ids, truncated = encode_conversation(tokenizer, "a cat " * 30, "the dog ran " * 30, 60, chat=True)
    assert truncated and len(long_ids) <= 60
    assert tokenizer.decode(long_ids).startswith("<user>")


def test_plain_text_models_read_the_prompt_as_the_policy_sees_it_bos_first(tiny_gpt2: Path) -> None:
    from transformers import AutoTokenizer

    from workers.ml.chat_format import prompt_ids

    tokenizer = AutoTokenizer.from_pretrained(tiny_gpt2)
    bos = tokenizer.bos_token_id
    response = tokenizer("the dog ran", add_special_tokens=False)["input_ids"]
    # GPT-2's tokenizer adds no BOS by itself; the policy's prompts carry one
    ids, truncated = encode_conversation(tokenizer, "a cat", "the dog ran", 200, chat=False)
    assert not truncated
    assert ids == prompt_ids(tokenizer, "a cat") + response and ids[0] == bos
    # an empty prompt is "the start of a piece", as in generation
    assert encode_conversation(tokenizer, "", "the dog ran", 200, chat=False)[0] == [bos, *response]
    # truncation cuts text, never the BOS
    long_ids, truncated = encode_conversation(tokenizer, "a cat " * 30, "the dog ran " * 30, 40, chat=False)
    assert truncated and len(long_ids) == 40 and long_ids[0] == bos
    # reward models saved before the BOS was added keep their encoding
    legacy, _ = encode_conversation(tokenizer, "a cat", "the dog ran", 200, chat=False, bos=False)
    assert legacy == tokenizer("a cat")["input_ids"] + response


def test_a_changed_base_model_is_refused_when_loading(tiny_gpt2: Path, tmp_path: Path) -> None:
    # given heads trained on a copy of the tiny GPT-2, referenced by path
    base = tmp_path / "base"
    shutil.copytree(tiny_gpt2, base)
    train_reward_model(
        planted_pairs(8, seed=1),
        [],
        reference_texts(),
        tiny_config(base, epochs=1),
        tmp_path / "model",
        tmp_path / "run",
    )
    assert not (tmp_path / "model" / "backbone").exists()  # referenced, not copied
    load_reward_ensemble(tmp_path / "model")

    # when the base's weights change
    weights = base / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))

    # then loading refuses instead of scoring with other weights
    with pytest.raises(ValueError, match="changed since the reward model was trained"):
        load_reward_ensemble(tmp_path / "model")


def test_checkpoints_of_the_encoding_before_the_bos_are_refused_by_name(
    tiny_gpt2: Path, tmp_path: Path
) -> None:
    import json

    from workers.ml.preference_data import config_for_checkpoint, fingerprint
    from workers.ml.reward_model import RUN_FILE

    pairs = planted_pairs(8, seed=1)
    config = classifier_config(tiny_gpt2)
    # given the run file of a run trained before the encoding was recorded (no BOS)
    run = tmp_path / "run"
    run.mkdir()
    state = {"config": config_for_checkpoint(config), "data_fingerprint": fingerprint(list(pairs))}
    (run / RUN_FILE).write_text(json.dumps(state, default=str))

    with pytest.raises(ValueError, match=r"without the BOS token .* start a new reward-model job"):
        train_reward_model(pairs, [], reference_texts(), config, tmp_path / "model", run)
    assert not (tmp_path / "model").exists()
