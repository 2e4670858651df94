"""Writing jobs: enqueue, claim, progress, finish, cancel, reap.

Every transition is a conditional UPDATE on the status it leaves, so two workers (or a worker and
the reaper) racing on one job cannot both win; the database trigger refuses any transition the
state machine does not allow, whoever attempts it.
"""

from __future__ import annotations

import logging
import time
import traceback
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from server.core.exceptions import ApplicationError, Conflict, NotFound
from server.core.paths import job_params_check_paths
from server.jobs.models import FINISHED_STATUSES, Job, JobKind, JobStatus
from workers.ml.progress import Cancelled
from workers.queues import QUEUE_OF_JOB_KIND, Queue, task_name_for_job_kind

logger = logging.getLogger(__name__)

LOG_TAIL_CHARACTERS = 20_000
METRICS_TIMELINE_LIMIT = 5_000  # points kept per job; older points are thinned out
MESSAGE_CHARACTERS = 500


class JobCancelled(Cancelled):
    """Raised from a progress report when staff asked the job to stop.

    A subclass of the ML library's ``Cancelled`` so trainers stop (and checkpoint) the same way
    whether they run under a job or in a script.
    """


class LostClaim(Exception):
    """The job is no longer this worker's: the reaper re-queued it (the heartbeat looked dead)
    and another attempt owns it now. The old attempt must stop without writing anything."""


Owner = tuple[str, int]  # (worker, attempt) of a claim; later writes of that attempt filter on it


def _owned(owner: Owner | None) -> dict[str, Any]:
    return {} if owner is None else {"worker": owner[0][:255], "attempts": owner[1]}


RESEND_BACKOFF_LIMIT = 3600  # seconds: the longest wait between two sends of a queued job


def _resend_delay(sends: int) -> timedelta:
    """The wait before a queued job that has been sent ``sends`` times is sent again."""
    base = settings.LOVELACE_JOB_RESEND_AFTER
    return timedelta(seconds=min(base * 2 ** max(sends - 1, 0), max(base, RESEND_BACKOFF_LIMIT)))


def _dispatch(job_id: int, kind: str, queue: str) -> None:
    """Send the job's task. A failure leaves the job queued with a log line: the reaper sends it
    again (a broker restart must not fail the work queued meanwhile)."""
    from workers.celery_app import app  # the Celery app is light: no ML imports

    error: Exception | None = None
    try:
        app.send_task(task_name_for_job_kind(kind), args=[job_id], queue=queue)
    except Exception as caught:  # the broker is down
        logger.exception("could not send job %s", job_id)
        error = caught
    now = timezone.now()
    sends = Job.objects.filter(id=job_id).values_list("sends", flat=True).first()
    if sends is None:
        return
    Job.objects.filter(id=job_id, status=JobStatus.QUEUED).update(
        sends=F("sends") + 1, resend_at=now + _resend_delay(sends + 1)
    )
    if error is not None:
        job_log(
            job_id=job_id, line=f"could not send the task to the broker ({error}); the reaper will try again"
        )


def job_enqueue(
    *,
    kind: str,
    params: dict[str, Any] | None = None,
    study_id: int | None = None,
    created_by_id: int | None = None,
    parent_id: int | None = None,
    queue: str | None = None,
) -> Job:
    """Create a queued job and send its task once the surrounding transaction commits.

    ``queue`` overrides the kind's queue (``QUEUE_OF_JOB_KIND``) for a job that needs no GPU
    although its kind usually does (generation through an endpoint, an endpoint judge).

    A chain step (``parent_id`` given) starts each kind of next step once: when the parent already
    started a job of ``kind`` (it ran before, was killed and runs again), that job is returned.
    """
    if kind not in JobKind.values:
        raise ApplicationError(f"Unknown job kind {kind!r}.", extra={"field": "kind"})
    if queue is not None and queue not in {item.value for item in Queue}:
        raise ApplicationError(f"Unknown queue {queue!r}.", extra={"field": "queue"})
    job_params_check_paths(params or {})
    if parent_id is not None:
        started = Job.objects.filter(parent_id=parent_id, kind=kind).first()
        if started is not None:
            return started
    job = Job(
        kind=kind,
        params=params or {},
        study_id=study_id,
        created_by_id=created_by_id,
        parent_id=parent_id,
        queue=queue or QUEUE_OF_JOB_KIND[kind],
        resend_at=timezone.now() + _resend_delay(0),  # in case this process dies before sending
    )
    job.full_clean(validate_constraints=False)  # the database checks them, race-free
    try:
        with transaction.atomic():
            job.save()
    except IntegrityError:
        # Two attempts of the parent raced (the reaper re-queued one that was still alive).
        started = Job.objects.filter(parent_id=parent_id, kind=kind).first() if parent_id else None
        if started is None:
            raise
        return started
    transaction.on_commit(lambda: _dispatch(job.id, job.kind, job.queue))
    return job


