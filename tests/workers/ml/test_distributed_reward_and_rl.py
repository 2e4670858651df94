"""Reward-model members and online RL on supervised ranks: 2 CPU ranks over gloo under torchrun,
on the tiny GPT-2 (the policy's own base, LoRA on a fresh ``score`` head for the reward model).

A launch costs ~10 s of start-up, so the module makes three: a reward-model run whose rank 1 is
killed in the second member, its re-run (which must not retrain the first member), and one RLOO
run that scores its completions with the reward model those two launches trained.
"""

from __future__ import annotations

import math
import os
import random
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.workers.ml.policy_helpers import StepReporter
from tests.workers.ml.tiny_models import build_tiny_gpt2, filler_sentence, planted_pairs
from workers.ml.distributed import (
    LAUNCHER_PID_NAME,
    RankFailed,
    Supervision,
    launch_dir,
    pid_path,
    train_online_rl_supervised,
)
from workers.ml.policy_config import LoraSettings, OnlineRLConfig
from workers.ml.reward_model import RewardModelConfig, RewardModelResult, train_reward_model

FAST = Supervision(poll_seconds=0.05, grace_seconds=30.0, settle_seconds=40.0)
STEPS_PER_MEMBER = 8  # 32 pairs, 4 per optimizer step


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def tiny_gpt2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_gpt2(tmp_path_factory.mktemp("tiny_gpt2"))


def reference_texts() -> list[str]:
    rng = random.Random(99)
    return [filler_sentence(rng, 6) for _ in range(16)]


def reward_config(backbone: Path, **overrides: object) -> RewardModelConfig:
    """Two LoRA members on the tiny GPT-2 as a sequence classifier, one epoch of 32 pairs."""
    settings: dict[str, object] = {
        "kind": "sequence_classification",
        "backbone_path": str(backbone),
        "ensemble_size": 2,
        "epochs": 1,
        "learning_rate": 1e-2,
        "max_length": 32,
        "lora": {"rank": 8, "alpha": 16, "dropout": 0.0},
        "checkpoint_every": 1000,
        "device": "cpu",
    }
    settings.update(overrides)
    return RewardModelConfig(**settings)  # type: ignore[arg-type]


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def run_pids(checkpoints: Path) -> list[int]:
    folder = launch_dir(checkpoints)
    paths = [folder / LAUNCHER_PID_NAME, *(pid_path(folder, rank) for rank in range(2))]
    return [int(path.read_text()) for path in paths]


class KillRankOneInTheSecondMember(StepReporter):
    """Kills rank 1 (SIGKILL) at rank 0's first report of the second member (its trainer starting,
    before its first step): the first member is on disk by then (the ranks start the second only
    once it was written), and the second has its 8 steps to go, time for the kill to land."""

    def __init__(self, checkpoints: Path) -> None:
        super().__init__()
        self.checkpoints = checkpoints
        self.killed_pid: int | None = None

    def __call__(
        self, *, step: int, total: int, message: str = "", metrics: dict[str, float] | None = None
    ) -> None:
        super().__call__(step=step, total=total, message=message, metrics=metrics)
        if self.killed_pid is None and message.startswith("reward member 2 of 2"):
            self.killed_pid = int(pid_path(launch_dir(self.checkpoints), 1).read_text())
            os.kill(self.killed_pid, signal.SIGKILL)


@dataclass
class RewardRuns:
    one: RewardModelResult  # in process, 4 pairs per step
    two: RewardModelResult  # 2 ranks × 2 pairs, re-run after rank 1 was killed
    again: RewardModelResult  # a third call on the finished checkpoint folder
    failure: RankFailed
    killed_pid: int
    rerun: StepReporter
    first_member_written: int  # mtime (ns) of member 0's adapter after the killed launch
    first_member_after_rerun: int
    launcher_after_rerun: str
    launcher_after_again: str
    pids_of_failed_launch: list[int]
    pids_of_rerun: list[int]
    folder: Path


