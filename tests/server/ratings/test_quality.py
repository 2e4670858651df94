"""Quality signals (pure, hand-computed) and the thresholds that pause and flag a rater."""

from __future__ import annotations

import random

import pytest

from server.core.exceptions import ApplicationError
from server.ratings.models import ComparisonKind, Judgment, Outcome, Rater, RaterStatus
from server.ratings.quality import QualityRow, compute_signals, pause_reason
from server.ratings.services import judgment_submit, rater_pause, rater_quality_update, rater_resume
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


class Thresholds:
    min_gold_accuracy = 0.6
    min_gold_checks = 1  # below the fair minimum of two: two are required anyway
    min_self_consistency = 0.5
    max_position_bias = 0.9
    min_quality_judgments = 4


def test_one_failed_gold_check_never_pauses_even_when_the_study_asks_for_one() -> None:
    signals = compute_signals([row(1, "gold", "B", False, gold="A")], other_outcomes={})

    assert pause_reason(signals, Thresholds) is None


def test_two_failed_gold_checks_pause_with_the_reason_in_words() -> None:
    rows = [row(1, "gold", "B", False, gold="A"), row(2, "gold", "tie", None, gold="B")]

    reason = pause_reason(compute_signals(rows, other_outcomes={}), Thresholds)

    assert reason == "0 of 2 check questions were answered as expected (0%); this study needs 60%."


def test_inconsistent_repeats_pause_after_the_minimum_number_of_judgments() -> None:
    rows = [
        row(1, "regular", "A", True),
        row(2, "regular", "A", False),
        row(3, "repeat", "A", True, repeat_of=1),  # A swapped back is B: inconsistent
        row(4, "repeat", "A", False, repeat_of=2),
    ]

    reason = pause_reason(compute_signals(rows, other_outcomes={}), Thresholds)

    assert reason == "Pairs shown twice got the same answer 0% of the time (2 pairs); this study needs 50%."
    assert pause_reason(compute_signals(rows[:3], other_outcomes={}), Thresholds) is None


def test_always_choosing_one_side_pauses_for_position_bias() -> None:
    rows = [row(number, "regular", "A", False) for number in range(4)]

    reason = pause_reason(compute_signals(rows, other_outcomes={}), Thresholds)

    assert (
        reason == "The right side was chosen in 100% of 4 votes; this study allows at most 90% for one side."
    )


# --- The service: stored signals, pausing, flagging, resuming -------------------------------------


def quality_study(**rules: object):  # type: ignore[no-untyped-def]
    rules.setdefault("min_gold_accuracy", 0.6)
    rules.setdefault("min_gold_checks", 2)
    rules.setdefault("min_quality_judgments", 10)
    rules.setdefault("max_position_bias", 0.9)
    rules.setdefault("min_self_consistency", 0.5)
    return make_study(**rules)


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


@pytest.mark.django_db
def test_a_rater_failing_two_gold_checks_is_paused_and_its_judgments_flagged() -> None:
    rater = factories.rater(study=quality_study())
    first = answer_gold(rater, correct=False, key="k-1")
    assert first.rater_status == RaterStatus.ACTIVE

    second = answer_gold(rater, correct=False, key="k-2", active_seconds=0.5)

    assert second.rater_status == RaterStatus.PAUSED
    rater.refresh_from_db()
    assert rater.status == RaterStatus.PAUSED
    assert (
        rater.paused_reason == "0 of 2 check questions were answered as expected (0%); this study needs 60%."
    )
    assert rater.paused_at is not None
    assert rater.quality["gold_checks"] == 2
    assert rater.quality["gold_accuracy"] == 0.0
    flags = dict(Judgment.objects.values_list("idempotency_key", "flag_reasons"))
    assert flags == {"k-1": ["rater_paused"], "k-2": ["fast", "rater_paused"]}
    assert Judgment.objects.filter(is_flagged=True).count() == 2


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
    study = quality_study(min_quality_judgments=10)
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
        "The left side was chosen in 100% of 10 votes; this study allows at most 90% for one side."
    )


@pytest.mark.django_db
def test_inconsistent_repeats_pause_the_rater() -> None:
    study = quality_study(min_quality_judgments=4)
    rater = factories.rater(study=study)
    for number in range(2):
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
        # Left again, but left is now the other sample: the opposite verdict.
        judgment_submit(rater=rater, token=second.token, choice="left", idempotency_key=f"r-{number}")

    rater.refresh_from_db()
    assert rater.status == RaterStatus.PAUSED
    assert rater.quality["repeat_pairs"] == 2
    assert rater.quality["self_consistency"] == 0.0


@pytest.mark.django_db
def test_resume_clears_the_pause_and_its_flags_but_keeps_other_flags() -> None:
    rater = factories.rater(study=quality_study())
    answer_gold(rater, correct=False, key="k-1", active_seconds=0.5)
    answer_gold(rater, correct=False, key="k-2")

    resumed = rater_resume(rater_id=rater.id)

    assert (resumed.status, resumed.paused_reason, resumed.paused_at) == (RaterStatus.ACTIVE, "", None)
    flags = dict(Judgment.objects.values_list("idempotency_key", "flag_reasons"))
    assert flags == {"k-1": ["fast"], "k-2": []}
    assert list(Judgment.objects.order_by("id").values_list("is_flagged", flat=True)) == [True, False]


@pytest.mark.django_db
def test_after_a_resume_only_new_judgments_count_toward_a_new_pause() -> None:
    rater = factories.rater(study=quality_study())
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
