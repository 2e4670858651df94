"""Criteria through the API: a study created from the creativity template lists its questions; a
vote on it answers each (a missing answer is a 400 naming the question); one-question studies
vote as before."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from server.ratings.models import JudgmentAnswer
from server.studies.models import Study
from tests import factories
from tests.server.api.conftest import token_client

pytestmark = pytest.mark.django_db


def test_a_creativity_study_is_created_and_voted_on_with_an_answer_per_question() -> None:
    staff = factories.user(is_staff=True)
    created = token_client(staff).post(
        "/api/studies/",
        {"name": "Poems", "slug": "poems", "template": "creativity", "gold_rate": 0.0, "repeat_rate": 0.0},
        format="json",
    )
    assert created.status_code == 201, created.json()
    assert [(c["key"], c["question"]) for c in created.json()["criteria"]] == [
        ("original", "Which is more original?"),
        ("better", "Which is better?"),
    ]
    study = Study.objects.get(slug="poems")
    factories.comparison(study=study)
    rater = factories.rater(study=study)
    client: APIClient = token_client(rater.user)
    token = client.post("/api/studies/poems/assignments/next/").json()["assignment"]["token"]
    url = f"/api/studies/poems/assignments/{token}/judgment/"

    missing = client.post(url, {"choice": "left", "idempotency_key": "vote-0001"}, format="json")
    assert missing.status_code == 400
    assert missing.json() == {
        "error": "Answer the question 'better' (Which is better?) too: this study asks 2 questions "
        "about each pair, and a vote answers all of them.",
        "details": {"field": "answers.better"},
    }
    voted = client.post(
        url, {"choice": "left", "answers": {"better": "tie"}, "idempotency_key": "vote-0001"}, format="json"
    )
    assert voted.status_code == 201
    assert (voted.json()["choice"], voted.json()["answers"]) == ("left", {"better": "tie"})
    assert list(JudgmentAnswer.objects.values_list("criterion__key", "outcome")) == [("better", "tie")]


def test_a_study_needs_exactly_one_of_question_criteria_or_template() -> None:
    client = token_client(factories.user(is_staff=True))
    both = client.post(
        "/api/studies/", {"name": "S", "slug": "s", "question": "Q?", "template": "creativity"}, format="json"
    )
    assert both.status_code == 400
    assert both.json()["details"] == {
        "fields": {
            "question": ["Give exactly one of question, criteria or template (this has question, template)."]
        }
    }
    criteria = client.post(
        "/api/studies/",
        {
            "name": "S",
            "slug": "s",
            "criteria": [
                {"key": "clear", "question": "Which is clearer?", "guidelines": "Clarity only."},
                {"key": "kind", "question": "Which is kinder?"},
            ],
        },
        format="json",
    )
    assert criteria.status_code == 201, criteria.json()
    assert criteria.json()["question"] == "Which is clearer?"
    assert criteria.json()["guidelines"] == "Clarity only."
    assert [c["key"] for c in criteria.json()["criteria"]] == ["clear", "kind"]
