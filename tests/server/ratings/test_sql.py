"""The hand-written reads of the rating path give the same rows as the ORM would."""

from __future__ import annotations

import pytest

from server.ratings import sql
from server.ratings.models import Comparison, ComparisonKind, Outcome
from server.studies.models import Study
from tests import factories
from tests.server.ratings.conftest import make_study

pytestmark = pytest.mark.django_db


def test_the_rater_comes_with_every_study_rule_it_selects_and_each_in_its_place() -> None:
    # Distinct values everywhere, so that a value read into the wrong field cannot go unnoticed
    # (Model.from_db fills fields by position in the model's order, not the SELECT's).
    study = factories.study(
        overlap=4,
        gold_rate=0.11,
        repeat_rate=0.07,
        per_rater_cap=33,
        reservation_seconds=321,
        show_progress=False,
        fast_judgment_seconds=1.5,
        min_gold_accuracy=0.71,
        min_self_consistency=0.62,
        max_position_bias=0.83,
        min_quality_judgments=17,
        quality_alpha=0.037,
        quality_min_checks=5,
    )
    rater = factories.rater(study=study)

    loaded = sql.rater_with_study(rater_id=rater.id, study_slug=study.slug)

    assert loaded is not None
    stored = Study.objects.get(id=study.id)
    assert {column: getattr(loaded.study, column) for column in sql.STUDY_COLUMNS} == {
        column: getattr(stored, column) for column in sql.STUDY_COLUMNS
    }
    assert (loaded.id, loaded.user_id, loaded.status) == (rater.id, rater.user_id, rater.status)
    assert sql.rater_with_study(rater_id=rater.id, study_slug="another-study") is None


def test_a_gold_candidate_is_one_the_rater_has_not_seen_with_its_texts() -> None:
    study = make_study()
    rater = factories.rater(study=study)
    seen, unseen = factories.gold_comparison(study=study), factories.gold_comparison(study=study)
    factories.judgment(rater=rater, comparison=seen)
    factories.comparison(study=study)  # regular: never a gold candidate

    candidate = sql.lock_gold_candidate(study_id=study.id, rater_id=rater.id)

    assert candidate is not None and candidate.id == unseen.id
    assert candidate.kind == ComparisonKind.GOLD
    assert candidate.sample_a.text == unseen.sample_a.text
    assert candidate.prompt.text == unseen.prompt.text


def test_a_repeat_original_is_an_older_judged_regular_pair_not_repeated_before() -> None:
    study = make_study()
    rater = factories.rater(study=study)
    judged = [factories.comparison(study=study) for _ in range(5)]
    for number, comparison in enumerate(judged):
        factories.judgment(rater=rater, comparison=comparison, left_is_a=number % 2 == 0, outcome=Outcome.A)
    factories.judgment(rater=rater, comparison=factories.gold_comparison(study=study))
    repeated = Comparison.objects.create(
        study=study,
        prompt=judged[0].prompt,
        sample_a=judged[0].sample_b,
        sample_b=judged[0].sample_a,
        kind=ComparisonKind.REPEAT,
        repeat_of=judged[0],
    )
    factories.assignment(comparison=repeated, rater=rater)

    # The last three judged (gold included) are too recent; the first was repeated already.
    found = {sql.repeat_original(rater_id=rater.id, skip_latest=3) for _ in range(30)}

    originals = {(comparison.id, left_is_a) for comparison, left_is_a in found}  # type: ignore[misc]
    assert originals <= {(judged[1].id, False), (judged[2].id, True)}
    assert len(originals) == 2  # a random choice, not always the same
    comparison, _ = next(iter(found))  # type: ignore[misc]
    assert comparison.sample_b.text == Comparison.objects.get(id=comparison.id).sample_b.text
    assert sql.repeat_original(rater_id=rater.id, skip_latest=10) is None


def test_insert_stores_every_field_as_the_orm_would() -> None:
    from datetime import timedelta

    from django.utils import timezone

    from server.ratings.models import Judgment

    assignment = factories.assignment()
    now = timezone.now()
    judgment = Judgment(
        assignment=assignment,
        outcome=Outcome.B,
        chose_left=False,
        strength=3,
        rationale="the second one scans",
        idempotency_key="key-insert-1",
        shown_at=now - timedelta(seconds=9),
        first_input_at=now - timedelta(seconds=4),
        submitted_at=now,
        active_seconds=7.25,
        is_flagged=True,
        flag_reasons=["fast", "rater_paused"],
    )

    sql.insert(judgment)

    stored = Judgment.objects.get(id=judgment.id)
    assert judgment.id is not None and not judgment._state.adding
    fields = [field.attname for field in Judgment._meta.concrete_fields]
    assert {name: getattr(stored, name) for name in fields} == {
        name: getattr(judgment, name) for name in fields
    }
    assert stored.flag_reasons == ["fast", "rater_paused"]
    assert (stored.revoked_at, stored.revoked_reason, stored.replaces_id) == (None, "", None)


def test_insert_without_returning_reads_the_new_id_from_the_cursor(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from django.db import connection

    if connection.vendor != "sqlite":
        pytest.skip("the fallback is for SQLite before 3.35, which has no RETURNING")
    monkeypatch.setattr(connection.features, "can_return_columns_from_insert", False)
    monkeypatch.setattr(sql, "_INSERT_SQL", {})
    comparison = factories.comparison()
    first = factories.assignment(comparison=comparison)
    from server.ratings.models import Assignment

    second = Assignment(
        comparison=comparison,
        rater=factories.rater(study=comparison.study),
        left_is_a=False,
        reserved_at=first.reserved_at,
        expires_at=first.expires_at,
    )

    sql.insert(second)

    assert second.id == Assignment.objects.latest("id").id != first.id
