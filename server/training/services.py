"""Starting the training steps of the loop; light imports (the web process calls these).

The loop (Christiano et al. 2017, as a chain of jobs): snapshot → reward model → policy (DPO or
RLOO) → generate the child's samples → select new pairs → raters judge them → … Each step is a
Job whose parent is the previous step; a step that fails starts nothing after it, so the chain
stops where the failure is shown.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction

from server.core.exceptions import ApplicationError, NotFound
from server.core.paths import model_path_check
from server.generators.models import GeneratorVersion, VersionKind
from server.generators.services import version_model_check
from server.jobs.models import Job, JobKind, JobStatus
from server.jobs.services import job_enqueue
from server.studies.models import Study
from server.training.models import PreferenceSnapshot, RewardModel

LOOP_KINDS = [
    JobKind.SNAPSHOT,
    JobKind.TRAIN_REWARD_MODEL,
    JobKind.TRAIN_POLICY,
    JobKind.GENERATE,
    JobKind.SELECT_PAIRS,
]
REWARD_MODEL_OPTIONS = {
    "ensemble_size",
    "freeze_backbone",
    "epochs",
    "backbone_path",
    "learning_rate",
    "batch_size",
    "max_length",
    "seed",
}
DPO_OPTIONS = {"beta", "learning_rate", "epochs", "batch_size", "max_length", "seed", "lora"}
RLOO_OPTIONS = {
    "beta",
    "learning_rate",
    "iterations",
    "samples_per_prompt",
    "prompts_per_iteration",
    "max_new_tokens",
    "seed",
    "lora",
}


def _check_options(config: dict[str, Any] | None, allowed: set[str], what: str) -> dict[str, Any]:
    config = dict(config or {})
    unknown = sorted(set(config) - allowed)
    if unknown:
        raise ApplicationError(
            f"Unknown {what} option {unknown[0]!r}; known: {', '.join(sorted(allowed))}.",
            extra={"field": "config"},
        )
    for key, value in config.items():
        if key in ("lora", "freeze_backbone"):
            if not isinstance(value, bool):
                raise ApplicationError(
                    f"{what} option {key!r} must be true or false.", extra={"field": "config"}
                )
        elif key == "backbone_path":
            if not isinstance(value, str) or not value:
                raise ApplicationError(
                    "backbone_path must be a local path or hub id.", extra={"field": "config"}
                )
        elif isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise ApplicationError(
                f"{what} option {key!r} must be a non-negative number.", extra={"field": "config"}
            )
    return config


def _of_study(model, *, study: Study, object_id: int | None):  # type: ignore[no-untyped-def]
    """The study's row of ``model`` with ``object_id``, or its newest when no id is given."""
    rows = model.objects.filter(study=study)
    return rows.filter(id=object_id).first() if object_id else rows.order_by("-created_at", "-id").first()


def snapshot_start(
    *,
    study: Study,
    then: list[str] | None = None,
    validation_fraction: float = 0.2,
    created_by_id: int | None = None,
    parent_id: int | None = None,
) -> Job:
    if not 0 <= validation_fraction < 1:
        raise ApplicationError(
            "The validation fraction must be in [0, 1).", extra={"field": "validation_fraction"}
        )
    return job_enqueue(
        kind=JobKind.SNAPSHOT,
        study_id=study.id,
        created_by_id=created_by_id,
        parent_id=parent_id,
        params={"validation_fraction": validation_fraction, "then": then or []},
    )


def reward_model_train_start(
    *,
    study: Study,
    snapshot_id: int | None = None,
    config: dict[str, Any] | None = None,
    created_by_id: int | None = None,
    parent_id: int | None = None,
    then: list[str] | None = None,
) -> Job:
    """Train a reward-model ensemble on a snapshot (the study's latest when none is given)."""
    config = _check_options(config, REWARD_MODEL_OPTIONS, "reward-model")
    snapshot = _of_study(PreferenceSnapshot, study=study, object_id=snapshot_id)
    if snapshot is None:
        raise ApplicationError(
            "Take a preference snapshot of the study first."
            if not snapshot_id
            else f"The study has no snapshot {snapshot_id}.",
            extra={"field": "snapshot_id"},
        )
    if snapshot.train_count == 0:
        raise ApplicationError("The snapshot has no training pairs.", extra={"field": "snapshot_id"})
    return job_enqueue(
        kind=JobKind.TRAIN_REWARD_MODEL,
        study_id=study.id,
        created_by_id=created_by_id,
        parent_id=parent_id,
        params={"snapshot_id": snapshot.id, "config": config, "then": then or []},
    )


