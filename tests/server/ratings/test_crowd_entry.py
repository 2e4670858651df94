"""Crowd links under attack: floods of scripted entries, and participant ids used from another browser.

The crowd link of a study is public once it is on Prolific or MTurk, and the participant id that
the platform appends is no secret. These tests play the script of an attacker through Django's
test client (each ``Client`` is one browser: its own cookies; ``REMOTE_ADDR`` is its address).
"""

from __future__ import annotations

import json
import secrets
from collections import Counter

import pytest
from django.contrib.sessions.models import Session
from django.test import Client
from django.urls import reverse

from server.core.sessions import SessionStore
from server.ratings import services, views
from server.ratings.models import Assignment, AssignmentStatus, Judgment, Platform, Rater, RaterEntryConflict
from tests import factories
from tests.server.ratings.conftest import make_comparisons, make_study

pytestmark = pytest.mark.django_db

SCRIPT_ADDRESS = "203.0.113.7"
REAL_ADDRESS = "198.51.100.20"


def page_url(study) -> str:  # type: ignore[no-untyped-def]
    return reverse("ratings:page", args=[study.slug])


def open_link(browser: Client, study, participant: str, *, session: str = "se-1"):  # type: ignore[no-untyped-def]
    """What Prolific opens: the study's crowd link with the participant's ids appended."""
    return browser.get(
        page_url(study),
        {"t": study.invite_token, "PROLIFIC_PID": participant, "STUDY_ID": "st-1", "SESSION_ID": session},
    )


def api(browser: Client, study, name: str, payload: dict | None = None):  # type: ignore[no-untyped-def]
    return browser.post(
        reverse(f"ratings:api-{name}", args=[study.slug]),
        json.dumps(payload or {}),
        content_type="application/json",
    )


def start(browser: Client, study):  # type: ignore[no-untyped-def]
    """The page's request after the person pressed Start."""
    return api(browser, study, "next", {"start": True})


def vote(browser: Client, study, token: str, key: str):  # type: ignore[no-untyped-def]
    return api(
        browser, study, "vote", {"token": token, "choice": "tie", "idempotency_key": key, "next": True}
    )


def reservations() -> list[tuple[int, int, str]]:
    return list(Assignment.objects.order_by("id").values_list("id", "rater_id", "status"))


# --- Floods -----------------------------------------------------------------------------------------


def test_a_scripted_flood_from_one_address_cannot_starve_a_real_rater() -> None:
    # Given a study with 40 pairs for one rater each, and a script that opens its Prolific link
    # 300 times with random participant ids and asks for a pair each time, as the page would
    study = make_study(overlap=1)
    make_comparisons(study, 40)
    statuses = []
    for _ in range(300):
        bot = Client(REMOTE_ADDR=SCRIPT_ADDRESS)
        page = open_link(bot, study, secrets.token_hex(12))
        statuses.append(page.status_code)
        if page.status_code == 200:
            assert start(bot, study).json()["status"] == "pair"

    # Then the address got its 30 joins (the default limit) and nothing more
    assert Counter(statuses) == {200: 30, 429: 270}
    assert Rater.objects.count() == 30
    assert Assignment.objects.count() == 30
    # And a real participant from another address still gets a pair
    real = Client(REMOTE_ADDR=REAL_ADDRESS)
    assert open_link(real, study, "real-participant").status_code == 200
    answer = start(real, study).json()
    assert answer["status"] == "pair"
    assert Assignment.objects.filter(rater__external_id="real-participant").count() == 1


