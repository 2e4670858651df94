from __future__ import annotations

from django.db import models
from django.db.models import Q


class PreferenceSnapshot(models.Model):
    """A frozen, content-hashed set of judgments with a train/validation split by prompt."""

    study = models.ForeignKey("studies.Study", on_delete=models.CASCADE, related_name="snapshots")
    # Whose answers the pairs carry: None for the study's own question (its first criterion), else
    # one of its further criteria (the content hash covers it).
    criterion = models.ForeignKey(
        "studies.Criterion", null=True, blank=True, on_delete=models.CASCADE, related_name="snapshots"
    )
    content_hash = models.CharField(max_length=64)
    rule = models.CharField(max_length=64, help_text="Name of the documented tie / both-bad mapping rule.")
    validation_fraction = models.FloatField(default=0.2)
    train_count = models.PositiveIntegerField(default=0)
    validation_count = models.PositiveIntegerField(default=0)
    last_judgment_id = models.BigIntegerField(default=0)  # judgments after it are "new" for the loop
    job = models.ForeignKey("jobs.Job", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["study", "content_hash"], name="snapshot_unique_content_per_study"
            ),
            models.CheckConstraint(
                condition=Q(validation_fraction__gte=0, validation_fraction__lt=1),
                name="snapshot_validation_fraction",
            ),
        ]

    def __str__(self) -> str:
        about = f" ({self.criterion.key})" if self.criterion_id else ""
        return f"snapshot {self.content_hash[:10]} of {self.study_id}{about}"


class SnapshotPair(models.Model):
    """One preference pair of a snapshot: what a training run consumed."""

    snapshot = models.ForeignKey(PreferenceSnapshot, on_delete=models.CASCADE, related_name="pairs")
    judgment = models.ForeignKey("ratings.Judgment", on_delete=models.PROTECT, related_name="+")
    chosen = models.ForeignKey("generators.Sample", on_delete=models.PROTECT, related_name="+")
    rejected = models.ForeignKey("generators.Sample", on_delete=models.PROTECT, related_name="+")
    margin = models.FloatField(default=0.0)
    split = models.CharField(max_length=16, choices=[("train", "train"), ("validation", "validation")])

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["snapshot", "judgment"], name="snapshot_pair_once"),
            models.CheckConstraint(
                condition=~Q(chosen=models.F("rejected")), name="snapshot_pair_two_samples"
            ),
        ]

    def __str__(self) -> str:
        return f"pair {self.pk} of snapshot {self.snapshot_id}"


class RewardModel(models.Model):
    study = models.ForeignKey("studies.Study", on_delete=models.CASCADE, related_name="reward_models")
    snapshot = models.ForeignKey(PreferenceSnapshot, on_delete=models.PROTECT, related_name="reward_models")
    # The criterion it models: its snapshot's (None: the study's own question). Pair selection, the
    # loop's policy training and machine judges use the first criterion's models.
    criterion = models.ForeignKey(
        "studies.Criterion", null=True, blank=True, on_delete=models.CASCADE, related_name="reward_models"
    )
    backbone = models.CharField(max_length=500)
    ensemble_size = models.PositiveSmallIntegerField()
    path = models.CharField(max_length=500)
    config = models.JSONField(default=dict, blank=True)
    validation_accuracy = models.FloatField(null=True, blank=True)
    human_agreement_ceiling = models.FloatField(null=True, blank=True)
    expected_calibration_error = models.FloatField(null=True, blank=True)
    metrics = models.JSONField(default=dict, blank=True)
    job = models.ForeignKey("jobs.Job", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(condition=Q(ensemble_size__gte=1), name="reward_model_ensemble_positive"),
            # One reward model per training job, so a re-run job finds the one it made.
            models.UniqueConstraint(
                fields=["job"], condition=Q(job__isnull=False), name="reward_model_one_per_job"
            ),
        ]

    def __str__(self) -> str:
        about = f", {self.criterion.key}" if self.criterion_id else ""
        return f"reward model {self.pk} ({self.study_id}{about})"
