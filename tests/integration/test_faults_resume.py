"""A policy-training worker SIGKILLed after the trainer wrote a checkpoint: the reaper re-queues the
job, a fresh worker claims it, and training resumes from that checkpoint instead of step 0.

Real processes: PostgreSQL, Redis, two Celery workers with beat (the reaper) one after the other.
"""

from __future__ import annotations

import re
import time
from datetime import datetime
from pathlib import Path

import pytest
from django.utils import timezone

from server.generators.models import GeneratorVersion, VersionKind
from server.jobs.models import Job, JobStatus
from server.training.services import policy_train_start
from server.training.snapshots import snapshot_create
from tests.integration.test_worker_postgres_redis import production_env  # noqa: F401
from tests.integration.worker_process import celery_worker, stop, wait_for
from tests.server.training.test_training_chain import judged_study

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

MAX_STEPS = 10  # optimizer steps; each takes a fraction of a second on the tiny model
# What the kill waits for: the trainer saved this step, so the second worker has something to
# resume from and steps before it to skip.
KILL_AFTER_CHECKPOINT = 2


def newest_complete_checkpoint(folder: Path) -> int:
    """The step of the newest ``checkpoint-N`` folder the Trainer finished writing (it writes
    ``trainer_state.json`` last), 0 if none."""
    steps = [
        int(path.name.split("-")[1])
        for path in (folder.iterdir() if folder.is_dir() else [])
        if re.fullmatch(r"checkpoint-\d+", path.name) and (path / "trainer_state.json").is_file()
    ]
    return max(steps, default=0)


def loss_steps(metrics: list[dict[str, object]], *, before: datetime | None = None) -> list[int]:
    """The optimizer steps of the per-step training points (the ones with a ``loss``), in the
    order they were reported (only those reported before ``before``, when given)."""
    return [
        int(str(point["step"]))
        for point in metrics
        if "loss" in point and (before is None or datetime.fromisoformat(str(point["time"])) < before)
    ]


def test_a_policy_job_killed_after_a_checkpoint_resumes_from_it_in_a_fresh_worker(
    production_env: dict[str, str],  # noqa: F811
    tmp_path: Path,
    tiny_model_allowed: Path,
    fault_table,  # type: ignore[no-untyped-def]
) -> None:
    # given a DPO job that checkpoints after every optimizer step, running in a worker with beat
    study, good_version, _ = judged_study(tiny_model_allowed, prompts=8)
    snapshot = snapshot_create(study=study)
    var = tmp_path / "var"
    env = {
        **production_env,
        "LOVELACE_VAR_DIR": str(var),
        "LOVELACE_MODEL_ROOTS": str(tiny_model_allowed.parent),
        "LOVELACE_JOB_HEARTBEAT_TIMEOUT": "3",  # seconds without a heartbeat: the reaper re-queues
        "LOVELACE_REAPER_INTERVAL": "1",
        "LOVELACE_JOB_RESEND_AFTER": "5",
    }
    first_log, second_log = tmp_path / "worker-1.log", tmp_path / "worker-2.log"
    with celery_worker(env, beat=True, log_path=first_log) as first_worker:
        job = policy_train_start(
            study=study,
            parent_version_id=good_version.id,
            method="dpo",
            snapshot_id=snapshot.id,
            config={"max_steps": MAX_STEPS, "per_device_batch_size": 2, "checkpoint_every": 1},
        )
        checkpoints = var / "checkpoints" / f"job-{job.id}" / "policy"  # server.training.jobs

        # when the worker is SIGKILLed once the trainer has saved step KILL_AFTER_CHECKPOINT
        deadline = time.monotonic() + 300
        while newest_complete_checkpoint(checkpoints) < KILL_AFTER_CHECKPOINT:
            job.refresh_from_db()
            assert job.status in (JobStatus.QUEUED, JobStatus.RUNNING), (job.status, job.error)
            assert time.monotonic() < deadline, first_log.read_text(errors="replace")[-4000:]
            time.sleep(0.02)  # a step takes a fraction of a second: look often
        stop(first_worker, kill=True)  # the worker, its pool and beat: no clean-up, no ack
    killed_at = timezone.now()
    saved_step = newest_complete_checkpoint(checkpoints)  # what a resume must start from
    job.refresh_from_db()
    assert job.status == JobStatus.RUNNING, f"the job was {job.status} before the kill landed"
    assert KILL_AFTER_CHECKPOINT <= saved_step < MAX_STEPS
    steps_before_kill = loss_steps(job.metrics, before=killed_at)

    # and a fresh worker starts
    with celery_worker(env, beat=True, log_path=second_log):
        wait_for(
            lambda: Job.objects.get(id=job.id).is_finished,
            timeout=300,
            what="the re-queued policy job to finish in the fresh worker",
            log_path=second_log,
        )
    job.refresh_from_db()
    fault_table.record(
        "worker SIGKILLed during a DPO job after its checkpoint-N",
        "re-queued, resumed from checkpoint-N in a fresh worker",
        f"killed with checkpoint-{saved_step} saved; then {job.status} after {job.attempts} "
        f"attempt(s), resumed from step {job.result.get('resumed_from_step')}",
    )

    # then the second attempt trained on from the checkpoint to the end, and only that
    assert job.status == JobStatus.SUCCEEDED, (job.error, job.log_tail[-2000:])
    assert job.attempts == 2
    assert (job.result["resumed_from_step"], job.result["steps"]) == (saved_step, MAX_STEPS)
    # (the timeline only grows: the first attempt's points come first)
    steps_after_kill = loss_steps(job.metrics)[len(steps_before_kill) :]
    assert steps_after_kill == list(range(saved_step + 1, MAX_STEPS + 1))
    # the first attempt reported every step up to the checkpoint, and perhaps the next (a step is
    # logged before it is saved): no step up to the checkpoint was trained twice
    assert steps_before_kill in (list(range(1, saved_step + 1)), list(range(1, saved_step + 2)))
    # and one child, with its lineage; the checkpoints were cleaned up after it was registered
    child = GeneratorVersion.objects.get(kind=VersionKind.TRAINED)
    assert job.result["child_version_id"] == child.id
    assert (child.training_job_id, child.parent_id, child.snapshot_id) == (
        job.id,
        good_version.id,
        snapshot.id,
    )
    assert not checkpoints.parent.exists()
