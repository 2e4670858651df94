from __future__ import annotations

import pytest
from django.utils import timezone

from server.core.exceptions import ApplicationError
from server.evaluations.leaderboard import leaderboard_compute
from server.evaluations.services import leaderboard_recompute_start, leaderboards_recompute_due
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


def test_the_bootstrap_resamples_prompts_by_default_and_records_how_many() -> None:
    study, prompt, versions, samples = arena()
    vote(study, prompt, samples["strong"], samples["weak"], 3)
    other = factories.prompt(study=study)
    held = {v.label: factories.sample(prompt=other, version=v) for v in versions}
    vote(study, other, held["middle"], held["weak"], 2)
    board = leaderboard_compute(study=study, rounds=50)
    assert study.bootstrap_clusters == "prompt"
    assert board.params["bootstrap_clusters"] == "prompt"
    assert board.params["clusters"] == {"prompts": 2}
    # Two prompts cannot support an interval: the snapshot says so.
    assert board.params["warnings"] == [
        "The bootstrap resampled only 2 prompts: with fewer than 20 the intervals are too narrow to trust."
    ]
    crossed = leaderboard_compute(study=study, rounds=50, bootstrap_clusters="prompt_and_rater")
    assert crossed.params["clusters"] == {"prompts": 2, "raters": 5}
    independent = leaderboard_compute(study=study, rounds=50, bootstrap_clusters="none")
    assert independent.params["clusters"] == {"judgments": 5}


def test_a_single_prompt_gives_zero_width_intervals_under_prompt_clusters_but_not_under_none() -> None:
    study, prompt, _versions, samples = arena()
    comparison = vote(study, prompt, samples["strong"], samples["weak"], 3)
    factories.judgment(comparison=comparison, rater=factories.rater(study=study), outcome="B")
    clustered = leaderboard_compute(study=study, rounds=100)
    independent = leaderboard_compute(study=study, rounds=100, bootstrap_clusters="none")
    strong = next(row for row in clustered.rows if row["label"].endswith("strong"))
    assert strong["lower"] == strong["rating"] == strong["upper"]
    strong_independent = next(row for row in independent.rows if row["label"].endswith("strong"))
    assert strong_independent["lower"] < strong_independent["rating"] < strong_independent["upper"]


def test_an_unknown_cluster_scheme_is_refused() -> None:
    study, *_ = arena()
    with pytest.raises(ApplicationError) as refused:
        leaderboard_compute(study=study, rounds=0, bootstrap_clusters="samples")
    assert refused.value.extra == {"field": "bootstrap_clusters"}
    with pytest.raises(ApplicationError):
        leaderboard_recompute_start(study=study, bootstrap_clusters="samples")
    assert not Job.objects.exists()


def test_the_snapshot_explains_which_judgments_count_and_why_the_others_do_not() -> None:
    study, prompt, _versions, samples = arena()
    comparison = vote(study, prompt, samples["strong"], samples["weak"], 2)  # counted
    for outcome in ("tie", "both_bad"):  # counted: a tie, and both bad as a tie
        factories.judgment(comparison=comparison, rater=factories.rater(study=study), outcome=outcome)
    factories.judgment(comparison=comparison, rater=factories.rater(study=study), is_flagged=True)
    factories.judgment(
        comparison=comparison,
        rater=factories.rater(study=study),
        revoked_at=timezone.now(),
        revoked_reason="undo",
    )  # not live: in no count
    paused = factories.rater(study=study, status=RaterStatus.PAUSED, paused_reason="staff")
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
    outsider = factories.version(label="outsider")  # not enrolled in the study
    stray = factories.comparison(
        study=study,
        prompt=prompt,
        sample_a=samples["strong"],
        sample_b=factories.sample(prompt=prompt, version=outsider),
    )
    factories.judgment(comparison=stray, rater=factories.rater(study=study))

    board = leaderboard_compute(study=study, rounds=0)

    assert board.judgment_count == 4
    assert board.params["breakdown"] == {
        "split": "all",
        "live": 8,
        "gold": 1,
        "repeat": 0,
        "flagged": 1,
        "paused_rater": 1,
        "other_split": 0,
        "versions": 1,
        "counted": 4,
        "ties": 1,
        "both_bad": 1,
    }


