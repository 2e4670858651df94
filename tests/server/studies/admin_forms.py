"""The study admin's change form as a browser would post it back, for the admin tests."""

from __future__ import annotations

from django.test import Client

from server.studies.models import Study
from tests import factories


def admin_client() -> Client:
    client = Client()
    client.force_login(factories.user(username="operator", is_staff=True, is_superuser=True))
    return client


def study_change_form(client: Client, study: Study) -> tuple[str, dict[str, object]]:
    """The change page's URL and its form's current values, with no enrolments and the study's
    criteria as they are (a test changes what it is about)."""
    url = f"/admin/studies/study/{study.id}/change/"
    form = client.get(url).context["adminform"].form
    data = {name: form[name].value() for name in form.fields if form[name].value() is not None}
    data.update({"studyversion_set-TOTAL_FORMS": "0", "studyversion_set-INITIAL_FORMS": "0"})
    criteria = list(study.criteria.order_by("position"))
    data.update({"criteria-TOTAL_FORMS": str(len(criteria)), "criteria-INITIAL_FORMS": str(len(criteria))})
    for index, criterion in enumerate(criteria):
        data.update(
            {
                f"criteria-{index}-id": str(criterion.id),
                f"criteria-{index}-study": str(study.id),
                f"criteria-{index}-position": str(criterion.position),
                f"criteria-{index}-key": criterion.key,
                f"criteria-{index}-question": criterion.question,
                f"criteria-{index}-answer_phrase": criterion.answer_phrase,
                f"criteria-{index}-guidelines": criterion.guidelines,
            }
        )
    return url, data
