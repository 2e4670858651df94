"""Did the feedback loop improve its generator? Verdicts over seeds, for ``bench.loop``.

A loop run with one seed gives one number per round; the same run with another seed (other
pairs, other votes, other training draws, other holdout prompts) gives another. The verdict
compares the final round with round 0 seed by seed and asks the rise to exceed two standard
errors of that paired difference, so noise between seeds cannot pass for learning, and a flat
line (no change at all) never passes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

# The rise must reach this many standard errors: a one-sided test at about 2.3 % under a normal
# approximation. The issue fixes 2; with 3 seeds it is lenient (a t-test at that level asks 4.5,
# with 5 seeds 2.9), so report the seeds and the standard error with every verdict.
RISE_STANDARD_ERRORS = 2.0


def standard_error(values: Sequence[float]) -> float | None:
    """Standard error of the mean: sample standard deviation (n − 1) / √n.

    Degenerate input: None for fewer than two values (one seed says nothing about the spread);
    0.0 when all values are equal.
    """
    count = len(values)
    if count < 2:
        return None
    mean = sum(values) / count
    variance = sum((value - mean) ** 2 for value in values) / (count - 1)
    return math.sqrt(variance / count)


@dataclass(frozen=True)
class RiseVerdict:
    """Round 0 against the final round, over seeds.

    ``round0`` and ``final`` are means over seeds; ``difference`` is the mean of the per-seed
    differences (final − round 0); ``standard_error`` is that mean's standard error, None with one
    seed. ``rises`` is True only when the difference is positive and at least
    ``RISE_STANDARD_ERRORS`` standard errors; ``verdict`` says it in words with the numbers.
    """

    round0: float
    final: float
    difference: float
    standard_error: float | None
    seeds: int
    rises: bool
    verdict: str


def rise_verdict(round0: Sequence[float], final: Sequence[float]) -> RiseVerdict:
    """Whether ``final`` beats ``round0``; both hold one score per seed, in the same seed order.

    Paired by seed: the per-seed differences carry the seed-to-seed spread of the whole loop.
    Passes only if mean difference > 0 and mean difference ≥ 2 × its standard error. A flat line
    (difference 0) never passes, even with a standard error of 0. One seed: "cannot tell (1 seed)".
    Raises ValueError when the lists are empty or of different lengths.
    """
    if not round0 or len(round0) != len(final):
        raise ValueError(
            f"need one round-0 and one final score per seed (got {len(round0)} and {len(final)})"
        )
    seeds = len(round0)
    differences = [after - before for before, after in zip(round0, final, strict=True)]
    difference = sum(differences) / seeds
    error = standard_error(differences)
    mean_round0, mean_final = sum(round0) / seeds, sum(final) / seeds
    numbers = f"final − round0 = {difference:+.4f}"
    if error is None:
        return RiseVerdict(mean_round0, mean_final, difference, None, seeds, False, "cannot tell (1 seed)")
    # A flat line has error 0 and would pass "difference >= 0": the rise must also be positive.
    rises = difference > 0 and difference >= RISE_STANDARD_ERRORS * error
    if rises:
        verdict = f"rises: {numbers} ≥ 2 × se {error:.4f} over {seeds} seeds"
    elif difference == 0:
        verdict = f"does not rise: {numbers} (flat) over {seeds} seeds"
    else:
        verdict = f"does not rise: {numbers} < 2 × se {error:.4f} over {seeds} seeds"
    return RiseVerdict(mean_round0, mean_final, difference, error, seeds, rises, verdict)


@dataclass(frozen=True)
class ReachVerdict:
    """When another strategy (active, thompson) reached random selection's final score, seed by seed.

    ``labels`` are the mean labels of the first round after round 0 whose mean per-seed difference
    (active at that round − random's final) is ≥ 0, and ``share`` those labels as a share of
    random's; both None when no round gets there. ``difference`` and ``standard_error`` are that
    round's (or, when none reached, active's best round's). ``within_noise`` says the difference is
    smaller than ``RISE_STANDARD_ERRORS`` standard errors either way: reaching, or missing, could
    then be chance. ``verdict`` says it in words with the numbers.
    """

    labels: float | None
    share: float | None
    difference: float
    standard_error: float | None
    within_noise: bool
    verdict: str


def reach_verdict(
    active: Sequence[Sequence[tuple[float, float]]], random_final: Sequence[float], random_labels: float
) -> ReachVerdict:
    """When active selection reached random's final score, and whether that could be chance.

    ``active`` holds one curve per seed ((labels, score) per round, round 0 first) and
    ``random_final`` random's final score for the same seeds in the same order: the differences
    are paired by seed (a seed fixes the prompts and the base models of both). Raises ValueError
    for no seeds, a seed count that differs, or curves of different lengths.
    """
    if not active or len(active) != len(random_final):
        raise ValueError(
            f"need one active curve per random score (got {len(active)} and {len(random_final)})"
        )
    if len({len(curve) for curve in active}) != 1 or len(active[0]) < 2:
        raise ValueError("active curves must have the same number of rounds, at least two")
    rounds = []
    for index in range(1, len(active[0])):
        differences = [curve[index][1] - final for curve, final in zip(active, random_final, strict=True)]
        labels = sum(curve[index][0] for curve in active) / len(active)
        rounds.append((labels, sum(differences) / len(differences), standard_error(differences)))
    reached = next((entry for entry in rounds if entry[1] >= 0), None)
    labels, difference, error = reached or max(rounds, key=lambda entry: entry[1])
    # ≤: an exact tie with no spread (the same pairs and votes) is chance too, not a finding.
    within_noise = error is None or abs(difference) <= RISE_STANDARD_ERRORS * error
    noise = "one seed" if error is None else f"± se {error:.4f} over {len(active)} seeds"
    caveat = ", within noise" if within_noise else ""
    if reached is None:
        return ReachVerdict(
            None,
            None,
            difference,
            error,
            within_noise,
            f"not reached: best round's difference from random's final {difference:+.4f} {noise}{caveat}",
        )
    share = labels / random_labels if random_labels > 0 else math.inf
    return ReachVerdict(
        labels,
        share,
        difference,
        error,
        within_noise,
        f"reached with {labels:g} labels = {share:.0%} of random's {random_labels:g} "
        f"(difference from random's final {difference:+.4f} {noise}{caveat})",
    )


def summary_line(strategy: str, method: str, verdict: RiseVerdict, labels: float) -> str:
    """``summary <strategy> <method>: round0 <x> final <y> se <s> labels <n>`` (``se n/a`` with one
    seed; ``labels`` is the mean over seeds of the labels used by the final round)."""
    error = "n/a" if verdict.standard_error is None else f"{verdict.standard_error:.4f}"
    return (
        f"summary {strategy} {method}: round0 {verdict.round0:.4f} final {verdict.final:.4f} "
        f"se {error} labels {labels:g}"
    )


@dataclass(frozen=True)
class RatedInterval:
    """A version's row of a leaderboard as the loop reads it: the bootstrap interval of its rating
    and the judgments it took part in (NaN bounds when the board had no bootstrap rounds)."""

    lower: float
    upper: float
    battles: float


def beats_beyond_interval(child: RatedInterval | None, parent: RatedInterval | None) -> bool:
    """The loop's keep-the-parent rule: a child replaces its parent only when it was rated (at
    least one battle) and its lower bound lies above the parent's upper bound on the same
    leaderboard of holdout votes. A child not on the board, a parent not on the board, a child
    better only within the noise, or bounds that are NaN (no bootstrap) keep the parent.

    One rule for text and images: the server's ``policy_parent_choose`` and ``bench.image_loop``'s
    holdout A/B both decide with it. With two versions the bounds are mirror images (ratings are
    centred), so it asks the bootstrap interval of the difference to exclude zero.
    """
    if child is None or parent is None or not child.battles > 0:
        return False
    return child.lower > parent.upper  # False for NaN
