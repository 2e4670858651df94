"""The scheduler deletes training checkpoints that nothing can resume from any more
(``training_checkpoints_prune``, beat task ``lovelace.prune_checkpoints``)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from server.core.exceptions import ApplicationError
from server.jobs.models import Job, JobKind, JobStatus
from server.training.services import (
    job_checkpoint_folder,
    training_checkpoints_prune,
    training_job_resumable,
    training_job_resume,
)
from workers.schedule import BEAT_SCHEDULE

pytestmark = pytest.mark.django_db


def job_with_checkpoint(status: str, *, days_ago: float = 0.0, **params: object) -> Job:
    now = timezone.now()
    job = Job.objects.create(
        kind=JobKind.TRAIN_POLICY,
        queue="gpu",
        status=status,
        params=dict(params),
        error="worker lost" if status == JobStatus.FAILED else "",
        started_at=None if status == JobStatus.QUEUED else now - timedelta(days=days_ago + 1),
        finished_at=None
        if status in (JobStatus.QUEUED, JobStatus.RUNNING)
        else now - timedelta(days=days_ago),
    )
    folder = job_checkpoint_folder(job.id) / "policy" / "checkpoint-2"
    folder.mkdir(parents=True)
    (folder / "model.safetensors").write_bytes(b"weights")
    return job


def test_only_checkpoints_nothing_can_resume_from_are_deleted(settings, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    settings.VAR_DIR = tmp_path
    settings.LOVELACE_CHECKPOINT_RETENTION_DAYS = 7
    succeeded = job_with_checkpoint(JobStatus.SUCCEEDED)
    failed_long_ago = job_with_checkpoint(JobStatus.FAILED, days_ago=8)
    failed_recently = job_with_checkpoint(JobStatus.FAILED, days_ago=6)
    cancelled_long_ago_being_resumed = job_with_checkpoint(JobStatus.CANCELLED, days_ago=30)
    Job.objects.create(
        kind=JobKind.TRAIN_POLICY,
        queue="gpu",
        params={"resumes_job": cancelled_long_ago_being_resumed.id},
        parent=cancelled_long_ago_being_resumed,
    )
    running = job_with_checkpoint(JobStatus.RUNNING)
    queued = job_with_checkpoint(JobStatus.QUEUED)
    orphan = job_checkpoint_folder(10_000_000)
    orphan.mkdir(parents=True)
    unrelated = tmp_path / "checkpoints" / "demo-build"  # not a job's folder: left alone
    unrelated.mkdir()
    unfinished = tmp_path / "checkpoints" / ".job-9.pruned-0123"  # a deletion that was cut short
    (unfinished / "checkpoint-1").mkdir(parents=True)

    pruned = training_checkpoints_prune()

    assert pruned == sorted([succeeded.id, failed_long_ago.id, 10_000_000])
    for job in (succeeded, failed_long_ago):
        assert not job_checkpoint_folder(job.id).exists()
    assert not orphan.exists() and not unfinished.exists() and unrelated.is_dir()
    assert sorted(path.name for path in (tmp_path / "checkpoints").iterdir()) == sorted(
        [
            "demo-build",
            *(
                f"job-{job.id}"
                for job in (failed_recently, cancelled_long_ago_being_resumed, running, queued)
            ),
        ]
    )
    # a pruned job can no longer be resumed, and says so
    with pytest.raises(ApplicationError, match="left no checkpoint to resume from"):
        training_job_resume(job_id=failed_long_ago.id)
    for job in (failed_recently, cancelled_long_ago_being_resumed, running, queued):
        assert job_checkpoint_folder(job.id).is_dir()
    assert training_job_resumable(failed_recently) and not training_job_resumable(failed_long_ago)
    # a week later the recent failure goes too; the resumed one stays while its resume is queued
    later = training_checkpoints_prune(now=timezone.now() + timedelta(days=2))
    assert later == [failed_recently.id]


def test_no_checkpoint_folder_is_no_error(settings, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    settings.VAR_DIR = tmp_path / "never-written"
    assert training_checkpoints_prune() == []


def test_the_scheduler_prunes_hourly_on_the_default_queue() -> None:
    entry = BEAT_SCHEDULE["prune-checkpoints"]
    assert (entry["task"], entry["schedule"]) == ("lovelace.prune_checkpoints", 3600.0)


def test_the_jobs_table_says_until_when_a_checkpoint_is_kept(settings, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from server.dashboard.selectors import job_payload

    settings.VAR_DIR = tmp_path
    settings.LOVELACE_CHECKPOINT_RETENTION_DAYS = 3
    failed = job_with_checkpoint(JobStatus.FAILED, days_ago=1)
    payload = job_payload(failed, with_metrics=False, resumable=training_job_resumable(failed))
    assert payload["resumable"] is True
    assert payload["resumable_until"] == (failed.finished_at + timedelta(days=3)).isoformat()
    running = job_with_checkpoint(JobStatus.RUNNING)
    assert job_payload(running, with_metrics=False)["resumable_until"] is None
