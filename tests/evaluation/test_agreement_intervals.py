"""Krippendorff's α and Cohen's κ with bootstrap intervals: hand-computed values, the literature's
worked example, and a bootstrap round checked against α on the explicitly resampled table."""

from __future__ import annotations

import math

import numpy as np
import pytest

from evaluation.agreement import (
    alpha_from_coincidences,
    bootstrap_cohens_kappa,
    bootstrap_krippendorff_alpha,
    cohens_kappa,
    krippendorff_alpha,
    pairable_unit_counts,
    unit_coincidences,
)

NAN = math.nan
# Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability", section C: 4 observers,
# 12 units, values 1–5, missing data. The paper gives α = 0.743 (nominal) and 0.815 (ordinal).
KRIPPENDORFF_2011 = np.array(
    [
        [1, 2, 3, 3, 2, 1, 4, 1, 2, NAN, NAN, NAN],
        [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, NAN, 3],
        [NAN, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, NAN],
        [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, NAN],
    ]
)


def test_alpha_on_a_table_computed_by_hand() -> None:
    # Two raters, four comparisons; 0 = A wins, 1 = tie, 2 = B wins (ordinal_outcome_codes).
    # Coincidences: o00 = 2, o22 = 2, o01 = o10 = 1, o11 = 2; marginals n = (3, 3, 2), n.. = 8.
    data = np.array([[0, 2, 0, 1], [0, 2, 1, 1]], dtype=float)
    # Nominal: α = 1 − (n.. − 1) Σ_{c≠k} o_ck / Σ_{c≠k} n_c n_k = 1 − 7 · 2 / (64 − 22) = 2/3.
    assert krippendorff_alpha(data, level="nominal") == pytest.approx(2 / 3, abs=1e-12)
    # Ordinal: δ²(0,1) = (3 + 3 − 3)² = 9, δ²(1,2) = (3 + 2 − 2.5)² = 6.25, δ²(0,2) = (8 − 2.5)² = 30.25;
    # observed Σ o δ² = 2 · 9 = 18; expected Σ n_c n_k δ² = 2 (81 + 37.5 + 181.5) = 600;
    # α = 1 − 7 · 18 / 600 = 0.79.
    assert krippendorff_alpha(data, level="ordinal") == pytest.approx(0.79, abs=1e-12)
    estimate = bootstrap_krippendorff_alpha(data, level="ordinal", rounds=50)
    assert (estimate.alpha, estimate.units, estimate.values) == (pytest.approx(0.79), 4, 8)


def test_alpha_matches_the_literature_example() -> None:
    nominal = bootstrap_krippendorff_alpha(KRIPPENDORFF_2011, level="nominal", rounds=500, seed=3)
    ordinal = bootstrap_krippendorff_alpha(KRIPPENDORFF_2011, level="ordinal", rounds=500, seed=3)
    assert round(nominal.alpha, 3) == 0.743
    assert round(ordinal.alpha, 3) == 0.815
    # Unit 12 has a single value: not pairable, so 11 units and 40 values.
    assert (nominal.units, nominal.values) == (11, 40)
    assert nominal.lower <= nominal.alpha <= nominal.upper <= 1.0
    assert nominal.defined_rounds == 500


def test_a_bootstrap_round_is_alpha_of_the_resampled_table() -> None:
    rng = np.random.default_rng(7)
    truth = rng.integers(0, 3, 30)
    data = np.where(rng.random((4, 30)) < 0.3, rng.integers(0, 3, (4, 30)), truth).astype(float)
    data[rng.random((4, 30)) < 0.25] = np.nan
    counts = pairable_unit_counts(data)
    pairable = data[:, (~np.isnan(data)).sum(axis=0) >= 2]
    terms = unit_coincidences(counts)
    drawn = rng.multinomial(counts.shape[0], np.full(counts.shape[0], 1 / counts.shape[0]))
    for level in ("nominal", "ordinal"):
        weighted = alpha_from_coincidences((drawn[:, None, None] * terms).sum(axis=0), level=level)
        resampled = np.repeat(pairable, drawn, axis=1)
        assert float(weighted) == pytest.approx(krippendorff_alpha(resampled, level=level), abs=1e-12)


def test_alpha_interval_narrows_with_more_comparisons_and_is_reproducible() -> None:
    def table(units: int, seed: int) -> np.ndarray:
        rng = np.random.default_rng(seed)
        truth = rng.integers(0, 3, units)
        return np.where(rng.random((3, units)) < 0.4, rng.integers(0, 3, (3, units)), truth).astype(float)

    small = bootstrap_krippendorff_alpha(table(20, 1), rounds=400, seed=0)
    large = bootstrap_krippendorff_alpha(table(2000, 1), rounds=400, seed=0)
    assert large.upper - large.lower < (small.upper - small.lower) / 4
    assert large.lower < large.alpha < large.upper
    assert bootstrap_krippendorff_alpha(table(20, 1), rounds=400, seed=0) == small


def test_alpha_without_two_raters_on_any_unit_or_without_variation() -> None:
    alone = bootstrap_krippendorff_alpha([[0, NAN], [NAN, 2]], rounds=10)
    assert math.isnan(alone.alpha) and alone.units == 0 and math.isnan(alone.lower)
    same = bootstrap_krippendorff_alpha([[1, 1], [1, 1]], rounds=10)
    assert math.isnan(same.alpha) and same.units == 2 and math.isnan(same.upper)
    empty = bootstrap_krippendorff_alpha(np.zeros((0, 0)), rounds=10)
    assert empty.units == 0 and math.isnan(empty.alpha)


def test_kappa_with_interval_hand_computed() -> None:
    # 8 items, agreement 6/8; marginals first (3, 4, 1)/8, second (2, 4, 2)/8 over (0, 1, 2):
    # chance = (6 + 16 + 2) / 64 = 24/64, κ = (48/64 − 24/64) / (40/64) = 0.6.
    first = [0, 1, 0, 1, 2, 1, 0, 1]
    second = [0, 1, 1, 1, 2, 2, 0, 1]
    estimate = bootstrap_cohens_kappa(first, second, rounds=300, seed=1)
    assert estimate.kappa == pytest.approx(0.6, abs=1e-12) == cohens_kappa(first, second)
    assert (estimate.items, estimate.agreement) == (8, 0.75)
    assert estimate.lower <= estimate.kappa <= estimate.upper <= 1.0
    assert bootstrap_cohens_kappa(first, second, rounds=300, seed=1) == estimate


def test_kappa_degenerate_inputs() -> None:
    none = bootstrap_cohens_kappa([NAN, 1], [0, NAN], rounds=10)
    assert none.items == 0 and math.isnan(none.kappa)
    constant = bootstrap_cohens_kappa([1, 1, 1], [1, 1, 1], rounds=10)
    assert constant.items == 3 and math.isnan(constant.kappa) and math.isnan(constant.lower)
