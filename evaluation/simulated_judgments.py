"""Simulated pairwise judgments with planted prompt and rater effects, to check interval coverage.

A bootstrap interval is only as honest as the resampling matches how the data were drawn. This
module draws studies the way Lovelace's are drawn — each prompt gets one comparison of two
versions, judged by several raters from a pool — with effects that make judgments of one prompt
(or one rater) alike, and knows the true value the leaderboard estimates, so a test can count how
often an interval covers it.

Model: version v has log-strength θ_v. On prompt p, version v's sample carries an effect
u_pv ~ N(0, σ_prompt²) (this prompt happens to suit it); rater r has a taste w_rv ~ N(0, σ_rater²).
Rater r on prompt p prefers A over B with probability σ(θ_A − θ_B + u_pA − u_pB + w_rA − w_rB).

Target: with effects, a Bradley–Terry fit does not estimate θ but the θ* whose BT probabilities
match the marginal win rates π_ij = E[σ(θ_i − θ_j + ε)], ε ~ N(0, 2σ_prompt² + 2σ_rater²)
(attenuated towards 0.5). Pairs are drawn uniformly, so θ* is the BT fit to the matrix π;
``target_ratings`` computes it by Gauss–Hermite quadrature and an exact Newton fit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from evaluation import bradley_terry
from evaluation.outcomes import Outcome

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

_QUADRATURE_NODES = 80  # Gauss–Hermite nodes: exact to ~1e-12 for these smooth integrands


@dataclass(frozen=True)
class ClusteredDesign:
    """How a simulated study is drawn (see the module docstring for the model).

    ``log_strengths``: θ per version; ``prompts``: prompts, one comparison each, its pair drawn
    uniformly (sides at random); ``raters_per_prompt`` distinct raters of a pool of ``rater_pool``;
    ``prompt_effect_sd`` / ``rater_effect_sd``: σ_prompt and σ_rater in log-odds units.
    """

    log_strengths: tuple[float, ...]
    prompts: int
    raters_per_prompt: int
    rater_pool: int
    prompt_effect_sd: float
    rater_effect_sd: float = 0.0


@dataclass(frozen=True)
class SimulatedJudgments:
    """One simulated study: per judgment the versions of A and B, the ``Outcome`` code, its prompt
    and its rater."""

    model_a: IntArray
    model_b: IntArray
    outcome: IntArray
    prompt: IntArray
    rater: IntArray


def simulate_judgments(design: ClusteredDesign, generator: np.random.Generator) -> SimulatedJudgments:
    """Draw one study of ``design``: prompts × raters_per_prompt judgments, A wins or B wins."""
    theta = np.asarray(design.log_strengths, dtype=np.float64)
    versions = theta.size
    prompts, per_prompt = design.prompts, design.raters_per_prompt
    if per_prompt > design.rater_pool:
        raise ValueError("raters_per_prompt cannot exceed rater_pool")
    # A uniform unordered pair per prompt, shown in a random order.
    a = generator.integers(0, versions, prompts)
    b = (a + generator.integers(1, versions, prompts)) % versions
    prompt_effect = generator.normal(0.0, design.prompt_effect_sd, size=(prompts, versions))
    rater_taste = generator.normal(0.0, design.rater_effect_sd, size=(design.rater_pool, versions))
    # Distinct raters per prompt: the first raters_per_prompt of a random permutation of the pool.
    raters = np.argsort(generator.random((prompts, design.rater_pool)), axis=1)[:, :per_prompt]
    rows = np.arange(prompts)[:, None]
    logit = (
        (theta[a] - theta[b])[:, None]
        + (prompt_effect[np.arange(prompts), a] - prompt_effect[np.arange(prompts), b])[:, None]
        + rater_taste[raters, a[rows]]
        - rater_taste[raters, b[rows]]
    )
    a_wins = generator.random((prompts, per_prompt)) < 1.0 / (1.0 + np.exp(-logit))
    outcome = np.where(a_wins, Outcome.A_WINS, Outcome.B_WINS).astype(np.int64)
    return SimulatedJudgments(
        model_a=np.repeat(a, per_prompt).astype(np.int64),
        model_b=np.repeat(b, per_prompt).astype(np.int64),
        outcome=outcome.reshape(-1),
        prompt=np.repeat(np.arange(prompts), per_prompt).astype(np.int64),
        rater=raters.reshape(-1).astype(np.int64),
    )


def target_ratings(design: ClusteredDesign) -> FloatArray:
    """The ratings (mean-anchored Elo scale) that the leaderboard's fit estimates under ``design``.

    Marginal win probabilities π_ij = E[σ(θ_i − θ_j + ε)], ε ~ N(0, 2σ_prompt² + 2σ_rater²), by
    Gauss–Hermite quadrature; then the Bradley–Terry fit to π (scaled up so that the fit's tiny
    prior is negligible: ~1e-9 rating points).
    """
    theta = np.asarray(design.log_strengths, dtype=np.float64)
    spread = np.sqrt(2.0 * design.prompt_effect_sd**2 + 2.0 * design.rater_effect_sd**2)
    nodes, weights = np.polynomial.hermite_e.hermegauss(_QUADRATURE_NODES)
    weights = weights / weights.sum()  # probabilists' Hermite: weights of N(0, 1)
    difference = theta[:, None] - theta[None, :]
    wins = (weights / (1.0 + np.exp(-(difference[..., None] + spread * nodes)))).sum(axis=-1)
    np.fill_diagonal(wins, 0.0)
    fit = bradley_terry.fit_bradley_terry(wins * 1e9)
    return fit.ratings
