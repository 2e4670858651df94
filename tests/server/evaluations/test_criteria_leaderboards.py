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


def agreeing_on_originality_not_on_value():  # type: ignore[no-untyped-def]
    """Two raters, four comparisons with token counts: on "original" they agree on every one
    (α = 1); on "better" they give the hand-computed table of tests/evaluation/
    test_agreement_intervals.py (ordinal α 0.79, nominal α 2/3)."""
    study = study_create(name="Poems", slug="poems", template="creativity")
    better = Criterion.objects.get(study=study)
    wild, plain = (factories.version(label=label, enrol_in=study) for label in ("wild", "plain"))
    raters = [factories.rater(study=study) for _ in range(2)]
    original_answers = [Outcome.A, Outcome.B, Outcome.A, Outcome.B]
    better_answers = [["A", "B", "A", "tie"], ["A", "B", "tie", "tie"]]
    for index, original in enumerate(original_answers):
        prompt = factories.prompt(study=study)
        comparison = factories.comparison(
            study=study,
            prompt=prompt,
            sample_a=factories.sample(prompt=prompt, version=wild, token_count=40 + 10 * index),
            sample_b=factories.sample(prompt=prompt, version=plain, token_count=30),
        )
        for rater, answers in zip(raters, better_answers, strict=True):
            judgment = factories.judgment(comparison=comparison, rater=rater, outcome=original)
            JudgmentAnswer.objects.create(judgment=judgment, criterion=better, outcome=answers[index])
    return study, better


def test_agreement_and_the_length_controlled_board_are_those_of_the_chosen_criterion(client) -> None:  # type: ignore[no-untyped-def]
    from server.dashboard.insights import study_agreement, study_insights
    from server.studies.selectors import study_criterion

    study, better = agreeing_on_originality_not_on_value()
    leaderboard_recompute_run(
        job=Job.objects.create(kind=JobKind.RECOMPUTE_LEADERBOARD, study=study, params={"rounds": 20}),
        report=lambda **_: None,
    )
    original_board = leaderboard_latest(study=study)
    better_board = leaderboard_latest(study=study, criterion_id=better.id)
    original_style = original_board.matrices["diagnostics"]["style_control"]
    better_style = better_board.matrices["diagnostics"]["style_control"]
    assert original_style["rows"] != better_style["rows"]

    # α of each criterion from its own answers.
    original = study_agreement(study=study, rounds=50)
    valued = study_agreement(study=study, criterion=study_criterion(study=study, key="better"), rounds=50)
    assert (original.criterion, [row.alpha for row in original.rows]) == ("original", [1.0, 1.0])
    assert valued.criterion == "better" and [row.criterion for row in valued.rows] == ["better", "better"]
    assert [row.alpha for row in valued.rows] == [pytest.approx(0.79), pytest.approx(2 / 3)]
    assert (valued.judgments, valued.raters, valued.rows[0].units) == (8, 2, 4)
    insights = study_insights(study=study, criterion=study_criterion(study=study, key="better"))
    assert insights.length_control.board_id == better_board.id
    assert insights.length_control.rows == better_style["rows"]

    # The API: the same ?criterion= as the plain board.
    staff = factories.user(is_staff=True)
    api: APIClient = token_client(staff)
    agreement = api.get("/api/studies/poems/agreement/?criterion=better").json()
    assert (agreement["criterion"], agreement["question"]) == ("better", "Which is better?")
    assert [row["alpha"] for row in agreement["alpha"]] == [pytest.approx(0.79), pytest.approx(2 / 3)]
    assert [row["alpha"] for row in api.get("/api/studies/poems/agreement/").json()["alpha"]] == [1.0, 1.0]
    assert api.get("/api/studies/poems/agreement/?criterion=worse").status_code == 404
    board = api.get("/api/studies/poems/leaderboard/?criterion=better").json()
    assert board["length_controlled"]["rows"] == better_style["rows"]
    assert board["length_controlled"]["length_coefficient"] == better_style["length_coefficient"]
    default_board = api.get("/api/studies/poems/leaderboard/").json()
    assert default_board["length_controlled"]["rows"] == original_style["rows"]

    # The dashboard: the sections follow the criterion chosen above the leaderboard.
    client.force_login(staff)
    page = client.get("/dashboard/studies/poems/?criterion=better").content.decode()
    assert 'Agreement between raters: <span class="dash-criterion-named" data-criterion="better">' in page
    assert '<tr data-level="ordinal" data-criterion="better"><td>Which is better?</td>' in page
    assert '<td class="num alpha-value">0.79</td>' in page
    named = '<span class="dash-criterion-named" data-criterion="better">Which is better?</span>'
    assert f"Length-controlled leaderboard and ties: {named}" in page
    first = better_style["rows"][0]
    assert f'<tr data-version-id="{first["version_id"]}"><td class="num">{first["rank"]}</td>' in page
    default = client.get("/dashboard/studies/poems/").content.decode()
    assert '<tr data-level="ordinal" data-criterion="original"><td>Which is more original?</td>' in default
    assert '<td class="num alpha-value">1.00</td>' in default