def job_claim(*, job_id: int, worker: str) -> bool:
    """Move a queued job to running for ``worker``. False when someone else has it (or it ended)."""
    now = timezone.now()
    claimed = Job.objects.filter(id=job_id, status=JobStatus.QUEUED, cancel_requested=False).update(
        status=JobStatus.RUNNING,
        worker=worker[:255],
        started_at=now,
        heartbeat_at=now,
        attempts=F("attempts") + 1,
    )
    return claimed == 1


def job_heartbeat(*, job_id: int, owner: Owner | None = None) -> bool:
    """Record that the worker is alive. False when the job is no longer running (for ``owner``)."""
    return (
        Job.objects.filter(id=job_id, status=JobStatus.RUNNING, **_owned(owner)).update(
            heartbeat_at=timezone.now()
        )
        == 1
    )


def job_report_progress(
    *,
    job_id: int,
    step: int,
    total: int,
    message: str = "",
    metrics: dict[str, float] | None = None,
    owner: Owner | None = None,
) -> None:
    """Record progress (and a metrics point). Raises JobCancelled when a cancel was requested (or
    the job ended), LostClaim when ``owner`` no longer owns the job."""
    if step < 0 or total < 0:
        raise ApplicationError("Progress step and total must be non-negative.")
    total = max(total, step)
    with transaction.atomic():
        job = (
            Job.objects.select_for_update()
            .only("id", "status", "metrics", "cancel_requested", "worker", "attempts")
            .get(id=job_id)
        )
        if owner is not None and (
            job.status == JobStatus.QUEUED
            or (job.status == JobStatus.RUNNING and (job.worker, job.attempts) != (owner[0][:255], owner[1]))
        ):
            raise LostClaim(f"job {job_id} was re-queued; attempt {owner[1]} of {owner[0]} stops")
        if job.status != JobStatus.RUNNING:
            raise JobCancelled(f"job {job_id} is {job.status}, not running")
        update: dict[str, Any] = {
            "progress_step": step,
            "progress_total": total,
            "heartbeat_at": timezone.now(),
        }
        if message:
            update["progress_message"] = message[:MESSAGE_CHARACTERS]
        if metrics:
            point = {
                "step": step,
                "time": timezone.now().isoformat(),
                **{k: float(v) for k, v in metrics.items()},
            }
            timeline = [*job.metrics, point]
            if len(timeline) > METRICS_TIMELINE_LIMIT:
                timeline = timeline[::2]  # keep the curve's shape, halve its resolution
            update["metrics"] = timeline
        Job.objects.filter(id=job_id).update(**update)
    if job.cancel_requested:
        raise JobCancelled(f"job {job_id} was cancelled")


def job_log(*, job_id: int, line: str) -> None:
    """Append a line to the job's log tail, keeping the last LOG_TAIL_CHARACTERS."""
    with transaction.atomic():
        job = Job.objects.select_for_update().only("id", "log_tail").get(id=job_id)
        stamp = timezone.now().strftime("%H:%M:%S")
        tail = f"{job.log_tail}{stamp} {line.rstrip()}\n"
        Job.objects.filter(id=job_id).update(log_tail=tail[-LOG_TAIL_CHARACTERS:])


def job_succeed(*, job_id: int, result: dict[str, Any] | None = None, owner: Owner | None = None) -> bool:
    now = timezone.now()
    return (
        Job.objects.filter(id=job_id, status=JobStatus.RUNNING, **_owned(owner)).update(
            status=JobStatus.SUCCEEDED,
            result=result or {},
            finished_at=now,
            heartbeat_at=now,
            progress_step=F("progress_total"),
        )
        == 1
    )


def job_fail(*, job_id: int, error: str, details: str = "", owner: Owner | None = None) -> bool:
    """Fail a queued or running job with an error summary (and details for the log tail); with
    ``owner``, only while that attempt still runs it."""
    summary = (error.strip() or "failed without a message")[:2000]
    statuses = [JobStatus.RUNNING] if owner is not None else [JobStatus.QUEUED, JobStatus.RUNNING]
    updated = (
        Job.objects.filter(id=job_id, status__in=statuses, **_owned(owner)).update(
            status=JobStatus.FAILED, error=summary, finished_at=timezone.now()
        )
        == 1
    )
    if updated and details:
        job_log(job_id=job_id, line=details)
    return updated


def job_mark_cancelled(*, job_id: int, owner: Owner | None = None) -> bool:
    statuses = [JobStatus.RUNNING] if owner is not None else [JobStatus.QUEUED, JobStatus.RUNNING]
    return (
        Job.objects.filter(id=job_id, status__in=statuses, **_owned(owner)).update(
            status=JobStatus.CANCELLED, finished_at=timezone.now()
        )
        == 1
    )


