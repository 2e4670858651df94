"""Training on several processes under an existing launcher, supervised by the worker.

A policy run (DPO, RLOO, GRPO) or a reward-model run (``sequence_classification`` members) whose
``distributed`` setting is not "none" does not train inside the Celery worker:
the worker writes a launch spec (``spec.json``: trainer, config, data files, folders) into a
``launch`` folder inside the job's checkpoint folder and starts the launcher in its own process
group:

- on the CPU, ``torchrun --nproc-per-node N`` (data parallel over gloo; accelerate launch runs
  CPU processes only under MPI);
- on GPUs, ``accelerate launch --config_file <generated YAML>``: DDP, FSDP (full shard, wrapped
  per transformer layer) or DeepSpeed ZeRO-3;

each rank running ``python -m workers.ml.rank_main spec.json``: the same ``train_dpo`` /
``train_online_rl`` / ``train_sequence_members`` as in process, with the data read from files
written next to the spec (the ranks never touch the database). A reward model's members train one
after another in one launch (one start-up, one process group, instead of one per member); the
worker then loads them for normalisation and evaluation. Rank 0 appends its progress as JSON
lines to ``events.jsonl``; ``run_supervised`` relays them to the job's reporter (so progress,
metrics and heartbeat continue) and calls the reporter at least every few seconds, so that a
cancel is noticed while the ranks load or compute.

Cancel: the reporter raises ``Cancelled`` → SIGTERM to the launcher and to every rank; each rank
finishes its step, all of them save that step (``trainer_bridge``), and exit; whatever is left
after ``grace_seconds`` is killed. A rank that dies (an exception, a signal, the OOM killer): the
supervisor gives the launcher a moment to notice, kills every process that is left and raises
``RankFailed`` naming the rank, its exit code and the end of its stderr. A re-run of the job
resumes from the trainer's newest checkpoint, as an in-process run does (a reward model's finished
members are kept, and the member it was in resumes from its own newest checkpoint).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from workers.ml.policy_config import DistributedSettings, DPOConfig, LoraSettings, OnlineRLConfig
from workers.ml.preference_data import PreferencePair
from workers.ml.progress import Cancelled, ProgressReporter
from workers.ml.reward_model_config import RewardModelConfig

# What a launch spec's config can be.
LaunchConfig = DPOConfig | OnlineRLConfig | RewardModelConfig

SPEC_NAME = "spec.json"
EVENTS_NAME = "events.jsonl"
RESULT_NAME = "result.json"
LAUNCHER_LOG_NAME = "launcher.log"
LAUNCHER_PID_NAME = "launcher.pid"
ACCELERATE_CONFIG_NAME = "accelerate.yaml"
RANK_MODULE = "workers.ml.rank_main"
REPOSITORY = Path(__file__).resolve().parents[2]  # the folder that holds ``workers``
STDERR_TAIL_CHARACTERS = 3000
# What one launch leaves in the launch folder (besides the rank-N.* files); the next one starts clean.
RUN_FILES = (EVENTS_NAME, RESULT_NAME, LAUNCHER_LOG_NAME, LAUNCHER_PID_NAME)


@dataclass
class LaunchSpec:
    """Everything a rank needs, as plain JSON: which trainer, its config, where its inputs are and
    where its outputs go. Written by the supervisor, read by every rank."""

    # "dpo", "online_rl" (``config["method"]`` says RLOO or GRPO) or "reward_model".
    trainer: str
    # The trainer's config dataclass as ``asdict`` made it (with ``distributed`` and ``processes``).
    config: dict[str, Any]
    # The policy's parent, or the reward model's backbone.
    parent_model_path: str
    # The child's folder, or (reward model) the folder of the finished members.
    output_dir: str
    # The trainer's checkpoint folder (``checkpoint-N`` folders); the launch folder is inside it.
    checkpoint_dir: str
    # Input files by name: "train_pairs", "validation_pairs" (JSON lines of PreferencePair) for
    # DPO, "train_pairs" for a reward model, "prompts" (a JSON list) for online RL.
    data: dict[str, str] = field(default_factory=dict)
    # The reward model's folder (online RL): each rank loads it onto its own device.
    reward_model_path: str | None = None
    # The supervising worker: ranks that outlive it (a killed worker) save their step and stop,
    # rather than train on unsupervised while the job's next attempt starts another run.
    supervisor_pid: int = field(default_factory=os.getpid)

    @property
    def run_dir(self) -> Path:
        return launch_dir(Path(self.checkpoint_dir))

    def settings(self) -> LaunchConfig:
        return config_from_record(self.trainer, self.config)

    def write(self) -> Path:
        path = self.run_dir / SPEC_NAME
        _write_atomically(path, json.dumps(asdict(self), indent=2))
        return path

    @classmethod
    def read(cls, path: Path) -> LaunchSpec:
        return cls(**json.loads(Path(path).read_text()))


@dataclass(frozen=True)
class Supervision:
    """How patiently the supervisor waits."""

    # SIGTERM → SIGKILL on cancel: time for every rank to finish its step and save a checkpoint
    # (a full fine-tuning checkpoint of an 8 B model is ~100 GB of weights and optimizer state).
    grace_seconds: float = 300.0
    # After a rank died, time for the launcher to stop the others and report exit codes before
    # the supervisor kills what is left (survivors of a NCCL job hang in their next collective).
    # The launcher SIGTERMs the survivors, which try to save their step, and SIGKILLs them after
    # its own 30 s; its exit-code summary (the only record of a rank killed by a signal) comes
    # after that, so waiting less loses it on a loaded machine. Costs nothing when the launcher
    # is quicker: the wait ends as soon as every process has stopped.
    settle_seconds: float = 40.0
    # Between looks at the events file and at the processes.
    poll_seconds: float = 0.2
    # The reporter is called at least this often, so that a cancel or a lost claim is noticed while
    # rank 0 is silent (loading, precomputing reference log-probabilities, a long step).
    quiet_report_seconds: float = 5.0


class RankFailed(RuntimeError):
    """A rank of a supervised run died; every other process of the run was stopped."""


def launch_dir(checkpoint_dir: Path) -> Path:
    return Path(checkpoint_dir) / "launch"


def config_from_record(trainer: str, record: dict[str, Any]) -> LaunchConfig:
    """The config dataclass back from ``asdict`` (LoRA settings as a nested dict, or None)."""
    if trainer == "reward_model":
        return RewardModelConfig(**record)  # turns the LoRA dict back into RewardLora itself
    record = dict(record)
    lora = record.pop("lora", None)
    settings = LoraSettings(**lora) if lora is not None else None
    if trainer == "dpo":
        return DPOConfig(**record, lora=settings)
    return OnlineRLConfig(**record, lora=settings)


def write_pairs(path: Path, pairs: Sequence[PreferencePair]) -> None:
    _write_atomically(path, "".join(json.dumps(asdict(pair)) + "\n" for pair in pairs))


def read_pairs(path: Path) -> list[PreferencePair]:
    return [PreferencePair(**json.loads(line)) for line in Path(path).read_text().splitlines() if line]


def _write_atomically(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


# --- Launch ---------------------------------------------------------------------------------------


def uses_cuda(settings: DistributedSettings) -> bool:
    import torch

    from workers.ml.policy_training import on_cuda

    return on_cuda(settings) and torch.cuda.is_available()


def accelerate_config(settings: DistributedSettings, *, bfloat16: bool) -> dict[str, Any]:
    """The ``accelerate launch`` config (one machine, ``settings.processes`` GPUs) for DDP, FSDP
    or DeepSpeed ZeRO-3.

    FSDP is version 2, full shard (parameters resharded after the forward pass), wrapped per
    transformer layer (the model's ``_no_split_modules``), checkpoints sharded (every rank writes
    its shard; resuming needs the same number of processes). Activation checkpointing stays with
    the trainer's ``gradient_checkpointing`` option: transformers refuses both at once. ZeRO-3
    keeps everything on the GPUs (no offload) and gathers 16-bit weights when the child is saved.
    """
    base: dict[str, Any] = {
        "compute_environment": "LOCAL_MACHINE",
        "machine_rank": 0,
        "num_machines": 1,
        "num_processes": settings.processes,
        "gpu_ids": "all",
        "mixed_precision": "bf16" if bfloat16 else "no",
        "rdzv_backend": "static",
        "same_network": True,
        "use_cpu": False,
        "main_training_function": "main",
        "downcast_bf16": "no",
    }
    if settings.distributed == "ddp":
        return {**base, "distributed_type": "MULTI_GPU"}
    if settings.distributed == "fsdp":
        return {
            **base,
            "distributed_type": "FSDP",
            "fsdp_config": {
                "fsdp_version": 2,
                "fsdp_reshard_after_forward": True,  # full shard (ZeRO-3-like)
                "fsdp_auto_wrap_policy": "TRANSFORMER_BASED_WRAP",
                "fsdp_offload_params": False,
                "fsdp_state_dict_type": "SHARDED_STATE_DICT",
                "fsdp_cpu_ram_efficient_loading": True,
                "fsdp_activation_checkpointing": False,
            },
        }
    if settings.distributed == "zero3":
        return {
            **base,
            "distributed_type": "DEEPSPEED",
            "deepspeed_config": {
                "zero_stage": 3,
                "offload_optimizer_device": "none",
                "offload_param_device": "none",
                "zero3_init_flag": False,  # the parent is loaded before the trainer exists
                "zero3_save_16bit_model": True,
                "gradient_accumulation_steps": settings.gradient_accumulation_steps,
                "gradient_clipping": 1.0,  # TrainingArguments' max_grad_norm; must agree
            },
        }
    raise ValueError(f"no accelerate config for distributed {settings.distributed!r}")


def free_port() -> int:
    """A TCP port free on this machine now (the launcher binds it a moment later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def launch_command(
    spec: LaunchSpec, spec_path: Path, supervision: Supervision
) -> tuple[list[str], dict[str, str]]:
    """The launcher's command line and environment for ``spec``."""
    import torch
    import yaml

    from workers.ml.policy_training import resolved_dtype

    settings = spec.settings()
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPOSITORY), os.environ.get("PYTHONPATH")])),
        # The launcher's own SIGTERM → SIGKILL delay for the ranks (seconds, whole).
        "TORCH_ELASTIC_SHUTDOWN_TIMEOUT": str(max(1, round(supervision.grace_seconds))),
        "PYTHONUNBUFFERED": "1",
    }
    rank_command = ["-m", RANK_MODULE, str(spec_path)]
    if uses_cuda(settings):
        config = accelerate_config(settings, bfloat16=resolved_dtype(settings) == torch.bfloat16)
        config_path = spec.run_dir / ACCELERATE_CONFIG_NAME
        _write_atomically(config_path, yaml.safe_dump(config, sort_keys=True))
        command = [
            sys.executable,
            "-m",
            "accelerate.commands.launch",
            "--config_file",
            str(config_path),
            "--main_process_ip",
            "127.0.0.1",
            "--main_process_port",
            str(port),
            *rank_command,
        ]
        return command, env
    # Threads per rank: the cores shared out, so that N ranks do not oversubscribe the machine.
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // settings.processes)))
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nnodes",
        "1",
        "--nproc-per-node",
        str(settings.processes),
        "--master-addr",
        "127.0.0.1",
        "--master-port",
        str(port),
        "--max-restarts",
        "0",  # a failed rank fails the run; the job's re-run resumes from the checkpoint
        *rank_command,
    ]
    return command, env


