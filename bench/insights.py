"""What the dashboard's insight statistics cost, and what fewer bootstrap rounds change: prints its
figures.

    .venv/bin/python -m bench.insights

1. Length-controlled leaderboard (``bootstrap_bradley_terry_with_covariate``, prompt clusters):
   200 rounds at 10,000 and 100,000 judgments over 20 versions, against the per-round loop it
   replaces (one exact ``fit_bradley_terry_with_covariate`` per round on the resampled judgments,
   timed on 10 rounds and extrapolated; it says so), each the best of three runs; and how far its
   95 % bounds move between 200 rounds (what a recompute stores) and 1,000 rounds.
2. Krippendorff's α with a bootstrap over comparisons (``bootstrap_krippendorff_alpha``) at
   10,000 comparisons × 3 raters: 500 rounds (what the dashboard computes per page view), and the
   bounds' distance from 10,000 rounds'.

BLAS is single-threaded (see bench/leaderboard.py). Takes about two minutes on 2 cores.
"""

from __future__ import annotations

import os

for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_variable] = "1"  # before numpy loads its BLAS

import math  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from evaluation import bradley_terry  # noqa: E402
from evaluation.agreement import bootstrap_krippendorff_alpha  # noqa: E402
from evaluation.bootstrap import cluster_multiplicities  # noqa: E402

VERSIONS = 20


def length_study(judgments: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Random pairs on prompts of 4 judgments each, outcomes from planted strengths plus a length
    effect (γ = 1.5), 10 % ties."""
    rng = np.random.default_rng(seed)
    prompts = np.arange(judgments) // 4
    a = rng.integers(0, VERSIONS, judgments)
    b = (a + rng.integers(1, VERSIONS, judgments)) % VERSIONS
    theta = rng.normal(0.0, 0.8, VERSIONS)
    x = rng.uniform(-0.6, 0.6, judgments)
    p_a = 1.0 / (1.0 + np.exp(-(theta[a] - theta[b] + 1.5 * x)))
    u = rng.random(judgments)
    outcome = np.where(u < 0.1, 2, np.where(rng.random(judgments) < p_a, 0, 1))
    return {"a": a, "b": b, "outcome": outcome, "x": x, "prompts": prompts}


def loop_baseline(study: dict[str, np.ndarray], rounds: int) -> float:
    """Seconds for ``rounds`` exact refits, each on its resampled judgments (whole prompts)."""
    generator = np.random.default_rng(1)
    n_prompts = int(study["prompts"].max()) + 1
    start = time.perf_counter()
    for _ in range(rounds):
        weights = cluster_multiplicities(n_prompts, rounds=1, generator=generator)[:, 0][study["prompts"]]
        repeat = weights.astype(np.int64)
        bradley_terry.fit_bradley_terry_with_covariate(
            np.repeat(study["a"], repeat),
            np.repeat(study["b"], repeat),
            np.repeat(study["outcome"], repeat),
            np.repeat(study["x"], repeat),
            n_versions=VERSIONS,
        )
    return time.perf_counter() - start


def main() -> None:
    print("1. Length-controlled leaderboard, prompt clusters, 20 versions")
    for judgments in (10_000, 100_000):
        study = length_study(judgments)
        args = (study["a"], study["b"], study["outcome"], study["x"], study["prompts"])
        # Best of three: the machine is shared, and a slow run says more about the neighbours.
        batched = math.inf
        for _ in range(3):
            start = time.perf_counter()
            board = bradley_terry.bootstrap_bradley_terry_with_covariate(
                *args, n_versions=VERSIONS, rounds=200
            )
            batched = min(batched, time.perf_counter() - start)
        per_round = min(loop_baseline(study, 10) for _ in range(3)) / 10
        print(
            f"   {judgments:>7,} judgments: 200 rounds batched {batched:6.2f} s; "
            f"per-round loop {per_round * 200:6.2f} s (10 rounds timed, ×20) → "
            f"{per_round * 200 / batched:4.1f}x"
        )
        if judgments == 10_000:
            more = bradley_terry.bootstrap_bradley_terry_with_covariate(
                *args, n_versions=VERSIONS, rounds=1000
            )
            shift = np.maximum(np.abs(more.lower - board.lower), np.abs(more.upper - board.upper))
            width = float(np.mean(more.upper - more.lower))
            print(
                f"   bounds at 200 vs 1,000 rounds: largest move {shift.max():.1f} rating points, "
                f"median {np.median(shift):.1f}; mean interval width {width:.1f}"
            )

    print("2. Krippendorff's α, 10,000 comparisons × 3 raters, bootstrap over comparisons")
    rng = np.random.default_rng(2)
    truth = rng.integers(0, 3, 10_000)
    data = np.where(rng.random((3, 10_000)) < 0.4, rng.integers(0, 3, (3, 10_000)), truth).astype(float)
    start = time.perf_counter()
    page = bootstrap_krippendorff_alpha(data, level="ordinal", rounds=500)
    elapsed = time.perf_counter() - start
    reference = bootstrap_krippendorff_alpha(data, level="ordinal", rounds=10_000, seed=1)
    print(
        f"   500 rounds {elapsed * 1000:.0f} ms; α {page.alpha:.4f} [{page.lower:.4f}, {page.upper:.4f}]; "
        f"10,000 rounds [{reference.lower:.4f}, {reference.upper:.4f}]"
    )


if __name__ == "__main__":
    main()
