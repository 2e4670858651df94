from __future__ import annotations

from django.db.models import Max

from server.evaluations.models import LeaderboardSnapshot
from server.ratings.models import Judgment
from server.studies.models import Study


def last_judgment_id(*, study: Study) -> int:
    """Id of the study's newest judgment (0 when none): leaderboards and the loop compare it."""
    return Judgment.objects.filter(assignment__comparison__study=study).aggregate(last=Max("id"))["last"] or 0


def leaderboard_latest(*, study: Study) -> LeaderboardSnapshot | None:
    return study.leaderboards.order_by("-created_at", "-id").first()
