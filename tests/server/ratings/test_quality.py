"""Quality signals (pure, hand-computed), the binomial tests that pause a rater, and flagging."""

from __future__ import annotations

import random
from types import SimpleNamespace

import pytest
from scipy.stats import binomtest

from server.core.exceptions import ApplicationError
from server.ratings.models import ComparisonKind, Judgment, Outcome, Rater, RaterStatus
from server.ratings.quality import (
    QualityRow,
    compute_signals,
    p_value_above,
    p_value_below,
    p_value_outside,
    pause_reason,
)
from server.ratings.services import judgment_submit, rater_pause, rater_quality_update, rater_resume
from server.studies.models import Study
from tests import factories
from tests.server.ratings.conftest import make_study


def row(comparison_id, kind, outcome, chose_left, *, gold="", repeat_of=None, seconds=None):  # type: ignore[no-untyped-def]
    return QualityRow(comparison_id, kind, gold, repeat_of, outcome, chose_left, seconds, True)


HAND_COMPUTED_ROWS = [
    row(1, "gold", "A", True, gold="A", seconds=1.0),  # right
    row(2, "gold", "A", True, gold="B", seconds=2.0),  # wrong
    row(3, "gold", "A", False, gold="A", seconds=3.0),  # right
    row(4, "regular", "A", True, seconds=4.0),  # others A, B, A: plurality A, agrees
    row(5, "regular", "B", False, seconds=5.0),  # others A: disagrees
    row(6, "regular", "tie", None, seconds=6.0),  # others A, B: no plurality, not compared
    row(7, "repeat", "B", True, repeat_of=4, seconds=7.0),  # B swapped back is A = own A: consistent
    row(8, "repeat", "B", False, repeat_of=5, seconds=8.0),  # B swapped back is A != own B
]
OTHERS = {4: ["A", "B", "A"], 5: ["A"], 6: ["A", "B"]}


def test_signals_match_the_hand_computed_values() -> None:
    signals = compute_signals(HAND_COMPUTED_ROWS, other_outcomes=OTHERS)

    assert signals.judgments == 8
    assert (signals.gold_checks, signals.gold_accuracy) == (3, pytest.approx(2 / 3))
    assert (signals.majority_comparisons, signals.majority_agreement) == (2, 0.5)
    assert (signals.decisive_judgments, signals.left_rate) == (7, pytest.approx(4 / 7))
    assert signals.position_bias == pytest.approx(4 / 7)
    assert (signals.repeat_pairs, signals.self_consistency) == (2, 0.5)
    assert signals.median_active_seconds == 4.5


def test_signals_of_a_rater_without_judgments_are_empty() -> None:
    signals = compute_signals([], other_outcomes={})

    assert signals.as_dict() == {
        "judgments": 0,
        "gold_checks": 0,
        "gold_accuracy": None,
        "majority_comparisons": 0,
        "majority_agreement": None,
        "decisive_judgments": 0,
        "left_rate": None,
        "position_bias": None,
        "repeat_pairs": 0,
        "self_consistency": None,
        "median_active_seconds": None,
    }


def test_majority_agreement_matches_the_evaluation_library() -> None:
    agreement = pytest.importorskip("evaluation.agreement")
    generator = random.Random(7)
    votes = [
        (rater, unit, generator.choice("AB") if rater % 3 else "A")
        for rater in range(6)
        for unit in range(30)
    ]
    votes = [vote for vote in votes if generator.random() < 0.7]

    library = agreement.agreement_with_leave_one_out_majority(
        [v[0] for v in votes], [v[1] for v in votes], [v[2] for v in votes]
    )

    for position, rater in enumerate(library.raters):
        rows = [row(unit, "regular", label, None) for who, unit, label in votes if who == rater]
        others: dict[int, list[str]] = {}
        for who, unit, label in votes:
            if who != rater:
                others.setdefault(unit, []).append(label)
        ours = compute_signals(rows, other_outcomes=others)
        assert ours.majority_comparisons == library.compared[position]
        if ours.majority_agreement is not None:
            assert ours.majority_agreement == pytest.approx(library.agreement[position])


