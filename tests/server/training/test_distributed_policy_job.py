"""A policy job whose options ask for several processes runs on supervised ranks (2 CPU ranks over
gloo here), and a cancel stops all of them after they saved a checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from server.core.exceptions import ApplicationError
from server.generators.models import GeneratorVersion, VersionKind
from server.jobs.models import Job, JobStatus
from server.jobs.services import job_cancel
from server.training.jobs import policy_train_run, snapshot_run
from server.training.services import policy_options, policy_train_start, snapshot_start
from tests.server.training.test_training_chain import judged_study
from workers.ml.distributed import LAUNCHER_PID_NAME, launch_dir, pid_path
from workers.ml.progress import ProgressReporter
from workers.runner import run_job


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.django_db
def test_cancelling_a_two_rank_dpo_job_stops_every_rank_after_a_checkpoint(
    tiny_model_allowed: Path, settings: Any, tmp_path: Path, django_capture_on_commit_callbacks: Any
) -> None:
    # given a DPO job over 2 CPU ranks, long enough to be cancelled in the middle (LoRA, the default)
    settings.VAR_DIR = tmp_path
    study, good_version, _ = judged_study(tiny_model_allowed)
    with django_capture_on_commit_callbacks(execute=False):
        snapshot_job = snapshot_start(study=study)
        assert run_job(snapshot_job.id, snapshot_run) == "succeeded"
        job = policy_train_start(
            study=study,
            parent_version_id=good_version.id,
            method="dpo",
            config={"distributed": "ddp", "processes": 2, "per_device_batch_size": 2, "max_steps": 500},
        )
    checkpoints = tmp_path / "checkpoints" / f"job-{job.id}" / "policy"
    seen_steps: list[int] = []

    def cancel_after_the_first_step(*, job: Job, report: ProgressReporter) -> Any:
        def relay(
            *, step: int, total: int, message: str = "", metrics: dict[str, float] | None = None
        ) -> None:
            if metrics is not None and "loss" in metrics:
                seen_steps.append(step)
                job_cancel(job_id=job.id)  # staff press "cancel"; the next report raises
            report(step=step, total=total, message=message, metrics=metrics)

        return policy_train_run(job=job, report=relay)

    # when staff cancel it once rank 0 reported its first step
    status = run_job(job.id, cancel_after_the_first_step)

    # then the job is cancelled, every process of the run is gone, the ranks saved a checkpoint
    # together, and no child was registered
    job.refresh_from_db()
    assert (status, job.status) == ("cancelled", JobStatus.CANCELLED)
    assert seen_steps == [1]
    folder = launch_dir(checkpoints)
    pids = [int((folder / LAUNCHER_PID_NAME).read_text())] + [
        int(pid_path(folder, rank).read_text()) for rank in range(2)
    ]
    assert not any(alive(pid) for pid in pids)
    saved = [int(path.name.split("-")[1]) for path in checkpoints.glob("checkpoint-*")]
    assert len(saved) == 1 and 1 <= saved[0] < 500
    assert (checkpoints / f"checkpoint-{saved[0]}" / "adapter_model.safetensors").is_file()
    assert not GeneratorVersion.objects.filter(kind=VersionKind.TRAINED).exists()
    assert job.progress_step == 1


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"distributed": "tp"}, "The DPO option 'distributed' must be one of 'none', 'ddp', 'fsdp', 'zero3'"),
        ({"processes": 0}, "The DPO option 'processes' must be a whole number from 1 to 64 (got 0)."),
        (
            {"processes": 4},
            "The DPO options do not fit together: processes 4 needs distributed 'ddp', 'fsdp' or "
            "'zero3' (distributed 'none' trains in one process).",
        ),
        (
            {"distributed": "zero3", "processes": 8},
            "The DPO options do not fit together: distributed 'zero3' shards full fine-tuning: it "
            "needs lora false (LoRA adapters are small enough for 'ddp').",
        ),
    ],
)
def test_distribution_options_are_checked_when_the_job_is_started(
    config: dict[str, Any], message: str
) -> None:
    with pytest.raises(ApplicationError) as error:
        policy_options("dpo", config)
    assert str(error.value).startswith(message)


def test_full_fine_tuning_on_eight_sharded_gpus_is_accepted_by_the_service() -> None:
    options = {"distributed": "fsdp", "processes": 8, "lora": False}
    assert policy_options("grpo", {**options, "per_device_batch_size": 4}) == {
        **options,
        "per_device_batch_size": 4,
    }