def test_judgments_on_train_prompts_are_explained_when_the_board_uses_holdout() -> None:
    study, prompt, versions, samples = arena()
    vote(study, prompt, samples["strong"], samples["weak"], 3)
    holdout = factories.prompt(study=study, split=PromptSplit.HOLDOUT)
    held = {v.label: factories.sample(prompt=holdout, version=v) for v in versions}
    vote(study, holdout, held["weak"], held["strong"], 2)
    breakdown = leaderboard_compute(study=study, rounds=0).params["breakdown"]
    assert (breakdown["split"], breakdown["live"], breakdown["other_split"], breakdown["counted"]) == (
        "holdout",
        5,
        3,
        2,
    )


def test_the_win_rate_carries_its_bootstrap_interval() -> None:
    study, _prompt, _versions, samples = arena()
    for index in range(30):
        own = factories.prompt(study=study)
        strong = factories.sample(prompt=own, version=samples["strong"].version)
        weak = factories.sample(prompt=own, version=samples["weak"].version)
        if index % 3:
            vote(study, own, strong, weak, 2)
        else:
            vote(study, own, weak, strong, 2)
    board = leaderboard_compute(study=study, rounds=200)
    strong_row = next(row for row in board.rows if row["label"].endswith("strong"))
    assert strong_row["win_rate"] == pytest.approx(40 / 60, abs=1e-4)
    assert strong_row["win_rate_lower"] < strong_row["win_rate"] < strong_row["win_rate_upper"]
    middle_row = next(row for row in board.rows if row["label"].endswith("middle"))
    assert middle_row["battles"] == 0 and middle_row["win_rate_lower"] is None


def test_the_length_controlled_board_is_stored_with_intervals_and_ranks() -> None:
    # given versions judged on several prompts, each sample with its token count
    study = factories.study()
    versions = [factories.version(label=label, enrol_in=study) for label in ("long", "short")]
    for index in range(6):
        prompt = factories.prompt(study=study)
        long = factories.sample(prompt=prompt, version=versions[0], token_count=60 + index)
        short = factories.sample(prompt=prompt, version=versions[1], token_count=20 + 3 * index)
        vote(study, prompt, long, short, 3)
        comparison = vote(study, prompt, short, long, 1)
        factories.judgment(comparison=comparison, rater=factories.rater(study=study), outcome="tie")

    # when the leaderboard is recomputed
    board = leaderboard_compute(study=study, rounds=50)

    # then the length-controlled ratings carry intervals and ranks from as many rounds, resampled
    # like the plain board (whole prompts), next to the length coefficient and its interval
    style = board.matrices["diagnostics"]["style_control"]
    assert style["rounds"] == 50
    assert {row["version_id"] for row in style["rows"]} == {v.id for v in versions}
    for row in style["rows"]:
        assert row["lower"] <= row["rating"] <= row["upper"]
        assert row["rating"] == style["ratings"][row["version_id"]]
    first, second = style["rows"]
    assert (first["rank"], second["rank"]) == ((1, 2) if second["upper"] < first["lower"] else (1, 1))
    low, high = style["length_coefficient_interval"]
    assert low <= style["length_coefficient"] <= high
    davidson = board.matrices["diagnostics"]["davidson"]
    assert davidson["tie_parameter"] > 0 and 0 < davidson["tie_probability_between_equals"] < 1


def test_without_token_counts_there_is_no_length_controlled_board() -> None:
    study, prompt, _versions, samples = arena()
    vote(study, prompt, samples["strong"], samples["weak"], 3)
    board = leaderboard_compute(study=study, rounds=10)
    assert "style_control" not in board.matrices["diagnostics"]
    assert board.matrices["diagnostics"]["style_control_missing"] == "some samples have no token count"
