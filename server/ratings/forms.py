"""Validation of the rating page's JSON requests (the shape of the input; the rules live in services)."""

from __future__ import annotations

from datetime import datetime, timedelta

from django import forms
from django.utils import timezone

from server.ratings.services import CHOICES

# Client clocks drift; timings further than this from the server's clock are dropped, not stored.
MAX_CLOCK_SKEW = timedelta(days=1)
MAX_ACTIVE_SECONDS = 24 * 3600.0


class VoteForm(forms.Form):
    token = forms.CharField(max_length=200)
    choice = forms.ChoiceField(choices=[(choice, choice) for choice in CHOICES])
    strength = forms.TypedChoiceField(
        choices=[("1", "1"), ("2", "2"), ("3", "3")], coerce=int, required=False, empty_value=None
    )
    rationale = forms.CharField(max_length=5000, required=False, strip=True)
    idempotency_key = forms.CharField(min_length=8, max_length=64)
    # Milliseconds since the epoch on the client's clock; ``sent_at`` lets the server correct the
    # other two for the client's clock offset.
    shown_at = forms.IntegerField(required=False, min_value=0)
    first_input_at = forms.IntegerField(required=False, min_value=0)
    sent_at = forms.IntegerField(required=False, min_value=0)
    active_seconds = forms.FloatField(required=False, min_value=0.0, max_value=MAX_ACTIVE_SECONDS)
    # Answer with the rater's next pair too: one request per judgment instead of two.
    next = forms.BooleanField(required=False)

    def client_time(self, field: str) -> datetime | None:
        """A client timestamp moved onto the server's clock; None when missing or implausible."""
        value, sent_at = self.cleaned_data.get(field), self.cleaned_data.get("sent_at")
        if value is None or sent_at is None or value > sent_at:
            return None
        now = timezone.now()
        moment = now - timedelta(milliseconds=sent_at - value)
        return moment if now - moment <= MAX_CLOCK_SKEW else None


class SkipForm(forms.Form):
    token = forms.CharField(max_length=200)
    reason = forms.CharField(max_length=300, strip=True)


class UndoForm(forms.Form):
    idempotency_key = forms.CharField(min_length=8, max_length=64)
