"""One ``TrainerCallback`` that bridges a Hugging Face / TRL trainer into a Lovelace job.

Every trainer of ``workers/ml`` runs a ``transformers.Trainer`` subclass (TRL's DPO, RLOO, GRPO
and reward trainers). This callback turns the trainer's steps and logs into calls of the job's
``ProgressReporter`` (progress, metrics, heartbeat) and turns a ``Cancelled`` raised by the
reporter into a clean stop: the trainer saves a checkpoint and returns, and ``run_bridged``
raises ``Cancelled`` afterwards, so the job is marked cancelled and a later run resumes from
that checkpoint.

Callbacks run on every rank of a multi-process run; only the main process reports (the others
have no job to write to). A cancel reaches every rank through the supervisor's SIGTERM
(``stop_on_sigterm``); at the end of each step the ranks agree whether any of them was asked to
stop, so that all of them save the same step and leave together (a rank that left alone would
leave the others waiting in the next collective).
"""

from __future__ import annotations

import math
import re
import signal
import threading
import time
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments
from transformers.trainer import TRAINER_STATE_NAME

from workers.ml.progress import Cancelled, ProgressReporter

REPORT_EVERY_SECONDS = 2.0  # progress between logs; the job's heartbeat needs one per minute or so

# Set by SIGTERM in a supervised rank (``stop_on_sigterm``): stop after this step, saving it.
_terminate = threading.Event()


def stop_on_sigterm() -> None:
    """Make SIGTERM stop this process's bridged trainer after its current step, with a checkpoint,
    instead of killing it mid-step (for the ranks of a supervised run)."""
    signal.signal(signal.SIGTERM, lambda signum, frame: request_stop())


def request_stop() -> None:
    """Stop this process's bridged trainer after its current step, as SIGTERM does."""
    _terminate.set()


def _several_processes() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


class JobBridge(TrainerCallback):
    """Reports progress and metrics; stops the trainer (saving first) when the job is cancelled."""

    def __init__(self, report: ProgressReporter, *, label: str) -> None:
        self.report = report
        self.label = label
        self.cancelled: Cancelled | None = None
        self._last_report = 0.0

    def _send(
        self, state: TrainerState, control: TrainerControl, metrics: dict[str, float] | None = None
    ) -> None:
        if not state.is_world_process_zero or self.cancelled is not None:
            return
        try:
            self.report(
                step=state.global_step,
                total=max(state.max_steps, state.global_step),
                message=f"{self.label}: step {state.global_step} of {state.max_steps}",
                metrics=metrics,
            )
        except Cancelled as cancelled:
            # Stop at the end of this step, and save it so that a later run resumes from here (with
            # several ranks: all of them, at the end of the next step, see ``_stop_together``).
            self.cancelled = cancelled
            if not _several_processes():
                control.should_save = True
                control.should_training_stop = True
        self._last_report = time.monotonic()

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        self._send(state, control)

    def on_step_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        if time.monotonic() - self._last_report >= REPORT_EVERY_SECONDS:
            self._send(state, control)
        if _terminate.is_set() or _several_processes():
            self._stop_together(args, control)

    def _stop_together(self, args: TrainingArguments, control: TrainerControl) -> None:
        """Stop (saving) when this process or, in a multi-process run, any rank must stop: one
        all-reduce of a flag per step (microseconds next to a step's gradient all-reduce)."""
        stop = _terminate.is_set() or self.cancelled is not None
        if _several_processes():
            flag = torch.tensor([float(stop)], device=args.device)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            stop = bool(flag.item())
        if stop:
            self.cancelled = self.cancelled or Cancelled("stopped by the supervisor (SIGTERM)")
            control.should_save = True
            control.should_training_stop = True

    def on_log(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        logs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        metrics = {
            key: float(value)
            for key, value in (logs or {}).items()
            if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
        }
        self._send(state, control, metrics or None)


def last_checkpoint(folder: Path) -> str | None:
    """The newest complete ``checkpoint-N`` folder the trainer wrote under ``folder``, if any.

    The Trainer writes ``trainer_state.json`` last (after weights, optimizer and random states), and
    not atomically: a folder without it is a save that a kill interrupted (a rank killed while the
    step was being written), which must not be resumed from; the one before it is complete.
    """
    if not folder.is_dir():
        return None
    complete = [
        path
        for path in folder.iterdir()
        if re.fullmatch(r"checkpoint-\d+", path.name) and (path / TRAINER_STATE_NAME).is_file()
    ]
    if not complete:
        return None
    return str(max(complete, key=lambda path: int(path.name.split("-")[1])))


def run_bridged(trainer: Any, bridge: JobBridge, *, checkpoints: Path) -> Any:
    """``trainer.train()``, resumed from the newest checkpoint in ``checkpoints``; raises
    ``Cancelled`` after the trainer stopped and saved, when the job was cancelled."""
    output = trainer.train(resume_from_checkpoint=last_checkpoint(checkpoints))
    if bridge.cancelled is not None:
        raise bridge.cancelled
    return output
