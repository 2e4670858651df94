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
    return job_services.job_reap_stale()
