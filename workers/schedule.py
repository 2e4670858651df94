"""The whole periodic schedule. django-celery-beat copies it into the database at start-up, where
staff can change intervals or switch entries off in the admin (Periodic tasks)."""

from __future__ import annotations

from django.conf import settings

from workers.queues import Queue

BEAT_SCHEDULE: dict[str, dict[str, object]] = {
    # A worker that died mid-job stops sending heartbeats; its job is re-queued (it resumes from
    # its checkpoint) or failed. Queued jobs whose message may be lost are sent again. Every
    # minute keeps the worst-case detection near the timeouts.
    "reap-stale-jobs": {
        "task": "lovelace.reap_stale_jobs",
        "schedule": float(settings.LOVELACE_REAPER_INTERVAL),
        "options": {"queue": Queue.DEFAULT.value},
    },
    # Reservations that raters abandoned go back to the pool; each minute, 1,000 at most.
    "expire-reservations": {
        "task": "lovelace.expire_reservations",
        "schedule": 60.0,
        "options": {"queue": Queue.DEFAULT.value},
    },
    # Leaderboards of studies with new judgments; every 10 minutes, a bounded number of studies.
    "recompute-leaderboards": {
        "task": "lovelace.recompute_leaderboards",
        "schedule": 600.0,
        "options": {"queue": Queue.DEFAULT.value},
    },
    # The training loop: studies with enough new judgments start snapshot → reward model →
    # policy → generate. Every 5 minutes; training itself takes much longer.
    "start-training-loops": {
        "task": "lovelace.start_training_loops",
        "schedule": 300.0,
        "options": {"queue": Queue.DEFAULT.value},
    },
    # Checkpoints of training jobs nothing can resume any more (succeeded, deleted, or failed
    # longer ago than LOVELACE_CHECKPOINT_RETENTION_DAYS): hourly.
    "prune-checkpoints": {
        "task": "lovelace.prune_checkpoints",
        "schedule": 3600.0,
        "options": {"queue": Queue.DEFAULT.value},
    },
    # Agreement with the leave-one-out majority changes as other raters vote: refresh the quality
    # signals (and threshold pauses) of studies with recent judgments every 10 minutes.
    "refresh-rater-quality": {
        "task": "lovelace.refresh_rater_quality",
        "schedule": 600.0,
        "options": {"queue": Queue.DEFAULT.value},
    },
}
