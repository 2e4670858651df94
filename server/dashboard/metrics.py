"""What ``GET /metrics`` reports to Prometheus, read from the database and the broker at scrape time.

The web process keeps no counters (gunicorn's processes share nothing), so every value is computed
when Prometheus asks, in a fixed number of statements whatever the size of the tables: one
aggregate per family group, never a loop over rows. Counters are counts of rows that are never
deleted in normal operation (judgments, finished jobs), so they only grow and ``rate()`` applies.
Rendering is ``server.core.prometheus``'s.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime, timedelta

from django.db.models import Count, DurationField, ExpressionWrapper, F, Max, Q, Sum
from django.utils import timezone
from kombu import Connection
from kombu.exceptions import ChannelError

from server.core.prometheus import MetricFamily, Sample, histogram_samples
from server.jobs.models import FINISHED_STATUSES, Job, JobKind, JobStatus
from server.ratings.models import ComparisonKind
from server.studies.models import Study
from workers.queues import Queue

logger = logging.getLogger(__name__)

# Upper bounds of the job-duration histogram, seconds: a second (bookkeeping), 10 s, a minute,
# 5 minutes (pair selection, exports), 30 minutes, an hour, 6 hours (the GPU tasks' soft limit).
JOB_DURATION_BUCKETS: tuple[int, ...] = (1, 10, 60, 300, 1800, 3600, 21600)
# Running jobs listed one by one (stalest heartbeat first, so a stuck job is never left out).
HEARTBEAT_JOBS_LIMIT = 100
BROKER_TIMEOUT = 2.0  # seconds a scrape waits for the broker before reporting it down


def metrics_collect(*, broker: Connection, queues: Iterable[str] = tuple(Queue)) -> list[MetricFamily]:
    """Every family ``/metrics`` serves: five database statements and one broker connection."""
    now = timezone.now()
    depths = broker_queue_depths(broker=broker, queues=queues)
    return [
        *judgment_families(),
        pairs_available_family(),
        *queue_families(depths=depths, queues=queues),
        *job_families(),
        *heartbeat_families(now=now),
    ]


def judgment_families() -> list[MetricFamily]:
    """Judgments per study: every one submitted (a counter: undo and correction revoke a judgment
    but never delete it, so the count only grows) and the live ones (a gauge)."""
    rows = (
        Study.objects.order_by("slug")
        .annotate(
            submitted=Count("comparisons__assignments__judgments"),
            live=Count(
                "comparisons__assignments__judgments",
                filter=Q(comparisons__assignments__judgments__revoked_at__isnull=True),
            ),
        )
        .values_list("slug", "submitted", "live")
    )
    submitted, live = [], []
    for slug, submitted_count, live_count in rows:
        submitted.append(Sample({"study": slug}, submitted_count))
        live.append(Sample({"study": slug}, live_count))
    return [
        MetricFamily(
            "lovelace_judgments_total",
            "counter",
            "Judgments submitted in the study, revoked ones (undo, correction) included; rate() gives "
            "judgments per second.",
            submitted,
        ),
        MetricFamily(
            "lovelace_judgments_live", "gauge", "Judgments in the study that are not revoked.", live
        ),
    ]


def pairs_available_family() -> MetricFamily:
    """Regular pairs that pair selection can still hand out in each active study: fewer live
    assignments than the study's overlap (the condition of ``server.ratings.sql._CANDIDATE_SQL``,
    for any rater; one rater may have seen some of them already)."""
    rows = (
        Study.objects.filter(is_active=True)
        .order_by("slug")
        .annotate(
            available=Count(
                "comparisons",
                filter=Q(
                    comparisons__kind=ComparisonKind.REGULAR,
                    comparisons__active_assignments__lt=F("overlap"),
                ),
            )
        )
        .values_list("slug", "available")
    )
    return MetricFamily(
        "lovelace_pairs_available",
        "gauge",
        "Regular pairs of an active study with fewer live assignments than the study's overlap.",
        [Sample({"study": slug}, available) for slug, available in rows],
    )


def broker_queue_depths(*, broker: Connection, queues: Iterable[str]) -> dict[str, int] | None:
    """Messages waiting in each queue of ``broker``; None when the broker does not answer."""
    try:
        broker.ensure_connection(max_retries=1, interval_start=0, timeout=BROKER_TIMEOUT)
        channel = broker.default_channel
        depths = {}
        for queue in queues:
            try:
                depths[queue] = channel.queue_declare(queue, passive=True).message_count
            except ChannelError:
                # Redis keeps a queue as a list and deletes the list when it is empty.
                depths[queue] = 0
        return depths
    except Exception:
        logger.exception("metrics: the broker does not answer")
        return None


def queue_families(*, depths: dict[str, int] | None, queues: Iterable[str]) -> list[MetricFamily]:
    up = MetricFamily(
        "lovelace_broker_up",
        "gauge",
        "1 when the broker answered this scrape, else 0.",
        [Sample({}, 1 if depths is not None else 0)],
    )
    depth = MetricFamily(
        "lovelace_queue_depth",
        "gauge",
        "Task messages waiting in the broker's queue (absent when the broker does not answer).",
        [Sample({"queue": queue}, depths[queue]) for queue in queues] if depths is not None else [],
    )
    return [up, depth]


def job_families() -> list[MetricFamily]:
    """Jobs queued and running, finished jobs by outcome and how long they ran, by kind: one
    aggregate over the job table grouped by kind and status. A duration is the last attempt's
    (``started_at`` to ``finished_at``); a job cancelled before it started has none."""
    duration = ExpressionWrapper(F("finished_at") - F("started_at"), output_field=DurationField())
    timed = Q(status__in=FINISHED_STATUSES, started_at__isnull=False)
    buckets = {
        f"le_{bound}": Count("id", filter=timed & Q(duration__lte=timedelta(seconds=bound)))
        for bound in JOB_DURATION_BUCKETS
    }
    rows = (
        Job.objects.alias(duration=duration)
        .order_by()
        .values("kind", "status")
        .annotate(
            jobs=Count("id"),
            timed=Count("id", filter=timed),
            seconds=Sum("duration", filter=timed),
            **buckets,
        )
    )
    by_kind_status = {(row["kind"], row["status"]): row for row in rows}
    kinds = sorted(JobKind.values)

    def jobs(kind: str, status: str) -> int:
        row = by_kind_status.get((kind, status))
        return row["jobs"] if row else 0

    histogram: list[Sample] = []
    for kind in kinds:
        finished = [
            by_kind_status[kind, status] for status in FINISHED_STATUSES if (kind, status) in by_kind_status
        ]
        total = sum((row["seconds"] for row in finished if row["seconds"] is not None), timedelta())
        histogram += histogram_samples(
            labels={"kind": kind},
            bounds=JOB_DURATION_BUCKETS,
            cumulative_counts=[sum(row[f"le_{bound}"] for row in finished) for bound in JOB_DURATION_BUCKETS],
            count=sum(row["timed"] for row in finished),
            total=total.total_seconds(),
        )
    return [
        MetricFamily(
            "lovelace_jobs",
            "gauge",
            "Jobs waiting for a worker (queued) and being worked on (running).",
            [
                Sample({"status": status, "kind": kind}, jobs(kind, status))
                for status in (JobStatus.QUEUED, JobStatus.RUNNING)
                for kind in kinds
            ],
        ),
        MetricFamily(
            "lovelace_jobs_finished_total",
            "counter",
            "Jobs finished, by kind and outcome (succeeded, failed, cancelled).",
            [
                Sample({"kind": kind, "status": status}, jobs(kind, status))
                for kind in kinds
                for status in FINISHED_STATUSES
            ],
        ),
        MetricFamily(
            "lovelace_job_duration_seconds",
            "histogram",
            "Seconds from a finished job's last start to its end, by kind (jobs that never started "
            "are left out).",
            histogram,
        ),
    ]


def heartbeat_families(*, now: datetime) -> list[MetricFamily]:
    """How long since each running job's worker last reported (the stalest first, at most
    ``HEARTBEAT_JOBS_LIMIT``) and each worker's newest heartbeat among its running jobs."""
    running = Job.objects.filter(status=JobStatus.RUNNING)
    stalest = running.order_by(F("heartbeat_at").asc(nulls_first=True), "id").values_list(
        "id", "kind", "worker", "heartbeat_at", "started_at"
    )[:HEARTBEAT_JOBS_LIMIT]
    ages = [
        Sample(
            {"job_id": str(job_id), "kind": kind, "worker": worker},
            max((now - (heartbeat_at or started_at)).total_seconds(), 0.0),
        )
        for job_id, kind, worker, heartbeat_at, started_at in stalest
    ]
    newest = (
        running.exclude(heartbeat_at=None)
        .order_by("worker")
        .values("worker")
        .annotate(newest=Max("heartbeat_at"))
        .values_list("worker", "newest")
    )
    return [
        MetricFamily(
            "lovelace_job_heartbeat_age_seconds",
            "gauge",
            f"Seconds since a running job's last heartbeat (at most {HEARTBEAT_JOBS_LIMIT} jobs, "
            "the stalest first).",
            ages,
        ),
        MetricFamily(
            "lovelace_worker_last_heartbeat_timestamp_seconds",
            "gauge",
            "Unix time of the newest heartbeat of a worker's running jobs.",
            [Sample({"worker": worker}, heartbeat_at.timestamp()) for worker, heartbeat_at in newest],
        ),
    ]
