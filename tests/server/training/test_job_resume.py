"""A failed or cancelled training job resumed from its newest checkpoint by a new job
(``training_job_resume``; ``POST /api/jobs/<id>/resume/``)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from rest_framework.test import APIClient

from server.core.exceptions import ApplicationError, Conflict
from server.generators.models import GeneratorVersion, VersionKind
from server.jobs.models import Job, JobKind, JobStatus
from server.jobs.services import job_cancel, job_claim, job_enqueue, job_fail
from server.training.jobs import policy_train_run
from server.training.services import policy_train_start, training_job_resume
from server.training.snapshots import snapshot_create
from tests.server.training.test_training_chain import judged_study
from workers.runner import run_job

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def own_var_folder(settings, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    # Job ids restart with each test database: checkpoints of an earlier run must not be found.
    settings.VAR_DIR = tmp_path / "var"


STEPS = 8


def cancel_once_checkpointed(job_id: int, folder: Path, stop: threading.Event) -> None:
    """Cancel the job once its trainer has saved step 2 (the trainer goes on to save a checkpoint
    at the step it is stopped at)."""
    try:
        while not stop.is_set():
            if (folder / "checkpoint-2" / "trainer_state.json").is_file():
                job_cancel(job_id=job_id)
                return
            time.sleep(0.01)
    finally:
        from django.db import connection

        connection.close()  # this thread's own connection


def test_a_cancelled_policy_job_is_resumed_by_a_new_job_from_its_newest_checkpoint(
    tiny_model_allowed: Path, django_capture_on_commit_callbacks
) -> None:  # type: ignore[no-untyped-def]
    # given a DPO job that checkpoints every step, cancelled once step 2 is saved
    study, good_version, _ = judged_study(tiny_model_allowed, prompts=8)
    snapshot = snapshot_create(study=study)
    with django_capture_on_commit_callbacks(execute=False):
        first = policy_train_start(
            study=study,
            parent_version_id=good_version.id,
            method="dpo",
            snapshot_id=snapshot.id,
            config={"max_steps": STEPS, "per_device_batch_size": 2, "checkpoint_every": 1},
        )
    folder = Path(settings.VAR_DIR) / "checkpoints" / f"job-{first.id}" / "policy"
    stop = threading.Event()
    canceller = threading.Thread(target=cancel_once_checkpointed, args=(first.id, folder, stop))
    canceller.start()
    try:
        assert run_job(first.id, policy_train_run) == "cancelled"
    finally:
        stop.set()
        canceller.join()
    first.refresh_from_db()
    saved = max(int(path.name.split("-")[1]) for path in folder.glob("checkpoint-*"))
    assert 2 <= saved < STEPS

    # when staff resume it
    with django_capture_on_commit_callbacks(execute=False):
        resumed = training_job_resume(job_id=first.id)
        # (asking twice gives the same job)
        assert training_job_resume(job_id=first.id).id == resumed.id

    # then a new queued job with the same options is the cancelled one's next step
    assert (resumed.kind, resumed.status, resumed.parent_id) == (
        JobKind.TRAIN_POLICY,
        JobStatus.QUEUED,
        first.id,
    )
    assert resumed.params == {**first.params, "resumes_job": first.id}
    # and it trains on from the saved step to the end, taking the checkpoints over
    assert run_job(resumed.id, policy_train_run) == "succeeded", Job.objects.get(id=resumed.id).error
    resumed.refresh_from_db()
    assert (resumed.result["resumed_from_step"], resumed.result["steps"]) == (saved, STEPS)
    assert [int(point["step"]) for point in resumed.metrics if "loss" in point] == list(
        range(saved + 1, STEPS + 1)
    )
    assert not folder.exists()
    # the cancelled job stays cancelled; the child is the new job's
    first.refresh_from_db()
    assert first.status == JobStatus.CANCELLED
    child = GeneratorVersion.objects.get(kind=VersionKind.TRAINED)
    assert child.training_job_id == resumed.id


def test_only_a_failed_or_cancelled_training_job_with_a_checkpoint_resumes(tiny_model_allowed: Path) -> None:
    study, good_version, _ = judged_study(tiny_model_allowed, prompts=3)
    snapshot = snapshot_create(study=study)
    # a job cancelled before it ran left nothing to resume from
    queued = policy_train_start(
        study=study, parent_version_id=good_version.id, method="dpo", snapshot_id=snapshot.id
    )
    with pytest.raises(Conflict, match=f"Job {queued.id} is queued: only a failed or cancelled job"):
        training_job_resume(job_id=queued.id)
    job_cancel(job_id=queued.id)
    with pytest.raises(ApplicationError, match="left no checkpoint to resume from: start a new training job"):
        training_job_resume(job_id=queued.id)
    # other kinds do not keep trainer checkpoints
    generate = job_enqueue(kind=JobKind.GENERATE, study_id=study.id, params={})
    job_cancel(job_id=generate.id)
    with pytest.raises(ApplicationError, match="is a generate job; only training jobs"):
        training_job_resume(job_id=generate.id)
    assert Job.objects.filter(params__has_key="resumes_job").count() == 0


def test_the_api_resumes_a_failed_job_and_says_why_it_will_not(tiny_model_allowed: Path) -> None:
    study, good_version, _ = judged_study(tiny_model_allowed, prompts=3)
    snapshot = snapshot_create(study=study)
    failed = policy_train_start(
        study=study, parent_version_id=good_version.id, method="dpo", snapshot_id=snapshot.id
    )
    assert job_claim(job_id=failed.id, worker="worker-1")
    assert job_fail(job_id=failed.id, error="rank 1 died")
    checkpoint = Path(settings.VAR_DIR) / "checkpoints" / f"job-{failed.id}" / "policy" / "checkpoint-3"
    checkpoint.mkdir(parents=True)
    staff = get_user_model().objects.create_user("staff", password="x", is_staff=True)
    client = APIClient()
    client.force_authenticate(staff)

    response = client.post(f"/api/jobs/{failed.id}/resume/")

    assert response.status_code == 202, response.json()
    resumed = Job.objects.get(id=response.json()["id"])
    assert (resumed.parent_id, resumed.params["resumes_job"], resumed.created_by_id) == (
        failed.id,
        failed.id,
        staff.id,
    )
    refused = client.post(f"/api/jobs/{resumed.id}/resume/")
    assert refused.status_code == 409
    assert refused.json()["error"] == (
        f"Job {resumed.id} is queued: only a failed or cancelled job can be resumed."
    )
    assert client.post("/api/jobs/999999/resume/").status_code == 404