def rules(**changes: float) -> SimpleNamespace:
    """A study's quality rules: the model's defaults unless a test changes one."""
    defaults = {
        name: Study._meta.get_field(name).default
        for name in (
            "min_gold_accuracy",
            "min_self_consistency",
            "max_position_bias",
            "min_quality_judgments",
            "quality_alpha",
            "quality_min_checks",
        )
    }
    return SimpleNamespace(**{**defaults, **changes})


def gold_rows(right: int, wrong: int) -> list[QualityRow]:
    return [row(number, "gold", "A", True, gold="A") for number in range(right)] + [
        row(100 + number, "gold", "B", False, gold="A") for number in range(wrong)
    ]


def repeat_rows(consistent: int, changed: int, *, regular: int = 0) -> list[QualityRow]:
    """``regular`` unrepeated votes, then pairs judged twice: the same verdict, or the other one."""
    rows = [row(500 + number, "regular", "tie", None) for number in range(regular)]
    for number in range(consistent + changed):
        rows.append(row(number, "regular", "A", True))
        # The repeat shows the samples swapped: "B" is the original's "A" (the same verdict).
        rows.append(
            row(1000 + number, "repeat", "B" if number < consistent else "A", False, repeat_of=number)
        )
    return rows


@pytest.mark.parametrize("trials", [1, 2, 6, 10, 37])
@pytest.mark.parametrize("threshold", [0.05, 0.5, 0.6, 0.9])
def test_p_values_are_scipys_exact_binomial_test(trials: int, threshold: float) -> None:
    for successes in range(trials + 1):
        less = binomtest(successes, trials, threshold, alternative="less").pvalue
        greater = binomtest(successes, trials, threshold, alternative="greater").pvalue
        assert p_value_below(successes, trials, threshold) == pytest.approx(less, rel=1e-9, abs=1e-15)
        assert p_value_above(successes, trials, threshold) == pytest.approx(greater, rel=1e-9, abs=1e-15)
        fair = binomtest(successes, trials, 0.5).pvalue  # two-sided
        assert p_value_outside(successes, trials, 0.5, 0.5) == pytest.approx(fair, rel=1e-9, abs=1e-15)


def test_p_values_at_the_edges() -> None:
    assert p_value_below(0, 10, 0.0) == 1.0  # a threshold of 0 is always met
    assert p_value_below(9, 10, 1.0) == 0.0  # at 1, one miss rejects
    assert p_value_below(10, 10, 1.0) == 1.0
    assert p_value_outside(10, 10, 0.0, 1.0) == 1.0  # any share of one side is allowed
    assert p_value_below(0, 0, 0.6) == p_value_above(0, 0, 0.6) == 1.0  # nothing observed
    assert p_value_outside(10, 10, 0.1, 0.9) == pytest.approx(2 * 0.9**10)  # the nearer bound's tail
    assert p_value_outside(1, 10, 0.1, 0.9) == 1.0  # a side's tail doubled is capped at 1


def test_the_demo_raters_three_repeats_with_one_consistent_do_not_pause() -> None:
    # The demo's rater: 21 votes, 3 of them repeats, 1 of which agreed with the first answer.
    # 33 % is below the study's 50 %, but an honest rater at 50 % does as badly half the time.
    signals = compute_signals(repeat_rows(consistent=1, changed=2, regular=15), other_outcomes={})
    assert (signals.judgments, signals.repeat_pairs) == (21, 3)
    assert signals.self_consistency == pytest.approx(1 / 3)

    assert pause_reason(signals, rules()) is None
    assert pause_reason(signals, rules(quality_min_checks=2)) is None  # not significant either


def test_a_rater_with_one_of_ten_gold_checks_right_is_paused_with_what_happened_in_words() -> None:
    signals = compute_signals(gold_rows(right=1, wrong=9), other_outcomes={})

    assert pause_reason(signals, rules()) == (
        "Your answers on 9 of 10 check pairs disagreed with their known answers. This study expects "
        "at least 60% right, and that many misses is too many to be bad luck, so it has paused your "
        "rating."
    )


def test_a_gold_pause_waits_for_the_studys_minimum_number_of_checks() -> None:
    loose = rules(quality_alpha=0.1)  # 0 of 5 at 60 %: p = 0.0102, significant at this level

    assert pause_reason(compute_signals(gold_rows(right=0, wrong=5), other_outcomes={}), loose) is None
    six = pause_reason(compute_signals(gold_rows(right=0, wrong=6), other_outcomes={}), loose)
    assert six is not None and six.startswith("Your answers on 6 of 6 check pairs")


