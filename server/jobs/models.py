from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import F, Q
from django.utils import timezone

from server.core.triggers import Trigger


class JobStatus(models.TextChoices):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


FINISHED_STATUSES = (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)

# The state machine. A running job goes back to queued only when the reaper re-queues it after
# its worker stopped sending heartbeats; a queued job can fail when its task cannot be sent.
ALLOWED_TRANSITIONS: dict[str, tuple[str, ...]] = {
    JobStatus.QUEUED: (JobStatus.RUNNING, JobStatus.CANCELLED, JobStatus.FAILED),
    JobStatus.RUNNING: (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.QUEUED),
    JobStatus.SUCCEEDED: (),
    JobStatus.FAILED: (),
    JobStatus.CANCELLED: (),
}


def _transition_sql() -> str:
    allowed = " OR ".join(
        f"(OLD.status = '{source}' AND NEW.status IN ({', '.join(repr(str(t)) for t in targets)}))"
        for source, targets in ALLOWED_TRANSITIONS.items()
        if targets
    )
    return f"(OLD.status <> NEW.status AND NOT ({allowed}))"


JOB_TRANSITION_TRIGGER = Trigger(
    name="jobs_job_status_transition",
    table="jobs_job",
    events="UPDATE",
    condition_sql=_transition_sql(),
    message="job status transition not allowed by the state machine",
)


class JobKind(models.TextChoices):
    BUILD_BASE_MODEL = "build_base_model"
    GENERATE = "generate"
    SELECT_PAIRS = "select_pairs"
    TRAIN_REWARD_MODEL = "train_reward_model"
    TRAIN_POLICY = "train_policy"
    EVALUATE = "evaluate"
    RECOMPUTE_LEADERBOARD = "recompute_leaderboard"
    EXPORT = "export"
    SNAPSHOT = "snapshot"
    MACHINE_JUDGE = "machine_judge"
    NOOP = "noop"  # does nothing but report progress: health checks and tests of the job system


class Job(models.Model):
    """Every piece of asynchronous work, with its state machine, progress and outcome."""

    kind = models.CharField(max_length=32, choices=JobKind.choices)
    status = models.CharField(max_length=16, choices=JobStatus.choices, default=JobStatus.QUEUED)
    study = models.ForeignKey(
        "studies.Study", null=True, blank=True, on_delete=models.CASCADE, related_name="jobs"
    )
    params = models.JSONField(default=dict, blank=True)
    result = models.JSONField(default=dict, blank=True)
    queue = models.CharField(max_length=16)
    # Jobs of one chain (the scheduled loop) point at the job that started the chain.
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="children"
    )

    progress_step = models.PositiveIntegerField(default=0)
    progress_total = models.PositiveIntegerField(default=0)
    progress_message = models.CharField(max_length=500, blank=True)
    metrics = models.JSONField(default=list, blank=True)  # [{"step": int, "time": iso, name: value}]
    log_tail = models.TextField(blank=True)

    attempts = models.PositiveSmallIntegerField(default=0)
    worker = models.CharField(max_length=255, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    cancel_requested = models.BooleanField(default=False)
    error = models.TextField(blank=True)
    # The task message is only a wake-up call; the row is the record. While the job is queued,
    # the reaper sends the message again at ``resend_at`` (set when the row is written, so a crash
    # between commit and send is covered too), backing off with each of ``sends``.
    sends = models.PositiveSmallIntegerField(default=0)
    resend_at = models.DateTimeField(null=True, blank=True)

    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["status", "heartbeat_at"]),
            models.Index(fields=["status", "resend_at"]),
            models.Index(fields=["study", "kind", "-created_at"]),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(status__in=JobStatus.values), name="job_status_valid"),
            models.CheckConstraint(condition=Q(kind__in=JobKind.values), name="job_kind_valid"),
            models.CheckConstraint(
                condition=Q(progress_total=0) | Q(progress_step__lte=F("progress_total")),
                name="job_progress_within_total",
            ),
            models.CheckConstraint(
                condition=Q(status__in=FINISHED_STATUSES, finished_at__isnull=False)
                | (~Q(status__in=FINISHED_STATUSES) & Q(finished_at__isnull=True)),
                name="job_finished_at_iff_finished",
            ),
            models.CheckConstraint(
                condition=~Q(status=JobStatus.RUNNING) | Q(started_at__isnull=False),
                name="job_running_has_started_at",
            ),
            models.CheckConstraint(
                condition=~Q(status=JobStatus.FAILED) | ~Q(error=""), name="job_failure_has_error"
            ),
            # A chain step starts at most one next step of each kind: a step re-run after a kill
            # or a reaper re-queue finds the step it started before instead of starting another.
            models.UniqueConstraint(
                fields=["parent", "kind"],
                condition=Q(parent__isnull=False),
                name="job_one_next_step_per_kind",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} #{self.pk} ({self.status})"

    @property
    def is_finished(self) -> bool:
        return self.status in FINISHED_STATUSES

    @property
    def progress_fraction(self) -> float | None:
        if not self.progress_total:
            return None
        return self.progress_step / self.progress_total

    @property
    def steps_per_second(self) -> float | None:
        """Progress steps per second of this attempt (until now, or until it finished)."""
        if self.started_at is None or self.progress_step <= 0:
            return None
        seconds = ((self.finished_at or timezone.now()) - self.started_at).total_seconds()
        return self.progress_step / seconds if seconds > 0 else None

    @property
    def eta_seconds(self) -> float | None:
        """Seconds left at the attempt's rate so far; None unless it runs with a known total."""
        rate = self.steps_per_second
        if self.status != JobStatus.RUNNING or not self.progress_total or not rate:
            return None
        return max(self.progress_total - self.progress_step, 0) / rate