@pytest.fixture(scope="module")
def reward_runs(tiny_gpt2: Path, tmp_path_factory: pytest.TempPathFactory) -> RewardRuns:
    folder = tmp_path_factory.mktemp("reward_runs")
    train = planted_pairs(32, seed=1)
    validation = planted_pairs(16, seed=2, split="validation")
    one = train_reward_model(
        train,
        validation,
        reference_texts(),
        reward_config(tiny_gpt2, batch_size=4),
        folder / "one",
        folder / "c1",
    )

    config = reward_config(tiny_gpt2, batch_size=2, distributed="ddp", processes=2)
    checkpoints = folder / "c2"
    killer = KillRankOneInTheSecondMember(checkpoints)
    with pytest.raises(RankFailed) as failure:
        train_reward_model(
            train,
            validation,
            reference_texts(),
            config,
            folder / "two",
            checkpoints,
            killer,
            supervision=FAST,
        )
    failed_pids = run_pids(checkpoints)
    adapter = checkpoints / "final" / "member_0" / "adapter_model.safetensors"
    written = adapter.stat().st_mtime_ns

    rerun = StepReporter()
    two = train_reward_model(
        train, validation, reference_texts(), config, folder / "two", checkpoints, rerun, supervision=FAST
    )
    launcher_after_rerun = (launch_dir(checkpoints) / LAUNCHER_PID_NAME).read_text()
    after_rerun = adapter.stat().st_mtime_ns
    rerun_pids = run_pids(checkpoints)
    again = train_reward_model(
        train, validation, reference_texts(), config, folder / "two", checkpoints, supervision=FAST
    )
    assert killer.killed_pid is not None
    return RewardRuns(
        one=one,
        two=two,
        again=again,
        failure=failure.value,
        killed_pid=killer.killed_pid,
        rerun=rerun,
        first_member_written=written,
        first_member_after_rerun=after_rerun,
        launcher_after_rerun=launcher_after_rerun,
        launcher_after_again=(launch_dir(checkpoints) / LAUNCHER_PID_NAME).read_text(),
        pids_of_failed_launch=failed_pids,
        pids_of_rerun=rerun_pids,
        folder=folder,
    )


def test_two_ranks_train_the_reward_members_of_one_process_and_a_rerun_keeps_finished_ones(
    reward_runs: RewardRuns,
) -> None:
    runs = reward_runs
    # then the killed rank failed the run by name, and nothing of that launch was left running
    assert str(runs.failure).startswith(
        f"rank 1 of 2 (pid {runs.killed_pid}) failed, exit code -9: killed by signal SIGKILL"
    )
    assert not any(alive(pid) for pid in runs.pids_of_failed_launch + runs.pids_of_rerun)

    # the re-run trained the second member only (rank 0's progress reached the reporter) and
    # left the first member's files as the killed launch wrote them
    second_member = list(range(STEPS_PER_MEMBER + 1, 2 * STEPS_PER_MEMBER + 1))
    assert runs.rerun.training_steps == second_member
    assert runs.first_member_after_rerun == runs.first_member_written
    assert (runs.two.steps, runs.two.resumed_from_step) == (2 * STEPS_PER_MEMBER, STEPS_PER_MEMBER)
    assert (runs.one.steps, runs.one.resumed_from_step) == (2 * STEPS_PER_MEMBER, 0)

    # and both members equal those of one process on the same global batch (up to float order)
    for member in ("member_0", "member_1"):
        weights_one = load_file(runs.folder / "one" / member / "adapter_model.safetensors")
        weights_two = load_file(runs.folder / "two" / member / "adapter_model.safetensors")
        assert sorted(weights_one) == sorted(weights_two)
        difference = max((weights_one[key] - weights_two[key]).abs().max().item() for key in weights_one)
        # LoRA's B matrices start at zero: their size is how far training moved them
        moved = max(weights_one[key].abs().max().item() for key in weights_one if "lora_B" in key)
        assert difference < 1e-4 and moved > 100 * difference, (
            f"{member}: max |1 process − 2 ranks| = {difference:.2e}; training moved by {moved:.2e}"
        )
    assert runs.two.validation_loss == pytest.approx(runs.one.validation_loss, abs=1e-4)
    assert runs.two.normalisation.member_mean == pytest.approx(runs.one.normalisation.member_mean, abs=1e-4)
    assert runs.two.validation_accuracy == runs.one.validation_accuracy

    # a call with every member finished launches nothing (a worker killed while it evaluated)
    assert runs.launcher_after_again == runs.launcher_after_rerun
    assert (runs.again.steps, runs.again.resumed_from_step) == (2 * STEPS_PER_MEMBER, 2 * STEPS_PER_MEMBER)
    assert runs.again.validation_loss == pytest.approx(runs.two.validation_loss, abs=1e-6)


