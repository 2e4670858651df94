"""Value: how good the samples of a version are, by people's votes and by the reward model.

The Bradley–Terry rating (``evaluation.bradley_terry``) ranks every version at once; the win rate
against a named version answers the question a training run asks ("is the child better than its
parent?") directly; the reward-model score is normalised on a reference set so that its scale
means the same thing across reward models.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from evaluation.bootstrap import bootstrap_mean
from evaluation.outcomes import BothBadPolicy, Outcome

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class WinRate:
    """Win rate of a version against an opponent (ties count half) with its bootstrap interval."""

    win_rate: float
    lower: float
    upper: float
    wins: int
    ties: int
    losses: int


def win_rate_against(
    model_a: npt.ArrayLike,
    model_b: npt.ArrayLike,
    outcome: npt.ArrayLike,
    *,
    version: int,
    opponent: int,
    prompt_ids: npt.ArrayLike | None = None,
    both_bad: BothBadPolicy = "tie",
    rounds: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> WinRate:
    """Share of the battles between ``version`` and ``opponent`` that ``version`` won.

    What: every judgment with these two versions on either side scores 1 (version won), 1/2 (tie,
    and both-bad unless ``both_bad`` = "exclude") or 0; the win rate is the mean score. The
    interval is ``bootstrap_mean`` over prompts when ``prompt_ids`` (one per judgment) is given,
    pooling battles (a battle-weighted mean), and over battles otherwise.
    Why: the direct answer to "did training improve on the parent", free of the other versions.
    Degenerate input: no battles between the two gives NaN rate and bounds and zero counts;
    ``version`` == ``opponent`` has no battles.
    """
    a = np.asarray(model_a, dtype=np.int64).reshape(-1)
    b = np.asarray(model_b, dtype=np.int64).reshape(-1)
    result = np.asarray(outcome, dtype=np.int64).reshape(-1)
    version_is_a = (a == version) & (b == opponent)
    version_is_b = (b == version) & (a == opponent)
    battle = (version_is_a | version_is_b) & (version != opponent)
    if both_bad == "exclude":
        battle &= result != Outcome.BOTH_BAD
    won = (version_is_a & (result == Outcome.A_WINS)) | (version_is_b & (result == Outcome.B_WINS))
    tied = (result == Outcome.TIE) | (result == Outcome.BOTH_BAD)
    score = np.where(won, 1.0, np.where(tied, 0.5, 0.0))[battle]
    groups = None if prompt_ids is None else np.asarray(prompt_ids).reshape(-1)[battle]
    interval = bootstrap_mean(
        score, groups=groups, weight_by="sample", rounds=rounds, confidence=confidence, seed=seed
    )
    return WinRate(
        win_rate=interval.mean,
        lower=interval.lower,
        upper=interval.upper,
        wins=int((won & battle).sum()),
        ties=int((tied & battle).sum()),
        losses=int(battle.sum() - (won & battle).sum() - (tied & battle).sum()),
    )


def normalised_reward(scores: npt.ArrayLike, reference_scores: npt.ArrayLike) -> FloatArray:
    """Reward-model scores as z-scores on a reference set: (score − mean_ref) / std_ref.

    What: the reference set is typically the reference policy's samples (Ziegler et al. 2019
    normalise the reward to mean 0, std 1 there), so 1.0 means "one reference standard deviation
    better than the reference policy". Population std (ddof = 0); NaN reference scores ignored.
    Degenerate input: an empty reference set, or one with zero spread (one score, or identical
    scores), gives NaN for every score; no scores gives an empty array.
    """
    values = np.asarray(scores, dtype=np.float64)
    reference = np.asarray(reference_scores, dtype=np.float64).reshape(-1)
    reference = reference[~np.isnan(reference)]
    spread = float(reference.std()) if reference.size else 0.0
    if spread == 0.0 or not math.isfinite(spread):
        return np.full(values.shape, math.nan)
    return np.asarray((values - reference.mean()) / spread, dtype=np.float64)
