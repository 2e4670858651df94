"""Which pairs to show raters next, from the reward-model ensemble's scores of the candidates.

Uncertainty (Christiano et al. 2017): sample many candidate pairs (10× more than needed), predict
for each the probability that one side is preferred with every ensemble member, and query the
pairs where the members' predictions vary most. Double Thompson sampling (Dwaracherla et al. 2024):
pairs of samples that randomly drawn members score best. Margin (after Muldrew et al. 2024's
preference certainty): the pairs whose winner the ensemble is surest of. Random selection is the
baseline all must beat.
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


def select_double_thompson(
    member_scores: ArrayLike, candidate_pairs: ArrayLike, groups: ArrayLike, per_group: int, seed: int
) -> NDArray[np.int64]:
    """Double Thompson sampling (Dwaracherla et al. 2024, "Efficient exploration for LLMs"),
    adapted to a fixed set of candidate pairs: for each pair to ask, draw one ensemble member and
    take the sample it scores highest, draw another member and take, among that sample's remaining
    candidate partners (other versions, pairs not asked yet), the one it scores highest.

    The first side is a sample some plausible reward model thinks best and the second its best
    rival under another, so raters compare near the top, where the next child will be, while the
    members' spread keeps exploring: a sample that only one member favours is drawn as often as
    that member.
    Uncertainty sampling (``select_most_uncertain``) asks instead where members disagree, which
    can be anywhere in the ranking. In the paper (a reward model fitted to simulated preferences,
    responses chosen by it) double Thompson sampling reached a given performance with far fewer
    queries than random pairs or uncertainty sampling ("infomax").

    ``member_scores`` is [K, samples]; ``candidate_pairs`` [P, 2] indexes samples; ``groups`` [P]
    names each candidate's group (a prompt): at most ``per_group`` pairs are taken from a group,
    each candidate at most once. Returns indices into ``candidate_pairs``, group by group in order
    of first appearance. Deterministic for a ``seed``.
    """
    scores = np.asarray(member_scores, dtype=np.float64)
    pairs = np.asarray(candidate_pairs, dtype=np.int64).reshape(-1, 2)
    labels = np.asarray(groups).reshape(-1)
    if scores.ndim != 2 or scores.shape[0] < 1:
        raise ValueError("member_scores must be [members, samples] with at least one member")
    if len(labels) != len(pairs):
        raise ValueError(f"one group per candidate pair (got {len(labels)} for {len(pairs)})")
    if per_group < 0:
        raise ValueError("per_group must be non-negative")
    generator = np.random.default_rng(seed)
    chosen: list[int] = []
    order = list(dict.fromkeys(labels.tolist()))
    for group in order:
        remaining = set(np.flatnonzero(labels == group).tolist())
        for _ in range(per_group):
            if not remaining:
                break
            # Two different members when there are two: the paper redraws the second until it
            # differs; with one member both draws are it.
            count = scores.shape[0]
            first_member = int(generator.integers(count))
            second_member = (
                (first_member + 1 + int(generator.integers(count - 1))) % count if count > 1 else 0
            )
            members = scores[[first_member, second_member]]
            indices = np.array(sorted(remaining), dtype=np.int64)
            sides = pairs[indices]
            # The first side: the best sample under the first draw, among samples in a candidate.
            first = max(np.unique(sides), key=lambda sample: (members[0, sample], -sample))
            # The second: the best partner of the first under the second draw.
            partners = [
                (members[1, b if a == first else a], -index)
                for index, (a, b) in zip(indices.tolist(), sides.tolist(), strict=True)
                if first in (a, b)
            ]
            best = -max(partners)[1]
            chosen.append(best)
            remaining.discard(best)
    return np.array(chosen, dtype=np.int64)


def preference_margin(member_scores: ArrayLike, candidate_pairs: ArrayLike) -> NDArray[np.float64]:
    """|P̄(a preferred over b) − ½| per candidate pair, P̄ the members' mean: [P], in [0, ½)."""
    return np.abs(preference_probabilities(member_scores, candidate_pairs).mean(axis=0) - 0.5)


def select_widest_margin(
    member_scores: ArrayLike,
    candidate_pairs: ArrayLike,
    groups: ArrayLike,
    per_group: int,
    uses_per_sample: int = 2,
) -> NDArray[np.int64]:
    """Indices into ``candidate_pairs`` of the pairs with the widest predicted margin
    (``preference_margin``): at most ``per_group`` per group (a prompt) and each sample in at most
    ``uses_per_sample`` of the chosen pairs.

    Uncertainty sampling asks where the reward model is unsure, which improves the reward model
    but asks raters about near-equal samples: votes that are ties (dropped from policy training)
    or coin flips. A policy trained on the votes themselves (DPO) learns most from pairs with a
    clear winner; Muldrew et al. 2024 ("Active preference learning for large language models")
    reported that choosing the pairs whose preference the model is most certain of made DPO more
    label-efficient than random pairs. The raters still decide the winner: a confident but wrong
    reward model yields a pair that corrects it. The cap per sample spreads the labels over the
    prompt's samples rather than pitting one extreme sample against all others. On bench.loop's
    tiny model and oracles no gain over random showed (its docstring has the figures).

    ``member_scores`` is [K, samples]; ``candidate_pairs`` [P, 2] indexes samples; ``groups`` [P].
    Returns indices from widest to narrowest margin; equal margins keep the candidates' order, so
    the choice is deterministic.
    """
    pairs = np.asarray(candidate_pairs, dtype=np.int64).reshape(-1, 2)
    labels = np.asarray(groups).reshape(-1)
    if len(labels) != len(pairs):
        raise ValueError(f"one group per candidate pair (got {len(labels)} for {len(pairs)})")
    if per_group < 0 or uses_per_sample < 1:
        raise ValueError("per_group must be non-negative and uses_per_sample positive")
    margin = preference_margin(member_scores, pairs)
    chosen: list[int] = []
    taken: dict[object, int] = {}
    uses: dict[int, int] = {}
    for candidate in np.argsort(-margin, kind="stable").tolist():
        group = labels[candidate].item()
        a, b = pairs[candidate].tolist()
        if taken.get(group, 0) >= per_group or max(uses.get(a, 0), uses.get(b, 0)) >= uses_per_sample:
            continue
        taken[group] = taken.get(group, 0) + 1
        uses[a] = uses.get(a, 0) + 1
        uses[b] = uses.get(b, 0) + 1
        chosen.append(candidate)
    return np.array(chosen, dtype=np.int64)