def test_a_refused_join_answers_429_in_plain_words_and_creates_nobody(settings) -> None:  # type: ignore[no-untyped-def]
    settings.LOVELACE_CROWD_JOINS_PER_ADDRESS = "2/hour"
    study = make_study()
    for participant in ("a", "b"):
        assert open_link(Client(REMOTE_ADDR=SCRIPT_ADDRESS), study, participant).status_code == 200

    refused = open_link(Client(REMOTE_ADDR=SCRIPT_ADDRESS), study, "c")
    invite = Client(REMOTE_ADDR=SCRIPT_ADDRESS).get(
        reverse("ratings:join", args=[study.slug, study.invite_token])
    )

    for response in (refused, invite):
        assert response.status_code == 429
        assert 0 < int(response["Retry-After"]) <= 3600
        text = response.content.decode()
        assert "Too many people at once" in text
        assert (
            "Too many people have started this study from your network recently. Please try again in" in text
        )
    assert sorted(Rater.objects.values_list("external_id", flat=True)) == ["a", "b"]


def test_opening_the_link_reserves_nothing_until_the_person_presses_start() -> None:
    # A script, a link-preview robot or a headless browser loads the page, whose script asks for
    # the pair at once: no crowd rater gets one before pressing Start.
    study = make_study(overlap=1)
    make_comparisons(study, 5)
    visitors = []
    for number in range(20):
        visitor = Client(REMOTE_ADDR=f"192.0.2.{number + 1}")
        assert open_link(visitor, study, f"visitor-{number}").status_code == 200
        assert api(visitor, study, "next").json() == {"status": "start"}
        visitors.append(visitor)

    assert Rater.objects.count() == 20
    assert reservations() == []

    answer = start(visitors[0], study).json()
    assert answer["status"] == "pair"
    assert Assignment.objects.get().rater.external_id == "visitor-0"
    # A reload asks without Start again and gets the same reservation; after a vote, no Start is needed.
    assert api(visitors[0], study, "next").json()["pair"] == answer["pair"]
    assert vote(visitors[0], study, answer["pair"]["token"], "key-00001").json()["next"]["status"] == "pair"
    assert api(visitors[0], study, "next").json()["status"] == "pair"


def test_an_account_rater_needs_no_start() -> None:
    study = make_study()
    make_comparisons(study, 1)
    person = factories.user()
    factories.rater(study=study, user=person)
    browser = Client()
    browser.force_login(person)
    assert browser.get(page_url(study)).status_code == 200

    assert api(browser, study, "next").json()["status"] == "pair"


def test_a_flood_from_many_addresses_is_held_to_the_links_limits(settings) -> None:  # type: ignore[no-untyped-def]
    settings.LOVELACE_CROWD_JOINS_PER_LINK = "50/hour"
    settings.LOVELACE_CROWD_FIRST_PAIRS_PER_LINK = "20/hour"
    study = make_study(overlap=1)
    make_comparisons(study, 40)
    # A real participant who is rating already
    real = Client(REMOTE_ADDR=REAL_ADDRESS)
    open_link(real, study, "real-participant")
    first = start(real, study).json()["pair"]
    assert vote(real, study, first["token"], "key-00001").json()["next"]["status"] == "pair"
    # and one who joined but has not pressed Start yet
    newcomer = Client(REMOTE_ADDR="198.51.100.21")
    open_link(newcomer, study, "newcomer")

    statuses = []
    for number in range(300):
        bot = Client(REMOTE_ADDR=f"10.0.{number // 250}.{number % 250 + 1}")
        page = open_link(bot, study, secrets.token_hex(12))
        statuses.append(page.status_code)
        if page.status_code == 200:
            start(bot, study)

    # The two real participants had 2 of the link's 50 joins, the one rating 1 of its 20 first pairs.
    assert Counter(statuses) == {200: 48, 429: 252}
    bots = Rater.objects.exclude(external_id__in=["real-participant", "newcomer"])
    assert bots.count() == 48
    assert Assignment.objects.filter(rater__in=bots).count() == 19
    assert "Too many people are starting this study right now. Please try again in" in page.content.decode()
    # The participant who is rating goes on, one vote at a time: no limit applies to it.
    second = api(real, study, "next").json()["pair"]
    assert vote(real, study, second["token"], "key-00002").json()["next"]["status"] == "pair"
    # The newcomer is told to wait and asked to keep the page open; nothing is reserved for it.
    waiting = start(newcomer, study).json()
    assert waiting["status"] == "empty"
    assert waiting["message"] == views.THROTTLED_MESSAGE
    assert 0 < waiting["retry_seconds"] <= services.THROTTLED_RETRY_SECONDS
    assert not Assignment.objects.filter(rater__external_id="newcomer").exists()


