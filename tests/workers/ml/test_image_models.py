"""Image data set, generators, feature classifier, reward ensemble and policy step at tiny sizes.

Each model here trains for a few dozen steps on 128 images (a few seconds in all on one thread):
the tests check the contracts (files, determinism, resume, errors) and that training moves
parameters and lowers losses, not the quality that the demo sizes reach (bench/images.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from evaluation.image_oracles import warmth_oracle
from workers.ml.image_dataset import (
    ShapesConfig,
    class_index,
    class_names,
    from_unit_tensor_layout,
    render_shapes,
    shape_coverage,
    to_unit_tensor_layout,
)
from workers.ml.image_features import (
    FEATURE_DIM,
    FeatureNetworkConfig,
    build_feature_network,
    condition_accuracy,
    image_features,
    load_feature_network,
)
from workers.ml.image_generators import (
    DECODER_FILE,
    MANIFEST_FILE,
    ConditionalGanConfig,
    ConditionalVaeConfig,
    build_conditional_gan,
    build_conditional_vae,
    load_generator,
    sample_images,
    training_data_config,
)
from workers.ml.image_policy import ImagePolicyConfig, fine_tune_image_generator
from workers.ml.image_reward import (
    ImagePreferences,
    ImageRewardConfig,
    load_image_reward_model,
    score_images,
    train_image_reward_model,
)
from workers.ml.progress import Cancelled

TINY_DATA = ShapesConfig(images_per_class=8, seed=3)
TINY_VAE = ConditionalVaeConfig(
    data=TINY_DATA,
    latent_dim=4,
    width=8,
    label_dim=4,
    steps=30,
    batch_size=16,
    checkpoint_every=10,
    report_every=5,
)
TINY_GAN = ConditionalGanConfig(
    data=TINY_DATA,
    latent_dim=4,
    width=8,
    label_dim=4,
    steps=20,
    batch_size=16,
    checkpoint_every=10,
    report_every=5,
)


@pytest.fixture(scope="module")
def tiny_vae(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tiny-vae")
    build_conditional_vae(output_dir=root / "model", checkpoint_dir=root / "checkpoints", config=TINY_VAE)
    return root / "model"


# --- Data set --------------------------------------------------------------------------------------


def test_render_shapes_is_deterministic_balanced_and_named() -> None:
    first, second = render_shapes(TINY_DATA), render_shapes(TINY_DATA)
    assert first.images.shape == (128, 32, 32, 3) and first.images.dtype == np.uint8
    assert np.array_equal(first.images, second.images) and np.array_equal(first.labels, second.labels)
    assert np.bincount(first.labels).tolist() == [8] * 16
    assert not np.array_equal(render_shapes(ShapesConfig(images_per_class=8, seed=4)).images, first.images)
    assert class_names()[:2] == ["a red circle", "a red square"] and len(class_names()) == 16
    assert class_index("  A Blue   Cross ") == 15
    with pytest.raises(ValueError, match="unknown image class 'a purple circle'"):
        class_index("a purple circle")


def test_shape_coverage_areas_match_geometry() -> None:
    # A square of half-width 5 covers 10 × 10 pixels; a disc of radius 5 about 25π; the triangle
    # (base 10, height 10) 50.
    assert shape_coverage("square", 16.0, 16.0, 5.0).sum() == pytest.approx(100.0, abs=1e-9)
    assert shape_coverage("circle", 16.0, 16.0, 5.0).sum() == pytest.approx(25 * np.pi, rel=0.01)
    assert shape_coverage("triangle", 16.0, 16.0, 5.0).sum() == pytest.approx(50.0, rel=0.02)
    with pytest.raises(ValueError, match="unknown shape 'star'"):
        shape_coverage("star", 16.0, 16.0, 5.0)


def test_tensor_layout_round_trip() -> None:
    images = render_shapes(TINY_DATA).images[:4]
    unit = to_unit_tensor_layout(images)
    assert unit.shape == (4, 3, 32, 32) and unit.min() >= -1.0 and unit.max() <= 1.0
    assert np.array_equal(from_unit_tensor_layout(unit), images)


# --- Generators ----------------------------------------------------------------------------------


def test_vae_build_writes_directory_and_samples_deterministically(tiny_vae: Path) -> None:
    manifest = json.loads((tiny_vae / MANIFEST_FILE).read_text())
    assert manifest["kind"] == "conditional_vae" and manifest["parent"] is None
    assert manifest["class_names"] == class_names()
    assert training_data_config(tiny_vae) == TINY_DATA
    assert sorted(path.name for path in tiny_vae.iterdir()) == [DECODER_FILE, MANIFEST_FILE]
    conditions = ["a red circle", "a blue cross", "a red circle"]
    first = sample_images(tiny_vae, conditions, seed=7)
    assert first.shape == (3, 32, 32, 3) and first.dtype == np.uint8
    assert np.array_equal(first, sample_images(tiny_vae, conditions, seed=7))
    assert not np.array_equal(first, sample_images(tiny_vae, conditions, seed=8))
    # Image i depends on its own latent and condition, not on the others in the batch.
    assert np.array_equal(sample_images(tiny_vae, conditions[:1], seed=7)[0], first[0])
    assert sample_images(tiny_vae, [], seed=7).shape == (0, 32, 32, 3)
    with pytest.raises(ValueError, match="cannot draw 'a purple circle'"):
        sample_images(tiny_vae, ["a purple circle"], seed=0)


def test_vae_loss_falls(tmp_path: Path) -> None:
    result = build_conditional_vae(
        output_dir=tmp_path / "model", checkpoint_dir=tmp_path / "checkpoints", config=TINY_VAE
    )
    assert result.steps == 30 and len(result.losses["loss"]) == 30
    assert np.mean(result.losses["loss"][-5:]) < np.mean(result.losses["loss"][:5])


def test_gan_build_resumes_after_cancel_to_the_same_model(tmp_path: Path) -> None:
    # Given a build cancelled at its report of step 10 (just after the step-10 checkpoint)
    def cancel_at_ten(
        *, step: int, total: int, message: str = "", metrics: dict[str, float] | None = None
    ) -> None:
        if step == 10:
            raise Cancelled()

    with pytest.raises(Cancelled):
        build_conditional_gan(
            output_dir=tmp_path / "resumed",
            checkpoint_dir=tmp_path / "ck-resumed",
            config=TINY_GAN,
            reporter=cancel_at_ten,
        )
    assert not (tmp_path / "resumed").exists()
    # When it runs again, and an uninterrupted build runs beside it
    resumed = build_conditional_gan(
        output_dir=tmp_path / "resumed", checkpoint_dir=tmp_path / "ck-resumed", config=TINY_GAN
    )
    straight = build_conditional_gan(
        output_dir=tmp_path / "straight", checkpoint_dir=tmp_path / "ck-straight", config=TINY_GAN
    )
    # Then the resumed build continued at step 10 and ends with the same weights and losses
    assert resumed.resumed_from_step == 10 and straight.resumed_from_step == 0
    assert resumed.losses == straight.losses
    resumed_weights = load_file(str(tmp_path / "resumed" / DECODER_FILE))
    straight_weights = load_file(str(tmp_path / "straight" / DECODER_FILE))
    assert all(torch.equal(resumed_weights[name], straight_weights[name]) for name in straight_weights)
    assert load_generator(tmp_path / "straight").manifest["kind"] == "conditional_gan"
    # A checkpoint of another config is refused.
    with pytest.raises(ValueError, match="another config"):
        build_conditional_gan(
            output_dir=tmp_path / "other",
            checkpoint_dir=tmp_path / "ck-straight",
            config=ConditionalGanConfig(data=TINY_DATA, width=8, steps=5),
        )


# --- Feature classifier ----------------------------------------------------------------------------


def test_feature_network_learns_and_gives_features(tmp_path: Path) -> None:
    config = FeatureNetworkConfig(
        data=ShapesConfig(images_per_class=16, seed=11),
        held_out=ShapesConfig(images_per_class=4, seed=12),
        steps=40,
        batch_size=32,
        report_every=20,
    )
    result = build_feature_network(output_dir=tmp_path / "features", config=config)
    assert np.mean(result.losses[-10:]) < np.mean(result.losses[:10])
    # Chance is 1/16; forty steps on 256 images already name a good share of held-out images.
    assert result.held_out_accuracy > 0.2
    network = load_feature_network(tmp_path / "features")
    data = render_shapes(ShapesConfig(images_per_class=1, seed=13))
    features = image_features(network, data.images)
    assert features.shape == (16, FEATURE_DIM) and features.dtype == np.float64
    assert image_features(network, data.images[:0]).shape == (0, FEATURE_DIM)
    correct = condition_accuracy(network, data.images, [class_names()[label] for label in data.labels])
    assert set(correct.tolist()) <= {0.0, 1.0} and correct.shape == (16,)


# --- Reward ensemble -------------------------------------------------------------------------------


def _warmth_pairs(seed: int, pairs: int) -> ImagePreferences:
    """Pairs of rendered images, the warmer (warmth oracle) chosen."""
    data = render_shapes(ShapesConfig(images_per_class=(2 * pairs + 15) // 16, seed=seed)).images[: 2 * pairs]
    left, right = data[:pairs], data[pairs:]
    left_wins = np.array(
        [warmth_oracle("", a) > warmth_oracle("", b) for a, b in zip(left, right, strict=True)]
    )
    mask = left_wins[:, None, None, None]
    return ImagePreferences(chosen=np.where(mask, left, right), rejected=np.where(mask, right, left))


def test_reward_model_learns_a_planted_warmth_preference(tmp_path: Path) -> None:
    # Given 256 pairs where the warmer image won, and 128 held-out pairs
    train, validation = _warmth_pairs(seed=21, pairs=256), _warmth_pairs(seed=22, pairs=128)
    reference = render_shapes(ShapesConfig(images_per_class=4, seed=23)).images
    config = ImageRewardConfig(ensemble_size=2, epochs=6)
    # When the ensemble trains
    result = train_image_reward_model(
        preferences=train,
        reference_images=reference,
        output_dir=tmp_path / "reward",
        validation=validation,
        config=config,
    )
    # Then it ranks held-out pairs well above chance and its loss fell
    assert result.validation_accuracy is not None and result.validation_accuracy > 0.8
    assert result.last_loss < result.first_loss
    ensemble = load_image_reward_model(tmp_path / "reward")
    scores = score_images(ensemble, reference)
    # Normalised on the reference images: mean 0 and std 1 there.
    assert scores.mean.mean() == pytest.approx(0.0, abs=1e-5)
    assert scores.mean.std() == pytest.approx(1.0, abs=1e-5)
    assert scores.member_scores.shape == (2, 64) and (scores.std >= 0).all()
    assert score_images(ensemble, reference[:0]).mean.shape == (0,)
    with pytest.raises(ValueError, match="no preference pairs"):
        train_image_reward_model(
            preferences=ImagePreferences(chosen=reference[:0], rejected=reference[:0]),
            reference_images=reference,
            output_dir=tmp_path / "none",
        )


# --- Policy step -----------------------------------------------------------------------------------


def test_policy_step_raises_reward_and_moves_further_with_smaller_beta(
    tiny_vae: Path, tmp_path: Path
) -> None:
    # Given a reward model of warmth and the tiny VAE as the parent
    parent_samples = sample_images(tiny_vae, class_names() * 4, seed=1)
    train_image_reward_model(
        preferences=_warmth_pairs(seed=31, pairs=192),
        reference_images=parent_samples,
        output_dir=tmp_path / "reward",
        config=ImageRewardConfig(ensemble_size=2, epochs=4),
    )
    parent_weights = load_file(str(tiny_vae / DECODER_FILE))
    # When children train with a weak and a strong pull to the parent
    results = {
        beta: fine_tune_image_generator(
            parent_dir=tiny_vae,
            reward_dir=tmp_path / "reward",
            output_dir=tmp_path / f"child-{beta}",
            config=ImagePolicyConfig(
                beta=beta, steps=25, batch_size=32, learning_rate=2e-3, evaluation_samples=64
            ),
        )
        for beta in (0.1, 100.0)
    }
    # Then the reward rose, and the weakly held child moved further from its parent
    weak, strong = results[0.1], results[100.0]
    assert weak.reward_after > weak.reward_before + 0.5
    assert weak.distance_to_parent > strong.distance_to_parent > 0.0
    assert weak.reward_after > strong.reward_after
    # The child directory records its parent; the parent is untouched.
    child = json.loads((tmp_path / "child-0.1" / MANIFEST_FILE).read_text())
    assert child["parent"]["path"] == str(tiny_vae.resolve())
    assert child["parent"]["reward_after"] == weak.reward_after
    assert child["kind"] == "conditional_vae"
    assert sample_images(tmp_path / "child-0.1", ["a red circle"], seed=0).shape == (1, 32, 32, 3)
    assert all(
        torch.equal(parent_weights[name], value)
        for name, value in load_file(str(tiny_vae / DECODER_FILE)).items()
    )


def test_the_pessimistic_reward_is_the_mean_less_k_members_std(tmp_path: Path) -> None:
    pairs = _warmth_pairs(seed=5, pairs=32)
    train_image_reward_model(
        preferences=pairs,
        reference_images=pairs.chosen,
        output_dir=tmp_path / "reward",
        config=ImageRewardConfig(ensemble_size=3, epochs=2),
    )
    ensemble = load_image_reward_model(tmp_path / "reward")
    scores = score_images(ensemble, pairs.rejected)
    assert scores.std.max() > 0  # the members disagree somewhere
    images = torch.from_numpy(to_unit_tensor_layout(pairs.rejected))
    with torch.no_grad():
        plain, pessimistic = ensemble.reward(images), ensemble.reward(images, 2.0)
    np.testing.assert_allclose(plain.numpy(), scores.mean, atol=1e-5)
    np.testing.assert_allclose(pessimistic.numpy(), scores.mean - 2.0 * scores.std, atol=1e-5)
    with pytest.raises(ValueError, match="reward_std_penalty must be >= 0"):
        ImagePolicyConfig(reward_std_penalty=-0.5)


def test_memorisation_threshold_separates_copies_from_fresh_draws() -> None:
    from evaluation.image_metrics import leave_one_out_threshold, memorisation_in_space

    # Given 512 training images, 128 of them copied, and 128 fresh images of the same recipe
    training = render_shapes(ShapesConfig(images_per_class=32, seed=41)).images
    fresh = render_shapes(ShapesConfig(images_per_class=8, seed=42)).images
    threshold = leave_one_out_threshold(training)
    # Then every copy counts as near and fresh draws about as often as the 5 % calibration says
    copies = memorisation_in_space(training[:128], training, threshold=threshold, rounds=10)
    draws = memorisation_in_space(fresh, training, threshold=threshold, rounds=10)
    assert copies.near_share.mean == 1.0
    assert draws.near_share.mean == 7 / 128  # 5.5 %