def test_a_gold_pause_needs_a_significant_result() -> None:
    # 1 of 7 right: p = 0.019 at the default 1 % level; 1 of 8: p = 0.0085.
    assert pause_reason(compute_signals(gold_rows(right=1, wrong=6), other_outcomes={}), rules()) is None
    assert pause_reason(compute_signals(gold_rows(right=1, wrong=7), other_outcomes={}), rules()) is not None


def test_one_failed_check_never_pauses_even_when_the_study_asks_for_one() -> None:
    strict = rules(min_gold_accuracy=1.0, quality_min_checks=1)  # one miss rejects 100 %: p = 0

    assert pause_reason(compute_signals(gold_rows(right=0, wrong=1), other_outcomes={}), strict) is None
    assert pause_reason(compute_signals(gold_rows(right=1, wrong=1), other_outcomes={}), strict) == (
        "Your answers on 1 of 2 check pairs disagreed with their known answers. This study expects "
        "at least 100% right, and that many misses is too many to be bad luck, so it has paused your "
        "rating."
    )


def test_inconsistent_repeats_pause_once_significant() -> None:
    # None of 7 the same at 50 %: p = 0.5^7 = 0.0078; none of 6: 0.0156.
    six = compute_signals(repeat_rows(consistent=0, changed=6), other_outcomes={})
    seven = compute_signals(repeat_rows(consistent=0, changed=7), other_outcomes={})

    assert pause_reason(six, rules()) is None
    assert pause_reason(seven, rules()) == (
        "Of the 7 pairs shown to you twice (sides swapped), 7 got a different answer the second time. "
        "This study expects at least 50% the same, and that many changes is too many to be bad luck, "
        "so it has paused your rating."
    )


def test_always_choosing_one_side_pauses_once_significant() -> None:
    # Allowed: 10 % to 90 % left. All of n on one side: p = 2 * 0.9^n, below 1 % from n = 51.
    fifty = compute_signals([row(number, "regular", "A", False) for number in range(50)], other_outcomes={})
    fifty_one = compute_signals(
        [row(number, "regular", "A", False) for number in range(51)], other_outcomes={}
    )

    assert pause_reason(fifty, rules()) is None
    assert pause_reason(fifty_one, rules()) == (
        "You chose the right side in 51 of 51 votes, though the two pieces are placed at random. This "
        "study expects at most 90% on one side, and that many is too many to be bad luck, so it has "
        "paused your rating."
    )


def test_position_bias_waits_for_the_minimum_number_of_votes() -> None:
    signals = compute_signals([row(number, "regular", "A", True) for number in range(9)], other_outcomes={})

    assert pause_reason(signals, rules(max_position_bias=0.5, min_quality_judgments=10)) is None
    assert pause_reason(signals, rules(max_position_bias=0.5, min_quality_judgments=9)) is not None


def test_thresholds_of_zero_never_pause() -> None:
    rows = gold_rows(right=0, wrong=40) + repeat_rows(consistent=0, changed=40)
    signals = compute_signals(rows, other_outcomes={})

    off = rules(min_gold_accuracy=0.0, min_self_consistency=0.0, max_position_bias=1.0, quality_alpha=0.2)
    assert pause_reason(signals, off) is None


def test_every_reason_fits_the_stored_reason() -> None:
    longest = [
        pause_reason(compute_signals(gold_rows(right=0, wrong=99_999), other_outcomes={}), rules()),
        pause_reason(compute_signals(repeat_rows(consistent=0, changed=9_999), other_outcomes={}), rules()),
        pause_reason(
            compute_signals([row(n, "regular", "A", True) for n in range(99_999)], other_outcomes={}),
            rules(max_position_bias=0.55),
        ),
    ]
    limit = Rater._meta.get_field("paused_reason").max_length
    assert [reason is not None and len(reason) <= limit for reason in longest] == [True, True, True]


# --- The service: stored signals, pausing, flagging, resuming -------------------------------------


