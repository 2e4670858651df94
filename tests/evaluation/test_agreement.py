from __future__ import annotations

import math
from typing import Literal

import krippendorff
import numpy as np
import pytest
from sklearn.metrics import cohen_kappa_score

from evaluation.agreement import (
    agreement_with_leave_one_out_majority,
    cohens_kappa,
    krippendorff_alpha,
    left_choice_rate,
    ordinal_outcome_codes,
)
from evaluation.outcomes import Outcome


def random_reliability_data(seed: int, raters: int = 6, units: int = 40) -> np.ndarray:
    """Ratings on the ordinal scale 0 < 1 < 2, correlated across raters, 30 % missing."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, 3, units)
    noisy = np.where(rng.random((raters, units)) < 0.35, rng.integers(0, 3, (raters, units)), truth)
    data = noisy.astype(np.float64)
    data[rng.random((raters, units)) < 0.3] = np.nan
    return data


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("level", ["ordinal", "nominal"])
def test_krippendorff_alpha_matches_the_reference_package(
    seed: int, level: Literal["ordinal", "nominal"]
) -> None:
    data = random_reliability_data(seed)
    expected = krippendorff.alpha(reliability_data=data, level_of_measurement=level)
    assert krippendorff_alpha(data, level=level) == pytest.approx(expected, abs=1e-9)


def test_krippendorff_alpha_uses_the_observed_values_as_ordered_categories() -> None:
    # Values 0, 1, 5 behave like ranks 0 < 1 < 2 on the ordinal level.
    data = random_reliability_data(9)
    relabelled = np.where(data == 2, 5.0, data)
    expected = krippendorff.alpha(reliability_data=relabelled, level_of_measurement="ordinal")
    assert krippendorff_alpha(relabelled, level="ordinal") == pytest.approx(expected, abs=1e-9)
    assert krippendorff_alpha(relabelled, level="ordinal") == pytest.approx(
        krippendorff_alpha(data), abs=1e-12
    )


def test_krippendorff_alpha_is_one_for_perfect_agreement_and_nan_when_undefined() -> None:
    assert krippendorff_alpha([[0, 1, 2, np.nan], [0, 1, 2, 2]]) == 1.0
    # One category only: no variation to agree on.
    assert math.isnan(krippendorff_alpha([[1, 1], [1, 1]]))
    # No unit with two ratings.
    assert math.isnan(krippendorff_alpha([[0, np.nan], [np.nan, 2]]))
    assert math.isnan(krippendorff_alpha(np.zeros((0, 0))))
    assert math.isnan(krippendorff_alpha([[np.nan, np.nan]]))


def test_ordinal_outcome_codes_put_tie_between_a_and_b() -> None:
    codes = ordinal_outcome_codes([Outcome.A_WINS, Outcome.TIE, Outcome.B_WINS, Outcome.BOTH_BAD])
    assert codes[:3].tolist() == [0.0, 1.0, 2.0]
    assert math.isnan(codes[3])


def test_cohens_kappa_hand_computed_and_against_scikit_learn() -> None:
    # p_observed = 3/4; rater 1 uses 0, 1 half each, rater 2 a quarter 0 → p_chance = 1/2 → κ = 1/2.
    assert cohens_kappa([0, 0, 1, 1], [0, 1, 1, 1]) == 0.5
    rng = np.random.default_rng(0)
    first, second = rng.integers(0, 3, 100), rng.integers(0, 3, 100)
    assert cohens_kappa(first, second) == pytest.approx(cohen_kappa_score(first, second), abs=1e-12)


def test_cohens_kappa_degenerate_inputs() -> None:
    assert math.isnan(cohens_kappa([], []))
    assert math.isnan(cohens_kappa([np.nan, 1], [0, np.nan]))
    assert math.isnan(cohens_kappa([1, 1, 1], [1, 1, 1]))


def test_agreement_with_leave_one_out_majority() -> None:
    # Given: unit 0 rated 0 by raters 1, 2 and 1 by rater 3; unit 1 rated 2 by raters 1 and 3 and
    # 0 by rater 2; unit 2 rated only by rater 1; unit 3 rated 0 and 1 by raters 1 and 2.
    raters = [1, 2, 3, 1, 2, 3, 1, 1, 2]
    units = [0, 0, 0, 1, 1, 1, 2, 3, 3]
    labels = [0, 0, 1, 2, 0, 2, 1, 0, 1]
    # When
    result = agreement_with_leave_one_out_majority(raters, units, labels)
    # Then: rater 1 — unit 0: others {0, 1} tie → skipped; unit 1: others {0, 2} tie → skipped;
    # unit 2: no others; unit 3: other says 1 ≠ 0 → 0 of 1.
    # Rater 2 — unit 0: others {0, 1} tie; unit 1: others {2, 2} → 2 ≠ 0; unit 3: other 0 ≠ 1 → 0/2.
    # Rater 3 — unit 0: others {0, 0} → 0 ≠ 1; unit 1: others {2, 0} tie → 0 of 1.
    assert result.raters.tolist() == [1, 2, 3]
    assert result.compared.tolist() == [1, 2, 1]
    assert result.agreement.tolist() == [0.0, 0.0, 0.0]
    # A unanimous unit: every rater agrees with the others.
    unanimous = agreement_with_leave_one_out_majority([5, 6, 7], [0, 0, 0], [2, 2, 2])
    assert unanimous.agreement.tolist() == [1.0, 1.0, 1.0]
    assert unanimous.compared.tolist() == [1, 1, 1]


def test_agreement_with_leave_one_out_majority_degenerate_inputs() -> None:
    alone = agreement_with_leave_one_out_majority([1, 1], [0, 0], [0, 0])
    assert alone.compared.tolist() == [0]
    assert math.isnan(alone.agreement[0])
    empty = agreement_with_leave_one_out_majority([], [], [])
    assert empty.raters.size == 0 and empty.agreement.size == 0


def test_left_choice_rate_and_binomial_p_value() -> None:
    # Given: rater 1 picks left 9 times of 10 decisive votes (plus a tie that does not count);
    # rater 2 has only a tie.
    raters = [1] * 11 + [2]
    chose_left = [True] * 9 + [False, True] + [False]
    decisive = [True] * 10 + [False] + [False]
    # When
    bias = left_choice_rate(raters, chose_left, decisive)
    # Then: two-sided p = 2 · P(X ≥ 9 | n = 10, p = 1/2) = 2 · 11 / 1024.
    assert bias.left_rate[0] == 0.9
    assert bias.decisive.tolist() == [10, 0]
    assert bias.p_value[0] == pytest.approx(22 / 1024, abs=1e-15)
    assert math.isnan(bias.left_rate[1]) and math.isnan(bias.p_value[1])
    # A balanced rater gets p = 1.
    assert left_choice_rate([1, 1], [True, False]).p_value.tolist() == [1.0]
