"""Evaluation services: starting leaderboard recomputes and creativity evaluations.

Light on imports on purpose: the web process calls these; the numerical work runs in workers
(``leaderboard.py``, ``creativity.py``).
"""

from __future__ import annotations

from django.db import transaction

from server.core.exceptions import ApplicationError
from server.evaluations.selectors import last_judgment_id
from server.jobs.models import Job, JobKind, JobStatus
from server.jobs.services import job_enqueue
from server.studies.models import BootstrapClusters, Study

DEFAULT_ROUNDS = 1000


def leaderboard_recompute_start(
    *,
    study: Study,
    rounds: int = DEFAULT_ROUNDS,
    bootstrap_clusters: str | None = None,
    created_by_id: int | None = None,
    parent_id: int | None = None,
) -> Job:
    """Queue a leaderboard recompute. ``bootstrap_clusters`` (``BootstrapClusters``: "prompt",
    "rater", "prompt_and_rater", "none") overrides the study's setting for this recompute."""
    if not 0 <= rounds <= 10_000:
        raise ApplicationError("Bootstrap rounds must be between 0 and 10,000.", extra={"field": "rounds"})
    scheme = bootstrap_clusters or study.bootstrap_clusters
    if scheme not in BootstrapClusters.values:
        raise ApplicationError(
            f"Bootstrap clusters must be one of {', '.join(BootstrapClusters.values)}.",
            extra={"field": "bootstrap_clusters"},
        )
    return job_enqueue(
        kind=JobKind.RECOMPUTE_LEADERBOARD,
        study_id=study.id,
        created_by_id=created_by_id,
        parent_id=parent_id,
        params={"rounds": rounds, "seed": 0, "bootstrap_clusters": scheme},
    )


@transaction.atomic
def leaderboards_recompute_due(*, limit: int = 20) -> list[int]:
    """Start a recompute for each active study with judgments newer than its latest leaderboard
    and no recompute already queued or running. Bounded to ``limit`` studies per call."""
    started: list[int] = []
    busy = set(
        Job.objects.filter(
            kind=JobKind.RECOMPUTE_LEADERBOARD, status__in=[JobStatus.QUEUED, JobStatus.RUNNING]
        ).values_list("study_id", flat=True)
    )
    for study in Study.objects.filter(is_active=True).order_by("id"):
        if len(started) >= limit:
            break
        if study.id in busy:
            continue
        latest = (
            study.leaderboards.filter(criterion__isnull=True)
            .order_by("-created_at")
            .values_list("params", flat=True)
            .first()
        )
        seen = (latest or {}).get("last_judgment_id", 0)
        if last_judgment_id(study=study) > seen:
            started.append(leaderboard_recompute_start(study=study).id)
    return started


def evaluation_start(
    *,
    study: Study,
    version_id: int,
    split: str = "holdout",
    samples_per_prompt: int = 4,
    seed: int = 0,
    created_by_id: int | None = None,
    parent_id: int | None = None,
) -> Job:
    """Start the creativity evaluation of one version on the study's prompts of ``split``."""
    from server.generators.models import KINDS_WITHOUT_WEIGHTS, GeneratorVersion, VersionKind
    from server.generators.services import version_corpus_check, version_endpoint_check, version_model_check
    from server.studies.models import Prompt, PromptSplit

    if split not in PromptSplit.values:
        raise ApplicationError(
            f"Split must be one of {', '.join(PromptSplit.values)}.", extra={"field": "split"}
        )
    if not 1 <= samples_per_prompt <= 64:
        raise ApplicationError(
            "Samples per prompt must be between 1 and 64.", extra={"field": "samples_per_prompt"}
        )
    version = GeneratorVersion.objects.filter(id=version_id).first()
    if version is None:
        raise ApplicationError(
            f"There is no version {version_id}.", extra={"field": "version_id"}, status=404
        )
    if not study.versions.filter(id=version_id).exists():
        raise ApplicationError(f"{version} is not enrolled in the study.", extra={"field": "version_id"})
    if not Prompt.objects.filter(study=study, split=split).exists():
        raise ApplicationError(f"The study has no {split} prompts.", extra={"field": "split"})
    # The files the evaluation reads: the corpus and the reference model of the lineage's root.
    root = version
    while root.parent_id is not None:
        root = root.parent  # type: ignore[assignment]
    version_corpus_check(version=version if version.reference_corpus_path else root, field="version_id")
    if root.kind not in KINDS_WITHOUT_WEIGHTS:
        version_model_check(version=root, field="version_id")
    if version.kind == VersionKind.ENDPOINT:
        version_endpoint_check(version=version, field="version_id")
    return job_enqueue(
        kind=JobKind.EVALUATE,
        study_id=study.id,
        created_by_id=created_by_id,
        parent_id=parent_id,
        params={
            "version_id": version_id,
            "split": split,
            "samples_per_prompt": samples_per_prompt,
            "seed": seed,
        },
    )