def quality_study(**rules: object):  # type: ignore[no-untyped-def]
    """A study whose quality rules are the model's defaults unless a test changes one."""
    for name in (
        "min_gold_accuracy",
        "min_self_consistency",
        "max_position_bias",
        "min_quality_judgments",
        "quality_alpha",
        "quality_min_checks",
    ):
        rules.setdefault(name, Study._meta.get_field(name).default)
    return make_study(**rules)


def strict_study():  # type: ignore[no-untyped-def]
    """Two missed checks pause: 0 of 2 at 95 % has p = 0.0025, 0 of 1 has 0.05."""
    return quality_study(min_gold_accuracy=0.95, quality_min_checks=2)


def answer_gold(rater: Rater, *, correct: bool, key: str, active_seconds: float = 5.0):  # type: ignore[no-untyped-def]
    gold = factories.gold_comparison(study=rater.study, gold_answer="A")
    assignment = factories.assignment(comparison=gold, rater=rater, left_is_a=True)
    return judgment_submit(
        rater=rater,
        token=assignment.token,
        choice="left" if correct else "right",
        idempotency_key=key,
        active_seconds=active_seconds,
    )


def judge_twice(rater: Rater, *, number: int, same: bool) -> None:
    """A regular pair judged "left", then shown again with its samples swapped."""
    study = rater.study
    original = factories.comparison(study=study)
    first = factories.assignment(comparison=original, rater=rater, left_is_a=True)
    judgment_submit(rater=rater, token=first.token, choice="left", idempotency_key=f"o-{number}")
    repeat = factories.comparison(
        study=study,
        prompt=original.prompt,
        sample_a=original.sample_b,
        sample_b=original.sample_a,
        kind=ComparisonKind.REPEAT,
        repeat_of=original,
    )
    second = factories.assignment(comparison=repeat, rater=rater, left_is_a=True)
    # Left is now the other sample: "right" keeps the first verdict, "left" reverses it.
    choice = "right" if same else "left"
    judgment_submit(rater=rater, token=second.token, choice=choice, idempotency_key=f"r-{number}")


@pytest.mark.django_db
def test_a_rater_with_one_of_eight_gold_checks_right_is_paused_and_its_judgments_flagged() -> None:
    rater = factories.rater(study=quality_study())
    statuses = [answer_gold(rater, correct=True, key="k-0").rater_status]
    for number in range(1, 7):
        statuses.append(answer_gold(rater, correct=False, key=f"k-{number}").rater_status)
    assert statuses == [RaterStatus.ACTIVE] * 7  # 1 of 7 right: p = 0.019, not significant at 1 %

    eighth = answer_gold(rater, correct=False, key="k-7", active_seconds=0.5)

    assert eighth.rater_status == RaterStatus.PAUSED
    rater.refresh_from_db()
    assert rater.status == RaterStatus.PAUSED
    assert rater.paused_reason == (
        "Your answers on 7 of 8 check pairs disagreed with their known answers. This study expects "
        "at least 60% right, and that many misses is too many to be bad luck, so it has paused your "
        "rating."
    )
    assert eighth.paused_reason == rater.paused_reason
    assert rater.paused_at is not None
    assert (rater.quality["gold_checks"], rater.quality["gold_accuracy"]) == (8, 0.125)
    flags = dict(Judgment.objects.values_list("idempotency_key", "flag_reasons"))
    assert flags == {**{f"k-{n}": ["rater_paused"] for n in range(7)}, "k-7": ["fast", "rater_paused"]}
    assert Judgment.objects.filter(is_flagged=True).count() == 8


@pytest.mark.django_db
def test_the_demo_rater_with_one_of_three_repeats_consistent_stays_active() -> None:
    # What paused the demo's own rater: 21 votes, 3 repeats, 1 answered the same (33 % < 50 %).
    rater = factories.rater(study=quality_study())
    for number in range(15):
        assignment = factories.assignment(comparison=factories.comparison(study=rater.study), rater=rater)
        choice = ("left", "right", "tie")[number % 3]
        judgment_submit(rater=rater, token=assignment.token, choice=choice, idempotency_key=f"v-{number}")
    for number, same in enumerate([True, False, False]):
        judge_twice(rater, number=number, same=same)

    rater.refresh_from_db()
    assert (rater.status, rater.paused_reason) == (RaterStatus.ACTIVE, "")
    assert (rater.quality["judgments"], rater.quality["repeat_pairs"]) == (21, 3)
    assert rater.quality["self_consistency"] == pytest.approx(1 / 3)
    assert Judgment.objects.filter(is_flagged=True).count() == 0


