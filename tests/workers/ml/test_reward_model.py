from __future__ import annotations

import math
import random
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

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
    default_backbone_path,
    expected_calibration_error,
    load_reward_ensemble,
    preference_loss,
    score_texts,
    train_reward_model,
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
    settings: dict[str, object] = {
        "backbone_path": str(backbone),
        "freeze_backbone": False,
        "epochs": 5,
        "learning_rate": 1e-2,
        "backbone_learning_rate": 1e-3,
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


def test_fine_tuned_tiny_causal_lm_learns_a_planted_preference(tiny_gpt2: Path, tmp_path: Path) -> None:
    # given pairs whose chosen side contains a planted word, and held-out validation pairs
    train = planted_pairs(64, seed=1)
    validation = planted_pairs(32, seed=2, split="validation")
    config = tiny_config(tiny_gpt2)

    # when a three-member ensemble trains (last-token pooling on a 2-layer GPT-2)
    result = train_reward_model(
        train, validation, reference_texts(), config, tmp_path / "model", tmp_path / "run.ckpt"
    )

    # then it ranks held-out pairs correctly, and every member learned
    assert result.validation_accuracy is not None and result.validation_accuracy > 0.9
    assert len(result.member_validation_accuracy) == 3
    assert min(result.member_validation_accuracy) > 0.8
    assert result.last_train_loss < result.first_train_loss
    assert result.steps == 5 * 4
    assert (result.train_pairs, result.validation_pairs, result.truncated_pairs) == (64, 32, 0)
    assert result.expected_calibration_error is not None and 0.0 <= result.expected_calibration_error <= 1.0
    assert result.validation_loss is not None and result.validation_loss < math.log(2.0)


def test_saved_ensemble_is_normalised_on_the_reference_texts(tiny_gpt2: Path, tmp_path: Path) -> None:
    # given a trained and saved ensemble
    texts = reference_texts()
    train_reward_model(
        planted_pairs(16, seed=1),
        [],
        texts,
        tiny_config(tiny_gpt2, epochs=1),
        tmp_path / "model",
        tmp_path / "run.ckpt",
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
        tmp_path / "run.ckpt",
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
        tmp_path / "run.ckpt",
    )

    # then every pair was used, and every one was truncated
    assert (result.train_pairs, result.truncated_pairs, result.steps) == (6, 8, 1)


def test_cancelled_training_resumes_from_its_checkpoint(tiny_gpt2_with_dropout: Path, tmp_path: Path) -> None:
    # given a fine-tuning run with dropout (the generator state must survive the checkpoint)
    train = planted_pairs(32, seed=1)
    validation = planted_pairs(16, seed=2, split="validation")
    config = tiny_config(tiny_gpt2_with_dropout, epochs=2, batch_size=8)  # 8 steps
    uninterrupted = train_reward_model(
        train, validation, reference_texts(), config, tmp_path / "a", tmp_path / "a.ckpt"
    )

    # when the job is cancelled at step 3 and started again with the same checkpoint path
    with pytest.raises(Cancelled):
        train_reward_model(
            train,
            validation,
            reference_texts(),
            config,
            tmp_path / "b",
            tmp_path / "b.ckpt",
            RecordingReporter(cancel_at=3),
        )
    resumed_reporter = RecordingReporter()
    resumed = train_reward_model(
        train, validation, reference_texts(), config, tmp_path / "b", tmp_path / "b.ckpt", resumed_reporter
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
            tmp_path / "m.ckpt",
            RecordingReporter(crash_at=5),
        )

    # when the job runs again
    reporter = RecordingReporter()
    result = train_reward_model(
        train, [], reference_texts(), config, tmp_path / "m", tmp_path / "m.ckpt", reporter
    )

    # then it redid step 5 from the checkpoint of step 4
    assert reporter.first_step == 4
    assert reporter.training_steps == [5, 6, 7, 8]
    assert result.validation_accuracy is None


def test_a_checkpoint_of_another_config_is_refused(tiny_gpt2: Path, tmp_path: Path) -> None:
    # given a finished run
    train = planted_pairs(8, seed=1)
    train_reward_model(
        train, [], reference_texts(), tiny_config(tiny_gpt2, epochs=1), tmp_path / "m", tmp_path / "m.ckpt"
    )

    # when the same checkpoint path is reused with another learning rate, then it refuses
    with pytest.raises(ValueError, match="another config"):
        train_reward_model(
            train,
            [],
            reference_texts(),
            tiny_config(tiny_gpt2, epochs=1, learning_rate=0.5),
            tmp_path / "m",
            tmp_path / "m.ckpt",
        )
