"""The loop, measured: simulated raters → snapshot → reward model → DPO child → its samples → …

Run: ``.venv/bin/python -m bench.loop [--rounds 3]`` (needs the PostgreSQL of this machine; takes
several minutes on 2 CPU cores). Not part of the test run.

Simulated raters judge over the real HTTP API (gunicorn) with the ``theme`` oracle (they prefer
texts about the sea and the night sky) and 10 % random answers. Nothing in training sees the
oracle: only the votes carry it. Each round: select pairs (random, or active from the reward
ensemble) with the same label budget → raters vote → snapshot → reward model → leaderboard →
DPO from the best-rated version → the child generates on every prompt. The score of a version is
the oracle's mean over its samples on the holdout prompts, which no training step uses.
Printed per strategy and round: each version's oracle score and the labels used so far.
Target: the best oracle score rises over 3 rounds, and active selection reaches random's final
score with at most 70 % of random's labels.
"""

from __future__ import annotations

import argparse
import os
import random
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATABASE = "lovelace_bench_loop"
os.environ["DATABASE_URL"] = f"postgres://postgres@127.0.0.1:5432/{DATABASE}"
os.environ.setdefault("LOVELACE_VAR_DIR", str(ROOT / "var" / "bench-loop"))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "server.config.settings")
os.environ.setdefault("DJANGO_DEBUG", "true")  # development mode on PostgreSQL (off by default there)
os.environ.setdefault("HF_HUB_OFFLINE", "1")

TRAIN_PROMPTS = [
    "The garden in the morning",
    "A letter to a friend",
    "The clock on the wall",
    "Bread in the oven",
    "A train at dawn",
    "The library in winter",
    "A cat on the stairs",
    "The kitchen window",
    "The loom and the thread",
    "A walk in the city",
    "The old bridge",
    "A song for the baker",
    "The market at noon",
    "A key in the pocket",
    "The first frost",
    "A quiet room",
]
HOLDOUT_PROMPTS = [
    "The long road home",
    "A door left open",
    "Numbers on a page",
    "An evening in autumn",
    "The bell at noon",
    "A map of the town",
]
SAMPLES_PER_PROMPT = 4
PAIRS_PER_PROMPT = 3
RATERS = 3