@pytest.mark.django_db
def test_a_rater_passing_gold_checks_stays_active_with_its_signals_stored() -> None:
    rater = factories.rater(study=quality_study())
    answer_gold(rater, correct=True, key="k-1")
    answer_gold(rater, correct=True, key="k-2")
    answer_gold(rater, correct=False, key="k-3")

    rater.refresh_from_db()
    assert rater.status == RaterStatus.ACTIVE
    assert rater.quality["gold_checks"] == 3
    assert rater.quality["gold_accuracy"] == pytest.approx(2 / 3)
    assert rater.quality["median_active_seconds"] == 5.0
    assert Judgment.objects.filter(is_flagged=True).count() == 0


@pytest.mark.django_db
def test_the_votes_check_keeps_agreement_as_last_refreshed_and_the_refresh_recomputes_it() -> None:
    study = quality_study()
    rater, other = factories.rater(study=study), factories.rater(study=study)
    for number in range(2):  # both raters judged two regular pairs: the same on one, opposite on the other
        comparison = factories.comparison(study=study)
        factories.judgment(rater=other, comparison=comparison, outcome=Outcome.A)
        own = Outcome.A if number == 0 else Outcome.B
        factories.judgment(rater=rater, comparison=comparison, outcome=own)
    rater_quality_update(rater_id=rater.id)  # what the scheduled refresh does
    rater.refresh_from_db()
    assert (rater.quality["majority_comparisons"], rater.quality["majority_agreement"]) == (2, 0.5)

    answer_gold(rater, correct=True, key="k-1")  # a gold vote runs the vote's check

    rater.refresh_from_db()
    assert rater.quality["gold_checks"] == 1  # recomputed by the vote's check
    assert (rater.quality["majority_comparisons"], rater.quality["majority_agreement"]) == (2, 0.5)
    comparison = factories.comparison(study=study)  # a third pair on which the two agree
    factories.judgment(rater=other, comparison=comparison, outcome=Outcome.B)
    factories.judgment(rater=rater, comparison=comparison, outcome=Outcome.B)
    rater_quality_update(rater_id=rater.id)
    rater.refresh_from_db()
    assert rater.quality["majority_comparisons"] == 3
    assert rater.quality["majority_agreement"] == pytest.approx(2 / 3)


@pytest.mark.django_db
def test_position_bias_is_checked_every_tenth_regular_judgment() -> None:
    study = quality_study(min_quality_judgments=10, max_position_bias=0.55)  # 10 of 10: p = 0.005
    rater = factories.rater(study=study)
    statuses = []
    for number in range(10):
        assignment = factories.assignment(comparison=factories.comparison(study=study), rater=rater)
        submission = judgment_submit(
            rater=rater, token=assignment.token, choice="left", idempotency_key=f"k-{number}"
        )
        statuses.append(submission.rater_status)

    assert statuses == [RaterStatus.ACTIVE] * 9 + [RaterStatus.PAUSED]
    rater.refresh_from_db()
    assert rater.paused_reason == (
        "You chose the left side in 10 of 10 votes, though the two pieces are placed at random. This "
        "study expects at most 55% on one side, and that many is too many to be bad luck, so it has "
        "paused your rating."
    )


@pytest.mark.django_db
def test_inconsistent_repeats_pause_the_rater_once_significant() -> None:
    rater = factories.rater(study=quality_study())
    for number in range(6):
        judge_twice(rater, number=number, same=False)
    rater.refresh_from_db()
    assert rater.status == RaterStatus.ACTIVE  # none of 6 the same: p = 0.016

    judge_twice(rater, number=6, same=False)  # none of 7: p = 0.0078

    rater.refresh_from_db()
    assert rater.status == RaterStatus.PAUSED
    assert rater.paused_reason.startswith("Of the 7 pairs shown to you twice (sides swapped), 7 got")
    assert (rater.quality["repeat_pairs"], rater.quality["self_consistency"]) == (7, 0.0)


