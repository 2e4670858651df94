"""One rank of a supervised run: ``python -m workers.ml.rank_main <spec.json>`` under torchrun or
accelerate launch (see ``workers.ml.distributed``).

The rank reads the launch spec, writes its pid (so the supervisor can watch and stop it), sends its
stderr to a file of its own, and runs the same trainer as an in-process job. Rank 0 reports
progress as JSON lines and writes the result; every rank writes how it ended (exit code and error)
before it exits. SIGTERM makes the trainer stop after its current step and save it.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
import traceback
from dataclasses import asdict
from pathlib import Path
from typing import Any

from workers.ml.distributed import (
    EVENTS_NAME,
    EventWriter,
    LaunchSpec,
    pid_path,
    read_pairs,
    record_exit,
    stderr_path,
    write_result,
)
from workers.ml.policy_config import DistributedSettings, DPOConfig
from workers.ml.progress import Cancelled, ProgressReporter, null_reporter
from workers.ml.reward_model_config import RewardModelConfig
from workers.ml.trainer_bridge import request_stop, stop_on_sigterm

ERROR_CHARACTERS = 1000  # of the error in the exit record; the traceback is in the stderr file
SUPERVISOR_CHECK_SECONDS = 2.0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def watch_supervisor(pid: int) -> None:
    """Stop training (saving the step) once the supervising worker is gone: its job's next
    attempt resumes from that checkpoint instead of racing these ranks for the GPUs."""

    def watch() -> None:
        while _alive(pid):
            time.sleep(SUPERVISOR_CHECK_SECONDS)
        print(f"the supervising worker (pid {pid}) is gone: stopping after this step", file=sys.stderr)
        request_stop()

    threading.Thread(target=watch, name="supervisor-watch", daemon=True).start()


def local_device(config: DistributedSettings) -> str:
    """This rank's device: its own GPU (``LOCAL_RANK``) on a CUDA run, else the CPU."""
    import torch

    from workers.ml.policy_training import on_cuda

    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    return f"cuda:{local_rank}" if on_cuda(config) and torch.cuda.is_available() else "cpu"


def train(spec: LaunchSpec, reporter: ProgressReporter) -> dict[str, Any]:
    """Run the spec's trainer on this rank; the trainer's result as a dict."""
    config = spec.settings()
    checkpoints = Path(spec.checkpoint_dir)
    output_dir = Path(spec.output_dir)
    if isinstance(config, RewardModelConfig):
        import torch

        from workers.ml.reward_model import train_sequence_members

        members = train_sequence_members(
            read_pairs(Path(spec.data["train_pairs"])),
            config,
            checkpoints,
            reporter,
            torch.device(local_device(config)),
        )
        return {"members": members}
    if isinstance(config, DPOConfig):
        from workers.ml.dpo import train_dpo

        result: Any = train_dpo(
            read_pairs(Path(spec.data["train_pairs"])),
            spec.parent_model_path,
            output_dir,
            config,
            checkpoints,
            reporter,
            validation_pairs=read_pairs(Path(spec.data["validation_pairs"])),
        )
        return asdict(result)
    from workers.ml.online_rl import ensemble_reward, train_online_rl
    from workers.ml.reward_model import load_reward_ensemble

    if spec.reward_model_path is None:
        raise ValueError("online RL needs the reward model's folder in the launch spec")
    # Each rank scores its own completions on its own GPU.
    ensemble = load_reward_ensemble(Path(spec.reward_model_path), device=local_device(config))
    result = train_online_rl(
        json.loads(Path(spec.data["prompts"]).read_text()),
        spec.parent_model_path,
        ensemble_reward(ensemble, std_penalty=config.reward_std_penalty),  # type: ignore[union-attr]
        output_dir,
        config,  # type: ignore[arg-type]
        checkpoints,
        reporter,
    )
    return asdict(result)


def main(argv: list[str]) -> int:
    spec = LaunchSpec.read(Path(argv[0]))
    rank = int(os.environ.get("RANK", "0"))
    run_dir = spec.run_dir
    stderr = os.open(stderr_path(run_dir, rank), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(stderr, 2)  # warnings and tracebacks of this rank, for the supervisor's error message
    stop_on_sigterm()
    watch_supervisor(spec.supervisor_pid)
    pid_path(run_dir, rank).write_text(str(os.getpid()))
    reporter: ProgressReporter = EventWriter(run_dir / EVENTS_NAME) if rank == 0 else null_reporter
    code, error = 0, None
    try:
        result = train(spec, reporter)
        if rank == 0:
            write_result(run_dir, result)
    except Cancelled:
        pass  # the checkpoint is saved; the supervisor already knows it asked for the stop
    except BaseException as failure:
        traceback.print_exc()
        code, error = 1, f"{type(failure).__name__}: {failure}"[:ERROR_CHARACTERS]
    finally:
        import torch.distributed as dist

        if code == 0 and dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
    record_exit(run_dir, rank, code=code, error=error)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
