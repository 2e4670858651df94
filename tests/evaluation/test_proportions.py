from __future__ import annotations

import itertools

import pytest

from evaluation.proportions import clustered_wilson_interval, wilson_interval


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


def test_the_clustered_interval_of_singleton_clusters_is_wilsons() -> None:
    hits = [1, 0, 1, 1, 0, 1, 1, 1]
    clustered = clustered_wilson_interval(hits, [1] * len(hits))
    assert clustered == pytest.approx(wilson_interval(6, 8))


def test_votes_that_agree_within_a_comparison_count_about_once_per_comparison() -> None:
    # 20 comparisons, 3 votes each, all three right or all three wrong: 15 of 20 comparisons right
    successes = [3] * 15 + [0] * 5
    clustered = clustered_wilson_interval(successes, [3] * 20)
    assert clustered == pytest.approx(wilson_interval(15, 20))
    naive = wilson_interval(45, 60)
    assert naive is not None and clustered is not None
    assert clustered[1] - clustered[0] > 1.5 * (naive[1] - naive[0])  # wider than 60 independent votes


def test_votes_split_within_every_comparison_in_the_same_way_are_as_sure_as_their_count() -> None:
    # each comparison 1 right of 2: no variation between comparisons, nothing to widen
    assert clustered_wilson_interval([1] * 10, [2] * 10) == pytest.approx(wilson_interval(10, 20))


def test_the_clustered_interval_at_the_extremes_counts_each_comparison_once() -> None:
    assert clustered_wilson_interval([2, 3, 2], [2, 3, 2]) == pytest.approx(wilson_interval(3, 3))
    assert clustered_wilson_interval([], []) is None
    assert clustered_wilson_interval([0], [0]) is None
    with pytest.raises(ValueError, match="one size per cluster"):
        clustered_wilson_interval([1], [1, 2])
    with pytest.raises(ValueError, match="0 <= successes <= size"):
        clustered_wilson_interval([3], [2])


def test_one_more_right_vote_never_lowers_the_clustered_lower_bound() -> None:
    # 20 comparisons of 3 votes; the wrong votes fall one per comparison (split comparisons)
    lows = []
    for right in range(40, 61):
        successes = [3] * 20
        for index in range(60 - right):
            successes[index % 20] -= 1
        interval = clustered_wilson_interval(successes, [3] * 20)
        assert interval is not None
        lows.append(interval[0])
    assert all(a <= b for a, b in itertools.pairwise(lows)), lows
