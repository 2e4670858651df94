"""Supervised multi-process training: 2 CPU ranks over gloo under torchrun, on the tiny GPT-2.

Each launch costs ~10 s of start-up (two interpreters importing torch, transformers and TRL), so
the launches are few: one compared with the in-process run, one killed and resumed.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from tests.workers.ml.policy_helpers import StepReporter
from tests.workers.ml.test_dpo import yes_no_pairs
from tests.workers.ml.tiny_models import build_tiny_gpt2
from workers.ml.distributed import (
    LAUNCHER_PID_NAME,
    LaunchSpec,
    RankFailed,
    Supervision,
    accelerate_config,
    launch_command,
    launch_dir,
    pid_path,
    train_dpo_supervised,
)
from workers.ml.dpo import train_dpo
from workers.ml.policy_config import DPOConfig, LoraSettings, combination_problem
from workers.ml.policy_training import check_environment
from workers.ml.trainer_bridge import last_checkpoint

FAST = Supervision(poll_seconds=0.05, grace_seconds=30.0, settle_seconds=40.0)


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def parent(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_gpt2(tmp_path_factory.mktemp("parent"))


def config(**overrides: object) -> DPOConfig:
    settings: dict[str, object] = {
        "learning_rate": 1e-3,
        "checkpoint_every": 1000,
        "lora": None,
        "device": "cpu",
        "seed": 0,
    }
    settings.update(overrides)
    return DPOConfig(**settings)  # type: ignore[arg-type]


def alive(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def run_pids(checkpoints: Path) -> list[int]:
    """The launcher's pid and every rank's, as the run recorded them."""
    folder = launch_dir(checkpoints)
    paths = [folder / LAUNCHER_PID_NAME, *(pid_path(folder, rank) for rank in range(2))]
    return [int(path.read_text()) for path in paths]


def test_two_ranks_match_one_process_on_the_same_global_batch(parent: Path, tmp_path: Path) -> None:
    # given 8 pairs, 4 optimizer steps of 4 pairs: 2 per rank × 2 ranks, or 4 in one process
    pairs = yes_no_pairs(8, seed=0)
    one = config(max_steps=4, per_device_batch_size=4)
    two = config(max_steps=4, per_device_batch_size=2, distributed="ddp", processes=2)

    # when
    single = train_dpo(pairs, parent, tmp_path / "one", one, tmp_path / "c1")
    reporter = StepReporter()
    double = train_dpo_supervised(
        pairs, parent, tmp_path / "two", two, tmp_path / "c2", reporter, supervision=FAST
    )

    # then the same steps, losses and weights (up to float summation order)
    assert (double.steps, double.train_pairs) == (single.steps, single.train_pairs) == (4, 8)
    assert reporter.training_steps == [1, 2, 3, 4]  # rank 0's progress reached the reporter
    assert double.loss_curve == pytest.approx(single.loss_curve, abs=1e-5)
    weights_one = load_file(tmp_path / "one" / "model.safetensors")
    weights_two = load_file(tmp_path / "two" / "model.safetensors")
    start = load_file(parent / "model.safetensors")
    difference = max((weights_one[name] - weights_two[name]).abs().max().item() for name in weights_one)
    moved = max((weights_one[name] - start[name]).abs().max().item() for name in start)
    assert difference < 1e-4 and moved > 100 * difference, (
        f"max |1 process − 2 ranks| = {difference:.2e}; the training moved weights by up to {moved:.2e}"
    )
    # every process of the run is gone
    assert not any(alive(pid) for pid in run_pids(tmp_path / "c2"))


class KillRankOne(StepReporter):
    """Kills rank 1 (SIGKILL) when rank 0 reports the training metrics of step 3 or later: after
    checkpoint-2 was written in full (step 3 starts once every rank saved step 2)."""

    def __init__(self, checkpoints: Path) -> None:
        super().__init__()
        self.checkpoints = checkpoints
        self.killed_pid: int | None = None

    def __call__(
        self, *, step: int, total: int, message: str = "", metrics: dict[str, float] | None = None
    ) -> None:
        super().__call__(step=step, total=total, message=message, metrics=metrics)
        if self.killed_pid is None and metrics is not None and "loss" in metrics and step >= 3:
            self.killed_pid = int(pid_path(launch_dir(self.checkpoints), 1).read_text())
            os.kill(self.killed_pid, signal.SIGKILL)


def test_a_killed_rank_stops_the_run_and_a_rerun_resumes(parent: Path, tmp_path: Path) -> None:
    # given a 2-rank run of 40 steps that checkpoints every 2 steps
    pairs = yes_no_pairs(8, seed=1)
    settings = config(
        max_steps=40, per_device_batch_size=2, checkpoint_every=2, distributed="ddp", processes=2
    )
    checkpoints = tmp_path / "c"
    killer = KillRankOne(checkpoints)

    # when rank 1 is killed after step 3
    with pytest.raises(RankFailed) as failure:
        train_dpo_supervised(
            pairs, parent, tmp_path / "child", settings, checkpoints, killer, supervision=FAST
        )

    # then the error names the rank, its pid and the signal; nothing of the run is left, no child
    message = str(failure.value)
    assert message.startswith(
        f"rank 1 of 2 (pid {killer.killed_pid}) failed, exit code -9: killed by signal SIGKILL"
    )
    assert "resumes from the newest checkpoint" in message
    assert not any(alive(pid) for pid in run_pids(checkpoints))
    assert not (tmp_path / "child").exists()
    newest = last_checkpoint(checkpoints)  # complete ones only: rank 1 may have died mid-save
    assert newest is not None
    saved = int(Path(newest).name.split("-")[1])
    assert 2 <= saved < 40

    # when the job runs again
    reporter = StepReporter()
    resumed = train_dpo_supervised(
        pairs, parent, tmp_path / "child", settings, checkpoints, reporter, supervision=FAST
    )

    # then it continued after the newest checkpoint and finished
    assert resumed.resumed_from_step == saved
    assert reporter.training_steps == list(range(saved + 1, 41))
    assert resumed.steps == 40
    assert (tmp_path / "child" / "model.safetensors").is_file()


def test_fsdp_and_zero3_launch_configs() -> None:
    full = config(distributed="fsdp", processes=4, gradient_accumulation_steps=2)
    fsdp = accelerate_config(full, bfloat16=True)
    assert (fsdp["distributed_type"], fsdp["num_processes"], fsdp["mixed_precision"]) == ("FSDP", 4, "bf16")
    assert fsdp["fsdp_config"] == {
        "fsdp_version": 2,
        "fsdp_reshard_after_forward": True,
        "fsdp_auto_wrap_policy": "TRANSFORMER_BASED_WRAP",
        "fsdp_offload_params": False,
        "fsdp_state_dict_type": "SHARDED_STATE_DICT",
        "fsdp_cpu_ram_efficient_loading": True,
        "fsdp_activation_checkpointing": False,
    }
    zero3 = accelerate_config(
        config(distributed="zero3", processes=8, gradient_accumulation_steps=2), bfloat16=False
    )
    assert (zero3["distributed_type"], zero3["num_processes"], zero3["mixed_precision"]) == (
        "DEEPSPEED",
        8,
        "no",
    )
    assert zero3["deepspeed_config"]["zero_stage"] == 3
    assert zero3["deepspeed_config"]["zero3_save_16bit_model"] is True
    assert zero3["deepspeed_config"]["gradient_accumulation_steps"] == 2
    ddp = accelerate_config(config(distributed="ddp", processes=2), bfloat16=False)
    assert ddp["distributed_type"] == "MULTI_GPU" and "fsdp_config" not in ddp


def test_accelerate_reads_the_generated_configs(tmp_path: Path) -> None:
    from accelerate.commands.config.config_args import ClusterConfig

    for mode in ("ddp", "fsdp", "zero3"):
        path = tmp_path / f"{mode}.yaml"
        path.write_text(
            yaml.safe_dump(accelerate_config(config(distributed=mode, processes=2), bfloat16=True))
        )
        loaded = ClusterConfig.from_yaml_file(str(path))  # refuses unknown keys
        assert loaded.num_processes == 2


def test_cpu_runs_launch_torchrun_over_the_rank_module(tmp_path: Path) -> None:
    settings = config(distributed="ddp", processes=2)
    spec = LaunchSpec(
        trainer="dpo",
        config=vars(settings) | {"lora": None},
        parent_model_path="p",
        output_dir="o",
        checkpoint_dir=str(tmp_path),
    )
    command, env = launch_command(spec, tmp_path / "spec.json", FAST)
    assert command[1:4] == ["-m", "torch.distributed.run", "--nnodes"]
    assert command[command.index("--nproc-per-node") + 1] == "2"
    assert command[-3:] == ["-m", "workers.ml.rank_main", str(tmp_path / "spec.json")]
    assert env["TORCH_ELASTIC_SHUTDOWN_TIMEOUT"] == "30"


def test_distribution_options_that_do_not_fit_together() -> None:
    assert combination_problem(config(processes=2)) == (
        "processes 2 needs distributed 'ddp', 'fsdp' or 'zero3' (distributed 'none' trains in one process)"
    )
    assert combination_problem(config(distributed="fsdp", processes=2, lora=LoraSettings())) == (
        "distributed 'fsdp' shards full fine-tuning: it needs lora false (LoRA adapters are small "
        "enough for 'ddp')"
    )
    assert combination_problem(config(distributed="ddp", lora=LoraSettings(), qlora_4bit=True)) == (
        "qlora_4bit trains in one process: it needs distributed 'none'"
    )
    assert combination_problem(config(distributed="ddp", processes=2, lora=LoraSettings())) is None


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks what a worker without GPUs refuses")
def test_a_cpu_worker_refuses_sharding_and_more_processes_than_cores() -> None:
    with pytest.raises(
        ValueError,
        match=r"distributed 'fsdp' needs CUDA GPUs and this worker has none: on the CPU only 'ddp' runs",
    ):
        check_environment(config(distributed="fsdp", processes=2))
    with pytest.raises(ValueError, match="distributed 'zero3' needs CUDA GPUs"):
        check_environment(config(distributed="zero3", processes=2))
    cores = os.cpu_count() or 1
    with pytest.raises(ValueError, match=rf"processes \({cores + 1}\) is more than the {cores} CPU cores"):
        check_environment(config(distributed="ddp", processes=cores + 1))


def test_ranks_stop_after_their_step_when_the_supervising_worker_is_gone() -> None:
    # given a "supervisor" that exits (a worker killed with its job running)
    import subprocess
    import time

    from workers.ml import trainer_bridge
    from workers.ml.rank_main import SUPERVISOR_CHECK_SECONDS, watch_supervisor

    supervisor = subprocess.Popen(["sleep", "0.2"])
    try:
        # when a rank watches it
        watch_supervisor(supervisor.pid)
        assert not trainer_bridge._terminate.is_set()
        supervisor.wait()
        deadline = time.monotonic() + 3 * SUPERVISOR_CHECK_SECONDS
        while not trainer_bridge._terminate.is_set() and time.monotonic() < deadline:
            time.sleep(0.05)

        # then the rank's trainer is asked to stop after its step, as by SIGTERM
        assert trainer_bridge._terminate.is_set()
    finally:
        trainer_bridge._terminate.clear()  # this test process trains on afterwards


def test_a_checkpoint_whose_save_was_interrupted_is_not_resumed_from(tmp_path: Path) -> None:
    # given checkpoint-4 written in full and checkpoint-6 cut off before the trainer state
    (tmp_path / "checkpoint-4").mkdir()
    (tmp_path / "checkpoint-4" / "trainer_state.json").write_text("{}")
    (tmp_path / "checkpoint-6").mkdir()
    (tmp_path / "checkpoint-6" / "model.safetensors").write_text("half")
    (tmp_path / "launch").mkdir()
    # then the run resumes from checkpoint-4
    assert last_checkpoint(tmp_path) == str(tmp_path / "checkpoint-4")
    assert last_checkpoint(tmp_path / "missing") is None
