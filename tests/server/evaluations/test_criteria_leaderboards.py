"""One leaderboard, snapshot and reward-model lineage per criterion: the same trusted judgments,
each criterion with its own answers."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from server.evaluations.leaderboard import leaderboard_recompute_run
from server.evaluations.models import LeaderboardSnapshot
from server.evaluations.selectors import leaderboard_latest
from server.jobs.models import Job, JobKind
from server.ratings.models import JudgmentAnswer, Outcome
from server.studies.models import Criterion
from server.studies.services import study_create
from server.training.services import reward_model_train_start, snapshot_start
from server.training.snapshots import snapshot_create
from tests import factories
from tests.server.api.conftest import token_client

pytestmark = pytest.mark.django_db


def two_minds():  # type: ignore[no-untyped-def]
    """A creativity study whose raters find "wild" more original (8 of 8) and "plain" better (7 of
    8, one tie): the two leaderboards must rank them in opposite orders."""
    study = study_create(name="Poems", slug="poems", template="creativity")
    better = Criterion.objects.get(study=study)
    prompt = factories.prompt(study=study)
    wild, plain = (factories.version(label=label, enrol_in=study) for label in ("wild", "plain"))
    comparison = factories.comparison(
        study=study,
        prompt=prompt,
        sample_a=factories.sample(prompt=prompt, version=wild),
        sample_b=factories.sample(prompt=prompt, version=plain),
    )
    for number in range(8):
        judgment = factories.judgment(
            comparison=comparison, rater=factories.rater(study=study), outcome=Outcome.A, strength=3
        )
        answer = Outcome.TIE if number == 0 else Outcome.B
        JudgmentAnswer.objects.create(judgment=judgment, criterion=better, outcome=answer)
    return study, better, wild, plain


def test_a_recompute_stores_one_leaderboard_per_criterion() -> None:
    study, better, wild, plain = two_minds()
    job = Job.objects.create(kind=JobKind.RECOMPUTE_LEADERBOARD, study=study, params={"rounds": 50})

    result = leaderboard_recompute_run(job=job, report=lambda **_: None)
    again = leaderboard_recompute_run(job=job, report=lambda **_: None)  # a retried job adds none

    original = leaderboard_latest(study=study)
    valued = leaderboard_latest(study=study, criterion_id=better.id)
    assert (
        result
        == again
        == {"leaderboard_id": original.id, "judgments": 8, "leaderboard_ids": [original.id, valued.id]}
    )
    assert LeaderboardSnapshot.objects.count() == 2
    assert (original.criterion_id, valued.criterion_id) == (None, better.id)
    assert [row["version_id"] for row in original.rows] == [wild.id, plain.id]
    assert [row["version_id"] for row in valued.rows] == [plain.id, wild.id]
    # 7 wins and a tie (half a win) of 8 for plain on "better"; 8 of 8 for wild on "original".
    assert {row["version_id"]: row["win_rate"] for row in valued.rows} == {plain.id: 0.9375, wild.id: 0.0625}
    assert {row["version_id"]: row["win_rate"] for row in original.rows} == {wild.id: 1.0, plain.id: 0.0}
    assert (valued.params["breakdown"]["ties"], original.params["breakdown"]["ties"]) == (1, 0)


def test_a_snapshot_of_a_further_criterion_carries_its_answers_without_margins() -> None:
    study, better, wild, plain = two_minds()

    original = snapshot_create(study=study, validation_fraction=0.0)
    valued = snapshot_create(study=study, validation_fraction=0.0, criterion_id=better.id)

    assert (original.criterion_id, valued.criterion_id) == (None, better.id)
    assert original.content_hash != valued.content_hash
    assert (original.train_count, valued.train_count) == (8, 7)  # the tie states no preference
    assert {(p.chosen.version_id, p.margin) for p in original.pairs.select_related("chosen")} == {
        (wild.id, 1.0)
    }
    assert {(p.chosen.version_id, p.margin) for p in valued.pairs.select_related("chosen")} == {
        (plain.id, 0.0)
    }
    assert str(valued).endswith("(better)")


def test_snapshot_and_reward_model_jobs_name_their_criterion() -> None:
    study, better, _wild, _plain = two_minds()
    job = snapshot_start(study=study, criterion="better")
    assert job.params["criterion_id"] == better.id
    assert "criterion_id" not in snapshot_start(study=study, criterion="original").params
    with pytest.raises(Exception, match=r"This study has no criterion 'worse'; it has original, better\."):
        snapshot_start(study=study, criterion="worse")

    original = snapshot_create(study=study, validation_fraction=0.0)
    valued = snapshot_create(study=study, validation_fraction=0.0, criterion_id=better.id)
    # The newest snapshot of the asked criterion; the study's own question by default.
    assert reward_model_train_start(study=study).params["snapshot_id"] == original.id
    assert reward_model_train_start(study=study, criterion="better").params["snapshot_id"] == valued.id


def test_the_api_and_the_dashboard_show_each_criterions_leaderboard(client) -> None:  # type: ignore[no-untyped-def]
    study, _better, wild, plain = two_minds()
    leaderboard_recompute_run(
        job=Job.objects.create(kind=JobKind.RECOMPUTE_LEADERBOARD, study=study, params={"rounds": 20}),
        report=lambda **_: None,
    )
    staff = factories.user(is_staff=True)
    api: APIClient = token_client(staff)

    default = api.get("/api/studies/poems/leaderboard/").json()
    valued = api.get("/api/studies/poems/leaderboard/?criterion=better").json()
    unknown = api.get("/api/studies/poems/leaderboard/?criterion=worse")
    assert (default["criterion"], default["rows"][0]["version_id"]) == (None, wild.id)
    assert (valued["criterion"], valued["rows"][0]["version_id"]) == ("better", plain.id)
    assert unknown.status_code == 404
    assert unknown.json()["error"] == "This study has no criterion 'worse'; it has original, better."

    client.force_login(staff)
    page = client.get("/dashboard/studies/poems/?criterion=better").content.decode()
    assert 'id="criterion-selector"' in page
    assert 'data-criterion="better" aria-current="true"' in page
    assert 'href="?criterion=original#leaderboard"' in page
