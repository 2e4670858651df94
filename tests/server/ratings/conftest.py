from __future__ import annotations

import random
from datetime import timedelta

import pytest
from django.utils import timezone

from server.ratings.models import Assignment, Comparison
from server.studies.models import Study
from tests import factories


def make_study(**rules: object) -> Study:
    """A study with no gold or repeat injection, no automatic pausing and no onboarding step (the
    guidelines acknowledgement) unless a test asks."""
    rules.setdefault("require_guidelines_ack", False)
    rules.setdefault("gold_rate", 0.0)
    rules.setdefault("repeat_rate", 0.0)
    rules.setdefault("min_gold_accuracy", 0.0)
    rules.setdefault("min_self_consistency", 0.0)
    rules.setdefault("max_position_bias", 1.0)
    return factories.study(**rules)


def make_comparisons(study: Study, count: int) -> list[Comparison]:
    return [factories.comparison(study=study) for _ in range(count)]


@pytest.fixture
def rng() -> random.Random:
    return random.Random(20251126)


def expire(*assignment_ids: int) -> None:
    """Move reservations into the past, as if their time ran out a second ago."""
    now = timezone.now()
    Assignment.objects.filter(id__in=assignment_ids).update(
        reserved_at=now - timedelta(minutes=20), expires_at=now - timedelta(seconds=1)
    )