def test_joins_refused_for_one_address_spend_nothing_of_the_links_budget(settings) -> None:  # type: ignore[no-untyped-def]
    settings.LOVELACE_CROWD_JOINS_PER_ADDRESS = "3/hour"
    settings.LOVELACE_CROWD_JOINS_PER_LINK = "5/hour"
    study = make_study()
    for number in range(100):
        open_link(Client(REMOTE_ADDR=SCRIPT_ADDRESS), study, f"bot-{number}")

    others = [
        open_link(Client(REMOTE_ADDR=f"192.0.2.{n}"), study, f"person-{n}").status_code for n in (1, 2, 3)
    ]

    assert others == [200, 200, 429]  # 3 from the script's address + 2: the link's 5
    assert Rater.objects.count() == 5


def test_a_first_pair_held_back_or_not_found_spends_no_budget(settings) -> None:  # type: ignore[no-untyped-def]
    settings.LOVELACE_CROWD_FIRST_PAIRS_PER_ADDRESS = "1/hour"
    study = make_study(overlap=1)
    one, two = Client(REMOTE_ADDR=SCRIPT_ADDRESS), Client(REMOTE_ADDR=SCRIPT_ADDRESS)
    open_link(one, study, "one")
    open_link(two, study, "two")
    # No pairs yet: asking again and again reserves nothing and spends nothing.
    for _ in range(5):
        answer = start(one, study).json()
        assert answer["status"] == "empty"
        assert answer["message"] == views.NO_WORK_MESSAGES[services.NoWork.EMPTY]
    make_comparisons(study, 3)

    assert start(one, study).json()["status"] == "pair"
    held_back = start(two, study).json()
    assert (held_back["status"], held_back["message"]) == ("empty", views.THROTTLED_MESSAGE)
    assert [rater for _, rater, _ in reservations()] == [Rater.objects.get(external_id="one").id]


# --- Identity ---------------------------------------------------------------------------------------


def test_a_known_participant_id_in_another_browser_is_refused_and_recorded() -> None:
    # Given a participant who has voted once and holds its next pair
    study = make_study(overlap=1)
    make_comparisons(study, 3)
    owner = Client(REMOTE_ADDR=REAL_ADDRESS)
    open_link(owner, study, "pid-7", session="se-1")
    first = start(owner, study).json()["pair"]
    held = vote(owner, study, first["token"], "key-00001").json()["next"]["pair"]
    rater = Rater.objects.get()
    before = (reservations(), rater.session_info)

    # When someone opens the link with the same participant id in a fresh browser
    intruder = Client(REMOTE_ADDR=SCRIPT_ADDRESS)
    page = open_link(intruder, study, "pid-7", session="se-evil")

    # Then the entry is refused in plain words
    assert page.status_code == 409
    text = page.content.decode()
    assert "Already taking part in another browser" in text
    assert "This participant id is already taking part in this study in another browser." in text
    # and that browser cannot act as the participant
    assert api(intruder, study, "next").status_code == 401
    assert vote(intruder, study, held["token"], "key-evil").status_code == 401
    assert api(intruder, study, "skip", {"token": held["token"], "reason": "mine now"}).status_code == 401
    # and the participant's progress, reservation and details are untouched
    rater.refresh_from_db()
    assert (reservations(), rater.session_info) == before
    assert Judgment.objects.count() == 1
    assert api(owner, study, "next", {"start": True}).json()["pair"] == held
    # and the staff have a record of it
    conflict = RaterEntryConflict.objects.get()
    assert (conflict.rater_id, conflict.client_address, conflict.session_info) == (
        rater.id,
        SCRIPT_ADDRESS,
        {"study_id": "st-1", "session_id": "se-evil"},
    )


