"""Staff edit a study's quality rules in the Django admin."""

from __future__ import annotations

import pytest
from django.test import Client

from server.studies.models import Study
from tests import factories

pytestmark = pytest.mark.django_db


def test_the_study_admin_edits_the_quality_tests() -> None:
    study = factories.study()
    staff = factories.user(username="operator", is_staff=True, is_superuser=True)
    client = Client()
    client.force_login(staff)
    url = f"/admin/studies/study/{study.id}/change/"
    form = client.get(url).context["adminform"].form
    data = {name: form[name].value() for name in form.fields if form[name].value() is not None}
    data.update({"quality_alpha": "0.05", "quality_min_checks": "9"})
    data.update({"studyversion_set-TOTAL_FORMS": "0", "studyversion_set-INITIAL_FORMS": "0"})  # no enrolments
    data.update({"criteria-TOTAL_FORMS": "0", "criteria-INITIAL_FORMS": "0"})  # no further questions

    response = client.post(url, data)

    assert response.status_code == 302, response.context["adminform"].form.errors
    study.refresh_from_db()
    assert (study.quality_alpha, study.quality_min_checks) == (0.05, 9)
    assert Study.objects.count() == 1


def test_the_study_admin_adds_a_further_question() -> None:
    study = factories.study()
    staff = factories.user(username="operator", is_staff=True, is_superuser=True)
    client = Client()
    client.force_login(staff)
    url = f"/admin/studies/study/{study.id}/change/"
    form = client.get(url).context["adminform"].form
    data = {name: form[name].value() for name in form.fields if form[name].value() is not None}
    data.update({"studyversion_set-TOTAL_FORMS": "0", "studyversion_set-INITIAL_FORMS": "0"})
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
