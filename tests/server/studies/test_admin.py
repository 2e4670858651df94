"""Staff edit a study's quality rules in the Django admin."""

from __future__ import annotations

import pytest

from server.studies.models import Study
from tests import factories
from tests.server.studies.admin_forms import admin_client, study_change_form

pytestmark = pytest.mark.django_db


def test_the_study_admin_edits_the_quality_tests() -> None:
    study = factories.study()
    client = admin_client()
    url, data = study_change_form(client, study)
    data.update({"quality_alpha": "0.05", "quality_min_checks": "9"})

    response = client.post(url, data)

    assert response.status_code == 302, response.context["adminform"].form.errors
    study.refresh_from_db()
    assert (study.quality_alpha, study.quality_min_checks) == (0.05, 9)
    assert Study.objects.count() == 1


def test_the_study_admin_adds_a_further_question() -> None:
    study = factories.study()
    client = admin_client()
    url, data = study_change_form(client, study)
    data.update(
        {
            "criteria-TOTAL_FORMS": "1",
            "criteria-INITIAL_FORMS": "0",
            "criteria-0-position": "1",
            "criteria-0-key": "kind",
            "criteria-0-question": "Which is kinder?",
            "criteria-0-guidelines": "",
        }
    )

    response = client.post(url, data)

    assert response.status_code == 302, response.context["adminform"].form.errors
    assert list(study.criteria.values_list("position", "key", "question")) == [
        (1, "kind", "Which is kinder?")
    ]
