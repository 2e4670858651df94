"""Machine judges: a reward model or an endpoint model that judges a study's comparisons.

Their verdicts live here, apart from human judgments: nothing that reads ``ratings.Judgment``
(snapshots, leaderboards, quality checks, the human agreement ceiling) can see them.
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q


class JudgeKind(models.TextChoices):
    REWARD_MODEL = "reward_model"
    ENDPOINT = "endpoint"


class MachineJudge(models.Model):
    study = models.ForeignKey("studies.Study", on_delete=models.CASCADE, related_name="machine_judges")
    name = models.CharField(max_length=120)
    kind = models.CharField(max_length=16, choices=JudgeKind.choices)
    # kind reward_model: the study's reward model that scores each text.
    reward_model = models.ForeignKey(
        "training.RewardModel", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    # kind endpoint: where to ask (the generator kind's settings: base URL, model, mode, the *name*
    # of the API key's environment variable, ...) and what (the judging prompt's template).
    endpoint = models.JSONField(default=dict, blank=True)
    judging_prompt = models.TextField(blank=True)
    # The judge's leaderboard as of its latest run (rows like the human one's).
    leaderboard = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["study", "name"], name="machine_judge_name_unique_per_study"),
            models.CheckConstraint(condition=Q(kind__in=JudgeKind.values), name="machine_judge_kind_valid"),
            models.CheckConstraint(
                condition=(
                    Q(kind=JudgeKind.REWARD_MODEL) & Q(reward_model__isnull=False) & Q(judging_prompt="")
                )
                | (Q(kind=JudgeKind.ENDPOINT) & Q(reward_model__isnull=True) & ~Q(judging_prompt="")),
                name="machine_judge_has_what_its_kind_needs",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.kind})"


class MachineVerdict(models.TextChoices):
    A = "A"
    B = "B"
    TIE = "tie"


class MachineJudgment(models.Model):
    """One judge's verdict on one comparison (A and B in the comparison's own order)."""

    judge = models.ForeignKey(MachineJudge, on_delete=models.CASCADE, related_name="judgments")
    comparison = models.ForeignKey("ratings.Comparison", on_delete=models.CASCADE, related_name="+")
    outcome = models.CharField(max_length=3, choices=MachineVerdict.choices)
    # An endpoint judge is asked twice, A shown first and B shown first; each answer mapped back to
    # A / B / tie. A reward model scores each text on its own (no order): both stay empty.
    a_first = models.CharField(max_length=3, blank=True)
    b_first = models.CharField(max_length=3, blank=True)
    score_a = models.FloatField(null=True, blank=True)
    score_b = models.FloatField(null=True, blank=True)
    detail = models.JSONField(default=dict, blank=True)  # answers' excerpts, response ids, usage
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(
                fields=["judge", "comparison"], name="machine_judgment_once_per_comparison"
            ),
            models.CheckConstraint(
                condition=Q(outcome__in=MachineVerdict.values), name="machine_judgment_outcome_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.judge.name} on comparison {self.comparison_id}: {self.outcome}"