def _lineage_box(html: str, version_id: int) -> str:
    """The lineage graph's box of one version (the SVG group, as drawn)."""
    start = html.index(f'<g class="lineage-node" data-version-id="{version_id}">')
    return html[start : html.index("</g>", start)]


def test_the_lineage_ratings_follow_the_chosen_criterion(client) -> None:  # type: ignore[no-untyped-def]
    from server.dashboard.insights import study_lineage
    from server.evaluations.reports import number_text
    from server.studies.selectors import study_criterion

    study, better, wild, plain = two_minds()
    for _ in range(2):  # two rounds, each storing one leaderboard per criterion
        leaderboard_recompute_run(
            job=Job.objects.create(kind=JobKind.RECOMPUTE_LEADERBOARD, study=study, params={"rounds": 20}),
            report=lambda **_: None,
        )
    Criterion.objects.create(study=study, key="moving", question="Which is more moving?", position=2)
    boards = LeaderboardSnapshot.objects.filter(study=study).order_by("id")
    original_boards = list(boards.filter(criterion__isnull=True))
    better_boards = list(boards.filter(criterion=better))
    latest_original = {row["version_id"]: row for row in original_boards[-1].rows}
    latest_better = {row["version_id"]: row for row in better_boards[-1].rows}
    # The two questions rank the versions in opposite orders.
    assert latest_original[wild.id]["rating"] > latest_original[plain.id]["rating"]
    assert latest_better[plain.id]["rating"] > latest_better[wild.id]["rating"]

    original = study_lineage(study=study)
    valued = study_lineage(study=study, criterion=study_criterion(study=study, key="better"))
    unrated = study_lineage(study=study, criterion=study_criterion(study=study, key="moving"))

    # Round by round: the chosen criterion's own leaderboards, never the other's.
    assert [round_["id"] for round_ in original.rounds] == [board.id for board in original_boards]
    assert [round_["id"] for round_ in valued.rounds] == [board.id for board in better_boards]
    for lineage, rounds in ((original, original_boards), (valued, better_boards)):
        for version in (wild, plain):
            cells = next(row["cells"] for row in lineage.table if row["version_id"] == version.id)
            assert cells == [
                next(row for row in board.rows if row["version_id"] == version.id) for board in rounds
            ]
        assert lineage.ratings_missing_reason == "" and "<svg" in str(lineage.rounds_svg)
    # The graph: each box carries the chosen criterion's latest rating.
    for lineage, latest, other in (
        (original, latest_original, latest_better),
        (valued, latest_better, latest_original),
    ):
        for version in (wild, plain):
            box = _lineage_box(str(lineage.svg), version.id)
            assert f"{version.kind} · {number_text(latest[version.id]['rating'], 0)} [" in box
            assert f"· {number_text(other[version.id]['rating'], 0)} [" not in box
    # A question no recompute has rated yet says so instead of showing another's numbers.
    reason = "No leaderboard of “Which is more moving?” yet (a recompute stores one per question)"
    assert (unrated.rounds, unrated.table, str(unrated.rounds_svg)) == ([], [], "")
    assert unrated.ratings_missing_reason == f"{reason}: the boxes carry no ratings."
    assert unrated.rounds_empty_reason == f"{reason}: ratings round by round start with the first recompute."
    for version in (wild, plain):
        assert _lineage_box(str(unrated.svg), version.id).endswith(
            f"{version.kind} · no leaderboard yet</text>"
        )

    # The dashboard: the section names the question chosen above the leaderboard and shows its numbers.
    client.force_login(factories.user(is_staff=True))
    page = client.get("/dashboard/studies/poems/?criterion=better").content.decode()
    named = '<span class="dash-criterion-named" data-criterion="better">Which is better?</span>'
    assert f"Lineage of versions: {named}</h2>" in page
    assert _lineage_box(page, plain.id) == _lineage_box(str(valued.svg), plain.id)
    first = better_boards[0].rows[0]
    assert first["version_id"] == plain.id
    assert (
        f'<tr data-version-id="{plain.id}"><td class="dash-version">{plain}</td>\n          '
        f'<td>{first["rating"]:,.0f} <span class="dash-muted dash-small">'
        f"[{first['lower']:,.0f}–{first['upper']:,.0f}]"
    ) in page
    default = client.get("/dashboard/studies/poems/").content.decode()
    assert 'Lineage of versions: <span class="dash-criterion-named" data-criterion="original">' in default
    assert _lineage_box(default, wild.id) == _lineage_box(str(original.svg), wild.id)
    silent = client.get("/dashboard/studies/poems/?criterion=moving").content.decode()
    assert f'<p class="dash-empty" id="lineage-unrated">{reason}: the boxes carry no ratings.</p>' in silent
    assert f'<p class="dash-empty" id="rounds-empty">{reason}: ratings round by round' in silent
    assert 'id="rounds-table"' not in silent and f"{plain.kind} · no leaderboard yet" in silent
