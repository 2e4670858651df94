"""Staff resume paused raters from the Django admin."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from server.ratings.models import Judgment, Rater, RaterEntryConflict, RaterStatus
from server.ratings.services import rater_pause
from tests import factories

pytestmark = pytest.mark.django_db


def test_the_resume_action_resumes_paused_raters_and_unflags_their_judgments() -> None:
    paused, active = factories.rater(), factories.rater()
    factories.judgment(rater=paused, comparison=factories.comparison(study=paused.study))
    rater_pause(rater_id=paused.id, reason="Looks automated.")
    client = Client()
    client.force_login(factories.user(is_staff=True, is_superuser=True))

    response = client.post(
        reverse("admin:ratings_rater_changelist"),
        {"action": "resume_raters", "_selected_action": [paused.id, active.id]},
        follow=True,
    )

    assert response.status_code == 200
    assert "Resumed 1 rater(s)" in response.content.decode()
    assert dict(Rater.objects.values_list("id", "status")) == {
        paused.id: RaterStatus.ACTIVE,
        active.id: RaterStatus.ACTIVE,
    }
    assert Judgment.objects.get().flag_reasons == []


def test_the_rater_list_shows_quality_signals() -> None:
    rater = factories.rater()
    Rater.objects.filter(id=rater.id).update(
        quality={"judgments": 12, "gold_accuracy": 0.75, "gold_checks": 4, "left_rate": 0.5}
    )
    client = Client()
    client.force_login(factories.user(is_staff=True, is_superuser=True))

    page = client.get(reverse("admin:ratings_rater_changelist")).content.decode()

    assert "75% of 4" in page
    assert "50%" in page


def test_refused_entries_show_and_the_release_action_unbinds_crowd_participants() -> None:
    study = factories.study()
    bound = factories.crowd_rater(study=study, session_binding="b" * 64)
    account = factories.rater(study=study)
    RaterEntryConflict.objects.create(
        rater=bound, client_address="203.0.113.7", session_info={"session_id": "x"}
    )
    client = Client()
    client.force_login(factories.user(is_staff=True, is_superuser=True))

    changelist = client.get(reverse("admin:ratings_rater_changelist")).content.decode()
    detail = client.get(reverse("admin:ratings_rater_change", args=[bound.id])).content.decode()
    response = client.post(
        reverse("admin:ratings_rater_changelist"),
        {"action": "release_raters", "_selected_action": [bound.id, account.id]},
        follow=True,
    )

    assert '<td class="field-entry_conflicts">1</td>' in changelist
    assert "203.0.113.7" in detail and "b" * 64 not in detail  # the binding secret is never shown
    assert "Released 1 participant(s)" in response.content.decode()
    assert dict(Rater.objects.values_list("id", "session_binding")) == {bound.id: "", account.id: ""}