def _create_database() -> None:
    import psycopg

    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as connection:
        connection.execute(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")
        connection.execute(f"CREATE DATABASE {DATABASE}")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _base_model(var: Path) -> Path:
    from workers.ml.base_model import build_base_model

    demo = var.parent / "models" / "lovelace-tiny"
    if (demo / "config.json").exists():
        return demo
    target = var / "models" / "base"
    if not (target / "config.json").exists():
        corpus = (ROOT / "workers" / "ml" / "corpus" / "lovelace.txt").read_text(encoding="utf-8")
        started = time.perf_counter()
        build_base_model(corpus=corpus, output_dir=target, checkpoint_dir=var / "checkpoints" / "base")
        print(f"built the base model in {time.perf_counter() - started:.0f} s")
    return target


def _run(job) -> None:  # type: ignore[no-untyped-def]
    from server.generators.jobs import generate_run
    from server.jobs.models import Job
    from server.ratings.pair_selection import pair_selection_run
    from server.training.jobs import policy_train_run, reward_model_train_run, snapshot_run
    from workers.runner import run_job

    handlers = {
        "generate": generate_run,
        "select_pairs": pair_selection_run,
        "snapshot": snapshot_run,
        "train_reward_model": reward_model_train_run,
        "train_policy": policy_train_run,
    }
    status = run_job(job.id, handlers[job.kind])
    if status != "succeeded":
        raise RuntimeError(f"{job.kind} job {job.id} {status}: {Job.objects.get(id=job.id).error}")


def _oracle_scores(study) -> dict[str, float]:  # type: ignore[no-untyped-def]
    import numpy as np

    from server.generators.models import Sample
    from server.ratings.simulated_raters import theme_oracle

    scores: dict[str, list[float]] = {}
    for sample in Sample.objects.filter(prompt__study=study, prompt__split="holdout").select_related(
        "version", "prompt"
    ):
        scores.setdefault(sample.version.label, []).append(theme_oracle(sample.prompt.text, sample.text))
    return {label: float(np.mean(values)) for label, values in scores.items()}


def run_strategy(
    strategy: str, rounds: int, model_dir: Path, base_url: str
) -> list[tuple[int, dict[str, float]]]:
    from django.contrib.auth import get_user_model
    from rest_framework.authtoken.models import Token

    from server.evaluations.leaderboard import leaderboard_compute
    from server.generators.models import VersionKind
    from server.generators.services import generate_start, generator_version_register
    from server.ratings.models import Judgment, Rater
    from server.ratings.pair_selection import pair_selection_start
    from server.ratings.simulated_raters import ApiClient, rate, theme_oracle
    from server.studies.models import PromptSplit
    from server.studies.services import PromptInput, prompt_bulk_create, study_create
    from server.training.services import policy_train_start, reward_model_train_start, snapshot_start

    study = study_create(
        name=f"Loop bench ({strategy})",
        slug=f"loop-{strategy}",
        question="Which is better?",
        overlap=1,
        gold_rate=0.0,
        repeat_rate=0.0,
        fast_judgment_seconds=0.5,
        pair_selection=strategy,
    )
    prompt_bulk_create(
        study=study,
        prompts=[PromptInput(t) for t in TRAIN_PROMPTS]
        + [PromptInput(t, split=PromptSplit.HOLDOUT) for t in HOLDOUT_PROMPTS],
    )
    versions = [
        generator_version_register(
            generator_name=f"bench-{strategy}",
            label=label,
            kind=VersionKind.BASE,
            model_path=str(model_dir),
            study=study,
            decoding={"temperature": temperature, "max_new_tokens": 32, "stop": ["\n\n"]},
        )
        for label, temperature in (("base-warm", 0.8), ("base-hot", 1.1))
    ]
    _run(
        generate_start(
            study=study,
            version_ids=[v.id for v in versions],
            split="all",
            samples_per_prompt=SAMPLES_PER_PROMPT,
        )
    )
    clients = []
    for number in range(RATERS):
        user, _ = get_user_model().objects.get_or_create(username=f"{strategy}-rater-{number}")
        Rater.objects.get_or_create(study=study, user=user)
        clients.append(ApiClient(base_url, Token.objects.get_or_create(user=user)[0].key))
    history = [(0, _oracle_scores(study))]
    for round_number in range(1, rounds + 1):
        _run(pair_selection_start(study=study, pairs_per_prompt=PAIRS_PER_PROMPT, seed=round_number))
        pending = study.comparisons.filter(completed_assignments=0).count()
        for index, client in enumerate(clients):
            share = pending // RATERS + (1 if index < pending % RATERS else 0)
            stats = rate(
                client=client,
                study_slug=study.slug,
                oracle=theme_oracle,
                votes=share,
                noise=0.1,
                rng=random.Random(round_number * 100 + index),
            )
            if stats.errors:
                raise RuntimeError(f"simulated rater {index}: {'; '.join(stats.errors)}")
        snapshot_job = snapshot_start(study=study)
        _run(snapshot_job)
        snapshot_job.refresh_from_db()
        reward_job = reward_model_train_start(study=study, snapshot_id=snapshot_job.result["snapshot_id"])
        _run(reward_job)
        leaderboard_compute(study=study, rounds=200)
        policy_job = policy_train_start(
            study=study,
            parent_version_id=None,
            method="dpo",
            config={"learning_rate": 5e-4, "epochs": 2, "beta": 0.1},
        )
        _run(policy_job)
        policy_job.refresh_from_db()
        from server.generators.models import GeneratorVersion

        child = GeneratorVersion.objects.get(id=policy_job.result["child_version_id"])
        _run(
            generate_start(
                study=study, version_ids=[child.id], split="all", samples_per_prompt=SAMPLES_PER_PROMPT
            )
        )
        labels = Judgment.objects.filter(assignment__comparison__study=study).count()
        history.append((labels, _oracle_scores(study)))
        reward_job.refresh_from_db()
        print(
            f"  [{strategy}] round {round_number}: {labels} labels, reward model validation accuracy "
            f"{reward_job.result['validation_accuracy']}, child {child.label} from {child.parent.label}",
            flush=True,
        )
    return history


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--strategies", default="random,active", help="comma-separated")
    arguments = parser.parse_args()
    strategies = arguments.strategies.split(",")
    _create_database()
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    var = Path(os.environ["LOVELACE_VAR_DIR"])
    model_dir = _base_model(var)
    port = _free_port()
    server = subprocess.Popen(
        [
            str(Path(sys.executable).with_name("gunicorn")),
            "server.config.wsgi:application",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            "2",
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
        env=os.environ.copy(),
    )
    try:
        time.sleep(3)
        results = {
            strategy: run_strategy(strategy, arguments.rounds, model_dir, f"http://127.0.0.1:{port}")
            for strategy in strategies
        }
    finally:
        server.terminate()
        server.wait(timeout=20)

    print("\nOracle score (share of theme words) of each version on holdout prompts, and labels used:")
    best: dict[str, list[tuple[int, float]]] = {}
    for strategy, history in results.items():
        print(f"\n{strategy} selection")
        for round_number, (labels, scores) in enumerate(history):
            ranked = ", ".join(f"{label} {score:.4f}" for label, score in sorted(scores.items()))
            top = max(scores.values())
            best.setdefault(strategy, []).append((labels, top))
            print(f"  round {round_number}: labels {labels:4d}  best {top:.4f}  | {ranked}")
    if not {"random", "active"} <= set(best):
        return
    random_final_labels, random_final = best["random"][-1]
    rises = all(b[1] >= a[1] for a, b in zip(best["random"], best["random"][1:], strict=False))
    print(
        f"\nrandom: best score {best['random'][0][1]:.4f} → {random_final:.4f} over {arguments.rounds} rounds"
        f" ({'rises every round' if rises else 'does not rise every round'})"
    )
    reached = next(((labels, score) for labels, score in best["active"][1:] if score >= random_final), None)
    if reached is None:
        print(
            f"active: never reached random's final score {random_final:.4f} "
            f"(its best: {max(s for _, s in best['active']):.4f})"
        )
    else:
        share = reached[0] / max(random_final_labels, 1)
        print(
            f"active: reached {reached[1]:.4f} ≥ {random_final:.4f} with {reached[0]} labels = "
            f"{share:.0%} of random's {random_final_labels} (target ≤ 70 %)"
        )


if __name__ == "__main__":
    main()
