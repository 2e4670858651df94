from __future__ import annotations

import pytest
from django.utils import timezone

from server.evaluations.leaderboard import leaderboard_compute
from server.evaluations.services import leaderboards_recompute_due
from server.jobs.models import Job
from server.ratings.models import ComparisonKind, RaterStatus
from server.studies.models import PromptSplit
from tests import factories

pytestmark = pytest.mark.django_db


def arena(split: str = PromptSplit.TRAIN):  # type: ignore[no-untyped-def]
    """A study with versions strong > middle > weak and a prompt of ``split`` with one sample each."""
    study = factories.study()
    prompt = factories.prompt(study=study, split=split)
    versions = [factories.version(label=label, enrol_in=study) for label in ("strong", "middle", "weak")]
    samples = {v.label: factories.sample(prompt=prompt, version=v) for v in versions}
    return study, prompt, versions, samples


def vote(study, prompt, winner, loser, times, **judgment_fields):  # type: ignore[no-untyped-def]
    comparison = factories.comparison(study=study, prompt=prompt, sample_a=winner, sample_b=loser)
    for _ in range(times):
        rater = factories.rater(study=study)
        factories.judgment(comparison=comparison, rater=rater, outcome="A", **judgment_fields)
    return comparison


def test_ratings_order_versions_by_planted_strength_with_intervals() -> None:
    study, prompt, _versions, samples = arena()
    vote(study, prompt, samples["strong"], samples["middle"], 8)
    vote(study, prompt, samples["middle"], samples["weak"], 8)
    comparison = vote(study, prompt, samples["weak"], samples["strong"], 1)
    for _ in range(7):
        factories.judgment(comparison=comparison, rater=factories.rater(study=study), outcome="B")

    board = leaderboard_compute(study=study, rounds=200)

    labels = [row["label"].split("/")[-1] for row in board.rows]
    assert labels == ["strong", "middle", "weak"]
    assert board.judgment_count == 24
    assert board.params["split"] == "all"
    strong = board.rows[0]
    assert strong["lower"] <= strong["rating"] <= strong["upper"]
    assert strong["battles"] == 16
    assert board.matrices["battles"][0][1] == 8
    assert board.matrices["win_rate"][0][1] == 1.0
    assert "davidson" in board.matrices["diagnostics"]


def test_ties_count_as_half_a_win() -> None:
    study, prompt, versions, samples = arena()
    comparison = vote(study, prompt, samples["strong"], samples["weak"], 0)
    for outcome in ("tie", "tie", "A", "B"):
        factories.judgment(comparison=comparison, rater=factories.rater(study=study), outcome=outcome)
    board = leaderboard_compute(study=study, rounds=0)
    index = board.matrices["version_ids"].index(versions[0].id)
    other = board.matrices["version_ids"].index(versions[2].id)
    assert board.matrices["win_rate"][index][other] == 0.5


def test_flagged_revoked_gold_and_paused_raters_judgments_are_not_counted() -> None:
    study, prompt, _versions, samples = arena()
    comparison = vote(study, prompt, samples["strong"], samples["weak"], 2)
    factories.judgment(
        comparison=comparison, rater=factories.rater(study=study), is_flagged=True, flag_reasons=["fast"]
    )
    factories.judgment(
        comparison=comparison,
        rater=factories.rater(study=study),
        revoked_at=timezone.now(),
        revoked_reason="undo",
    )
    paused = factories.rater(study=study, status=RaterStatus.PAUSED, paused_reason="gold accuracy 0.2")
    factories.judgment(comparison=comparison, rater=paused)
    gold = factories.comparison(
        study=study,
        prompt=prompt,
        sample_a=samples["middle"],
        sample_b=samples["weak"],
        kind=ComparisonKind.GOLD,
        gold_answer="A",
    )
    factories.judgment(comparison=gold, rater=factories.rater(study=study))
    assert leaderboard_compute(study=study, rounds=0).judgment_count == 2


def test_holdout_judgments_are_preferred_when_present() -> None:
    study, prompt, versions, samples = arena()
    vote(study, prompt, samples["strong"], samples["weak"], 3)
    holdout = factories.prompt(study=study, split=PromptSplit.HOLDOUT)
    held = {v.label: factories.sample(prompt=holdout, version=v) for v in versions}
    vote(study, holdout, held["weak"], held["strong"], 2)
    board = leaderboard_compute(study=study, rounds=0)
    assert (board.params["split"], board.judgment_count) == ("holdout", 2)
    assert board.rows[0]["label"].endswith("weak")


def test_no_judgments_gives_equal_ratings_and_rank_one() -> None:
    study, *_ = arena()
    board = leaderboard_compute(study=study, rounds=50)
    assert board.judgment_count == 0
    assert {row["rank"] for row in board.rows} == {1}
    assert len({row["rating"] for row in board.rows}) == 1


def test_scheduled_recompute_starts_only_for_studies_with_new_judgments(
    django_capture_on_commit_callbacks,
) -> None:  # type: ignore[no-untyped-def]
    study, prompt, _versions, samples = arena()
    quiet, *_ = arena()
    vote(study, prompt, samples["strong"], samples["weak"], 1)
    with django_capture_on_commit_callbacks(execute=False):
        started = leaderboards_recompute_due()
    assert [Job.objects.get(id=job_id).study_id for job_id in started] == [study.id]
    with django_capture_on_commit_callbacks(execute=False):
        assert leaderboards_recompute_due() == []  # one is already queued
    Job.objects.filter(id__in=started).update(status="cancelled", finished_at=timezone.now())
    leaderboard_compute(study=study, rounds=0)
    with django_capture_on_commit_callbacks(execute=False):
        assert leaderboards_recompute_due() == []  # nothing new since the snapshot
    assert quiet.leaderboards.count() == 0