# --- The ranks' side of the protocol (files in the launch folder) ---------------------------------


def pid_path(run_dir: Path, rank: int) -> Path:
    return run_dir / f"rank-{rank}.pid"


def exit_path(run_dir: Path, rank: int) -> Path:
    return run_dir / f"rank-{rank}.exit.json"


def stderr_path(run_dir: Path, rank: int) -> Path:
    return run_dir / f"rank-{rank}.stderr"


class EventWriter:
    """Rank 0's reporter: each call appends one JSON line to the events file."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __call__(
        self, *, step: int, total: int, message: str = "", metrics: dict[str, float] | None = None
    ) -> None:
        self.write({"kind": "progress", "step": step, "total": total, "message": message, "metrics": metrics})

    def write(self, event: dict[str, Any]) -> None:
        with self.path.open("a") as events:
            events.write(json.dumps(event) + "\n")


def record_exit(run_dir: Path, rank: int, *, code: int, error: str | None) -> None:
    _write_atomically(
        exit_path(run_dir, rank), json.dumps({"code": code, "error": error, "time": time.time()})
    )


def write_result(run_dir: Path, result: dict[str, Any]) -> None:
    _write_atomically(run_dir / RESULT_NAME, json.dumps(result))


# --- Supervision ----------------------------------------------------------------------------------


@dataclass
class _Rank:
    rank: int
    pid: int


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs a rank of ours (not a zombie, not a recycled pid)."""
    proc = Path(f"/proc/{pid}")
    if not proc.exists():
        if not Path("/proc/self").exists():  # no procfs: ask the kernel
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return False
            except PermissionError:
                return True
            return True
        return False
    try:
        state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        command = (proc / "cmdline").read_bytes()
    except OSError:
        return False
    return state != "Z" and RANK_MODULE.encode() in command


