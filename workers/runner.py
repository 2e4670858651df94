"""Running a job inside a Celery task: claim, heartbeat, report, finish. Used by every task."""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable
from typing import Any

from django.db import close_old_connections, connection

from server.core import log_context
from server.jobs.models import Job
from server.jobs.services import (
    LostClaim,
    Owner,
    describe_exception,
    job_claim,
    job_fail,
    job_heartbeat,
    job_log,
    job_mark_cancelled,
    job_report_progress,
    job_succeed,
)
from workers.ml.progress import Cancelled, ProgressReporter

logger = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 15.0  # between progress reports, a thread keeps the job alive for the reaper

JobHandler = Callable[..., dict[str, Any] | None]


class _Heartbeat(threading.Thread):
    def __init__(self, job_id: int, owner: Owner) -> None:
        super().__init__(name=f"heartbeat-{job_id}", daemon=True)
        self.job_id = job_id
        self.owner = owner
        self.stopped = threading.Event()

    def run(self) -> None:
        try:
            while not self.stopped.wait(HEARTBEAT_SECONDS):
                try:
                    if not job_heartbeat(job_id=self.job_id, owner=self.owner):
                        return  # the job ended or another attempt owns it
                except Exception:  # a locked SQLite file, a fail-over: try again next beat
                    logger.exception("heartbeat of job %s failed", self.job_id)
                    close_old_connections()
        finally:
            connection.close()  # this thread's own database connection


def worker_name() -> str:
    import os

    return f"{socket.gethostname()}:{os.getpid()}"


def run_job(job_id: int, handler: JobHandler) -> str:
    """Claim job ``job_id`` and run ``handler(job=..., report=...)``; return the final status.

    A job that is not queued (another worker has it, it ended, it was cancelled) is left alone: a
    redelivered message is a no-op. The handler's return value becomes the job's result.
    """
    worker = worker_name()
    if not job_claim(job_id=job_id, worker=worker):
        logger.info("job %s was not claimable: already taken, finished or cancelled", job_id)
        return "skipped"
    job = Job.objects.get(id=job_id)
    # Every later write of this attempt is conditional on still owning the job, so an attempt the
    # reaper gave up on cannot cancel, fail or finish the attempt that replaced it.
    owner: Owner = (worker, job.attempts)

    def report(*, step: int, total: int, message: str = "", metrics: dict[str, float] | None = None) -> None:
        job_report_progress(
            job_id=job_id, step=step, total=total, message=message, metrics=metrics, owner=owner
        )

    reporter: ProgressReporter = report
    heartbeat = _Heartbeat(job_id, owner)
    heartbeat.start()
    context = log_context.job_id.set(job_id)  # every log line of this job names it
    try:
        result = handler(job=job, report=reporter)
    except LostClaim:
        logger.warning("job %s: attempt %s lost its claim and stops without writing", job_id, owner[1])
        return "lost"
    except Cancelled:
        if job_mark_cancelled(job_id=job_id, owner=owner):
            job_log(job_id=job_id, line="cancelled at the request of staff")
        return "cancelled"
    except Exception as error:
        summary, details = describe_exception(error)
        logger.exception("job %s failed", job_id)
        job_fail(job_id=job_id, error=summary, details=details, owner=owner)
        return "failed"
    finally:
        log_context.job_id.reset(context)
        heartbeat.stopped.set()
        heartbeat.join(timeout=5)
    if not job_succeed(job_id=job_id, result=result or {}, owner=owner):
        logger.warning("job %s finished after losing its claim; its result is not recorded", job_id)
        return "lost"
    return "succeeded"