def test_rloo_with_lora_on_two_ranks_completes_and_reports_progress(
    reward_runs: RewardRuns, tiny_gpt2: Path, tmp_path: Path
) -> None:
    # given the reward model the two ranks trained, and a short RLOO run with LoRA on 2 ranks
    config = OnlineRLConfig(
        method="rloo",
        max_steps=2,
        learning_rate=3e-2,
        per_device_batch_size=4,
        num_generations=4,
        max_completion_length=8,
        lora=LoraSettings(rank=4, alpha=8),
        checkpoint_every=1000,
        device="cpu",
        distributed="ddp",
        processes=2,
    )
    reporter = StepReporter()

    # when it runs under the supervisor, each rank scoring its completions with its own copy
    result = train_online_rl_supervised(
        ["the cat", "a dog", "blue sky", "old house"],
        tiny_gpt2,
        reward_runs.folder / "two",
        tmp_path / "child",
        config,
        tmp_path / "c",
        reporter,
        supervision=FAST,
    )

    # then both steps were reported by rank 0, and the child is an adapter on the parent
    assert (result.method, result.steps, result.resumed_from_step) == ("rloo", 2, 0)
    assert reporter.training_steps == [1, 2]
    assert any(message.startswith("RLOO: step 2 of 2") for message in reporter.messages)
    assert result.first_kl == pytest.approx(0.0, abs=1e-6)
    adapter = (tmp_path / "child" / "adapter_config.json").read_text()
    assert f'"base_model_name_or_path": "{tiny_gpt2}"' in adapter
    assert not any(alive(pid) for pid in run_pids(tmp_path / "c"))
    # and the two steps moved the policy: LoRA's B matrices start at zero, and the KL is positive
    weights = load_file(tmp_path / "child" / "adapter_model.safetensors")
    lora_b = [tensor for name, tensor in weights.items() if "lora_B" in name]
    assert lora_b and any(float(tensor.abs().max()) > 0.0 for tensor in lora_b)
    assert math.isfinite(result.last_kl) and result.last_kl > 0.0


def test_the_heads_train_in_one_process_and_a_cpu_worker_refuses_sharded_members(
    tiny_gpt2: Path, tmp_path: Path
) -> None:
    with pytest.raises(ValueError, match="the embedding_heads ensemble trains in one process"):
        RewardModelConfig(backbone_path=str(tiny_gpt2), distributed="ddp", processes=2)
    with pytest.raises(ValueError, match="distributed 'fsdp' shards full fine-tuning: it needs lora false"):
        reward_config(tiny_gpt2, distributed="fsdp", processes=2)
    if torch.cuda.is_available():
        return  # the rest checks what a worker without GPUs refuses
    # when a CPU worker is asked to shard full fine-tuning of the members
    with pytest.raises(ValueError, match="distributed 'fsdp' needs CUDA GPUs and this worker has none"):
        train_reward_model(
            planted_pairs(8, seed=1),
            [],
            reference_texts(),
            reward_config(tiny_gpt2, lora=None, distributed="fsdp", processes=2),
            tmp_path / "model",
            tmp_path / "run",
            supervision=FAST,
        )
    # then it refused before launching anything
    assert not (launch_dir(tmp_path / "run") / LAUNCHER_PID_NAME).exists()
    assert not (tmp_path / "model").exists()
