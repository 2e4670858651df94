"""The creativity report's human plane: versions at (people's originality, people's value) with
both intervals, and each computed metric's rank correlation with the matching human criterion."""

from __future__ import annotations

import pytest

from server.evaluations.models import Evaluation, LeaderboardSnapshot
from server.evaluations.reports import evaluation_report_html, human_ratings, metric_human_agreement
from server.studies.models import Criterion
from server.studies.services import study_create
from tests import factories

pytestmark = pytest.mark.django_db

# Four versions: people's originality ratings and value ratings, and the metrics each computed.
ORIGINALITY = {"a": 1100.0, "b": 1050.0, "c": 1000.0, "d": 900.0}
VALUE = {"a": 950.0, "b": 1000.0, "c": 1100.0, "d": 1020.0}
NOVELTY_4 = {"a": 0.9, "b": 0.7, "c": 0.8, "d": 0.1}  # order a, c, b, d against people's a, b, c, d
REWARD = {"a": -1.0, "b": 0.0, "c": 2.0, "d": 1.0}  # the same order as people's value: c, d, b, a


def board(study, criterion, ratings, versions):  # type: ignore[no-untyped-def]
    LeaderboardSnapshot.objects.create(
        study=study,
        criterion=criterion,
        rows=[
            {
                "version_id": versions[label].id,
                "label": f"<{label}>",
                "rating": rating,
                "lower": rating - 40,
                "upper": rating + 40,
                "battles": 30,
            }
            for label, rating in ratings.items()
        ],
    )


def creativity_study():  # type: ignore[no-untyped-def]
    study = study_create(name="Poems", slug="poems", template="creativity")
    versions = {label: factories.version(label=label, enrol_in=study) for label in ORIGINALITY}
    board(study, None, ORIGINALITY, versions)  # the study's own question: "original"
    board(study, Criterion.objects.get(study=study, key="better"), VALUE, versions)
    for label, version in versions.items():
        Evaluation.objects.create(
            study=study,
            version=version,
            metrics={
                "novelty_4gram": {"mean": NOVELTY_4[label], "lower": 0.0, "upper": 1.0},
                "reward_model_score": {"mean": REWARD[label]},
            },
        )
    return study, versions


def test_each_metric_is_correlated_with_its_own_criterion() -> None:
    study, versions = creativity_study()
    ratings = human_ratings(study=study)
    assert ratings is not None
    assert ratings["original"][versions["a"].id].rating == 1100.0
    assert ratings["better"][versions["c"].id].upper == 1140.0

    agreements = metric_human_agreement(list(Evaluation.objects.order_by("version_id")), ratings)

    # novelty ranks (4, 2, 3, 1) against originality ranks (4, 3, 2, 1): d = (0, -1, 1, 0),
    # rho = 1 - 6 * 2 / (4 * 15) = 0.8. The reward model orders versions exactly as people's value.
    assert [(a.metric, a.criterion, a.expected_sign) for a in agreements] == [
        ("novelty_4gram", "original", 1),
        ("reward_model_score", "better", 1),
    ]
    assert agreements[0].correlation.rho == pytest.approx(0.8)
    assert (
        agreements[1].correlation.rho,
        agreements[1].correlation.lower,
        agreements[1].correlation.upper,
    ) == (
        1.0,
        1.0,
        1.0,
    )
    assert agreements[0].correlation.count == 4
    assert -1.0 <= agreements[0].correlation.lower <= 0.8 <= agreements[0].correlation.upper <= 1.0


def test_the_report_places_versions_on_the_plane_and_tabulates_agreement() -> None:
    study, _versions = creativity_study()

    html = evaluation_report_html(study=study)

    assert "People's originality and value" in html
    assert html.count("<circle cx=") >= 4
    assert "&lt;a&gt;: originality 1100.0 [1060.0, 1140.0], value 950.0 [910.0, 990.0]" in html
    assert "<a>" not in html  # labels are escaped
    assert "<th scope=row>novelty_4gram</th><td>original</td><td>+</td><td>0.80 <span class=ci>[" in html
    assert (
        "<th scope=row>reward_model_score</th><td>better</td><td>+</td><td>1.00 <span class=ci>[1.00, 1.00]"
        in html
    )


def test_a_study_without_both_questions_has_no_plane() -> None:
    study = factories.study()
    assert human_ratings(study=study) is None
    assert "People's originality and value" not in evaluation_report_html(study=study)
