from __future__ import annotations

import pytest

from evaluation.proportions import wilson_interval


def test_wilson_interval_matches_the_hand_computed_value() -> None:
    # 8 of 10 at z = 1.96: centre (0.8 + 0.192) / 1.384, half-width 1.96·√(0.016 + 0.0096)/1.384
    low, high = wilson_interval(8, 10)  # type: ignore[misc]
    assert low == pytest.approx(0.4902, abs=1e-4)
    assert high == pytest.approx(0.9433, abs=1e-4)


def test_wilson_interval_stays_inside_zero_one_at_the_extremes() -> None:
    all_right = wilson_interval(20, 20)
    none_right = wilson_interval(0, 20)
    assert all_right is not None and none_right is not None
    assert all_right[1] == 1.0 and 0.8 < all_right[0] < 0.85
    assert none_right[0] == 0.0 and 0.15 < none_right[1] < 0.2


def test_wilson_interval_of_no_data_is_none_and_bad_counts_are_refused() -> None:
    assert wilson_interval(0, 0) is None
    with pytest.raises(ValueError, match="need 0 <= successes <= n, got 3 of 2"):
        wilson_interval(3, 2)
