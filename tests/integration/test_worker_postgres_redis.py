"""The production topology end to end: PostgreSQL, Redis and a real worker process."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
from django.db import connection

from server.jobs.models import Job, JobStatus
from server.jobs.services import job_cancel, job_enqueue
from tests.integration.worker_process import celery_worker, environment, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def production_env() -> dict[str, str]:
    broker = os.environ.get("CELERY_BROKER_URL", "")
    if connection.vendor != "postgresql" or not broker.startswith("redis"):
        pytest.skip("needs DATABASE_URL=postgres://… and CELERY_BROKER_URL=redis://… (make test sets both)")
    settings = connection.settings_dict
    database_url = (
        f"postgres://{settings['USER']}@{settings['HOST']}:{settings['PORT'] or 5432}/{settings['NAME']}"
    )
    return environment(DATABASE_URL=database_url, CELERY_BROKER_URL=broker)


def status_of(job: Job) -> str:
    job.refresh_from_db()
    return job.status


def test_worker_runs_succeeds_fails_and_cancels_jobs(production_env: dict[str, str], tmp_path: Path) -> None:
    log = tmp_path / "worker.log"
    with celery_worker(production_env, log_path=log):
        succeeding = job_enqueue(kind="noop", params={"steps": 4})
        failing = job_enqueue(kind="noop", params={"steps": 3, "fail_at": 1})
        long_running = job_enqueue(kind="noop", params={"steps": 300, "sleep": 0.1})
        wait_for(
            lambda: status_of(succeeding) == JobStatus.SUCCEEDED, timeout=60, what="success", log_path=log
        )
        wait_for(lambda: status_of(failing) == JobStatus.FAILED, timeout=30, what="failure", log_path=log)
        wait_for(lambda: status_of(long_running) == JobStatus.RUNNING, timeout=30, what="start", log_path=log)
        job_cancel(job_id=long_running.id)
        wait_for(
            lambda: status_of(long_running) == JobStatus.CANCELLED, timeout=30, what="cancel", log_path=log
        )

    assert [point["value"] for point in succeeding.metrics] == [1.0, 2.0, 3.0, 4.0]
    assert succeeding.worker.split(":")[0] == socket.gethostname()
    assert failing.error == "RuntimeError: asked to fail at step 1"
    assert 0 < long_running.progress_step < 300
    assert long_running.finished_at is not None
