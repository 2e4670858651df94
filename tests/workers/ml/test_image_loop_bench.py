"""The image loop bench's round logic (bench/image_loop.py) on trivial inputs: the keep-the-parent
rule on a holdout A/B of the raters (the product's rule), the simulated votes, the report's
verdict and summary line, and one round of one chain on tiny models (seconds)."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest

from bench.image_loop import ImageChain, keep_child, report, run_chain, run_folder_name, simulated_votes
from evaluation.image_oracles import warmth_oracle
from workers.ml.image_dataset import ShapesConfig, render_shapes
from workers.ml.image_features import FeatureNetworkConfig, build_feature_network
from workers.ml.image_generators import ConditionalGanConfig, build_conditional_gan

CONDITIONS = [f"shape {index % 16}" for index in range(128)]


def _votes(child_wins: int, seed: int = 0) -> list[bool]:
    votes = [True] * child_wins + [False] * (128 - child_wins)
    np.random.default_rng(seed).shuffle(votes)
    return votes


def test_keep_child_keeps_the_child_only_beyond_the_interval() -> None:
    everything = keep_child(_votes(128), CONDITIONS)
    assert everything.kept is True and everything.child_wins == everything.pairs == 128
    assert everything.child.lower > everything.parent.upper
    assert everything.child.battles == everything.parent.battles == 128
    assert keep_child(_votes(90), CONDITIONS).kept is True  # 70 % of the votes
    for wins in (0, 40, 64, 70):  # worse, even, or better within the noise (55 %)
        decision = keep_child(_votes(wins), CONDITIONS)
        assert decision.kept is False, decision.shown()
        assert decision.child.lower <= decision.parent.upper
    with pytest.raises(ValueError, match="got 2 and 1"):
        keep_child([True, False], ["a"])
    with pytest.raises(ValueError, match="got 0 and 0"):
        keep_child([], [])


def test_keep_child_keeps_a_coin_flip_child_only_by_chance_and_a_better_one_nearly_always() -> None:
    generator = np.random.default_rng(7)
    coin = [keep_child((generator.random(128) < 0.5).tolist(), CONDITIONS).kept for _ in range(200)]
    # The rule is about a one-sided 2.5 % test (the bootstrap over 16 conditions runs a little
    # narrow: ~4 % measured over 1,000 draws); 200 draws put 8 % at > 3 binomial sd.
    assert sum(coin) / len(coin) <= 0.08
    better = [keep_child((generator.random(128) < 0.7).tolist(), CONDITIONS).kept for _ in range(50)]
    assert sum(better) >= 45


def test_simulated_votes_follow_the_oracle_without_noise_and_ignore_it_with_full_noise() -> None:
    images = render_shapes(ShapesConfig(images_per_class=1, seed=5)).images
    left, right = images[:8], images[8:16]
    conditions = ["c"] * 8
    truth = [warmth_oracle("c", a) > warmth_oracle("c", b) for a, b in zip(left, right, strict=True)]
    votes = simulated_votes(warmth_oracle, conditions, left, right, 0.0, np.random.default_rng(0))
    assert votes.tolist() == truth
    # Every vote a coin flip: swapping the images does not change which side wins.
    forward = simulated_votes(warmth_oracle, conditions, left, right, 1.0, np.random.default_rng(1))
    swapped = simulated_votes(warmth_oracle, conditions, right, left, 1.0, np.random.default_rng(1))
    assert forward.tolist() == swapped.tolist()


def _chain(seed: int, scores: list[float]) -> ImageChain:
    return ImageChain(
        seed=seed,
        scores=scores,
        labels=[0, 128],
        gate_labels=[0, 128],
        condition_accuracy=[0.7, 0.6],
        child_scores=[None, scores[1]],
        child_condition_accuracy=[None, 0.6],
        kept=[None, scores[1] != scores[0]],
        reward_accuracy=[None, 0.8],
    )


def test_report_passes_a_rise_beyond_two_standard_errors_and_never_a_flat_line() -> None:
    rising = report(
        chains=[_chain(0, [0.1, 0.2]), _chain(1, [0.1, 0.21]), _chain(2, [0.1, 0.19])], oracle_name="warmth"
    )
    assert rising[-1] == "summary random image-policy: round0 0.1000 final 0.2000 se 0.0058 labels 128"
    assert "  verdict: rises: final − round0 = +0.1000 ≥ 2 × se 0.0058 over 3 seeds" in rising
    assert any("kept 3/3" in line for line in rising)
    assert "  labels 128 (training votes), gate labels 128 (holdout A/B votes, which train nothing)" in rising
    assert any("labels 128.0  gate labels 128.0" in line for line in rising)
    flat = report(chains=[_chain(0, [0.1, 0.1]), _chain(1, [0.1, 0.1])], oracle_name="warmth")
    assert "  verdict: does not rise: final − round0 = +0.0000 (flat) over 2 seeds" in flat
    assert flat[-1] == "summary random image-policy: round0 0.1000 final 0.1000 se 0.0000 labels 128"


@pytest.mark.parametrize("gate", ["ab", "none"])
def test_one_round_of_one_chain_on_tiny_models(tmp_path: Path, gate: str) -> None:
    data = ShapesConfig(images_per_class=4, seed=3)
    gan = tmp_path / "gan"
    build_conditional_gan(
        output_dir=gan,
        checkpoint_dir=tmp_path / "checkpoints",
        config=ConditionalGanConfig(
            data=data, latent_dim=4, width=8, label_dim=4, steps=4, batch_size=16, checkpoint_every=4
        ),
    )
    features = tmp_path / "features"
    build_feature_network(
        output_dir=features,
        config=FeatureNetworkConfig(
            data=data, held_out=ShapesConfig(images_per_class=1, seed=4), steps=4, batch_size=16
        ),
    )
    chain = run_chain(
        seed=0,
        oracle=warmth_oracle,
        base=gan,
        features=features,
        chain_dir=tmp_path / "chain",
        rounds=1,
        labels_per_round=16,
        noise=0.1,
        beta=100.0,
        policy_steps=2,
        gate=gate,
        gate_pairs=32,
    )
    assert chain.labels == [0, 16]
    assert chain.gate_labels == ([0, 32] if gate == "ab" else [0, 0])  # A/B votes, counted apart
    assert len(chain.scores) == len(chain.condition_accuracy) == 2
    assert chain.child_scores[0] is None and chain.child_scores[1] is not None
    assert chain.kept[0] is None and isinstance(chain.kept[1], bool)
    if gate == "none":
        assert chain.kept[1] is True  # without the gate every child becomes the best
    # The best version is the child exactly when it was kept, else the base (same evaluation draws).
    assert chain.scores[1] == (chain.child_scores[1] if chain.kept[1] else chain.scores[0])
    assert (tmp_path / "chain" / "child-1").is_dir()


def test_runs_that_differ_in_any_option_that_changes_results_get_their_own_folder() -> None:
    options = {
        "oracle": "warmth", "rounds": 3, "labels_per_round": 64, "noise": 0.0, "beta": 100.0,
        "policy_steps": 150, "pessimism": 0.0, "ensemble_size": 3, "reward_epochs": 30, "gate": "ab",
        "gate_pairs": 64,
    }  # fmt: skip
    changed = {
        "oracle": "coolness", "rounds": 4, "labels_per_round": 32, "noise": 0.5, "beta": 10.0,
        "policy_steps": 100, "pessimism": 1.0, "ensemble_size": 5, "reward_epochs": 10, "gate": "none",
        "gate_pairs": 128,
    }  # fmt: skip
    base = run_folder_name(argparse.Namespace(**options))

    names = {
        name: run_folder_name(argparse.Namespace(**{**options, name: changed[name]})) for name in options
    }

    assert base == "warmth-rounds3-labels64-noise0-beta100-gate-ab64-steps150-k0-m3-e30"
    assert len({base, *names.values()}) == len(options) + 1, names
    # Without the A/B gate its pair count changes nothing, and names no folder.
    without_gate = {**options, "gate": "none"}
    assert run_folder_name(argparse.Namespace(**without_gate)) == run_folder_name(
        argparse.Namespace(**{**without_gate, "gate_pairs": 128})
    )