def job_cancel(*, job_id: int) -> Job:
    """Ask a job to stop: a queued job is cancelled at once, a running one at its next report."""
    try:
        job = Job.objects.get(id=job_id)
    except Job.DoesNotExist:
        raise NotFound(f"There is no job {job_id}.") from None
    if job.is_finished:
        raise Conflict(f"Job {job_id} has already {job.status}.")
    Job.objects.filter(id=job_id).update(cancel_requested=True)
    Job.objects.filter(id=job_id, status=JobStatus.QUEUED).update(
        status=JobStatus.CANCELLED, finished_at=timezone.now()
    )
    job.refresh_from_db()
    return job


def job_reap_stale(
    *, timeout_seconds: int | None = None, max_attempts: int | None = None, limit: int = 100
) -> dict[str, int]:
    """Fail or re-queue running jobs whose worker stopped sending heartbeats.

    A job that still has attempts left goes back to the queue and its task is sent again; the
    task resumes from the job's checkpoint. Bounded to ``limit`` jobs per call.
    """
    timeout_seconds = timeout_seconds or settings.LOVELACE_JOB_HEARTBEAT_TIMEOUT
    max_attempts = max_attempts or settings.LOVELACE_JOB_MAX_ATTEMPTS
    cutoff = timezone.now() - timedelta(seconds=timeout_seconds)
    stale = list(
        Job.objects.filter(status=JobStatus.RUNNING, heartbeat_at__lt=cutoff).values_list(
            "id", "attempts", "kind", "queue"
        )[:limit]
    )
    requeued = failed = cancelled = 0
    for job_id, attempts, kind, queue in stale:
        # Staff asked it to stop and its worker is gone: it is cancelled, not run again.
        if Job.objects.filter(id=job_id, status=JobStatus.RUNNING, cancel_requested=True).update(
            status=JobStatus.CANCELLED, finished_at=timezone.now()
        ):
            cancelled += 1
            continue
        if attempts < max_attempts:
            with transaction.atomic():
                moved = Job.objects.filter(
                    id=job_id, status=JobStatus.RUNNING, heartbeat_at__lt=cutoff, cancel_requested=False
                ).update(status=JobStatus.QUEUED, started_at=None, worker="")
                if moved:
                    job_log(
                        job_id=job_id,
                        line=f"no heartbeat for {timeout_seconds} s: re-queued (attempt {attempts})",
                    )
                    transaction.on_commit(lambda j=job_id, k=kind, q=queue: _dispatch(j, k, q))
                    requeued += 1
        elif job_fail(
            job_id=job_id,
            error=(
                f"The worker stopped sending heartbeats ({attempts} attempts, {timeout_seconds} s timeout)."
            ),
        ):
            failed += 1
    return {"requeued": requeued, "failed": failed, "cancelled": cancelled}


def job_resend_queued(*, limit: int = 100) -> int:
    """Send the task again for queued jobs whose message may be lost; return how many were sent.

    A message can vanish with a broker restart, a worker killed after taking it, or a process that
    died between committing the job and sending it. The job's claim is conditional, so a resent
    job that was only waiting its turn runs once all the same. Bounded to ``limit`` jobs per call,
    oldest due first.
    """
    due = list(
        Job.objects.filter(status=JobStatus.QUEUED, cancel_requested=False, resend_at__lte=timezone.now())
        .order_by("resend_at")
        .values_list("id", "kind", "queue", "sends")[:limit]
    )
    for job_id, kind, queue, sends in due:
        job_log(job_id=job_id, line=f"still queued: task sent again (send {sends + 1})")
        _dispatch(job_id, kind, queue)
    return len(due)


def job_run_noop(*, job: Job, report) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """The ``noop`` job: counts to ``steps`` with ``sleep`` seconds per step; fails on request.

    It exists to exercise the job system end to end (health checks, tests, the demo's smoke run).
    """
    steps = int(job.params.get("steps", 3))
    pause = float(job.params.get("sleep", 0.0))
    for step in range(1, steps + 1):
        time.sleep(pause)
        report(step=step, total=steps, message=f"step {step} of {steps}", metrics={"value": float(step)})
        if job.params.get("fail_at") == step:
            raise RuntimeError(f"asked to fail at step {step}")
    return {"steps": steps}


def describe_exception(error: BaseException) -> tuple[str, str]:
    """An error summary for the job row and the traceback for its log tail."""
    summary = f"{type(error).__name__}: {error}"
    details = "".join(traceback.format_exception(error))[-LOG_TAIL_CHARACTERS // 2 :]
    return summary, details


__all__ = [
    "FINISHED_STATUSES",
    "JobCancelled",
    "LostClaim",
    "describe_exception",
    "job_cancel",
    "job_claim",
    "job_enqueue",
    "job_fail",
    "job_heartbeat",
    "job_log",
    "job_mark_cancelled",
    "job_reap_stale",
    "job_report_progress",
    "job_resend_queued",
    "job_run_noop",
    "job_succeed",
]
