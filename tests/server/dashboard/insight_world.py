"""``build_world`` plus what the insight sections show: a real leaderboard recompute after the
world's own (two rounds, the second with length-controlled ratings), a DPO child of a version,
rationales, a skipped pair, "both bad" votes and a reward model with reliability bins."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from django.utils import timezone

from server.evaluations.leaderboard import leaderboard_compute
from server.evaluations.models import LeaderboardSnapshot
from server.generators.models import GeneratorVersion, Sample, VersionKind
from server.jobs.models import Job, JobKind, JobStatus
from server.ratings.models import Assignment, AssignmentStatus, Comparison, Judgment
from server.training.models import RewardModel
from tests import factories
from tests.server.api.world import HOSTILE, World

RELIABILITY_BINS = [
    {"lower": 0.5, "upper": 0.6, "count": 6, "mean_confidence": 0.55, "accuracy": 0.5},
    {"lower": 0.7, "upper": 0.8, "count": 4, "mean_confidence": 0.74, "accuracy": 0.75},
    {"lower": 0.9, "upper": 1.0, "count": 2, "mean_confidence": 0.93, "accuracy": 1.0},
]


@dataclass
class Insights:
    child: GeneratorVersion
    training_job: Job
    board: LeaderboardSnapshot
    calibrated_model: RewardModel
    rationale_judgments: list[Judgment]
    skipped: Assignment


def add_insights(world: World, *, hostile_text: bool = False) -> Insights:
    mark = HOSTILE if hostile_text else ""
    study = world.study_a
    # Token counts that differ between versions, so the recompute fits the length-controlled board.
    for index, sample in enumerate(Sample.objects.filter(prompt__study=study).order_by("id")):
        Sample.objects.filter(id=sample.id).update(
            token_count=20 + 7 * (index % 5) + 10 * (sample.version_id % 3)
        )
    judgments = list(
        Judgment.objects.filter(assignment__comparison__study=study, revoked_at__isnull=True).order_by("id")
    )
    Judgment.objects.filter(id=judgments[3].id).update(outcome="both_bad", chose_left=None)
    rationale_judgments = judgments[:3]
    for index, judgment in enumerate(rationale_judgments):
        Judgment.objects.filter(id=judgment.id).update(
            rationale=f"Reason number {index}: the imagery lands. {mark}"
        )
    comparison = Comparison.objects.filter(study=study).order_by("-id").first()
    assert comparison is not None
    skipped = factories.assignment(
        comparison=comparison,
        rater=factories.rater(study=study),
        status=AssignmentStatus.SKIPPED,
        skip_reason=f"I cannot judge verse in this language. {mark}",
    )
    board = leaderboard_compute(study=study, rounds=60)
    training_job = Job.objects.create(
        kind=JobKind.TRAIN_POLICY,
        status=JobStatus.SUCCEEDED,
        study=study,
        queue="gpu",
        params={"method": "dpo", "parent_version_id": world.base_version.id},
        started_at=timezone.now() - timedelta(minutes=20),
        finished_at=timezone.now() - timedelta(minutes=1),
    )
    child = factories.version(
        enrol_in=study,
        generator=world.base_version.generator,
        label=f"tiny-base+dpo{mark}",
        kind=VersionKind.TRAINED,
        model_path=world.base_version.model_path,
        parent=world.base_version,
        training_job=training_job,
        snapshot=world.snapshot,
    )
    calibrated_model = RewardModel.objects.create(
        study=study,
        snapshot=world.snapshot,
        backbone=world.reward_model.backbone,
        ensemble_size=2,
        path=world.reward_model.path,
        validation_accuracy=0.67,
        human_agreement_ceiling=0.74,
        expected_calibration_error=0.045,
        metrics={"validation_pairs": 12, "reliability_bins": RELIABILITY_BINS},
    )
    return Insights(
        child=child,
        training_job=training_job,
        board=board,
        calibrated_model=calibrated_model,
        rationale_judgments=rationale_judgments,
        skipped=skipped,
    )
