from __future__ import annotations

from django.db import models


class Evaluation(models.Model):
    """A creativity report of one version, with the protocol that produced it."""

    study = models.ForeignKey("studies.Study", on_delete=models.CASCADE, related_name="evaluations")
    version = models.ForeignKey(
        "generators.GeneratorVersion", on_delete=models.CASCADE, related_name="evaluations"
    )
    protocol = models.JSONField(default=dict)  # prompts, k, corpus, embedding model, seeds
    metrics = models.JSONField(default=dict)  # name -> {"mean", "lower", "upper", ...}
    job = models.ForeignKey("jobs.Job", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"evaluation {self.pk} of {self.version_id}"


class LeaderboardSnapshot(models.Model):
    study = models.ForeignKey("studies.Study", on_delete=models.CASCADE, related_name="leaderboards")
    # The question the ratings answer: None for the study's own (its first criterion), else one of
    # its further criteria. A recompute stores one snapshot per criterion.
    criterion = models.ForeignKey(
        "studies.Criterion", null=True, blank=True, on_delete=models.CASCADE, related_name="leaderboards"
    )
    params = models.JSONField(default=dict)  # bootstrap rounds, seed, split, tie rule
    rows = models.JSONField(
        default=list
    )  # [{"version_id", "label", "rating", "lower", "upper", "rank", ...}]
    matrices = models.JSONField(default=dict)  # win-rate and battle-count matrices
    judgment_count = models.PositiveIntegerField(default=0)
    job = models.ForeignKey("jobs.Job", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        get_latest_by = "created_at"

    def __str__(self) -> str:
        return f"leaderboard {self.pk} of {self.study_id}"