def policy_parent_default(*, study: Study) -> GeneratorVersion | None:
    """The version a new policy starts from: the best-rated model version on the latest
    leaderboard, else the most recently enrolled model version."""
    from server.evaluations.selectors import leaderboard_latest

    model_versions = study.versions.exclude(kind=VersionKind.EXTERNAL)
    board = leaderboard_latest(study=study)
    if board is not None:
        ids = set(model_versions.values_list("id", flat=True))
        for row in board.rows:
            if row["version_id"] in ids and row["battles"] > 0:
                return model_versions.get(id=row["version_id"])
    return model_versions.order_by("-studyversion__enrolled_at", "-id").first()


def policy_train_start(
    *,
    study: Study,
    parent_version_id: int | None,
    method: str,
    snapshot_id: int | None = None,
    reward_model_id: int | None = None,
    config: dict[str, Any] | None = None,
    created_by_id: int | None = None,
    parent_id: int | None = None,
    then: list[str] | None = None,
) -> Job:
    """Fine-tune a child of ``parent_version_id``: DPO on a snapshot, or RLOO against a reward model."""
    if method not in ("dpo", "rloo"):
        raise ApplicationError("Method must be 'dpo' or 'rloo'.", extra={"field": "method"})
    parent = (
        GeneratorVersion.objects.filter(id=parent_version_id).first()
        if parent_version_id
        else policy_parent_default(study=study)
    )
    if parent is None:
        raise NotFound("There is no parent version to train from.", extra={"field": "parent_version_id"})
    if parent.kind == VersionKind.EXTERNAL:
        raise ApplicationError(
            f"{parent} is external: it has no weights to fine-tune.", extra={"field": "parent_version_id"}
        )
    if not study.versions.filter(id=parent.id).exists():
        raise ApplicationError(
            f"{parent} is not enrolled in the study.", extra={"field": "parent_version_id"}
        )
    version_model_check(version=parent, field="parent_version_id")
    params: dict[str, Any] = {"parent_version_id": parent.id, "method": method, "then": then or []}
    if method == "dpo":
        params["config"] = _check_options(config, DPO_OPTIONS, "DPO")
        snapshot = _of_study(PreferenceSnapshot, study=study, object_id=snapshot_id)
        if snapshot is None:
            raise ApplicationError(
                "DPO needs a preference snapshot of the study.", extra={"field": "snapshot_id"}
            )
        params["snapshot_id"] = snapshot.id
    else:
        params["config"] = _check_options(config, RLOO_OPTIONS, "RLOO")
        reward_model = _of_study(RewardModel, study=study, object_id=reward_model_id)
        if reward_model is None:
            raise ApplicationError(
                "RLOO needs a reward model of the study.", extra={"field": "reward_model_id"}
            )
        model_path_check(reward_model.path, field="reward_model_id")
        params["reward_model_id"] = reward_model.id
        params["snapshot_id"] = reward_model.snapshot_id
    return job_enqueue(
        kind=JobKind.TRAIN_POLICY,
        study_id=study.id,
        created_by_id=created_by_id,
        parent_id=parent_id,
        params=params,
    )


def loop_active(*, study: Study) -> bool:
    return Job.objects.filter(
        study=study, kind__in=LOOP_KINDS, status__in=[JobStatus.QUEUED, JobStatus.RUNNING]
    ).exists()


@transaction.atomic
def training_loops_start_due(*, limit: int = 10) -> list[int]:
    """Start the loop for studies with at least ``auto_train_min_judgments`` new eligible
    judgments since their last snapshot and no loop step in flight. Bounded per call."""
    from server.training.snapshots import eligible_judgments

    started: list[int] = []
    studies = Study.objects.filter(is_active=True, auto_train_min_judgments__isnull=False).order_by("id")
    for study in studies:
        if len(started) >= limit:
            break
        if loop_active(study=study):
            continue
        last = PreferenceSnapshot.objects.filter(study=study).order_by("-created_at").first()
        new = eligible_judgments(study=study, after_id=last.last_judgment_id if last else 0).count()
        if new >= (study.auto_train_min_judgments or 0):
            started.append(snapshot_start(study=study, then=["reward_model", "policy"]).id)
    return started