def test_an_mturk_worker_id_in_another_browser_is_refused_too() -> None:
    study = make_study()
    link = {"t": study.invite_token, "workerId": "w-1", "assignmentId": "a-1", "hitId": "h-1"}
    assert Client().get(page_url(study), link).status_code == 200

    refused = Client().get(page_url(study), {**link, "assignmentId": "a-2"})

    assert refused.status_code == 409
    rater = Rater.objects.get()
    assert (rater.platform, rater.session_info["assignment_id"]) == (Platform.MTURK, "a-1")
    assert RaterEntryConflict.objects.get().session_info == {
        "assignment_id": "a-2",
        "hit_id": "h-1",
        "turk_submit_to": "",
    }


def test_staff_see_the_conflict_and_can_release_the_participant_to_a_new_browser() -> None:
    study = make_study(overlap=1)
    make_comparisons(study, 2)
    old_browser = Client()
    open_link(old_browser, study, "pid-7")
    held = start(old_browser, study).json()["pair"]
    new_browser = Client()
    assert open_link(new_browser, study, "pid-7").status_code == 409
    staff = Client()
    staff.force_login(factories.user(is_staff=True))
    rater = Rater.objects.get()

    dashboard = staff.get(reverse("dashboard:study", args=[study.slug])).content.decode()
    assert "Opened from another browser: 1 time, refused" in dashboard
    release_url = reverse("dashboard:rater-release", args=[study.slug, rater.id])
    assert f'action="{release_url}"' in dashboard
    assert staff.post(release_url).status_code == 303

    # The next browser to open the link continues as the participant, with its reservation
    assert open_link(new_browser, study, "pid-7").status_code == 200
    assert api(new_browser, study, "next").json()["pair"] == held
    # and the old browser has lost it
    assert api(old_browser, study, "next").status_code == 401
    assert open_link(old_browser, study, "pid-7").status_code == 409
    assert RaterEntryConflict.objects.filter(rater=rater).count() == 2


def test_an_unbound_participant_belongs_to_the_first_browser_that_enters() -> None:
    # Raters created before binding existed have none: the first entry claims them.
    study = make_study()
    factories.crowd_rater(study=study, external_id="pid-old", platform=Platform.PROLIFIC)
    first, second = Client(), Client()

    assert open_link(first, study, "pid-old").status_code == 200
    assert open_link(second, study, "pid-old").status_code == 409
    assert open_link(first, study, "pid-old").status_code == 200
    assert Rater.objects.get().session_binding != ""


@pytest.mark.parametrize("entry", ["prolific", "invite"])
def test_the_session_key_changes_on_every_crowd_entry(entry: str) -> None:
    study = make_study()
    make_comparisons(study, 1)
    # A session key planted in the browser before the entry (session fixation)
    planted = SessionStore()
    planted["earlier"] = "kept"
    planted.create()
    browser = Client()
    browser.cookies["sessionid"] = planted.session_key

    def enter():  # type: ignore[no-untyped-def]
        if entry == "prolific":
            return open_link(browser, study, "pid-1")
        return browser.get(reverse("ratings:join", args=[study.slug, study.invite_token]))

    assert enter().status_code in (200, 302)
    entered_key = browser.cookies["sessionid"].value
    assert enter().status_code in (200, 302)  # coming back through the link
    returned_key = browser.cookies["sessionid"].value

    assert len({planted.session_key, entered_key, returned_key}) == 3
    assert set(Session.objects.values_list("session_key", flat=True)) == {returned_key}
    assert SessionStore(returned_key)["earlier"] == "kept"
    assert start(browser, study).json()["status"] == "pair"
    # Whoever planted the old key holds nothing.
    fixated = Client()
    fixated.cookies["sessionid"] = planted.session_key
    assert api(fixated, study, "next").status_code == 401
    assert Assignment.objects.filter(status=AssignmentStatus.RESERVED).count() == 1
