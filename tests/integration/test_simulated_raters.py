"""Simulated raters vote over the real HTTP API (a live server), as a person would."""

from __future__ import annotations

import pytest
from django.core.management import CommandError, call_command

from server.ratings.models import Judgment
from server.ratings.simulated_raters import load_oracle, theme_oracle
from tests import factories

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def themed_study():  # type: ignore[no-untyped-def]
    study = factories.study(overlap=2, gold_rate=0, repeat_rate=0, fast_judgment_seconds=1.0)
    sea = factories.version(label="sea", enrol_in=study)
    dry = factories.version(label="dry", enrol_in=study)
    for number in range(6):
        prompt = factories.prompt(study=study, text=f"Prompt {number}")
        factories.comparison(
            study=study,
            prompt=prompt,
            sample_a=factories.sample(prompt=prompt, version=dry, text=f"The desk and the chair {number}."),
            sample_b=factories.sample(
                prompt=prompt, version=sea, text=f"The sea and the tide at night {number}."
            ),
        )
    return study


def test_simulated_raters_vote_as_the_oracle_prefers_without_noise(live_server, capsys) -> None:  # type: ignore[no-untyped-def]
    study = themed_study()
    call_command(
        "simulate_raters",
        study.slug,
        "--url",
        live_server.url,
        "--raters",
        "2",
        "--votes",
        "10",
        "--noise",
        "0",
    )
    judgments = Judgment.objects.filter(assignment__comparison__study=study)
    assert judgments.count() == 12  # 6 comparisons × overlap 2
    assert set(judgments.values_list("outcome", flat=True)) == {"B"}  # the sea sample is always B
    assert not judgments.filter(is_flagged=True).exists()
    assert "12 votes in all." in capsys.readouterr().out


def test_noise_makes_some_answers_random(live_server, capsys) -> None:  # type: ignore[no-untyped-def]
    study = themed_study()
    call_command(
        "simulate_raters",
        study.slug,
        "--url",
        live_server.url,
        "--raters",
        "2",
        "--votes",
        "10",
        "--noise",
        "1",
        "--seed",
        "3",
    )
    outcomes = list(
        Judgment.objects.filter(assignment__comparison__study=study).values_list("outcome", flat=True)
    )
    assert len(outcomes) == 12 and set(outcomes) == {"A", "B"}
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(", ")[1] for line in lines[:2]] == ["6 random", "6 random"]


def test_unknown_oracle_is_refused() -> None:
    study = factories.study()
    with pytest.raises(CommandError) as raised:
        call_command("simulate_raters", study.slug, "--oracle", "best")
    assert str(raised.value) == (
        "Unknown oracle 'best': use a built-in name (composite, diversity, garden, length, short_clauses, "
        "theme) or module:function."
    )
    assert not Judgment.objects.exists()


def test_a_built_in_oracle_by_name(live_server, capsys) -> None:  # type: ignore[no-untyped-def]
    # Given pairs of a plain text (A) and a text about a garden (B)
    study = factories.study(overlap=1, gold_rate=0, repeat_rate=0, fast_judgment_seconds=1.0)
    plain = factories.version(label="plain", enrol_in=study)
    garden = factories.version(label="garden", enrol_in=study)
    for number in range(4):
        prompt = factories.prompt(study=study, text=f"Prompt {number}")
        factories.comparison(
            study=study,
            prompt=prompt,
            sample_a=factories.sample(prompt=prompt, version=plain, text=f"The desk and the chair {number}."),
            sample_b=factories.sample(
                prompt=prompt, version=garden, text=f"The garden and the green trees {number}."
            ),
        )
    # When raters without noise judge them with the garden oracle, named as on the command line
    call_command(
        "simulate_raters", study.slug, "--url", live_server.url, "--raters", "1", "--oracle", "garden",
        "--noise", "0",
    )  # fmt: skip
    # Then every vote goes to the garden text
    outcomes = list(
        Judgment.objects.filter(assignment__comparison__study=study).values_list("outcome", flat=True)
    )
    assert outcomes == ["B", "B", "B", "B"]
    assert "4 votes in all." in capsys.readouterr().out


def test_theme_oracle_scores_the_share_of_theme_words() -> None:
    assert theme_oracle("", "The sea at night") == 0.5
    assert theme_oracle("", "") == 0.0
    assert load_oracle("server.ratings.simulated_raters:length_oracle")("", "a b c") == 3.0
