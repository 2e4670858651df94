"""Reads behind the API's list and detail endpoints."""

from __future__ import annotations

from typing import Any

from django.db.models import Count, Q, QuerySet

from server.core.exceptions import NotFound
from server.evaluations.models import Evaluation
from server.generators.models import GeneratorVersion, Sample
from server.jobs.models import Job, JobKind
from server.ratings.models import Assignment, Rater
from server.studies.models import Prompt, Study
from server.training.models import PreferenceSnapshot, RewardModel


def study_list_for_user(*, user: Any, staff: bool) -> QuerySet[Study]:
    """Staff see every study; anyone else the studies they rate in."""
    studies = Study.objects.order_by("-created_at", "-id")
    return studies if staff else studies.filter(raters__user=user).distinct()


def prompt_list(*, study: Study, split: str | None = None) -> QuerySet[Prompt]:
    prompts = Prompt.objects.filter(study=study).order_by("id")
    return prompts.filter(split=split) if split else prompts


def version_list(*, study: Study) -> QuerySet[GeneratorVersion]:
    return study.versions.select_related("generator").order_by("id")


def sample_list(
    *, study: Study, version_id: int | None = None, prompt_id: int | None = None
) -> QuerySet[Sample]:
    samples = Sample.objects.filter(prompt__study=study).order_by("id")
    if version_id is not None:
        samples = samples.filter(version_id=version_id)
    if prompt_id is not None:
        samples = samples.filter(prompt_id=prompt_id)
    return samples


def assignment_list_for_user(*, study: Study, user: Any) -> QuerySet[Assignment]:
    """The user's own assignments in the study (none when the user has no rater row there yet)."""
    return (
        Assignment.objects.filter(rater__study=study, rater__user=user)
        .select_related("comparison__prompt", "comparison__sample_a__image", "comparison__sample_b__image")
        .order_by("-id")
    )


def rater_table(*, study: Study) -> QuerySet[Rater]:
    live = Q(assignments__judgments__revoked_at__isnull=True)
    return (
        Rater.objects.filter(study=study)
        .select_related("user")
        .annotate(
            judgments=Count("assignments__judgments", filter=live),
            flagged=Count("assignments__judgments", filter=live & Q(assignments__judgments__is_flagged=True)),
        )
        .order_by("id")
    )


def rater_in_study(*, study: Study, rater_id: int) -> Rater:
    rater = Rater.objects.filter(study=study, id=rater_id).first()
    if rater is None:
        raise NotFound(f"The study has no rater {rater_id}.")
    return rater


def evaluation_list(*, study: Study) -> QuerySet[Evaluation]:
    return (
        Evaluation.objects.filter(study=study)
        .select_related("version__generator")
        .order_by("-created_at", "-id")
    )


def evaluation_get(*, study: Study, evaluation_id: int) -> Evaluation:
    evaluation = evaluation_list(study=study).filter(id=evaluation_id).first()
    if evaluation is None:
        raise NotFound(f"The study has no evaluation {evaluation_id}.")
    return evaluation


def snapshot_list(*, study: Study) -> QuerySet[PreferenceSnapshot]:
    return PreferenceSnapshot.objects.filter(study=study).order_by("-created_at", "-id")


def reward_model_list(*, study: Study) -> QuerySet[RewardModel]:
    return RewardModel.objects.filter(study=study).order_by("-created_at", "-id")


def job_list(
    *, study_slug: str | None = None, kind: str | None = None, status: str | None = None
) -> QuerySet[Job]:
    jobs = Job.objects.select_related("study").order_by("-created_at", "-id")
    if study_slug:
        jobs = jobs.filter(study__slug=study_slug)
    if kind:
        jobs = jobs.filter(kind=kind)
    if status:
        jobs = jobs.filter(status=status)
    return jobs


def job_get(*, job_id: int) -> Job:
    job = Job.objects.select_related("study").filter(id=job_id).first()
    if job is None:
        raise NotFound(f"There is no job {job_id}.")
    return job


def export_job_get(*, job_id: int) -> Job:
    job = Job.objects.select_related("study").filter(id=job_id, kind=JobKind.EXPORT).first()
    if job is None:
        raise NotFound(f"There is no export {job_id}.")
    return job
