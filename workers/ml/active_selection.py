"""Which pairs to show raters next: the ones the reward-model ensemble disagrees on most.

Christiano et al. (2017) sample many candidate pairs (10× more than needed), predict for each the
probability that one side is preferred with every ensemble member, and query the pairs where the
members' predictions vary most. Random selection is the baseline active selection must beat.
Pure numpy: the scores come from ``reward_model.score_texts(...).member_scores``.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray


def preference_probabilities(member_scores: ArrayLike, candidate_pairs: ArrayLike) -> NDArray[np.float64]:
    """P(a preferred over b) = σ(r_a − r_b) for every member and candidate pair: [K, P].

    ``member_scores`` is [K, samples] (each member's normalised reward of each sample);
    ``candidate_pairs`` is [P, 2], each row (a, b) indexing the samples.
    """
    scores = np.asarray(member_scores, dtype=np.float64)
    pairs = np.asarray(candidate_pairs, dtype=np.int64).reshape(-1, 2)
    if scores.ndim != 2:
        raise ValueError("member_scores must be [members, samples]")
    difference = scores[:, pairs[:, 0]] - scores[:, pairs[:, 1]]
    # σ(x) written with tanh: no overflow warning for large |x|.
    return 0.5 * (1.0 + np.tanh(0.5 * difference))


def pair_disagreement(member_scores: ArrayLike, candidate_pairs: ArrayLike) -> NDArray[np.float64]:
    """Variance across members of P(a preferred over b), per candidate pair: [P].

    0 when all members agree (also for a single member); at most 0.25 (half the members sure of a,
    half sure of b). Empty candidates give an empty array.
    """
    return preference_probabilities(member_scores, candidate_pairs).var(axis=0)


def select_most_uncertain(
    member_scores: ArrayLike, candidate_pairs: ArrayLike, count: int
) -> NDArray[np.int64]:
    """Indices into ``candidate_pairs`` of the ``count`` pairs with the highest disagreement.

    Ordered from most to least uncertain; equal disagreement keeps the candidates' order, so the
    choice is deterministic. Returns all indices when ``count`` exceeds the number of candidates.
    """
    if count < 0:
        raise ValueError("count must be non-negative")
    disagreement = pair_disagreement(member_scores, candidate_pairs)
    order = np.argsort(-disagreement, kind="stable")
    return order[:count].astype(np.int64)


def select_random(candidate_count: int, count: int, seed: int) -> NDArray[np.int64]:
    """``count`` distinct candidate indices drawn uniformly with ``seed``: the baseline selection.

    Returns a permutation of all indices when ``count`` exceeds ``candidate_count``.
    """
    if count < 0 or candidate_count < 0:
        raise ValueError("counts must be non-negative")
    generator = np.random.default_rng(seed)
    return generator.permutation(candidate_count)[:count].astype(np.int64)
