"""The dashboard's insight sections: selectors against hand-counted data (α, κ, "both bad",
length control, lineage, reliability, rationales), each section's sentence when it has nothing to
show, the rationale browser's filters and pages, and hostile text escaped everywhere."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from django.test import Client

from server.dashboard.insights import (
    MIN_KAPPA_OVERLAP,
    RationaleFilters,
    both_bad_rates,
    length_control,
    rationale_page,
    reliability_diagrams,
    study_agreement,
    study_lineage,
)
from server.evaluations.models import LeaderboardSnapshot
from server.ratings.models import AssignmentStatus
from tests import factories
from tests.server.api.world import HOSTILE, World, build_world
from tests.server.dashboard.insight_world import RELIABILITY_BINS, Insights, add_insights

pytestmark = pytest.mark.django_db
STUDY_URL = "/dashboard/studies/poems/"


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings) -> None:  # type: ignore[no-untyped-def]
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def world(settings, tmp_path: Path) -> tuple[World, Insights]:  # type: ignore[no-untyped-def]
    settings.VAR_DIR = tmp_path
    built = build_world()
    return built, add_insights(built)


def staff_client(world: World) -> Client:
    client = Client()
    client.force_login(world.staff)
    return client


def duel(study, outcomes_by_rater: list[list[str]]):  # type: ignore[no-untyped-def]
    """Comparisons of one pair of versions, comparison k judged by rater r with outcomes[r][k]
    (None: not judged); returns the versions."""
    versions = [factories.version(enrol_in=study) for _ in range(2)]
    raters = [factories.rater(study=study) for _ in outcomes_by_rater]
    for index in range(len(outcomes_by_rater[0])):
        prompt = factories.prompt(study=study)
        comparison = factories.comparison(
            study=study,
            prompt=prompt,
            sample_a=factories.sample(prompt=prompt, version=versions[0]),
            sample_b=factories.sample(prompt=prompt, version=versions[1]),
        )
        for rater, outcomes in zip(raters, outcomes_by_rater, strict=True):
            if outcomes[index] is not None:
                factories.judgment(comparison=comparison, rater=rater, outcome=outcomes[index])
    return versions


# --- Agreement --------------------------------------------------------------------------------------------


def test_alpha_per_study_on_the_hand_computed_table() -> None:
    # The table of tests/evaluation/test_agreement_intervals.py: ordinal α 0.79, nominal α 2/3.
    study = factories.study()
    duel(study, [["A", "B", "A", "tie"], ["A", "B", "tie", "tie"]])

    summary = study_agreement(study=study, rounds=100)

    ordinal, nominal = summary.rows
    assert (ordinal.criterion, ordinal.level, nominal.level) == ("primary", "ordinal", "nominal")
    assert (summary.criterion, summary.question) == ("primary", "Which text is better?")
    assert ordinal.alpha == pytest.approx(0.79) and nominal.alpha == pytest.approx(2 / 3)
    assert (ordinal.units, ordinal.values, summary.judgments, summary.raters) == (4, 8, 8, 2)
    assert ordinal.lower is not None and ordinal.lower <= ordinal.alpha <= ordinal.upper
    assert summary.empty_reason == "" and summary.kappas == []  # 4 shared comparisons: too few for κ


def test_both_bad_is_left_out_of_the_ordinal_scale_but_kept_in_the_nominal_one() -> None:
    study = factories.study()
    duel(study, [["A", "both_bad", "B"], ["A", "both_bad", "B"]])
    ordinal, nominal = study_agreement(study=study, rounds=20).rows
    assert (ordinal.units, nominal.units) == (2, 3)
    assert ordinal.alpha == 1.0 and nominal.alpha == 1.0


def test_agreement_says_why_it_cannot_be_computed() -> None:
    study = factories.study()
    assert study_agreement(study=study).empty_reason.startswith("No judgments yet")
    duel(study, [["A", None], [None, "B"]])  # each comparison judged by one rater
    summary = study_agreement(study=study)
    assert "needs comparisons judged by two or more raters" in summary.empty_reason
    assert [row.units for row in summary.rows] == [0, 0]


def test_kappa_for_rater_pairs_with_enough_shared_comparisons() -> None:
    study = factories.study()
    first = ["A", "B"] * (MIN_KAPPA_OVERLAP // 2 + 1)
    second = ["A", "B"] * (MIN_KAPPA_OVERLAP // 2) + ["B", "A"]
    duel(study, [first, second, ["A"] + [None] * (len(first) - 1)])
    summary = study_agreement(study=study, rounds=50)
    assert len(summary.kappas) == 1  # the third rater shares one comparison with each
    row = summary.kappas[0]
    # 12 items, 10 alike; both raters 6 A / 6 B: chance 1/2, κ = (10/12 − 1/2) / (1/2) = 2/3.
    assert (row.items, row.kappa, row.agreement) == (12, pytest.approx(2 / 3), pytest.approx(10 / 12))
    assert summary.kappa_pairs_considered == 3


# --- Both bad, length control, lineage, reliability ------------------------------------------------


def test_both_bad_rate_per_version_with_its_wilson_interval() -> None:
    study = factories.study()
    versions = duel(study, [["both_bad", "A", "B", "both_bad"], ["tie", "both_bad", "A", "A"]])
    idle = factories.version(enrol_in=study)
    rows = {row.version_id: row for row in both_bad_rates(study=study)}
    assert (rows[versions[0].id].both_bad, rows[versions[0].id].judgments) == (3, 8)
    assert rows[versions[0].id].share == 3 / 8
    assert (rows[versions[0].id].low, rows[versions[0].id].high) == pytest.approx((0.1368, 0.6943), abs=1e-4)
    assert rows[idle.id].judgments == 0 and rows[idle.id].share is None


def test_length_control_reads_the_latest_board_and_explains_gamma(world: tuple[World, Insights]) -> None:
    _, insights = world
    control = length_control(board=insights.board)
    style = insights.board.matrices["diagnostics"]["style_control"]
    assert control.rows == style["rows"] and control.rounds == 60
    assert control.coefficient == style["length_coefficient"]
    assert control.odds_twice_as_long == pytest.approx(math.exp(style["length_coefficient"] / 3))
    assert control.tie_parameter == insights.board.matrices["diagnostics"]["davidson"]["tie_parameter"]


def test_length_control_says_why_it_is_missing(world: tuple[World, Insights]) -> None:
    built, _ = world
    assert length_control(board=None).missing_reason.startswith("No leaderboard yet")
    # The world's own board: computed "before" diagnostics were stored.
    assert "recompute it" in length_control(board=built.leaderboard).missing_reason
    old = LeaderboardSnapshot.objects.create(
        study=built.study_a,
        judgment_count=5,
        matrices={"diagnostics": {"style_control": {"length_coefficient": 0.3, "ratings": {}}}},
    )
    assert "without intervals" in length_control(board=old).missing_reason
    imported = LeaderboardSnapshot.objects.create(
        study=built.study_a,
        judgment_count=5,
        matrices={"diagnostics": {"davidson": {"tie_parameter": 0.2}, "style_control_missing": "x"}},
    )
    assert "no token count" in length_control(board=imported).missing_reason


def test_lineage_draws_parent_and_child_with_method_and_ratings_round_by_round(
    world: tuple[World, Insights],
) -> None:
    built, insights = world
    lineage = study_lineage(study=built.study_a)
    assert lineage.trained == 1
    svg = str(lineage.svg)
    assert f'data-version-id="{insights.child.id}"' in svg and ">dpo<" in svg
    assert f"snapshot #{built.snapshot.id}" in svg
    assert [round_["id"] for round_ in lineage.rounds] == [built.leaderboard.id, insights.board.id]
    first = next(row for row in lineage.table if row["version_id"] == built.versions[0].id)
    assert first["cells"][0]["rating"] == 1043.2
    assert first["cells"][1] == next(
        r for r in insights.board.rows if r["version_id"] == built.versions[0].id
    )
    child = next(row for row in lineage.table if row["version_id"] == insights.child.id)
    assert child["cells"] == [None, None]
    assert "<svg" in str(lineage.rounds_svg) and lineage.rounds_empty_reason == ""


def test_lineage_and_rounds_say_why_they_are_empty() -> None:
    study = factories.study()
    assert study_lineage(study=study).empty_reason == "No versions enrolled yet."
    factories.version(enrol_in=study)
    lineage = study_lineage(study=study)
    assert lineage.svg and lineage.rounds_empty_reason.startswith("No leaderboard yet")


def test_reliability_diagram_from_stored_bins_and_a_sentence_for_older_models(
    world: tuple[World, Insights],
) -> None:
    built, insights = world
    panels = {panel.reward_model_id: panel for panel in reliability_diagrams(study=built.study_a)}
    old, new = panels[built.reward_model.id], panels[insights.calibrated_model.id]
    assert old.svg == "" and old.empty_reason.startswith("No bins recorded")
    assert new.empty_reason == "" and str(new.svg).count('class="reliability-bin"') == len(RELIABILITY_BINS)
    assert "of 6 pairs" in str(new.svg)


# --- Rationales ---------------------------------------------------------------------------------------------


def test_rationale_page_filters_by_version_pair_comparison_and_kind(world: tuple[World, Insights]) -> None:
    built, insights = world
    study = built.study_a
    everything = rationale_page(study=study, filters=RationaleFilters())
    assert everything.paginator.count == 4
    assert [entry.kind for entry in everything.object_list].count("skip") == 1
    skip = next(entry for entry in everything.object_list if entry.kind == "skip")
    assert skip.note.startswith("I cannot judge verse") and skip.outcome == ""

    version = built.versions[2]
    by_version = rationale_page(study=study, filters=RationaleFilters(version_id=version.id))
    assert by_version.paginator.count >= 1
    assert all(version.id in (e.version_a_id, e.version_b_id) for e in by_version.object_list)
    other = built.versions[0]
    pair = rationale_page(study=study, filters=RationaleFilters(version_id=version.id, versus_id=other.id))
    assert all({e.version_a_id, e.version_b_id} == {version.id, other.id} for e in pair.object_list)
    comparison_id = insights.skipped.comparison_id
    by_comparison = rationale_page(study=study, filters=RationaleFilters(comparison_id=comparison_id))
    assert {entry.comparison_id for entry in by_comparison.object_list} == {comparison_id}
    assert rationale_page(study=study, filters=RationaleFilters(kind="skips")).paginator.count == 1
    assert rationale_page(study=study, filters=RationaleFilters(kind="rationales")).paginator.count == 3
    pages = rationale_page(study=study, filters=RationaleFilters(), page=2, per_page=3)
    assert (pages.number, len(pages.object_list), pages.paginator.num_pages) == (2, 1, 2)


def test_revoked_judgments_and_other_studies_are_not_listed(world: tuple[World, Insights]) -> None:
    built, insights = world
    judgment = insights.rationale_judgments[0]
    type(judgment).objects.filter(id=judgment.id).update(
        revoked_at=judgment.submitted_at, revoked_reason="undo"
    )
    factories.assignment(
        comparison=factories.comparison(study=built.study_b),
        status=AssignmentStatus.SKIPPED,
        skip_reason="elsewhere",
    )
    page = rationale_page(study=built.study_a, filters=RationaleFilters())
    assert page.paginator.count == 3
    assert "elsewhere" not in [entry.note for entry in page.object_list]


# --- The pages ----------------------------------------------------------------------------------------------


def test_the_study_page_has_every_insight_section(world: tuple[World, Insights]) -> None:
    built, insights = world
    page = staff_client(built).get(STUDY_URL).content.decode()
    for anchor in [
        'id="length-control"',
        'id="leaderboard-toggle"',
        'id="leaderboard-style-table"',
        'id="davidson-tie"',
        'id="length-coefficient"',
        'id="both-bad-table"',
        'id="lineage-graph"',
        'id="rounds-table"',
        'id="agreement-table"',
        'id="rater-quality-plot"',
        'id="forest-plots"',
        'id="rationale-counts"',
        f'data-reward-model-id="{insights.calibrated_model.id}"',
        '<script src="/static/dashboard/insights.js" defer>',
    ]:
        assert anchor in page, anchor
    assert "3 rationales and\n      1 skip reason" in page
    assert page.count('class="ins-figure ins-forest"') == 2  # novelty_4gram and self_bleu have intervals
    assert "No bins recorded: this model was trained before reliability bins were stored." in page


def test_a_study_without_data_says_why_each_chart_is_empty(settings, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    settings.VAR_DIR = tmp_path
    staff = factories.user(username="boss", is_staff=True)
    study = factories.study(slug="empty")
    client = Client()
    client.force_login(staff)
    page = client.get("/dashboard/studies/empty/").content.decode()
    for sentence in [
        "No leaderboard yet: recompute it under Actions once judgments arrive.",
        "No judgments yet: agreement needs comparisons judged by two or more raters.",
        "No raters yet.",
        "No reward model yet: a diagram appears when one is trained.",
        "No metric has an interval yet",
        "No judgment with a rationale yet",
        "No versions enrolled yet.",
    ]:
        assert sentence in page, sentence
    assert 'id="leaderboard-toggle"' not in page  # nothing to switch between
    browser = client.get("/dashboard/studies/empty/rationales/").content.decode()
    assert "No rationales or skip reasons yet" in browser
    assert study.slug == "empty"


def test_the_rationale_browser_page_filters_pages_and_ignores_junk(world: tuple[World, Insights]) -> None:
    built, insights = world
    client = staff_client(built)
    response = client.get(f"{STUDY_URL}rationales/")
    assert response.status_code == 200
    page = response.content.decode()
    assert page.count('class="dash-card ins-entry ') == 4
    comparison_id = insights.skipped.comparison_id
    only = client.get(
        f"{STUDY_URL}rationales/", {"comparison": comparison_id, "kind": "skips"}
    ).content.decode()
    assert only.count('class="dash-card ins-entry ') == 1 and "I cannot judge verse" in only
    junk = client.get(
        f"{STUDY_URL}rationales/", {"version": "abc", "comparison": "-1", "kind": "x", "page": "zz"}
    )
    assert junk.status_code == 200 and junk.content.decode().count('class="dash-card ins-entry ') == 4
    paged = client.get(f"{STUDY_URL}rationales/", {"kind": "rationales"})
    assert "page=" not in paged.content.decode()  # one page: no page links


def test_the_rationale_browser_is_for_staff_only(world: tuple[World, Insights]) -> None:
    built, _ = world
    anonymous = Client().get(f"{STUDY_URL}rationales/")
    assert anonymous.status_code == 302 and "/login/" in anonymous["Location"]
    rater = Client()
    rater.force_login(built.rater_a_user)
    assert rater.get(f"{STUDY_URL}rationales/").status_code == 403
    assert staff_client(built).get("/dashboard/studies/nope/rationales/").status_code == 404


def test_hostile_text_is_escaped_in_every_insight_section_and_the_browser(settings, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    settings.VAR_DIR = tmp_path
    built = build_world(hostile_text=True)
    add_insights(built, hostile_text=True)
    client = staff_client(built)
    for url in [STUDY_URL, f"{STUDY_URL}rationales/"]:
        page = client.get(url).content.decode()
        assert HOSTILE not in page
        assert "<script>window.__pwned" not in page and "<img src=x" not in page
        assert "&lt;script&gt;window.__pwned = 1&lt;/script&gt;" in page
    browser = client.get(f"{STUDY_URL}rationales/").content.decode()
    assert "I cannot judge verse in this language. &lt;script&gt;" in browser


@pytest.mark.usefixtures("image_storage")
def test_the_rationale_browser_shows_image_samples_as_images_staff_can_open() -> None:
    study = factories.study(modality="image", slug="digits")
    prompt = factories.prompt(study=study, text="Draw a <b>seven</b>")
    first = factories.image_sample(prompt=prompt, data=factories.image_bytes(color=(10, 20, 30)))
    second = factories.image_sample(prompt=prompt, data=factories.image_bytes(color=(200, 20, 30)))
    comparison = factories.comparison(study=study, prompt=prompt, sample_a=first, sample_b=second)
    factories.judgment(comparison=comparison, outcome="A", rationale="Sharper strokes")
    factories.assignment(
        comparison=comparison, status=AssignmentStatus.SKIPPED, skip_reason="An image is broken or unreadable"
    )
    staff = factories.user(is_staff=True)
    client = Client()
    client.force_login(staff)

    entries = rationale_page(study=study, filters=RationaleFilters()).object_list
    assert {(entry.image_a, entry.image_b, entry.text_a) for entry in entries} == {
        (first.image.sha256, second.image.sha256, "")
    }
    page = client.get("/dashboard/studies/digits/rationales/").content.decode()
    for sample in (first, second):
        url = f"/rate/digits/image/{sample.image.sha256}"
        assert page.count(f'src="{url}"') == 2  # the judgment's entry and the skip's
        image = client.get(url)
        assert image.status_code == 200 and image["Content-Type"] == "image/png"
    assert page.count("The prompt and the two images") == 2 and "two texts" not in page
    assert "<blockquote></blockquote>" not in page
    assert "Draw a &lt;b&gt;seven&lt;/b&gt;" in page and "An image is broken or unreadable" in page
