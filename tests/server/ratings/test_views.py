"""The rating pages and JSON endpoints: who gets in, what the browser sees, how errors read."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.contrib.sessions.models import Session
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from server.ratings import services
from server.ratings.models import Assignment, Judgment, Outcome, Platform, Rater, RaterStatus
from tests import factories
from tests.server.ratings.conftest import expire, make_comparisons, make_study

pytestmark = pytest.mark.django_db


def page_url(study) -> str:  # type: ignore[no-untyped-def]
    return reverse("ratings:page", args=[study.slug])


def api(client: Client, study, name: str, payload: dict | None = None):  # type: ignore[no-untyped-def]
    return client.post(
        reverse(f"ratings:api-{name}", args=[study.slug]),
        json.dumps(payload or {}),
        content_type="application/json",
    )


# What the page sends once the person pressed Start (a crowd rater's first pair waits for it).
START = {"start": True}


def invited(study) -> Client:  # type: ignore[no-untyped-def]
    client = Client()
    client.get(reverse("ratings:join", args=[study.slug, study.invite_token]))
    return client


# --- Who gets in ---------------------------------------------------------------------------------


def test_an_anonymous_visitor_is_sent_to_the_login_page() -> None:
    study = make_study()

    response = Client().get(page_url(study))

    assert response.status_code == 302
    assert response["Location"] == f"/accounts/login/?next=/rate/{study.slug}/"


def test_an_account_without_a_rater_row_is_refused_with_a_message() -> None:
    study = make_study()
    client = Client()
    client.force_login(factories.user())

    response = client.get(page_url(study))

    assert response.status_code == 403
    assert b"Your account is not enrolled in this study." in response.content
    assert Rater.objects.count() == 0


def test_an_enrolled_account_gets_the_rating_page() -> None:
    study = make_study()
    rater = factories.rater(study=study)
    client = Client()
    client.force_login(rater.user)

    response = client.get(page_url(study))

    assert response.status_code == 200
    assert response.context["rater"] == rater
    assert client.session["ratings.raters"] == {study.slug: rater.id}


def test_staff_are_enrolled_on_their_first_visit() -> None:
    study = make_study()
    staff = factories.user(is_staff=True)
    client = Client()
    client.force_login(staff)

    response = client.get(page_url(study))

    assert response.status_code == 200
    rater = Rater.objects.get()
    assert (rater.user, rater.platform, rater.study) == (staff, Platform.ACCOUNT, study)


def test_an_invite_link_creates_a_session_only_participant() -> None:
    study = make_study()
    client = Client()

    response = client.get(reverse("ratings:join", args=[study.slug, study.invite_token]))
    again = client.get(reverse("ratings:join", args=[study.slug, study.invite_token]))

    assert response.status_code == again.status_code == 302
    assert response["Location"] == page_url(study)
    rater = Rater.objects.get()
    assert (rater.platform, rater.user) == (Platform.INVITE, None)
    assert rater.external_id.startswith("invite-")
    assert client.get(page_url(study)).status_code == 200


def test_a_wrong_invite_token_is_refused_and_creates_nothing() -> None:
    study = make_study()

    response = Client().get(reverse("ratings:join", args=[study.slug, "not-the-token"]))

    assert response.status_code == 404
    assert Rater.objects.count() == 0


def test_a_prolific_participant_gets_a_session_and_a_rater_without_an_account() -> None:
    study = make_study()
    make_comparisons(study, 1)
    client = Client()

    response = client.get(
        page_url(study),
        {"t": study.invite_token, "PROLIFIC_PID": "pid-1", "STUDY_ID": "s-9", "SESSION_ID": "x-3"},
    )

    assert response.status_code == 200
    rater = Rater.objects.get()
    assert (rater.platform, rater.external_id, rater.user) == (Platform.PROLIFIC, "pid-1", None)
    assert rater.session_info == {"study_id": "s-9", "session_id": "x-3"}
    assert api(client, study, "next", START).json()["status"] == "pair"


def test_a_returning_prolific_participant_keeps_its_rater() -> None:
    study = make_study()
    browser = Client()
    browser.get(
        page_url(study),
        {"t": study.invite_token, "PROLIFIC_PID": "pid-1", "STUDY_ID": "s-9", "SESSION_ID": "x-3"},
    )

    again = browser.get(
        page_url(study),
        {"t": study.invite_token, "PROLIFIC_PID": "pid-1", "STUDY_ID": "s-9", "SESSION_ID": "x-4"},
    )

    assert again.status_code == 200
    rater = Rater.objects.get()
    assert rater.session_info == {"study_id": "s-9", "session_id": "x-4"}


def test_mturk_preview_shows_the_task_and_records_nothing() -> None:
    study = make_study(question="Which poem is better?")
    make_comparisons(study, 2)

    response = Client().get(
        page_url(study),
        {"t": study.invite_token, "assignmentId": "ASSIGNMENT_ID_NOT_AVAILABLE", "hitId": "hit-1"},
    )

    assert response.status_code == 200
    assert b"Which poem is better?" in response.content
    assert b"Accept the HIT to start rating." in response.content
    assert (Rater.objects.count(), Assignment.objects.count(), Session.objects.count()) == (0, 0, 0)
    assert "X-Frame-Options" not in response
    assert "frame-ancestors https://www.mturk.com" in response["Content-Security-Policy"]


@pytest.mark.parametrize(
    ("modality", "says", "never"),
    [
        ("text", b"read a prompt and two texts", b"two images"),
        ("image", b"see a prompt and two images", b"two texts"),
    ],
)
def test_the_preview_and_the_skip_reasons_name_the_studys_modality(
    modality: str, says: bytes, never: bytes
) -> None:
    study = make_study(modality=modality)
    mturk_preview = {"t": study.invite_token, "assignmentId": "ASSIGNMENT_ID_NOT_AVAILABLE", "hitId": "h"}
    preview = Client().get(page_url(study), mturk_preview)
    assert says in preview.content and never not in preview.content
    page = invited(study).get(page_url(study))
    broken = b"An image is broken or unreadable" if modality == "image" else b"A text is broken or unreadable"
    other = b"A text is broken or unreadable" if modality == "image" else b"An image is broken or unreadable"
    assert page.content.count(broken) == 2  # the radio's stored value and its label
    assert other not in page.content


def test_an_mturk_worker_who_accepted_gets_a_rater_and_a_frameable_page() -> None:
    study = make_study()
    query = {
        "t": study.invite_token,
        "assignmentId": "a-1",
        "hitId": "h-1",
        "workerId": "w-1",
        "turkSubmitTo": "https://workersandbox.mturk.com",
    }

    response = Client().get(page_url(study), query)

    assert response.status_code == 200
    rater = Rater.objects.get()
    assert (rater.platform, rater.external_id) == (Platform.MTURK, "w-1")
    assert rater.session_info == {
        "assignment_id": "a-1",
        "hit_id": "h-1",
        "turk_submit_to": "https://workersandbox.mturk.com",
    }
    assert "X-Frame-Options" not in response


def test_other_pages_cannot_be_framed() -> None:
    study = make_study()

    response = invited(study).get(page_url(study))

    assert response["X-Frame-Options"] == "DENY"


# --- Completion ------------------------------------------------------------------------------------


def finished_prolific_client(study) -> Client:  # type: ignore[no-untyped-def]
    client = Client()
    client.get(
        page_url(study),
        {"t": study.invite_token, "PROLIFIC_PID": "pid-1", "STUDY_ID": "s", "SESSION_ID": "x"},
    )
    pair = api(client, study, "next", START).json()["pair"]
    api(client, study, "vote", {"token": pair["token"], "choice": "tie", "idempotency_key": "key-00001"})
    return client


def test_a_prolific_participant_at_the_quota_is_sent_to_the_completion_page() -> None:
    study = make_study(
        per_rater_cap=1,
        completion_code="C0DE42",
        completion_url="https://app.prolific.com/submissions/complete",
    )
    make_comparisons(study, 3)
    client = finished_prolific_client(study)

    answer = api(client, study, "next", START).json()
    done = client.get(answer["redirect"])

    assert answer == {"status": "done", "redirect": f"/rate/{study.slug}/done/"}
    assert done.status_code == 200
    assert b"C0DE42" in done.content
    assert (
        b'<meta http-equiv="refresh" content="5;url=https://app.prolific.com/submissions/complete?cc=C0DE42">'
        in done.content
    )
    assert client.get(page_url(study))["Location"] == f"/rate/{study.slug}/done/"


def test_the_completion_code_is_not_shown_before_the_quota_is_done() -> None:
    study = make_study(per_rater_cap=2, completion_code="C0DE42")
    make_comparisons(study, 3)
    client = finished_prolific_client(study)

    response = client.get(reverse("ratings:done", args=[study.slug]))

    assert response.status_code == 302
    assert b"C0DE42" not in client.get(page_url(study)).content


def test_a_finished_mturk_worker_gets_the_form_that_submits_the_hit() -> None:
    study = make_study(per_rater_cap=1, completion_code="C0DE42")
    make_comparisons(study, 2)
    client = Client()
    client.get(
        page_url(study),
        {
            "t": study.invite_token,
            "assignmentId": "a-1",
            "hitId": "h-1",
            "workerId": "w-1",
            "turkSubmitTo": "https://www.mturk.com",
        },
    )
    pair = api(client, study, "next", START).json()["pair"]
    api(client, study, "vote", {"token": pair["token"], "choice": "tie", "idempotency_key": "key-00001"})
    api(client, study, "next", START)

    done = client.get(reverse("ratings:done", args=[study.slug]))

    assert b'action="https://www.mturk.com/mturk/externalSubmit"' in done.content
    assert b'name="assignmentId" value="a-1"' in done.content


# --- Blindness and the JSON endpoints ----------------------------------------------------------


def test_nothing_before_the_vote_names_a_generator_a_version_or_a_sample() -> None:
    study = make_study()
    version = factories.version(label="secret-label-v7", model_path="", enrol_in=study)
    prompt = factories.prompt(study=study, text="Write about the tide.")
    factories.comparison(
        prompt=prompt,
        sample_a=factories.sample(prompt=prompt, version=version, text="First text."),
        sample_b=factories.sample(prompt=prompt, text="Second text."),
    )
    client = invited(study)

    page = client.get(page_url(study)).content.decode()
    answer = api(client, study, "next", START)
    body = answer.content.decode()

    pair = answer.json()["pair"]
    assert set(pair) == {"token", "prompt", "left", "right"}
    assert {pair["left"], pair["right"]} == {"First text.", "Second text."}
    assert pair["prompt"] == "Write about the tide."
    for secret in ("secret-label-v7", version.generator.name, "sample_a", "sample_b", "version"):
        assert secret not in page
        assert secret not in body


def test_a_vote_through_the_api_is_stored_with_the_outcome_of_the_clicked_side() -> None:
    study = make_study()
    make_comparisons(study, 2)
    client = invited(study)
    pair = api(client, study, "next", START).json()["pair"]
    assignment = Assignment.objects.get()
    now_ms = int(timezone.now().timestamp() * 1000)

    answer = api(
        client,
        study,
        "vote",
        {
            "token": pair["token"],
            "choice": "left",
            "strength": 2,
            "rationale": "Vivid.",
            "idempotency_key": "3f1c1a9e-5b8e-4c1e-9d51-0f0a3c9a8c11",
            "shown_at": now_ms - 20_000,
            "first_input_at": now_ms - 5_000,
            "sent_at": now_ms,
            "active_seconds": 14.25,
        },
    )

    assert answer.status_code == 200
    assert answer.json() == {
        "status": "saved",
        "created": True,
        "key": "3f1c1a9e-5b8e-4c1e-9d51-0f0a3c9a8c11",
        "progress": {"judged": 1, "quota": None},
        "rater": {"status": "active", "message": ""},
        "undoable": True,
    }
    judgment = Judgment.objects.get()
    assert judgment.outcome == (Outcome.A if assignment.left_is_a else Outcome.B)
    assert (judgment.chose_left, judgment.strength, judgment.rationale) == (True, 2, "Vivid.")
    assert judgment.active_seconds == 14.25
    assert abs((judgment.submitted_at - judgment.shown_at) - timedelta(seconds=20)) < timedelta(seconds=2)
    assert abs((judgment.submitted_at - judgment.first_input_at) - timedelta(seconds=5)) < timedelta(
        seconds=2
    )


def test_progress_is_left_out_when_the_study_hides_it() -> None:
    study = make_study(show_progress=False)
    make_comparisons(study, 1)
    client = invited(study)

    answer = api(client, study, "next", START).json()

    assert answer["progress"] is None
    assert b'id="progress"' not in client.get(page_url(study)).content


def test_a_late_vote_on_a_pair_another_rater_took_answers_409_with_the_message() -> None:
    study = make_study(overlap=1)
    make_comparisons(study, 1)
    client = invited(study)
    pair = api(client, study, "next", START).json()["pair"]
    expire(Assignment.objects.get().id)
    assert api(invited(study), study, "next", START).json()["pair"] is not None  # takes the freed slot

    answer = api(
        client, study, "vote", {"token": pair["token"], "choice": "tie", "idempotency_key": "key-00001"}
    )

    assert answer.status_code == 409
    assert answer.json()["error"].startswith("This pair was reserved for you for a limited time")
    assert Judgment.objects.count() == 0


def test_a_vote_with_a_forged_token_is_refused() -> None:
    study = make_study()
    make_comparisons(study, 1)
    client = invited(study)
    api(client, study, "next", START)
    real = Assignment.objects.get().token
    forged = real[:-2] + ("xx" if not real.endswith("xx") else "yy")

    answer = api(client, study, "vote", {"token": forged, "choice": "tie", "idempotency_key": "key-00001"})

    assert answer.status_code == 404
    assert answer.json() == {"error": "This pair does not exist."}
    assert Judgment.objects.count() == 0


def test_a_vote_for_another_participants_pair_is_refused() -> None:
    study = make_study(overlap=2)
    make_comparisons(study, 1)
    owner, intruder = invited(study), invited(study)
    pair = api(owner, study, "next", START).json()["pair"]

    answer = api(
        intruder, study, "vote", {"token": pair["token"], "choice": "tie", "idempotency_key": "key-00001"}
    )

    assert answer.status_code == 403
    assert answer.json() == {"error": "This pair was given to someone else."}


def test_an_invalid_vote_names_the_fields() -> None:
    study = make_study()
    make_comparisons(study, 1)
    client = invited(study)
    pair = api(client, study, "next", START).json()["pair"]

    answer = api(
        client, study, "vote", {"token": pair["token"], "choice": "sideways", "idempotency_key": "k"}
    )

    assert answer.status_code == 400
    body = answer.json()
    assert body["error"] == "Some fields are not valid."
    assert set(body["fields"]) == {"choice", "idempotency_key"}


def test_the_api_without_a_rating_session_answers_401() -> None:
    study = make_study()

    answer = api(Client(), study, "next", START)

    assert answer.status_code == 401
    assert answer.json() == {"error": "Your rating session has ended. Reload the page to continue."}


def test_the_api_refuses_a_post_without_the_csrf_token() -> None:
    study = make_study()
    make_comparisons(study, 1)
    client = Client(enforce_csrf_checks=True)
    client.get(reverse("ratings:join", args=[study.slug, study.invite_token]))
    client.get(page_url(study))
    url = reverse("ratings:api-next", args=[study.slug])

    refused = client.post(url, json.dumps(START), content_type="application/json")
    accepted = client.post(
        url,
        json.dumps(START),
        content_type="application/json",
        HTTP_X_CSRFTOKEN=client.cookies["csrftoken"].value,
    )

    assert refused.status_code == 403
    assert accepted.status_code == 200
    assert Assignment.objects.count() == 1


def test_undo_and_skip_through_the_api() -> None:
    study = make_study()
    make_comparisons(study, 2)
    client = invited(study)
    first = api(client, study, "next", START).json()["pair"]
    api(
        client, study, "vote", {"token": first["token"], "choice": "both_bad", "idempotency_key": "key-00001"}
    )

    undone = api(client, study, "undo", {"idempotency_key": "key-00001"}).json()
    skipped = api(client, study, "skip", {"token": undone["pair"]["token"], "reason": "Broken text"})

    assert undone["pair"] == first
    assert skipped.json() == {"status": "skipped"}
    assert Judgment.objects.get().revoked_reason == "undo"
    assert Assignment.objects.get().skip_reason == "Broken text"


def test_a_paused_rater_sees_why_on_the_page_and_from_the_api() -> None:
    study = make_study()
    make_comparisons(study, 1)
    client = invited(study)
    Rater.objects.update(status=RaterStatus.PAUSED, paused_reason="Too many check questions missed.")

    page = client.get(page_url(study)).content.decode()
    answer = api(client, study, "next", START).json()

    assert "Too many check questions missed." in page
    assert answer == {"status": "paused", "message": "Too many check questions missed."}
    assert Assignment.objects.count() == 0


# --- Query counts on the hot path ---------------------------------------------------------------


@pytest.fixture
def process_cache(settings):  # type: ignore[no-untyped-def]
    """Rate-limit counters in process memory: the tests below count database queries, and in
    production the counters live in Redis, not in the database."""
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}


@pytest.mark.usefixtures("process_cache")
def test_next_pair_and_vote_take_a_few_queries(django_assert_max_num_queries) -> None:  # type: ignore[no-untyped-def]
    study = make_study(per_rater_cap=50)
    make_comparisons(study, 3)
    client = invited(study)
    client.get(page_url(study))

    # session, rater + study, counts, candidate (locked, with texts), counter, insert (+ 2 savepoints)
    with django_assert_max_num_queries(8):
        pair = api(client, study, "next", START).json()["pair"]
    # session, rater + study, counts, open reservation with texts
    with django_assert_max_num_queries(4):
        assert api(client, study, "next", START).json()["pair"] == pair
    # session, rater + study, locked assignment with counts, insert, 2 updates (+ 2 savepoints)
    with django_assert_max_num_queries(8):
        api(client, study, "vote", {"token": pair["token"], "choice": "tie", "idempotency_key": "key-00001"})


def test_vote_and_next_pair_in_one_request_take_a_few_queries(django_assert_max_num_queries) -> None:  # type: ignore[no-untyped-def]
    study = make_study(per_rater_cap=50)
    make_comparisons(study, 3)
    client = invited(study)
    client.get(page_url(study))
    pair = api(client, study, "next", START).json()["pair"]
    vote = {"token": pair["token"], "choice": "tie", "idempotency_key": "key-00001", "next": True}

    # session, rater + study, the vote (locked assignment, insert, 2 updates), then the next pair
    # (counts, candidate, counter, insert), and 4 savepoints around the two transactions
    with django_assert_max_num_queries(14):
        answer = api(client, study, "vote", vote).json()

    assert answer["status"] == "saved"
    assert answer["next"]["status"] == "pair"


def test_a_null_character_in_a_vote_is_a_field_error_and_stores_nothing() -> None:
    study = make_study()
    make_comparisons(study, 2)
    client = invited(study)
    pair = api(client, study, "next", START).json()["pair"]

    answer = api(
        client,
        study,
        "vote",
        {"token": pair["token"], "choice": "left", "idempotency_key": "key-00001", "rationale": "nice\x00"},
    )

    assert answer.status_code == 400
    assert answer.json()["fields"] == {
        "rationale": "This value contains a NUL character (\\u0000), which cannot be stored."
    }
    assert Judgment.objects.count() == 0


def test_a_saved_vote_whose_next_pair_fails_still_answers_saved(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    study = make_study()
    make_comparisons(study, 2)
    client = invited(study)
    pair = api(client, study, "next", START).json()["pair"]

    def broken(**_: object) -> None:
        raise RuntimeError("the database went away")

    monkeypatch.setattr(services, "assignment_next_for_rater", broken)
    vote = {"token": pair["token"], "choice": "tie", "idempotency_key": "key-00001", "next": True}
    answer = api(client, study, "vote", vote)

    assert answer.status_code == 200
    assert answer.json()["status"] == "saved"
    assert answer.json()["next"] == {"status": "error", "message": "The next pair could not be loaded."}
    assert Judgment.objects.count() == 1


def test_a_vote_can_carry_the_next_pair_which_is_then_reserved() -> None:
    study = make_study(per_rater_cap=10)
    make_comparisons(study, 3)
    client = invited(study)
    first = api(client, study, "next", START).json()["pair"]

    answer = api(
        client,
        study,
        "vote",
        {"token": first["token"], "choice": "left", "idempotency_key": "key-00001", "next": True},
    ).json()

    following = answer["next"]
    assert answer["status"] == "saved"
    assert following["status"] == "pair"
    assert following["pair"]["token"] != first["token"]
    assert following["progress"] == {"judged": 1, "quota": 10}
    # The page's next request (a reload, say) gets the same reservation, not another one.
    assert api(client, study, "next", START).json()["pair"] == following["pair"]
    assert Assignment.objects.filter(status="reserved").count() == 1
    # Without the flag the answer has no next pair and reserves nothing.
    plain = api(
        client,
        study,
        "vote",
        {"token": following["pair"]["token"], "choice": "tie", "idempotency_key": "key-00002"},
    ).json()
    assert "next" not in plain
    assert Assignment.objects.filter(status="reserved").count() == 0


def test_a_resent_vote_with_next_answers_the_same_next_pair() -> None:
    study = make_study()
    make_comparisons(study, 3)
    client = invited(study)
    pair = api(client, study, "next", START).json()["pair"]
    vote = {"token": pair["token"], "choice": "right", "idempotency_key": "key-00001", "next": True}

    first, again = api(client, study, "vote", vote).json(), api(client, study, "vote", vote).json()

    assert (first["created"], again["created"]) == (True, False)
    assert again["next"] == first["next"]
    assert Judgment.objects.count() == 1
    assert Assignment.objects.filter(status="reserved").count() == 1


def test_the_vote_that_pauses_a_rater_answers_paused_instead_of_a_pair_and_the_page_says_why() -> None:
    # At most 55 % on one side: 10 of 10 left has p = 2 * 0.55^10 = 0.005, below the 1 % level.
    study = make_study(min_quality_judgments=5, max_position_bias=0.55)
    make_comparisons(study, 12)
    client = invited(study)
    answer = api(client, study, "next", START).json()

    for number in range(services.QUALITY_EVERY):  # always the left side; the tenth vote is checked
        vote = {"token": answer["pair"]["token"], "choice": "left", "idempotency_key": f"key-{number:05d}"}
        reply = api(client, study, "vote", {**vote, "next": True}).json()
        answer = reply["next"]

    message = (
        "You chose the left side in 10 of 10 votes, though the two pieces are placed at random. This "
        "study expects at most 55% on one side, and that many is too many to be bad luck, so it has "
        "paused your rating."
    )
    assert reply["rater"] == {"status": RaterStatus.PAUSED, "message": message}
    assert answer == {"status": "paused", "message": message}
    assert Assignment.objects.filter(status="reserved").count() == 0
    page = client.get(page_url(study)).content.decode()
    assert "Your rating is paused" in page
    assert message in page
    assert "The study's staff will look at it" in page


def test_with_no_pair_left_the_vote_answers_empty_with_a_time_to_ask_again() -> None:
    study = make_study()
    make_comparisons(study, 1)
    client = Client()  # an account rater waits for more pairs; a crowd participant would be done
    client.force_login(factories.rater(study=study).user)
    client.get(page_url(study))
    pair = api(client, study, "next", START).json()["pair"]

    answer = api(
        client,
        study,
        "vote",
        {"token": pair["token"], "choice": "tie", "idempotency_key": "key-00001", "next": True},
    ).json()

    assert answer["status"] == "saved"
    assert answer["next"]["status"] == "empty"
    assert answer["next"]["retry_seconds"] > 0


def test_an_account_rater_signs_in_and_lands_on_the_rating_page() -> None:
    study = make_study()
    rater = factories.rater(study=study, user=factories.user(username="ada", password="analytical engine"))
    client = Client()

    login_page = client.get("/accounts/login/", {"next": page_url(study)})
    signed_in = client.post(
        "/accounts/login/", {"username": "ada", "password": "analytical engine", "next": page_url(study)}
    )

    assert login_page.status_code == 200
    assert b'name="password"' in login_page.content
    assert signed_in.status_code == 302
    assert signed_in["Location"] == page_url(study)
    assert client.get(page_url(study)).context["rater"] == rater


def test_a_crowd_link_without_the_study_token_creates_nobody() -> None:
    study = make_study()
    make_comparisons(study, 1)
    for query in (
        {"PROLIFIC_PID": "anyone", "STUDY_ID": "s", "SESSION_ID": "x"},
        {"t": "guess", "PROLIFIC_PID": "anyone"},
        {"workerId": "w-9", "assignmentId": "a-9", "hitId": "h-9"},
    ):
        response = Client().get(page_url(study), query)
        assert response.status_code == 404
        assert b"This study link is not valid" in response.content
    assert Rater.objects.count() == 0


def raw_api(client: Client, study, name: str, body: str):  # type: ignore[no-untyped-def]
    """A request with a body as written: JSON escapes (``\\ud800``) reach the server as sent."""
    return client.post(
        reverse(f"ratings:api-{name}", args=[study.slug]), body, content_type="application/json"
    )


@pytest.mark.parametrize("name", ["vote", "skip"])
def test_an_escaped_lone_surrogate_is_a_field_error_and_stores_nothing(name: str) -> None:
    study = make_study()
    make_comparisons(study, 2)
    client = invited(study)
    token = api(client, study, "next", START).json()["pair"]["token"]
    field = "rationale" if name == "vote" else "reason"

    answer = raw_api(
        client,
        study,
        name,
        f'{{"token": "{token}", "choice": "left", "idempotency_key": "key-00001", "{field}": "odd \\ud800"}}',
    )

    assert answer.status_code == 400
    assert answer.json() == {
        "error": "Some fields are not valid.",
        "fields": {field: "This value contains a lone surrogate (\\ud800), which is not a character."},
    }
    assert Judgment.objects.count() == 0
    assert list(Assignment.objects.values_list("status", flat=True)) == ["reserved"]


def test_a_deeply_nested_body_is_refused_and_stores_nothing() -> None:
    study = make_study()
    make_comparisons(study, 2)
    client = invited(study)
    token = api(client, study, "next", START).json()["pair"]["token"]
    deep = "[" * 10_000 + "]" * 10_000

    answer = raw_api(
        client,
        study,
        "vote",
        f'{{"token": "{token}", "choice": "left", "idempotency_key": "key-00001", "extra": {deep}}}',
    )

    assert answer.status_code == 400
    assert answer.json() == {"error": "The request body nests arrays and objects deeper than 64 levels."}
    assert Judgment.objects.count() == 0


def test_client_times_a_huge_gap_apart_are_dropped_and_the_vote_saved() -> None:
    study = make_study()
    make_comparisons(study, 2)
    client = invited(study)
    token = api(client, study, "next", START).json()["pair"]["token"]

    answer = api(
        client,
        study,
        "vote",
        {
            "token": token,
            "choice": "left",
            "idempotency_key": "key-00001",
            "shown_at": 1,
            "first_input_at": 0,
            "sent_at": 1e15,
        },
    )

    assert answer.status_code == 200
    assert answer.json()["status"] == "saved"
    judgment = Judgment.objects.get()
    assert (judgment.shown_at, judgment.first_input_at) == (None, None)
