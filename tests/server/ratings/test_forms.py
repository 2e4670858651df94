"""The vote request's checks: what passes, and a message per field for what does not."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from server.ratings.forms import MAX_ACTIVE_SECONDS, VoteInput

VALID: dict[str, Any] = {
    "token": "3f:abc",
    "choice": "left",
    "strength": 2,
    "rationale": "  Vivid.  ",
    "idempotency_key": "key-00000001",
    "shown_at": 1_700_000_000_000,
    "first_input_at": 1_700_000_004_000,
    "sent_at": 1_700_000_009_000,
    "active_seconds": 7.5,
    "next": True,
}


def test_a_full_vote_parses_with_types_and_stripped_text() -> None:
    vote, errors = VoteInput.parse(VALID)

    assert errors == {}
    assert vote == VoteInput(
        token="3f:abc",
        choice="left",
        strength=2,
        rationale="Vivid.",
        idempotency_key="key-00000001",
        shown_at=1_700_000_000_000,
        first_input_at=1_700_000_004_000,
        sent_at=1_700_000_009_000,
        active_seconds=7.5,
        answers={},
        next=True,
    )


def test_optional_fields_may_be_missing_or_null() -> None:
    minimal = {
        "token": "t",
        "choice": "tie",
        "idempotency_key": "key-00000001",
        "strength": None,
        "rationale": "",
    }

    vote, errors = VoteInput.parse(minimal)

    assert errors == {}
    assert vote is not None
    assert (vote.strength, vote.rationale, vote.shown_at, vote.active_seconds, vote.next) == (
        None,
        "",
        None,
        None,
        False,
    )
    assert vote.client_time("shown_at") is None


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("token", None, "This field is required."),
        ("token", 12, "Enter text."),
        ("token", "x" * 201, "Use 0 to 200 characters (this has 201)."),
        ("choice", "middle", "Choose one of left, right, tie, both_bad."),
        ("strength", 4, "Strength is 1, 2 or 3."),
        ("strength", True, "Strength is 1, 2 or 3."),
        ("rationale", "x" * 5001, "Use 0 to 5000 characters (this has 5001)."),
        ("idempotency_key", "short", "Use 8 to 64 characters (this has 5)."),
        ("idempotency_key", "", "This field is required."),
        ("shown_at", -1, "Enter a whole number of milliseconds, 0 or more."),
        ("sent_at", 12.5, "Enter a whole number of milliseconds, 0 or more."),
        ("sent_at", "soon", "Enter a whole number of milliseconds, 0 or more."),
        ("sent_at", float("inf"), "Enter a whole number of milliseconds, 0 or more."),
        ("active_seconds", -0.1, f"Enter a number of seconds from 0 to {MAX_ACTIVE_SECONDS:.0f}."),
        ("active_seconds", float("nan"), f"Enter a number of seconds from 0 to {MAX_ACTIVE_SECONDS:.0f}."),
        ("active_seconds", "a while", f"Enter a number of seconds from 0 to {MAX_ACTIVE_SECONDS:.0f}."),
        ("rationale", "fine\x00", "This value contains a NUL character (\\u0000), which cannot be stored."),
        (
            "idempotency_key",
            "key-\x00-00001",
            "This value contains a NUL character (\\u0000), which cannot be stored.",
        ),
        (
            "rationale",
            "fine\ud800",
            "This value contains a lone surrogate (\\ud800), which is not a character.",
        ),
        ("next", "yes", "Use true or false."),
    ],
)
def test_each_invalid_field_gets_its_own_message(field: str, value: object, message: str) -> None:
    vote, errors = VoteInput.parse({**VALID, field: value})

    assert vote is None
    assert errors == {field: message}


def test_numbers_sent_as_strings_or_whole_floats_are_read_as_before() -> None:
    loose = {"shown_at": "1700000000000", "sent_at": 1.700000009e12, "active_seconds": "7.5", "next": None}

    vote, errors = VoteInput.parse({**VALID, **loose})

    assert errors == {}
    assert vote is not None
    assert (vote.shown_at, vote.sent_at, vote.active_seconds, vote.next) == (
        1_700_000_000_000,
        1_700_000_009_000,
        7.5,
        False,
    )
    assert isinstance(vote.sent_at, int)


def test_client_times_move_onto_the_server_clock_and_implausible_ones_are_dropped() -> None:
    from django.utils import timezone

    vote, _ = VoteInput.parse(VALID)
    assert vote is not None
    before = timezone.now()
    shown = vote.client_time("shown_at")
    assert shown is not None
    assert abs((before - shown).total_seconds() - 9.0) < 1.0  # sent 9 s after it was shown

    later, _ = VoteInput.parse({**VALID, "shown_at": VALID["sent_at"] + 1})  # after it was sent
    assert later is not None and later.client_time("shown_at") is None
    ancient, _ = VoteInput.parse({**VALID, "shown_at": 0})  # more than a day of clock skew
    assert ancient is not None and ancient.client_time("shown_at") is None


@pytest.mark.parametrize("sent_at", [1e15, 10**300, 86_400_002])
def test_a_gap_larger_than_the_clock_skew_gives_no_time_whatever_its_size(sent_at: float) -> None:
    vote, errors = VoteInput.parse({**VALID, "shown_at": 0, "first_input_at": 1, "sent_at": sent_at})

    assert errors == {}
    assert vote is not None
    assert (vote.client_time("shown_at"), vote.client_time("first_input_at")) == (None, None)


def test_a_gap_within_the_clock_skew_is_moved_onto_the_server_clock() -> None:
    vote, errors = VoteInput.parse({**VALID, "shown_at": 0, "sent_at": 86_400_000})

    assert errors == {}
    assert vote is not None
    shown = vote.client_time("shown_at")
    assert shown is not None
    assert abs((timezone.now() - shown) - timedelta(days=1)) < timedelta(seconds=5)


def test_answers_to_further_questions_parse_and_bad_ones_name_the_question() -> None:
    vote, errors = VoteInput.parse({**VALID, "answers": {"better": "tie"}})
    assert errors == {} and vote is not None and vote.answers == {"better": "tie"}

    vote, errors = VoteInput.parse({**VALID, "answers": {"better": "up"}})
    assert (vote, errors) == (None, {"answers.better": "Choose one of left, right, tie, both_bad."})
    vote, errors = VoteInput.parse({**VALID, "answers": ["left"]})
    assert (vote, errors) == (
        None,
        {"answers": "Give an object of at most 8 answers: question key -> choice."},
    )
