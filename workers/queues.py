"""The queues, and which queue each job kind goes to. Imported by the web process: keep it light."""

from __future__ import annotations

from enum import StrEnum


class Queue(StrEnum):
    GPU = "gpu"  # model building, generation, training: one worker per GPU, prefetch 1
    CPU = "cpu"  # statistics, pair selection, exports
    DEFAULT = "default"  # bookkeeping: reaper, reservation expiry, the loop's scheduler


QUEUE_OF_JOB_KIND: dict[str, Queue] = {
    "build_base_model": Queue.GPU,
    "generate": Queue.GPU,
    "train_reward_model": Queue.GPU,
    "train_policy": Queue.GPU,
    "evaluate": Queue.GPU,
    "machine_judge": Queue.GPU,  # a reward model scores on the GPU; an endpoint judge waits on sockets
    "select_pairs": Queue.CPU,
    "recompute_leaderboard": Queue.CPU,
    "export": Queue.CPU,
    "snapshot": Queue.CPU,
    "noop": Queue.DEFAULT,
}


def task_name_for_job_kind(kind: str) -> str:
    return f"lovelace.job.{kind}"