def _signal_group(pid: int, signum: int) -> None:
    """``signum`` to the process group led by ``pid`` (the launcher, and each rank: torchrun
    starts every rank in a session of its own)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signum)


class _Run:
    """One launch: the launcher process, the ranks it started, the events rank 0 wrote."""

    def __init__(self, spec: LaunchSpec, launcher: subprocess.Popen[bytes], processes: int) -> None:
        self.spec = spec
        self.run_dir = spec.run_dir
        self.launcher = launcher
        self.processes = processes
        self._events_offset = 0

    def ranks(self) -> list[_Rank]:
        ranks = []
        for rank in range(self.processes):
            with contextlib.suppress(OSError, ValueError):
                ranks.append(_Rank(rank, int(pid_path(self.run_dir, rank).read_text())))
        return ranks

    def exit_record(self, rank: int) -> dict[str, Any] | None:
        try:
            return dict(json.loads(exit_path(self.run_dir, rank).read_text()))
        except (OSError, ValueError):
            return None

    def failed_ranks(self) -> list[int]:
        """Ranks that ended without success: an exit record with a non-zero code, or gone without
        any record (a signal, a crash of the interpreter)."""
        failed = []
        for rank in self.ranks():
            record = self.exit_record(rank.rank)
            if record is not None:
                if record["code"] != 0:
                    failed.append(rank.rank)
            elif not _alive(rank.pid):
                failed.append(rank.rank)
        return failed

    def new_events(self) -> Iterator[dict[str, Any]]:
        path = self.run_dir / EVENTS_NAME
        try:
            with path.open("rb") as events:
                events.seek(self._events_offset)
                chunk = events.read()
        except FileNotFoundError:
            return
        complete = chunk[: chunk.rfind(b"\n") + 1]  # a line still being written waits
        self._events_offset += len(complete)
        for line in complete.splitlines():
            with contextlib.suppress(ValueError):
                yield dict(json.loads(line))

    def everything_stopped(self) -> bool:
        return self.launcher.poll() is not None and not any(_alive(rank.pid) for rank in self.ranks())

    def signal_all(self, signum: int) -> None:
        if self.launcher.poll() is None:
            _signal_group(self.launcher.pid, signum)
        for rank in self.ranks():
            if _alive(rank.pid):
                _signal_group(rank.pid, signum)

    def wait_stopped(self, seconds: float, poll: float) -> bool:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.everything_stopped():
                return True
            time.sleep(poll)
        return self.everything_stopped()

    def kill(self) -> None:
        """SIGKILL to every process of the run that is left, and reap the launcher."""
        self.signal_all(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.launcher.wait(timeout=10)
        # A rank whose launcher died first is re-parented; it still has its pid file.
        deadline = time.monotonic() + 10
        while any(_alive(rank.pid) for rank in self.ranks()) and time.monotonic() < deadline:
            self.signal_all(signal.SIGKILL)
            time.sleep(0.05)

    def stop(self, supervision: Supervision) -> None:
        """SIGTERM (each rank saves its step and leaves), then SIGKILL after the grace period."""
        self.signal_all(signal.SIGTERM)
        if not self.wait_stopped(supervision.grace_seconds, supervision.poll_seconds):
            self.kill()
        self.kill()  # reaps the launcher; a no-op for processes already gone

    def launcher_exit_codes(self) -> dict[int, int]:
        """Exit codes by pid from the launcher's failure summary ("exitcode : -9 (pid: 1234)"),
        the only record of a rank killed by a signal."""
        text = self.launcher_log()
        return {
            int(pid): int(code)
            for code, pid in re.findall(r"exitcode\s*:\s*(-?\d+)\s*\(pid:\s*(\d+)\)", text)
        }

    def launcher_log(self) -> str:
        try:
            return (self.run_dir / LAUNCHER_LOG_NAME).read_text(errors="replace")
        except OSError:
            return ""

    def failure(self, suspects: list[int]) -> RankFailed:
        """The error naming the rank that failed first among ``suspects`` (the ranks seen failed
        before anything was stopped), from what the ranks and the launcher left."""
        ranks = {rank.rank: rank for rank in self.ranks()}
        if not suspects:
            code = self.launcher.returncode
            return RankFailed(
                f"the launcher exited with code {code} before any rank failed; its output ends "
                f"with:\n{_tail(self.launcher_log())}"
            )
        records = {rank: self.exit_record(rank) for rank in ranks}
        # A rank that vanished without a record was killed (a signal, the OOM killer) or crashed:
        # that is the cause; the errors of the others (a closed connection in their next
        # collective) follow from it. Among recorded errors the earliest is the cause.
        silent = [rank for rank in suspects if records[rank] is None]
        if silent:
            culprit = min(silent)
        else:
            culprit = min(suspects, key=lambda rank: float((records[rank] or {}).get("time", 0.0)))
        record = records[culprit]
        code = self.launcher_exit_codes().get(ranks[culprit].pid)
        if record is not None:
            how = f"exit code {record['code']}: {record['error']}"
        elif code is not None and code < 0:
            how = f"exit code {code}: killed by signal {_signal_name(-code)}"
        elif code is not None:
            how = f"exit code {code}, without a Python error (the interpreter crashed)"
        else:
            how = "killed by a signal or crashed (the launcher reported no exit code)"
        others = ", ".join(str(rank) for rank in range(self.processes) if rank != culprit)
        stderr = _tail(_read(stderr_path(self.run_dir, culprit)))
        return RankFailed(
            f"rank {culprit} of {self.processes} (pid {ranks[culprit].pid}) failed, {how}. "
            f"The supervisor stopped the other ranks ({others or 'none'}); a re-run of the job "
            f"resumes from the newest checkpoint. The rank's stderr ends with:\n{stderr}"
        )


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return str(number)


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def _tail(text: str) -> str:
    text = text.strip()
    return text[-STDERR_TAIL_CHARACTERS:] if text else "(nothing)"


def _prepare(spec: LaunchSpec) -> Path:
    """An empty launch folder but for the data files, and the spec in it."""
    run_dir = spec.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    for path in run_dir.iterdir():
        if path.name.startswith("rank-") or path.name in RUN_FILES:
            path.unlink()
    return spec.write()


def run_supervised(
    spec: LaunchSpec, reporter: ProgressReporter, supervision: Supervision = Supervision()
) -> dict[str, Any]:
    """Launch ``spec``'s ranks, relay rank 0's progress to ``reporter`` and return rank 0's result
    (the trainer's result dataclass as a dict).

    Raises ``Cancelled`` (after the ranks saved a checkpoint or were killed) when the reporter
    raised it, ``RankFailed`` when a rank died, and re-raises anything else the reporter raised
    (a lost claim) after killing the run.
    """
    from workers.ml.policy_training import check_distribution, check_environment

    settings = spec.settings()
    # Fail here, in plain words, rather than in N ranks.
    if isinstance(settings, RewardModelConfig):
        check_distribution(settings)  # the config refused bad combinations when it was made
    else:
        check_environment(settings)
    spec_path = _prepare(spec)
    command, env = launch_command(spec, spec_path, supervision)
    step, total, message = 0, 0, f"starting {settings.processes} processes ({settings.distributed})"
    reporter(step=step, total=total, message=message)
    with (spec.run_dir / LAUNCHER_LOG_NAME).open("wb") as log:
        launcher = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPOSITORY, start_new_session=True
        )
    (spec.run_dir / LAUNCHER_PID_NAME).write_text(str(launcher.pid))
    run = _Run(spec, launcher, settings.processes)
    last_report = time.monotonic()
    try:
        while True:
            for event in run.new_events():
                if event.get("kind") == "progress":
                    step, total, message = event["step"], event["total"], event["message"]
                    reporter(step=step, total=total, message=message, metrics=event.get("metrics"))
                    last_report = time.monotonic()
            if time.monotonic() - last_report >= supervision.quiet_report_seconds:
                reporter(step=step, total=total, message=message)
                last_report = time.monotonic()
            if launcher.poll() is not None or run.failed_ranks():
                break
            time.sleep(supervision.poll_seconds)
    except Cancelled:
        run.stop(supervision)
        raise
    except BaseException:
        run.kill()
        raise
    suspects = run.failed_ranks()  # before the launcher or the supervisor stops anything
    if launcher.returncode == 0 and not suspects:
        run.kill()  # nothing should be left; makes sure
        for event in run.new_events():  # the last lines ("saved")
            if event.get("kind") == "progress":
                reporter(step=event["step"], total=event["total"], message=event["message"])
        try:
            return dict(json.loads((spec.run_dir / RESULT_NAME).read_text()))
        except (OSError, ValueError):
            raise RankFailed(
                "the launcher finished without a result from rank 0; its output ends with:\n"
                + _tail(run.launcher_log())
            ) from None
    # A rank failed: the launcher stops the others and reports their exit codes; give it a
    # moment, then kill whatever is left (ranks stuck in a collective with the dead one).
    run.wait_stopped(supervision.settle_seconds, supervision.poll_seconds)
    run.kill()
    raise run.failure(suspects)


# --- Entry points for the job handlers ------------------------------------------------------------


def train_dpo_supervised(
    pairs: Sequence[PreferencePair],
    parent_model_path: str | Path,
    output_dir: Path,
    config: DPOConfig,
    checkpoint_dir: Path,
    reporter: ProgressReporter,
    *,
    validation_pairs: Sequence[PreferencePair] = (),
    supervision: Supervision = Supervision(),
) -> Any:
    """``train_dpo`` with the same arguments, on ``config.processes`` supervised ranks; the
    ``DPOResult`` of rank 0."""
    from workers.ml.dpo import DPOResult

    if not pairs:
        raise ValueError("no training pairs")
    spec = LaunchSpec(
        trainer="dpo",
        config=asdict(config),
        parent_model_path=str(parent_model_path),
        output_dir=str(output_dir),
        checkpoint_dir=str(checkpoint_dir),
        data={
            "train_pairs": str(launch_dir(checkpoint_dir) / "train_pairs.jsonl"),
            "validation_pairs": str(launch_dir(checkpoint_dir) / "validation_pairs.jsonl"),
        },
    )
    spec.run_dir.mkdir(parents=True, exist_ok=True)
    write_pairs(Path(spec.data["train_pairs"]), pairs)
    write_pairs(Path(spec.data["validation_pairs"]), validation_pairs)
    return DPOResult(**run_supervised(spec, reporter, supervision))


def train_online_rl_supervised(
    prompts: Sequence[str],
    parent_model_path: str | Path,
    reward_model_path: Path,
    output_dir: Path,
    config: OnlineRLConfig,
    checkpoint_dir: Path,
    reporter: ProgressReporter,
    *,
    supervision: Supervision = Supervision(),
) -> Any:
    """``train_online_rl`` on ``config.processes`` supervised ranks, each scoring completions with
    its own copy of the reward model at ``reward_model_path``; the ``OnlineRLResult`` of rank 0."""
    from workers.ml.online_rl import OnlineRLResult, check_config

    if not prompts:
        raise ValueError("no prompts")
    check_config(config, parent_model_path)
    spec = LaunchSpec(
        trainer="online_rl",
        config=asdict(config),
        parent_model_path=str(parent_model_path),
        output_dir=str(output_dir),
        checkpoint_dir=str(checkpoint_dir),
        data={"prompts": str(launch_dir(checkpoint_dir) / "prompts.json")},
        reward_model_path=str(reward_model_path),
    )
    spec.run_dir.mkdir(parents=True, exist_ok=True)
    _write_atomically(Path(spec.data["prompts"]), json.dumps(list(prompts)))
    return OnlineRLResult(**run_supervised(spec, reporter, supervision))


def train_reward_members_supervised(
    train_pairs: Sequence[PreferencePair],
    config: RewardModelConfig,
    checkpoint_dir: Path,
    reporter: ProgressReporter,
    *,
    supervision: Supervision = Supervision(),
) -> list[dict[str, Any]]:
    """``reward_model.train_sequence_members`` on ``config.processes`` supervised ranks: the members
    not finished yet, one after the other in one launch; the summaries of all members.

    Nothing is launched when every member finished in an earlier run (a worker killed while it
    evaluated): the re-run goes straight on to normalisation and evaluation.
    """
    from workers.ml.reward_model import finished_member

    checkpoint_dir = Path(checkpoint_dir)
    members = checkpoint_dir / "final"
    finished = [finished_member(members / f"member_{member}") for member in range(config.ensemble_size)]
    if all(summary is not None for summary in finished):
        return [summary for summary in finished if summary is not None]
    spec = LaunchSpec(
        trainer="reward_model",
        config=asdict(config),
        parent_model_path=config.backbone_path,
        output_dir=str(members),
        checkpoint_dir=str(checkpoint_dir),
        data={"train_pairs": str(launch_dir(checkpoint_dir) / "train_pairs.jsonl")},
    )
    spec.run_dir.mkdir(parents=True, exist_ok=True)
    write_pairs(Path(spec.data["train_pairs"]), train_pairs)
    return list(run_supervised(spec, reporter, supervision)["members"])
