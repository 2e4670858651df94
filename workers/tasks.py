"""Celery tasks: each takes a job id, and the runner claims the job and calls one service.

Delivery is declared per task. GPU work is long and expensive: late acknowledgement and reject on
worker loss hand the message back when a worker dies, the job's conditional claim makes a
redelivery a no-op while the job runs, and the reaper re-queues it (it resumes from its checkpoint)
once its heartbeat stops. Only named transient errors are retried.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import OperationalError

from server.jobs import services as job_services
from server.ratings.pair_selection import pair_selection_run
from workers.celery_app import app
from workers.queues import Queue, task_name_for_job_kind
from workers.runner import run_job

GPU_TASK: dict[str, Any] = {
    "queue": Queue.GPU.value,
    "acks_late": True,
    "reject_on_worker_lost": True,
    "soft_time_limit": settings.CELERY_GPU_TIME_LIMIT,
    "time_limit": settings.CELERY_GPU_TIME_LIMIT + 300,
}
CPU_TASK: dict[str, Any] = {
    "queue": Queue.CPU.value,
    "acks_late": True,
    "reject_on_worker_lost": True,
    "soft_time_limit": 1800,  # seconds
    "time_limit": 2100,
}
DEFAULT_TASK: dict[str, Any] = {
    "queue": Queue.DEFAULT.value,
    "acks_late": True,
    "soft_time_limit": 300,
    "time_limit": 360,
    # A locked SQLite file or a PostgreSQL fail-over is transient: try again with backoff.
    "autoretry_for": (OperationalError,),
    "retry_backoff": True,
    "max_retries": 3,
}


@app.task(name=task_name_for_job_kind("noop"), **DEFAULT_TASK)
def noop_job(job_id: int) -> str:
    return run_job(job_id, job_services.job_run_noop)


@app.task(name="lovelace.reap_stale_jobs", **DEFAULT_TASK)
def reap_stale_jobs() -> dict[str, int]:
    return {**job_services.job_reap_stale(), "resent": job_services.job_resend_queued()}


# Handlers of ML jobs import torch: they are imported inside the task, when a worker runs it, so
# that importing this module (the worker's start-up, beat) stays fast.


@app.task(name=task_name_for_job_kind("build_base_model"), **GPU_TASK)
def build_base_model_job(job_id: int) -> str:
    from server.generators.jobs import base_model_build_run

    return run_job(job_id, base_model_build_run)


@app.task(name=task_name_for_job_kind("generate"), **GPU_TASK)
def generate_job(job_id: int) -> str:
    from server.generators.jobs import generate_run

    return run_job(job_id, generate_run)


@app.task(name=task_name_for_job_kind("machine_judge"), **GPU_TASK)
def machine_judge_job(job_id: int) -> str:
    from server.judges.jobs import machine_judging_run

    return run_job(job_id, machine_judging_run)


@app.task(name=task_name_for_job_kind("select_pairs"), **CPU_TASK)
def select_pairs_job(job_id: int) -> str:
    return run_job(job_id, pair_selection_run)


@app.task(name=task_name_for_job_kind("recompute_leaderboard"), **CPU_TASK)
def recompute_leaderboard_job(job_id: int) -> str:
    from server.evaluations.leaderboard import leaderboard_recompute_run

    return run_job(job_id, leaderboard_recompute_run)


@app.task(name=task_name_for_job_kind("evaluate"), **GPU_TASK)
def evaluate_job(job_id: int) -> str:
    from server.evaluations.creativity import evaluation_run

    return run_job(job_id, evaluation_run)


@app.task(name=task_name_for_job_kind("snapshot"), **CPU_TASK)
def snapshot_job(job_id: int) -> str:
    from server.training.jobs import snapshot_run

    return run_job(job_id, snapshot_run)


@app.task(name=task_name_for_job_kind("train_reward_model"), **GPU_TASK)
def train_reward_model_job(job_id: int) -> str:
    from server.training.jobs import reward_model_train_run

    return run_job(job_id, reward_model_train_run)


@app.task(name=task_name_for_job_kind("train_policy"), **GPU_TASK)
def train_policy_job(job_id: int) -> str:
    from server.training.jobs import policy_train_run

    return run_job(job_id, policy_train_run)


@app.task(name=task_name_for_job_kind("export"), **CPU_TASK)
def export_job(job_id: int) -> str:
    from server.training.exports import export_run

    return run_job(job_id, export_run)


@app.task(name="lovelace.expire_reservations", **DEFAULT_TASK)
def expire_reservations() -> int:
    from server.ratings.services import assignment_expire_stale

    return assignment_expire_stale(limit=1000)


@app.task(name="lovelace.recompute_leaderboards", **DEFAULT_TASK)
def recompute_leaderboards() -> list[int]:
    from server.evaluations.services import leaderboards_recompute_due

    return leaderboards_recompute_due(limit=20)


@app.task(name="lovelace.start_training_loops", **DEFAULT_TASK)
def start_training_loops() -> list[int]:
    from server.training.services import training_loops_start_due

    return training_loops_start_due(limit=10)


@app.task(name="lovelace.prune_checkpoints", **DEFAULT_TASK)
def prune_checkpoints() -> list[int]:
    from server.training.services import training_checkpoints_prune

    return training_checkpoints_prune()


@app.task(name="lovelace.refresh_rater_quality", **DEFAULT_TASK)
def refresh_rater_quality() -> int:
    from server.ratings.services import rater_quality_refresh_recent

    return rater_quality_refresh_recent(within_minutes=15, max_studies=20)
