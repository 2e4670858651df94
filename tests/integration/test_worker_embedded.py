"""The embedded topology end to end: SQLite file, kombu filesystem broker, a real worker and beat."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.worker_process import ROOT, celery_worker, environment, wait_for

pytestmark = pytest.mark.integration


def manage(env: dict[str, str], *args: str) -> str:
    completed = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert completed.returncode == 0, completed.stderr
    return completed.stdout


def job_row(database: Path, job_id: int) -> dict[str, object]:
    with sqlite3.connect(database) as connection:
        connection.row_factory = sqlite3.Row
        row = connection.execute("SELECT * FROM jobs_job WHERE id = ?", (job_id,)).fetchone()
    return dict(row)


@pytest.fixture
def embedded(tmp_path: Path) -> dict[str, str]:
    env = environment(
        LOVELACE_VAR_DIR=str(tmp_path / "var"),
        LOVELACE_REAPER_INTERVAL="1",
        LOVELACE_JOB_HEARTBEAT_TIMEOUT="1",
    )
    env.pop("DATABASE_URL", None)
    env.pop("CELERY_BROKER_URL", None)
    manage(env, "migrate", "--verbosity", "0")
    return env


def test_worker_runs_jobs_through_the_filesystem_broker(embedded: dict[str, str], tmp_path: Path) -> None:
    database = tmp_path / "var" / "lovelace.sqlite3"
    log = tmp_path / "worker.log"
    succeeding = json.loads(manage(embedded, "job", "start", "noop", "--params", '{"steps": 3}'))
    failing = json.loads(manage(embedded, "job", "start", "noop", "--params", '{"steps": 3, "fail_at": 2}'))
    long_running = json.loads(
        manage(embedded, "job", "start", "noop", "--params", '{"steps": 200, "sleep": 0.1}')
    )
    assert (tmp_path / "var" / "broker" / "queue").is_dir()

    with celery_worker(embedded, log_path=log):
        wait_for(
            lambda: job_row(database, succeeding["id"])["status"] == "succeeded",
            timeout=60,
            what="the first job to succeed",
            log_path=log,
        )
        wait_for(
            lambda: job_row(database, failing["id"])["status"] == "failed",
            timeout=30,
            what="the second job to fail",
            log_path=log,
        )
        wait_for(
            lambda: job_row(database, long_running["id"])["status"] == "running",
            timeout=30,
            what="the long job to start",
            log_path=log,
        )
        manage(embedded, "job", "cancel", str(long_running["id"]))
        wait_for(
            lambda: job_row(database, long_running["id"])["status"] == "cancelled",
            timeout=30,
            what="the long job to stop",
            log_path=log,
        )

    first = job_row(database, succeeding["id"])
    assert (first["progress_step"], first["progress_total"]) == (3, 3)
    assert [point["value"] for point in json.loads(str(first["metrics"]))] == [1.0, 2.0, 3.0]
    assert job_row(database, failing["id"])["error"] == "RuntimeError: asked to fail at step 2"
    cancelled = job_row(database, long_running["id"])
    assert 0 < int(cancelled["progress_step"]) < 200


def test_beat_inside_the_worker_reaps_a_job_whose_worker_died(
    embedded: dict[str, str], tmp_path: Path
) -> None:
    database = tmp_path / "var" / "lovelace.sqlite3"
    log = tmp_path / "worker.log"
    job = json.loads(manage(embedded, "job", "start", "noop", "--params", "{}"))
    with sqlite3.connect(database) as connection:  # a worker claimed it long ago, then died
        connection.execute(
            "UPDATE jobs_job SET status='running', started_at='2020-01-01 00:00:00', "
            "heartbeat_at='2020-01-01 00:00:00', attempts=3, worker='gone' WHERE id=?",
            (job["id"],),
        )
    with celery_worker(embedded, beat=True, log_path=log):
        wait_for(
            lambda: job_row(database, job["id"])["status"] == "failed",
            timeout=60,
            what="beat to run the reaper",
            log_path=log,
        )
    assert "stopped sending heartbeats" in str(job_row(database, job["id"])["error"])


def test_a_queued_job_whose_message_was_lost_is_sent_again_and_runs_once(
    embedded: dict[str, str], tmp_path: Path
) -> None:
    database = tmp_path / "var" / "lovelace.sqlite3"
    log = tmp_path / "worker.log"
    env = {**embedded, "LOVELACE_JOB_RESEND_AFTER": "1"}
    job = json.loads(manage(env, "job", "start", "noop", "--params", '{"steps": 2}'))
    messages = list((tmp_path / "var" / "broker" / "queue").iterdir())
    assert len(messages) == 1
    messages[0].unlink()  # the broker lost it (a restart, a killed worker that had taken it)

    with celery_worker(env, beat=True, log_path=log):
        wait_for(
            lambda: job_row(database, job["id"])["status"] == "succeeded",
            timeout=90,
            what="the reaper to send the lost job again and a worker to run it",
            log_path=log,
        )
    row = job_row(database, job["id"])
    assert row["attempts"] == 1
    assert int(row["sends"]) >= 2
    assert "still queued: task sent again" in str(row["log_tail"])
