"""Validation of the rating page's JSON requests (the shape of the input; the rules live in services)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django import forms
from django.utils import timezone

from server.core.untrusted_json import text_problem
from server.ratings.services import CHOICES

# Client clocks drift; timings further than this from the server's clock are dropped, not stored.
MAX_CLOCK_SKEW = timedelta(days=1)
MAX_ACTIVE_SECONDS = 24 * 3600.0


@dataclass(frozen=True)
class VoteInput:
    """The vote request's fields, checked. Not a Django form: a form deep-copies its fields on every
    request, which was 8 % of a vote's CPU time on the load bench; this is the same checks in plain
    code, with the same error shape (field name -> message)."""

    token: str
    choice: str
    strength: int | None
    rationale: str
    idempotency_key: str
    # Milliseconds since the epoch on the client's clock; ``sent_at`` lets the server correct the
    # other two for the client's clock offset.
    shown_at: int | None
    first_input_at: int | None
    sent_at: int | None
    active_seconds: float | None
    next: bool  # answer with the rater's next pair too: one request per judgment instead of two
    # The answers to the study's further questions, by criterion key (``choice`` answers its own).
    answers: dict[str, str]

    @classmethod
    def parse(cls, payload: dict[str, Any]) -> tuple[VoteInput | None, dict[str, str]]:
        """The checked input, or None and a message per field that is not valid."""
        errors: dict[str, str] = {}
        fields = _Fields(payload, errors)
        vote = cls(
            token=fields.text("token", max_length=200),
            choice=fields.choice("choice", CHOICES),
            strength=fields.strength("strength"),
            rationale=fields.text("rationale", max_length=5000, required=False),
            idempotency_key=fields.text("idempotency_key", min_length=8, max_length=64),
            shown_at=fields.milliseconds("shown_at"),
            first_input_at=fields.milliseconds("first_input_at"),
            sent_at=fields.milliseconds("sent_at"),
            active_seconds=fields.seconds("active_seconds", maximum=MAX_ACTIVE_SECONDS),
            next=fields.flag("next"),
            answers=fields.answers("answers", CHOICES),
        )
        return (None, errors) if errors else (vote, errors)

    def client_time(self, field: str) -> datetime | None:
        """A client timestamp moved onto the server's clock; None when missing or implausible."""
        value, sent_at = getattr(self, field), self.sent_at
        if value is None or sent_at is None or value > sent_at:
            return None
        # Compared as integers first: a gap of 1e15 ms is no timing, and as a timedelta it would
        # carry the date past year 1 (OverflowError).
        if sent_at - value > MAX_CLOCK_SKEW // timedelta(milliseconds=1):
            return None
        return timezone.now() - timedelta(milliseconds=sent_at - value)


class _Fields:
    """Reads JSON values by name, noting a message for each that is not valid."""

    def __init__(self, payload: dict[str, Any], errors: dict[str, str]) -> None:
        self.payload, self.errors = payload, errors

    def _missing(self, name: str) -> bool:
        return self.payload.get(name) in (None, "")

    def text(self, name: str, *, max_length: int, min_length: int = 0, required: bool = True) -> str:
        value = self.payload.get(name)
        if value is None or (isinstance(value, str) and not value.strip()):
            if required:
                self.errors[name] = "This field is required."
            return ""
        if not isinstance(value, str):
            self.errors[name] = "Enter text."
            return ""
        problem = text_problem(value)  # a NUL or a lone surrogate: the database cannot store it
        if problem:
            self.errors[name] = f"This value {problem}."
            return ""
        value = value.strip()
        if not min_length <= len(value) <= max_length:
            self.errors[name] = f"Use {min_length} to {max_length} characters (this has {len(value)})."
        return value

    def choice(self, name: str, allowed: tuple[str, ...]) -> str:
        value = self.payload.get(name)
        if value not in allowed:
            self.errors[name] = f"Choose one of {', '.join(allowed)}."
            return ""
        return str(value)

    def answers(self, name: str, allowed: tuple[str, ...]) -> dict[str, str]:
        value = self.payload.get(name)
        if value is None:
            return {}
        if not isinstance(value, dict) or len(value) > 8:
            self.errors[name] = "Give an object of at most 8 answers: question key -> choice."
            return {}
        answers: dict[str, str] = {}
        for key, choice in value.items():
            if not isinstance(key, str) or not 0 < len(key) <= 40 or text_problem(key):
                self.errors[name] = "Each answer is named by its question's key (1 to 40 characters)."
                return {}
            if choice not in allowed:
                self.errors[f"{name}.{key}"] = f"Choose one of {', '.join(allowed)}."
                continue
            answers[key] = str(choice)
        return answers

    def strength(self, name: str) -> int | None:
        if self._missing(name):
            return None
        value = self.payload[name]
        if isinstance(value, bool) or str(value) not in ("1", "2", "3"):
            self.errors[name] = "Strength is 1, 2 or 3."
            return None
        return int(value)

    def _number(self, name: str) -> float | None:
        """A JSON number, or a string holding one (as Django's number fields accept); NaN and
        infinities are not numbers here."""
        value = self.payload[name]
        if isinstance(value, bool):
            return None
        if isinstance(value, str):
            try:
                value = float(value.strip())
            except ValueError:
                return None
        if not isinstance(value, int | float) or not math.isfinite(value):
            return None
        return value

    def milliseconds(self, name: str) -> int | None:
        if self._missing(name):
            return None
        value = self._number(name)
        if value is None or value < 0 or value != int(value):
            self.errors[name] = "Enter a whole number of milliseconds, 0 or more."
            return None
        return int(value)

    def seconds(self, name: str, *, maximum: float) -> float | None:
        if self._missing(name):
            return None
        value = self._number(name)
        if value is None or not 0.0 <= value <= maximum:
            self.errors[name] = f"Enter a number of seconds from 0 to {maximum:.0f}."
            return None
        return float(value)

    def flag(self, name: str) -> bool:
        value = self.payload.get(name)
        if value is None:
            return False
        if not isinstance(value, bool):
            self.errors[name] = "Use true or false."
            return False
        return value


class SkipForm(forms.Form):
    token = forms.CharField(max_length=200)
    reason = forms.CharField(max_length=300, strip=True)


class UndoForm(forms.Form):
    idempotency_key = forms.CharField(min_length=8, max_length=64)