@pytest.mark.django_db
def test_resume_clears_the_pause_and_its_flags_but_keeps_other_flags() -> None:
    rater = factories.rater(study=strict_study())
    answer_gold(rater, correct=False, key="k-1", active_seconds=0.5)
    answer_gold(rater, correct=False, key="k-2")

    resumed = rater_resume(rater_id=rater.id)

    assert (resumed.status, resumed.paused_reason, resumed.paused_at) == (RaterStatus.ACTIVE, "", None)
    flags = dict(Judgment.objects.values_list("idempotency_key", "flag_reasons"))
    assert flags == {"k-1": ["fast"], "k-2": []}
    assert list(Judgment.objects.order_by("id").values_list("is_flagged", flat=True)) == [True, False]


@pytest.mark.django_db
def test_after_a_resume_only_new_judgments_count_toward_a_new_pause() -> None:
    rater = factories.rater(study=strict_study())
    answer_gold(rater, correct=False, key="k-1")
    answer_gold(rater, correct=False, key="k-2")
    rater = rater_resume(rater_id=rater.id)
    rater = Rater.objects.select_related("study").get(id=rater.id)

    after_one = answer_gold(rater, correct=False, key="k-3")
    after_two = answer_gold(rater, correct=False, key="k-4")

    assert after_one.rater_status == RaterStatus.ACTIVE
    assert after_two.rater_status == RaterStatus.PAUSED
    rater.refresh_from_db()
    assert rater.quality["gold_checks"] == 4  # the stored signals still cover everything


@pytest.mark.django_db
def test_resuming_an_active_rater_is_refused() -> None:
    rater = factories.rater()

    with pytest.raises(ApplicationError, match="This rater is not paused"):
        rater_resume(rater_id=rater.id)


@pytest.mark.django_db
def test_staff_pause_flags_existing_judgments_and_a_second_pause_changes_nothing() -> None:
    rater = factories.rater()
    factories.judgment(rater=rater, comparison=factories.comparison(study=rater.study))

    assert rater_pause(rater_id=rater.id, reason="Looks automated.") is True
    assert rater_pause(rater_id=rater.id, reason="Again.") is False

    rater.refresh_from_db()
    assert rater.paused_reason == "Looks automated."
    assert Judgment.objects.get().flag_reasons == ["rater_paused"]


@pytest.mark.django_db
def test_quality_update_of_a_rater_without_judgments_stores_empty_signals() -> None:
    rater = factories.rater()

    update = rater_quality_update(rater_id=rater.id)

    assert update.status == RaterStatus.ACTIVE
    rater.refresh_from_db()
    assert rater.quality["judgments"] == 0
    assert rater.quality["gold_accuracy"] is None


@pytest.mark.django_db
def test_scheduled_refresh_covers_only_active_studies_with_recent_judgments() -> None:
    from datetime import timedelta

    from django.utils import timezone

    from server.ratings.services import rater_quality_refresh_recent

    recent = factories.study()
    factories.judgment(comparison=factories.comparison(study=recent), rater=factories.rater(study=recent))
    factories.rater(study=recent)  # a second rater of the same study, no judgment yet
    old = factories.study()
    factories.judgment(
        comparison=factories.comparison(study=old),
        rater=factories.rater(study=old),
        submitted_at=timezone.now() - timedelta(hours=2),
    )
    closed = factories.study(is_active=False)
    factories.judgment(comparison=factories.comparison(study=closed), rater=factories.rater(study=closed))

    assert rater_quality_refresh_recent(within_minutes=15) == 2


@pytest.mark.django_db
def test_a_resume_during_a_quality_check_is_not_written_over(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from server.ratings import sql

    rater = factories.rater(study=quality_study())
    rater_pause(rater_id=rater.id, reason="staff")
    read_rows = sql.quality_rows

    def rows_while_staff_resume(**arguments):  # type: ignore[no-untyped-def]
        rows = read_rows(**arguments)
        rater_resume(rater_id=rater.id)  # lands after the check read the stored quality
        return rows

    monkeypatch.setattr(sql, "quality_rows", rows_while_staff_resume)
    rater_quality_update(rater_id=rater.id)

    rater.refresh_from_db()
    assert rater.status == RaterStatus.ACTIVE
    assert "resumed_at" in rater.quality  # the check merged its signals, it did not replace the row
    assert rater.quality["judgments"] == 0
