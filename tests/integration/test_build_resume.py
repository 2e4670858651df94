"""A worker killed in the middle of a base-model build: the reaper re-queues the job and a new
worker resumes it from the last checkpoint (real worker processes, PostgreSQL, Redis)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from server.generators.models import GeneratorVersion
from server.jobs.models import Job, JobKind, JobStatus
from server.jobs.services import job_enqueue, job_reap_stale
from tests.conftest import DEMO_CORPUS
from tests.integration.test_worker_postgres_redis import production_env, status_of  # noqa: F401
from tests.integration.worker_process import celery_worker, stop, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def test_killed_builder_resumes_from_its_checkpoint(
    production_env: dict[str, str],  # noqa: F811
    tmp_path: Path,
    settings: Any,
    fault_table,  # type: ignore[no-untyped-def]
) -> None:
    env = {**production_env, "LOVELACE_VAR_DIR": str(tmp_path / "var")}
    settings.VAR_DIR = tmp_path / "var"  # the output folder must lie in it here as in the worker
    output = tmp_path / "var" / "models" / "resumable"
    job = job_enqueue(
        kind=JobKind.BUILD_BASE_MODEL,
        params={
            "corpus_path": str(DEMO_CORPUS),
            "output_dir": str(output),
            "generator": "resumable",
            "label": "base",
            "size": "tiny",
            "config": {"steps": 400, "checkpoint_every": 20, "report_every": 5},
        },
    )
    first_log = tmp_path / "first.log"
    with celery_worker(env, log_path=first_log) as worker:
        wait_for(
            lambda: Job.objects.get(id=job.id).progress_step >= 60,
            timeout=120,
            what="the build to pass a checkpoint",
            log_path=first_log,
        )
        stop(worker, kill=True)  # SIGKILL: no clean-up, no acknowledgement
    killed_at = Job.objects.get(id=job.id).progress_step
    assert status_of(job) == JobStatus.RUNNING  # nobody told the database

    time.sleep(2.5)
    assert job_reap_stale(timeout_seconds=2) == {"requeued": 1, "failed": 0, "cancelled": 0}
    second_log = tmp_path / "second.log"
    with celery_worker(env, log_path=second_log):
        wait_for(
            lambda: status_of(job) in (JobStatus.SUCCEEDED, JobStatus.FAILED),
            timeout=180,
            what="the resumed build to finish",
            log_path=second_log,
        )
    job.refresh_from_db()
    fault_table.record(
        "worker SIGKILLed during a build_base_model job",
        "re-queued by the reaper, resumed from its last checkpoint",
        f"killed at step {killed_at}/400; then {job.status} after {job.attempts} attempt(s), "
        f"resumed from step {job.result.get('resumed_from_step')}",
    )
    assert job.status == JobStatus.SUCCEEDED, job.error
    assert job.attempts == 2
    assert 20 <= job.result["resumed_from_step"] <= killed_at
    assert job.result["steps"] == 400
    assert (output / "config.json").is_file()
    assert GeneratorVersion.objects.get(generator__name="resumable").model_path == str(output)
