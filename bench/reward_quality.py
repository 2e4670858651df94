"""How well each kind of reward model learns a preference from a loop's worth of votes, measured
against the preference itself rather than against a few held-out votes.

Run: ``.venv/bin/python -m bench.reward_quality`` (needs the demo model: ``make demo`` builds it
under var/models/lovelace-tiny, or ``--model PATH``). Options: ``--oracles`` (garden,
short_clauses, diversity, composite), ``--labels`` (96,192,288), ``--seeds`` (3), ``--kinds``
(heads,lora). Prints figures; asserts nothing; no database, nothing downloaded.

The data is ``bench.loop``'s: its 28 story openings, the demo's two decodings (careful, bold), 6
samples of each per opening. A seed splits the openings 16 / 12 as the loop does. Votes: random
cross-decoding pairs of the 16 training openings, judged by the oracle with 10 % random answers
(``server.ratings.simulated_raters.rate``'s rule); ties are counted as labels spent and then dropped,
as the snapshot drops them. The score: agreement of the ensemble's mean reward with the oracle on
every pair of samples of the 12 other openings that the oracle does not tie (~800 pairs, their
interval Wilson's), so the figure is the reward model's, not the luck of a 20-vote validation split.

Kinds (``workers.ml.reward_model``), ``bench.loop.REWARD_MODELS``'s, so the loop's ``--reward-model``
runs what is measured here:
- ``heads``: ``embedding_heads``, 3 linear heads over frozen MiniLM features (the loop's default);
- ``lora``: ``sequence_classification`` on the policy's own base (the demo model) with LoRA on every
  linear layer, 3 members, trained by TRL's ``RewardTrainer``.

Measured 2026-12-01 (3 seeds; the labels include the ties, dropped from training; the machine also
ran four ``bench.loop`` runs, so times are loose): agreement, mean ± se over seeds.

    oracle         kind    96 labels      192 labels     288 labels
    garden         heads   0.655 ± 0.017  0.667 ± 0.057  0.747 ± 0.035
                   lora    0.508 ± 0.068  0.538 ± 0.033  0.630 ± 0.036
    short_clauses  heads   0.570 ± 0.030  0.576 ± 0.026  0.576 ± 0.018
                   lora    0.610 ± 0.032  0.723 ± 0.022  0.752 ± 0.011
    diversity      heads   0.588 ± 0.041  0.605 ± 0.011  0.604 ± 0.014
                   lora    0.582 ± 0.021  0.639 ± 0.028  0.684 ± 0.020
    composite      heads   0.621 ± 0.037  0.622 ± 0.015  0.633 ± 0.010
                   lora    0.599 ± 0.024  0.610 ± 0.023  0.652 ± 0.015

The heads learn what a sentence encoder sees, the topic (garden), and stall on style: on short
clauses and repetition they stay near 0.6 however many votes come. The policy's own base with
LoRA keeps learning with more votes (short clauses 0.61 → 0.75, diversity 0.58 → 0.68) and trails
on the topic, which the tiny base's features hold less of than MiniLM's. Neither is good at 96
labels. Training time per reward model (3 members): heads 8-10 s, LoRA 27-45 s (under load).
So the choice depends on the preference; ``bench.loop --reward-model lora`` runs the loop with the
second.
"""

from __future__ import annotations

import argparse
import math
import random
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEMO_MODEL = ROOT / "var" / "models" / "lovelace-tiny"
SAMPLES_PER_DECODING = 6
NOISE = 0.1


@dataclass(frozen=True)
class Text:
    prompt: str
    text: str
    decoding: str


def generate(model: Path) -> list[Text]:
    from bench.loop import BASE_VERSIONS, PROMPTS
    from workers.ml.sampling import SampleRequest, SamplingConfig, generate_samples

    texts: list[Text] = []
    for number, (decoding, settings) in enumerate(BASE_VERSIONS.items()):
        config = SamplingConfig(
            temperature=settings["temperature"],
            top_p=settings["top_p"],
            max_new_tokens=settings["max_new_tokens"],
            stop=tuple(settings["stop"]),
            end_at_sentence=settings["end_at_sentence"],
            device="cpu",
        )
        requests = [
            SampleRequest(prompt=prompt, seed=10_000 * number + 100 * p + s)
            for p, prompt in enumerate(PROMPTS)
            for s in range(SAMPLES_PER_DECODING)
        ]
        result = generate_samples(model, requests, config=config)
        texts += [Text(sample.prompt, sample.text, decoding) for sample in result.samples]
    return texts


