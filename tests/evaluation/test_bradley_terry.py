from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from scipy import optimize

from evaluation import bradley_terry
from evaluation.bradley_terry import (
    ELO_SCALE,
    PairOutcomeCounts,
    bootstrap_bradley_terry,
    count_pair_outcomes,
    fit_bradley_terry,
    fit_bradley_terry_pairs,
    fit_bradley_terry_rounds,
    fit_bradley_terry_with_covariate,
    fit_davidson,
    normalised_length_difference,
    rank_from_intervals,
    ratings_from_log_strengths,
    resample_pair_wins,
    win_and_battle_matrices,
    win_and_battle_matrices_from_judgments,
    win_rate_matrix,
)
from evaluation.outcomes import Outcome

A, B, TIE, BAD = Outcome.A_WINS, Outcome.B_WINS, Outcome.TIE, Outcome.BOTH_BAD
PRIOR = bradley_terry.DEFAULT_PRIOR_PRECISION


def planted_judgments(
    *, n_versions: int, judgments: int, seed: int, tie_rate: float = 0.2
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Random pairs, outcomes from planted strengths N(0, 1), a share of ties."""
    rng = np.random.default_rng(seed)
    strength = rng.normal(size=n_versions)
    a = rng.integers(0, n_versions, judgments)
    b = (a + rng.integers(1, n_versions, judgments)) % n_versions
    a_wins = rng.random(judgments) < 1.0 / (1.0 + np.exp(strength[b] - strength[a]))
    outcome = np.where(a_wins, A, B)
    outcome = np.where(rng.random(judgments) < tie_rate, TIE, outcome)
    return a, b, outcome.astype(np.int64)


def independent_logistic_fit(counts: PairOutcomeCounts, prior: float) -> npt.NDArray[np.float64]:
    """Reference fit written separately from the library: a weighted logistic regression, one row
    per (pair, outcome) cell with feature e_first − e_second and target 1 / 0 / ½, minimised by
    scipy's L-BFGS-B on the penalised negative log-likelihood with tight tolerances."""
    n = counts.n_versions
    rows = np.repeat(np.arange(counts.first.size), 3)
    design = np.zeros((rows.size, n))
    design[np.arange(rows.size), counts.first[rows]] = 1.0
    design[np.arange(rows.size), counts.second[rows]] = -1.0
    target = np.tile([1.0, 0.0, 0.5], counts.first.size)
    weight = counts.counts.reshape(-1).astype(np.float64)

    def loss(theta: npt.NDArray[np.float64]) -> tuple[float, npt.NDArray[np.float64]]:
        z = design @ theta
        nll = weight * (target * np.logaddexp(0.0, -z) + (1.0 - target) * np.logaddexp(0.0, z))
        probability = 1.0 / (1.0 + np.exp(-z))
        gradient = design.T @ (weight * (probability - target)) + prior * theta
        return float(nll.sum() + 0.5 * prior * theta @ theta), gradient

    result = optimize.minimize(
        loss,
        np.zeros(n),
        jac=True,
        method="L-BFGS-B",
        options={"ftol": 0.0, "gtol": 1e-13, "maxiter": 100_000},
    )
    return np.asarray(result.x - result.x.mean())


# --- aggregation ------------------------------------------------------------------------------


def test_count_pair_outcomes_orders_pairs_and_counts_ties_as_half_wins() -> None:
    # Given: 0 beats 1 twice (once as A, once as B), 1 beats 0 once, one tie, one both-bad,
    # one self-comparison, and one 2-over-0 win.
    a = [0, 1, 1, 0, 0, 1, 2, 2]
    b = [1, 0, 0, 1, 1, 1, 0, 0]
    outcome = [A, B, A, TIE, BAD, A, A, A]
    # When
    counts = count_pair_outcomes(a, b, outcome, n_versions=3)
    excluded = count_pair_outcomes(a, b, outcome, n_versions=3, both_bad="exclude")
    matrices = win_and_battle_matrices(counts)
    # Then: pairs (0, 1) and (0, 2); columns = wins of first, wins of second, ties.
    assert counts.first.tolist() == [0, 0]
    assert counts.second.tolist() == [1, 2]
    assert counts.counts.tolist() == [[2, 1, 2], [0, 2, 0]]
    assert excluded.counts.tolist() == [[2, 1, 1], [0, 2, 0]]
    assert matrices.wins.tolist() == [[0.0, 3.0, 0.0], [2.0, 0.0, 0.0], [2.0, 0.0, 0.0]]
    assert matrices.battles.tolist() == [[0.0, 5.0, 2.0], [5.0, 0.0, 0.0], [2.0, 0.0, 0.0]]


def test_win_rate_matrix_is_nan_where_versions_never_met() -> None:
    matrices = win_and_battle_matrices_from_judgments([0, 0, 1], [1, 1, 0], [A, TIE, A], n_versions=3)
    rate = win_rate_matrix(matrices.wins, matrices.battles)
    # 0 vs 1: one win and one tie for 0, one win for 1 → 1.5 / 3 and 1.5 / 3.
    assert rate[0, 1] == 0.5
    assert rate[1, 0] == 0.5
    assert np.isnan(rate[0, 2]) and np.isnan(rate[2, 1]) and np.isnan(rate[0, 0])


def test_count_pair_outcomes_rejects_malformed_input() -> None:
    with pytest.raises(ValueError):
        count_pair_outcomes([0, 3], [1, 0], [A, A], n_versions=3)
    with pytest.raises(ValueError):
        count_pair_outcomes([0], [1], [7], n_versions=3)


# --- fit --------------------------------------------------------------------------------------


def test_fit_matches_independent_lbfgs_logistic_regression() -> None:
    # Given: 7 versions, 400 judgments; version 6 never wins and pair (0, 5) never meets.
    a, b, outcome = planted_judgments(n_versions=6, judgments=400, seed=1)
    keep = ~(((a == 0) & (b == 5)) | ((a == 5) & (b == 0)))
    a, b, outcome = a[keep], b[keep], outcome[keep]
    a = np.r_[a, [6, 6, 2]]
    b = np.r_[b, [0, 3, 6]]
    outcome = np.r_[outcome, [B, B, A]]
    counts = count_pair_outcomes(a, b, outcome, n_versions=7)
    matrices = win_and_battle_matrices(counts)
    # When
    fit = fit_bradley_terry(matrices.wins, matrices.battles)
    reference = independent_logistic_fit(counts, PRIOR)
    # Then
    assert fit.converged
    assert np.abs(fit.log_strengths - reference).max() < 1e-6
    assert fit.log_strengths[6] == fit.log_strengths.min()


def test_two_versions_solve_the_penalised_likelihood_equation() -> None:
    # Given: 30 wins of 0 over 1 and 10 of 1 over 0. By symmetry θ0 = −θ1 = d/2, and the gradient
    # condition is 30 − 40 σ(d) − λ d / 2 = 0 (without the prior, d = log 3).
    wins = np.array([[0.0, 30.0], [10.0, 0.0]])
    expected_d = optimize.brentq(lambda d: 30 - 40 / (1 + math.exp(-d)) - PRIOR * d / 2, 0.0, 5.0, xtol=1e-15)
    # When
    fit = fit_bradley_terry(wins)
    # Then
    assert fit.log_strengths[0] - fit.log_strengths[1] == pytest.approx(expected_d, abs=1e-12)
    assert expected_d == pytest.approx(math.log(3.0), abs=1e-3)
    assert fit.ratings.tolist() == pytest.approx(
        [1000 + ELO_SCALE * expected_d / 2, 1000 - ELO_SCALE * expected_d / 2]
    )


def test_ratings_anchor_on_the_mean_or_a_named_version() -> None:
    theta = np.array([0.5, -0.25, -0.25])
    mean_anchored = ratings_from_log_strengths(theta)
    version_anchored = ratings_from_log_strengths(theta, anchor_version=1, anchor_rating=1200.0)
    assert mean_anchored.mean() == pytest.approx(1000.0, abs=1e-12)
    assert version_anchored[1] == 1200.0
    # 400 points = a factor 10 in odds: Δθ = ln 10.
    assert ratings_from_log_strengths(np.array([math.log(10.0), 0.0]), anchor_version=1)[0] == pytest.approx(
        1400.0
    )


def test_fit_degenerate_inputs_return_documented_values() -> None:
    empty = fit_bradley_terry(np.zeros((3, 3)))
    assert empty.log_strengths.tolist() == [0.0, 0.0, 0.0]
    assert empty.ratings.tolist() == [1000.0, 1000.0, 1000.0]
    one = fit_bradley_terry(np.zeros((1, 1)))
    assert one.log_strengths.tolist() == [0.0] and one.ratings.tolist() == [1000.0]
    none = fit_bradley_terry(np.zeros((0, 0)))
    assert none.log_strengths.shape == (0,) and none.ratings.shape == (0,)


def test_disconnected_groups_are_each_centred_and_zero_win_version_stays_finite() -> None:
    # Given: {0, 1} and {2, 3} never meet; 1 and 3 never win.
    wins = np.zeros((4, 4))
    wins[0, 1] = 5.0
    wins[2, 3] = 50.0
    # When
    fit = fit_bradley_terry(wins)
    # Then: the prior centres each group at zero, and no strength diverges.
    assert fit.converged
    assert fit.log_strengths[0] + fit.log_strengths[1] == pytest.approx(0.0, abs=1e-9)
    assert fit.log_strengths[2] + fit.log_strengths[3] == pytest.approx(0.0, abs=1e-9)
    assert np.isfinite(fit.log_strengths).all()
    assert fit.log_strengths[2] > fit.log_strengths[0] > 0


# --- rank and bootstrap ------------------------------------------------------------------------


def test_rank_counts_versions_whose_lower_bound_beats_this_upper_bound() -> None:
    # Given: v0 [10, 12], v1 [5, 9], v2 [0, 3], v3 [8, 11].
    # v0: nobody's lower > 12 → 1. v1: only v0's 10 > 9 → 2. v2: 10, 5, 8 > 3 → 4. v3: 10 < 11 → 1.
    rank = rank_from_intervals([10.0, 5.0, 0.0, 8.0], [12.0, 9.0, 3.0, 11.0])
    assert rank.tolist() == [1, 2, 4, 1]
    assert rank_from_intervals([], []).tolist() == []


def test_bootstrap_is_reproducible_with_a_seed() -> None:
    a, b, outcome = planted_judgments(n_versions=5, judgments=300, seed=2)
    counts = count_pair_outcomes(a, b, outcome, n_versions=5)
    first = bootstrap_bradley_terry(counts, rounds=200, seed=7)
    second = bootstrap_bradley_terry(counts, rounds=200, seed=7)
    other = bootstrap_bradley_terry(counts, rounds=200, seed=8)
    assert first.lower.tolist() == second.lower.tolist()
    assert first.upper.tolist() == second.upper.tolist()
    assert first.lower.tolist() != other.lower.tolist()
    assert (first.lower <= first.ratings).all() and (first.ratings <= first.upper).all()
    assert first.battles.sum() == 2 * 300


def test_bootstrap_fits_all_rounds_in_one_batched_call(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given: a spy on the batched round fitter.
    a, b, outcome = planted_judgments(n_versions=4, judgments=200, seed=3)
    counts = count_pair_outcomes(a, b, outcome, n_versions=4)
    calls: list[tuple[int, ...]] = []
    real = bradley_terry.fit_bradley_terry_rounds

    def spy(
        counts_arg: PairOutcomeCounts, resampled: bradley_terry.ResampledPairWins, **kwargs: Any
    ) -> npt.NDArray[np.float64]:
        calls.append(resampled.wins_first.shape)
        return real(counts_arg, resampled, **kwargs)

    monkeypatch.setattr(bradley_terry, "fit_bradley_terry_rounds", spy)
    # When
    bootstrap_bradley_terry(counts, rounds=300, seed=0)
    # Then: one call with every round stacked.
    assert calls == [(300, counts.first.size)]


def test_batched_round_fits_equal_one_exact_fit_per_round() -> None:
    # Given: 50 resamples drawn at once, and the same 50 drawn one at a time from the same seed.
    a, b, outcome = planted_judgments(n_versions=6, judgments=500, seed=4)
    counts = count_pair_outcomes(a, b, outcome, n_versions=6)
    at_once = resample_pair_wins(counts, rounds=50, generator=np.random.default_rng(11))
    generator = np.random.default_rng(11)
    one_by_one = [resample_pair_wins(counts, rounds=1, generator=generator) for _ in range(50)]
    assert np.array_equal(at_once.wins_first, np.vstack([r.wins_first for r in one_by_one]))
    start = fit_bradley_terry(win_and_battle_matrices(counts).wins).log_strengths
    # When
    batched = fit_bradley_terry_rounds(counts, at_once, start=start)
    single = [
        fit_bradley_terry_pairs(counts.first, counts.second, r.wins_first, r.wins_second, n_versions=6)[0][0]
        for r in one_by_one
    ]
    # Then
    assert np.abs(batched - np.vstack(single)).max() < 1e-9


def test_batched_round_fits_fall_back_to_newton_on_sparse_data() -> None:
    # Given: 60 judgments over 9 versions, plus version 11 that never wins and versions 9 and 10
    # that only meet each other — resamples often drop a version entirely, far from the observed
    # Hessian that the chord iteration shares.
    rng = np.random.default_rng(0)
    a = rng.integers(0, 9, 60)
    b = (a + rng.integers(1, 9, 60)) % 9
    outcome = np.where(rng.random(60) < 0.5, A, B)
    a = np.r_[a, [11, 11, 0, 9, 9, 10]]
    b = np.r_[b, [0, 3, 11, 10, 10, 9]]
    outcome = np.r_[outcome, [B, B, A, A, TIE, B]]
    counts = count_pair_outcomes(a, b, outcome, n_versions=12)
    resampled = resample_pair_wins(counts, rounds=100, generator=np.random.default_rng(1))
    start = fit_bradley_terry(win_and_battle_matrices(counts).wins).log_strengths
    # When
    batched = fit_bradley_terry_rounds(counts, resampled, start=start)
    # Then
    single = [
        fit_bradley_terry_pairs(
            counts.first, counts.second, resampled.wins_first[k], resampled.wins_second[k], n_versions=12
        )[0][0]
        for k in range(100)
    ]
    assert np.abs(batched - np.vstack(single)).max() < 1e-9


def test_bootstrap_ranks_separated_versions_apart_and_close_versions_together() -> None:
    # Given: versions 0 and 1 equally strong, version 2 far weaker, many judgments.
    rng = np.random.default_rng(5)
    strength = np.array([1.0, 1.0, -2.0])
    a = rng.integers(0, 3, 6000)
    b = (a + rng.integers(1, 3, 6000)) % 3
    outcome = np.where(rng.random(6000) < 1 / (1 + np.exp(strength[b] - strength[a])), A, B)
    counts = count_pair_outcomes(a, b, outcome, n_versions=3)
    # When
    board = bootstrap_bradley_terry(counts, rounds=300, seed=0)
    # Then
    assert board.rank.tolist() == [1, 1, 3]


def test_bootstrap_degenerate_inputs() -> None:
    no_judgments = count_pair_outcomes([], [], [], n_versions=3)
    board = bootstrap_bradley_terry(no_judgments, rounds=20)
    assert board.ratings.tolist() == [1000.0] * 3
    assert board.lower.tolist() == [1000.0] * 3 and board.upper.tolist() == [1000.0] * 3
    assert board.rank.tolist() == [1, 1, 1]
    single = bootstrap_bradley_terry(count_pair_outcomes([0], [0], [A], n_versions=1), rounds=20)
    assert single.ratings.tolist() == [1000.0] and single.rank.tolist() == [1]
    assert single.lower.tolist() == [1000.0] and single.upper.tolist() == [1000.0]
    empty = bootstrap_bradley_terry(count_pair_outcomes([], [], [], n_versions=0), rounds=20)
    assert empty.ratings.shape == (0,) and empty.rank.shape == (0,)
    no_rounds = bootstrap_bradley_terry(count_pair_outcomes([0], [1], [A], n_versions=2), rounds=0)
    assert np.isnan(no_rounds.lower).all() and no_rounds.rank.tolist() == [1, 1]


# --- Davidson ---------------------------------------------------------------------------------


def test_davidson_tie_parameter_solves_the_symmetric_likelihood_equation() -> None:
    # Given: two versions, 10 wins each and 20 ties. By symmetry π0 = π1, P(tie) = ν / (2 + ν), and
    # the η = log ν gradient condition is 20 − 40 ν / (2 + ν) − λ log ν = 0 (ν = 2 without prior).
    counts = count_pair_outcomes([0] * 40, [1] * 40, [A] * 10 + [B] * 10 + [TIE] * 20, n_versions=2)
    expected_nu = optimize.brentq(
        lambda nu: 20 - 40 * nu / (2 + nu) - PRIOR * math.log(nu), 1.0, 3.0, xtol=1e-14
    )
    # When
    fit = fit_davidson(counts)
    # Then
    assert fit.tie_parameter == pytest.approx(expected_nu, rel=1e-6)
    assert fit.tie_probability_between_equals == pytest.approx(expected_nu / (2 + expected_nu), rel=1e-6)
    assert np.abs(fit.log_strengths).max() < 1e-6


def test_davidson_without_ties_is_bradley_terry_with_zero_tie_parameter() -> None:
    a, b, outcome = planted_judgments(n_versions=4, judgments=200, seed=6, tie_rate=0.0)
    counts = count_pair_outcomes(a, b, outcome, n_versions=4)
    fit = fit_davidson(counts)
    plain = fit_bradley_terry(win_and_battle_matrices(counts).wins)
    assert fit.tie_parameter == 0.0
    assert fit.log_strengths.tolist() == plain.log_strengths.tolist()
    assert fit_davidson(count_pair_outcomes([], [], [], n_versions=2)).tie_parameter == 0.0


def test_davidson_with_only_ties_gives_equal_strengths_and_a_large_finite_tie_parameter() -> None:
    counts = count_pair_outcomes([0] * 10 + [1] * 5, [1] * 10 + [2] * 5, [TIE] * 15, n_versions=3)
    fit = fit_davidson(counts)
    assert np.abs(fit.log_strengths).max() < 1e-9
    assert 1e3 < fit.tie_parameter < 1e5


# --- style control ----------------------------------------------------------------------------


def test_covariate_fit_matches_independent_lbfgs_and_recovers_the_plain_fit_without_covariate() -> None:
    # Given: judgments where the longer sample tends to win.
    a, b, outcome = planted_judgments(n_versions=4, judgments=600, seed=7, tie_rate=0.1)
    rng = np.random.default_rng(8)
    length_a, length_b = rng.integers(10, 200, a.size), rng.integers(10, 200, a.size)
    x = normalised_length_difference(length_a, length_b)
    flip = rng.random(a.size) < 0.3 * np.abs(x)
    outcome = np.where(flip & (outcome != TIE), np.where(x > 0, A, B), outcome)
    # When
    fit = fit_bradley_terry_with_covariate(a, b, outcome, x, n_versions=4)
    without = fit_bradley_terry_with_covariate(a, b, outcome, np.zeros(a.size), n_versions=4)

    # Then: an independent per-judgment logistic regression agrees.
    y = np.where(outcome == A, 1.0, np.where(outcome == B, 0.0, 0.5))
    design = np.zeros((a.size, 5))
    design[np.arange(a.size), a] += 1.0
    design[np.arange(a.size), b] -= 1.0
    design[:, 4] = x

    def loss(p: npt.NDArray[np.float64]) -> tuple[float, npt.NDArray[np.float64]]:
        z = design @ p
        value = (y * np.logaddexp(0, -z) + (1 - y) * np.logaddexp(0, z)).sum() + 0.5 * PRIOR * p @ p
        return float(value), design.T @ (1 / (1 + np.exp(-z)) - y) + PRIOR * p

    reference = optimize.minimize(
        loss,
        np.zeros(5),
        jac=True,
        method="L-BFGS-B",
        options={"ftol": 0.0, "gtol": 1e-12, "maxiter": 10_000},
    ).x
    assert fit.covariate_coefficient == pytest.approx(reference[4], abs=1e-6)
    assert np.abs(fit.log_strengths - (reference[:4] - reference[:4].mean())).max() < 1e-6
    assert fit.covariate_coefficient > 0.2  # the planted length preference is found
    plain = fit_bradley_terry(win_and_battle_matrices_from_judgments(a, b, outcome, n_versions=4).wins)
    assert without.covariate_coefficient == 0.0
    assert np.abs(without.log_strengths - plain.log_strengths).max() < 1e-9


def test_covariate_fit_without_judgments_is_all_anchor() -> None:
    fit = fit_bradley_terry_with_covariate([], [], [], [], n_versions=3)
    assert fit.ratings.tolist() == [1000.0, 1000.0, 1000.0]
    assert fit.covariate_coefficient == 0.0


def test_normalised_length_difference_is_zero_for_two_empty_samples() -> None:
    assert normalised_length_difference([300, 0, 50], [100, 0, 50]).tolist() == [0.5, 0.0, 0.0]


# --- Cluster bootstrap ----------------------------------------------------------------------------


def test_clustered_counts_match_the_plain_counts_and_drop_the_same_judgments() -> None:
    # Given: judgments on prompts 10, 10, 11, 12; the one on prompt 12 is a self-pair.
    a, b, outcome = [0, 1, 0, 2], [1, 0, 2, 2], [Outcome.A_WINS, Outcome.TIE, Outcome.B_WINS, Outcome.A_WINS]
    clustered = bradley_terry.count_pair_outcomes_clustered(a, b, outcome, [10, 10, 11, 12], n_versions=3)
    plain = bradley_terry.count_pair_outcomes(a, b, outcome, n_versions=3)
    assert np.array_equal(clustered.counts.counts, plain.counts)
    # Prompt 12 had only the self-pair: it is not a cluster.
    assert clustered.clusters.n_first == 2
    per_cell = np.bincount(clustered.clusters.cell, clustered.clusters.count, minlength=3 * plain.first.size)
    assert np.array_equal(per_cell.reshape(-1, 3), plain.counts)
    with pytest.raises(ValueError):
        bradley_terry.count_pair_outcomes_clustered(a, b, outcome, [1, 2], n_versions=3)


def test_cluster_bootstrap_of_a_single_prompt_has_zero_width_intervals() -> None:
    clustered = bradley_terry.count_pair_outcomes_clustered(
        [0, 0, 1, 0],
        [1, 1, 2, 2],
        [Outcome.A_WINS, Outcome.B_WINS, Outcome.TIE, Outcome.A_WINS],
        [7, 7, 7, 7],
        n_versions=3,
    )
    board = bradley_terry.bootstrap_bradley_terry(clustered.counts, rounds=100, clusters=clustered.clusters)
    assert np.allclose(board.lower, board.ratings, atol=1e-6)
    assert np.allclose(board.upper, board.ratings, atol=1e-6)


def test_cluster_bootstrap_with_one_judgment_per_cluster_matches_the_iid_bootstrap() -> None:
    # Given: judgments that are all their own cluster; resampling them in clusters or one by one is
    # the same scheme, so the intervals agree up to Monte Carlo error.
    rng = np.random.default_rng(3)
    a = rng.integers(0, 4, 600)
    b = (a + rng.integers(1, 4, 600)) % 4
    outcome = np.where(rng.random(600) < 0.5 + 0.1 * (b - a), Outcome.A_WINS, Outcome.B_WINS)
    clustered = bradley_terry.count_pair_outcomes_clustered(a, b, outcome, np.arange(600), n_versions=4)
    independent = bradley_terry.bootstrap_bradley_terry(clustered.counts, rounds=2000, seed=1)
    by_cluster = bradley_terry.bootstrap_bradley_terry(
        clustered.counts, rounds=2000, seed=2, clusters=clustered.clusters
    )
    width_independent = independent.upper - independent.lower
    width_clusters = by_cluster.upper - by_cluster.lower
    np.testing.assert_allclose(width_clusters, width_independent, rtol=0.1)
    assert np.array_equal(by_cluster.ratings, independent.ratings)


def test_cluster_bootstrap_is_reproducible_and_wider_when_prompts_repeat_one_verdict() -> None:
    # Given: 40 prompts, each judged by 5 raters who all agree (perfectly clustered votes).
    rng = np.random.default_rng(0)
    prompt_a = rng.integers(0, 3, 40)
    prompt_b = (prompt_a + rng.integers(1, 3, 40)) % 3
    verdict = np.where(rng.random(40) < 0.6, Outcome.A_WINS, Outcome.B_WINS)
    a, b, outcome = (np.repeat(x, 5) for x in (prompt_a, prompt_b, verdict))
    clustered = bradley_terry.count_pair_outcomes_clustered(
        a, b, outcome, np.repeat(np.arange(40), 5), n_versions=3
    )
    first = bradley_terry.bootstrap_bradley_terry(
        clustered.counts, rounds=300, seed=4, clusters=clustered.clusters
    )
    again = bradley_terry.bootstrap_bradley_terry(
        clustered.counts, rounds=300, seed=4, clusters=clustered.clusters
    )
    independent = bradley_terry.bootstrap_bradley_terry(clustered.counts, rounds=300, seed=4)
    assert np.array_equal(first.lower, again.lower) and np.array_equal(first.upper, again.upper)
    # Five identical votes carry one prompt's information: intervals ~√5 ≈ 2.2 times wider.
    ratio = (first.upper - first.lower) / (independent.upper - independent.lower)
    assert (ratio > 1.6).all() and (ratio < 3.0).all()
    with pytest.raises(ValueError):
        bradley_terry.resample_pair_wins_clustered(
            bradley_terry.count_pair_outcomes([0], [1], [0], n_versions=3),
            clustered.clusters,
            rounds=1,
            generator=np.random.default_rng(0),
        )


# --- Style control with intervals ------------------------------------------------------------------


def _length_study(seed: int, judgments: int = 1500) -> dict[str, Any]:
    """Two equally good versions; version 0 writes ~twice as long, and raters like length."""
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 3, judgments)
    b = (a + rng.integers(1, 3, judgments)) % 3
    mean_length = np.array([80.0, 40.0, 40.0])
    length_a = rng.gamma(4.0, mean_length[a] / 4.0)
    length_b = rng.gamma(4.0, mean_length[b] / 4.0)
    x = bradley_terry.normalised_length_difference(length_a, length_b)
    quality = np.array([0.0, 0.0, -0.5])
    p_a = 1.0 / (1.0 + np.exp(-(quality[a] - quality[b] + 2.5 * x)))
    outcome = np.where(rng.random(judgments) < p_a, A, B)
    prompts = rng.integers(0, 150, judgments)
    return {"a": a, "b": b, "outcome": outcome, "x": x, "prompts": prompts}


def test_a_covariate_bootstrap_round_is_the_exact_fit_on_its_repeated_judgments() -> None:
    study = _length_study(0, judgments=400)
    groups = bradley_terry.covariate_groups(
        study["a"], study["b"], study["outcome"], study["x"], study["prompts"], n_versions=3
    )
    point = fit_bradley_terry_with_covariate(
        study["a"], study["b"], study["outcome"], study["x"], n_versions=3
    )
    rng = np.random.default_rng(1)
    weights = rng.integers(0, 3, (3, groups.count.size)) * groups.count
    params, converged = bradley_terry.fit_covariate_rounds(
        groups, weights, start=np.append(point.log_strengths, point.covariate_coefficient)
    )
    assert converged.all()
    for row in range(3):
        repeat = weights[row].astype(int)
        exact = fit_bradley_terry_with_covariate(
            np.repeat(groups.a, repeat),
            np.repeat(groups.b, repeat),
            np.where(np.repeat(groups.y, repeat) == 1.0, A, B),
            np.repeat(groups.x, repeat),
            n_versions=3,
        )
        assert params[row, :3] - params[row, :3].mean() == pytest.approx(exact.log_strengths, abs=1e-8)
        assert params[row, 3] == pytest.approx(exact.covariate_coefficient, abs=1e-8)


def test_style_control_with_intervals_levels_versions_that_differ_only_in_length() -> None:
    study = _length_study(2)
    plain = fit_bradley_terry_with_covariate(
        study["a"], study["b"], study["outcome"], np.zeros(study["a"].size), n_versions=3
    )
    board = bradley_terry.bootstrap_bradley_terry_with_covariate(
        study["a"],
        study["b"],
        study["outcome"],
        study["x"],
        study["prompts"],
        n_versions=3,
        rounds=200,
        seed=0,
    )
    # Without the covariate the long version looks ~100+ points better than its equal; with it the
    # two share rank 1 and the weak one ranks below both.
    assert plain.ratings[0] - plain.ratings[1] > 100
    assert abs(board.ratings[0] - board.ratings[1]) < 40
    assert list(board.rank) == [1, 1, 3]
    assert (board.lower <= board.ratings).all() and (board.ratings <= board.upper).all()
    assert board.coefficient_lower < 2.5 < board.coefficient_upper
    assert board.covariate_coefficient == pytest.approx(
        fit_bradley_terry_with_covariate(
            study["a"], study["b"], study["outcome"], study["x"], n_versions=3
        ).covariate_coefficient
    )
    again = bradley_terry.bootstrap_bradley_terry_with_covariate(
        study["a"],
        study["b"],
        study["outcome"],
        study["x"],
        study["prompts"],
        n_versions=3,
        rounds=200,
        seed=0,
    )
    assert np.array_equal(again.lower, board.lower) and np.array_equal(again.upper, board.upper)


def test_style_control_groups_judgments_of_one_prompt_and_pair() -> None:
    # Three raters judged each of two comparisons: two groups per outcome pattern, not six rows.
    groups = bradley_terry.covariate_groups(
        [0, 0, 0, 1, 1, 1],
        [1, 1, 1, 2, 2, 2],
        [A, A, A, B, B, B],
        [0.2] * 3 + [-0.1] * 3,
        [7, 7, 7, 8, 8, 8],
        n_versions=3,
    )
    assert list(groups.count) == [3.0, 3.0] and groups.n_first == 2


def test_style_control_with_intervals_degenerate_inputs() -> None:
    empty = bradley_terry.bootstrap_bradley_terry_with_covariate([], [], [], [], n_versions=2, rounds=20)
    assert list(empty.ratings) == [1000.0, 1000.0] and list(empty.lower) == [1000.0, 1000.0]
    assert list(empty.rank) == [1, 1] and empty.covariate_coefficient == 0.0
    no_rounds = bradley_terry.bootstrap_bradley_terry_with_covariate(
        [0, 1], [1, 0], [A, A], [0.1, -0.1], n_versions=2, rounds=0
    )
    assert np.isnan(no_rounds.lower).all() and list(no_rounds.rank) == [1, 1]