def votes(texts: list[Text], prompts: list[str], oracle, count: int, rng: random.Random):  # type: ignore[no-untyped-def]
    """``count`` labels on random cross-decoding pairs of ``prompts``; the non-tie ones as pairs."""
    from workers.ml.preference_data import PreferencePair

    candidates = [
        (a, b)
        for prompt in prompts
        for a in texts
        if a.prompt == prompt and a.decoding == "careful"
        for b in texts
        if b.prompt == prompt and b.decoding == "bold"
    ]
    pairs = []
    for a, b in rng.sample(candidates, count):
        score_a, score_b = oracle(a.prompt, a.text), oracle(b.prompt, b.text)
        preferred = a if score_a > score_b else b if score_b > score_a else None
        if rng.random() < NOISE:
            preferred = rng.choice([a, b])
        if preferred is None:
            continue  # a tie: a label spent, no pair
        other = b if preferred is a else a
        pairs.append(PreferencePair(prompt=a.prompt, chosen=preferred.text, rejected=other.text))
    return pairs


def agreement(model_dir: Path, texts: list[Text], prompts: list[str], oracle) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    """(agreeing, compared): pairs of ``prompts``' samples the oracle does not tie."""
    from workers.ml.reward_model import load_reward_ensemble, score_texts

    held_out = [text for text in texts if text.prompt in prompts]
    ensemble = load_reward_ensemble(model_dir)
    scores = score_texts(ensemble, [t.text for t in held_out], prompts=[t.prompt for t in held_out]).mean
    truth = [oracle(t.prompt, t.text) for t in held_out]
    agreeing = compared = 0
    for i in range(len(held_out)):
        for j in range(i + 1, len(held_out)):
            if held_out[i].prompt != held_out[j].prompt or truth[i] == truth[j]:
                continue
            compared += 1
            agreeing += (truth[i] > truth[j]) == (float(scores[i]) > float(scores[j]))
    return agreeing, compared


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=DEMO_MODEL)
    parser.add_argument("--oracles", default="garden,short_clauses,diversity,composite")
    parser.add_argument("--labels", default="96,192,288")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--kinds", default="heads,lora")
    arguments = parser.parse_args()
    from bench.loop import LOOP_PROMPTS, PROMPTS, REWARD_MODELS
    from server.ratings.simulated_raters import load_oracle
    from workers.ml.reward_model import RewardModelConfig, train_reward_model

    if not (arguments.model / "config.json").exists():
        parser.error(f"{arguments.model} holds no model: run `make demo` once, or pass --model")
    kinds = arguments.kinds.split(",")
    if unknown := [kind for kind in kinds if kind not in REWARD_MODELS]:
        parser.error(f"unknown kinds {unknown}: {', '.join(REWARD_MODELS)}")
    oracles = {name: load_oracle(name) for name in arguments.oracles.split(",")}
    label_counts = [int(n) for n in arguments.labels.split(",")]
    # bench.loop's --reward-model settings; lora's backbone is the model whose samples are judged.
    settings = {
        kind: {**REWARD_MODELS[kind], **({"backbone_path": str(arguments.model)} if kind == "lora" else {})}
        for kind in kinds
    }
    started = time.perf_counter()
    texts = generate(arguments.model)
    print(f"{len(texts)} samples generated in {time.perf_counter() - started:.0f} s", flush=True)
    results: dict[tuple[str, str, int], list[float]] = {}
    for seed in range(arguments.seeds):
        prompts = list(PROMPTS)
        random.Random(seed).shuffle(prompts)  # bench.loop's split of the same seed
        train_prompts, test_prompts = prompts[:LOOP_PROMPTS], prompts[LOOP_PROMPTS:]
        reference = [t for t in texts if t.prompt in train_prompts]
        for oracle_name, oracle in oracles.items():
            for count in label_counts:
                pairs = votes(texts, train_prompts, oracle, count, random.Random(seed * 1000 + count))
                for kind in kinds:
                    config = RewardModelConfig(**{**settings[kind], "seed": seed})  # type: ignore[arg-type]
                    with tempfile.TemporaryDirectory() as scratch:
                        tick = time.perf_counter()
                        train_reward_model(
                            pairs,
                            [],
                            [t.text for t in reference],
                            config,
                            Path(scratch) / "model",
                            Path(scratch) / "checkpoints",
                            reference_prompts=[t.prompt for t in reference],
                        )
                        seconds = time.perf_counter() - tick
                        agreeing, compared = agreement(Path(scratch) / "model", texts, test_prompts, oracle)
                    share = agreeing / compared
                    results.setdefault((oracle_name, kind, count), []).append(share)
                    print(
                        f"  seed {seed} {oracle_name} {kind} {count} labels ({len(pairs)} pairs): "
                        f"agreement {share:.3f} on {compared} pairs, trained in {seconds:.1f} s",
                        flush=True,
                    )
    print("\nagreement with the oracle on held-out openings, mean ± se over seeds")
    for (oracle_name, kind, count), shares in sorted(results.items()):
        mean = sum(shares) / len(shares)
        se = (
            math.sqrt(sum((s - mean) ** 2 for s in shares) / (len(shares) - 1) / len(shares))
            if len(shares) > 1
            else float("nan")
        )
        print(f"{oracle_name:14} {kind:6} {count:4} labels  {mean:.3f} ± {se:.3f}")


if __name__ == "__main__":
    main()
