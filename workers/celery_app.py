"""The Celery application. Imported by the web process to send tasks: it must stay light."""

from __future__ import annotations

import os

from celery import Celery
from kombu import Queue as KombuQueue

from workers.queues import Queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "server.config.settings")
# Idle OpenMP threads of torch spin by default and steal the core a sibling thread needs: on
# 2 cores a training step took 1.6 s spinning and 0.3 s passive. Set before torch is imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

app = Celery("lovelace", include=["workers.tasks"])
app.config_from_object("django.conf:settings", namespace="CELERY")


def _configure() -> None:
    from django.conf import settings

    from workers.schedule import BEAT_SCHEDULE

    broker_url: str = settings.CELERY_BROKER_URL
    embedded = broker_url.startswith("filesystem")
    options: dict[str, object] = {}
    if embedded:
        # Our atomic variant of kombu's filesystem transport (workers/broker.py): one folder of
        # message files shared by every process on this machine. The worker polls it (0.5 s),
        # which is fine for jobs that take seconds.
        from workers import broker

        broker_url = f"{broker.SCHEME}://"
        options = broker.transport_options(settings.CELERY_BROKER_FOLDER)
    app.conf.update(
        broker_url=broker_url,
        broker_transport_options=options,
        broker_connection_retry_on_startup=True,
        task_queues=[KombuQueue(queue.value, routing_key=queue.value) for queue in Queue],
        task_default_queue=Queue.DEFAULT.value,
        # Job rows carry results, progress and errors; Celery's result backend is not needed.
        task_ignore_result=True,
        task_store_errors_even_if_ignored=False,
        task_serializer="json",
        accept_content=["json"],
        # Long tasks: one message at a time per process, acknowledged only when done, so a worker
        # that dies hands its job back (the job row's claim keeps it from running twice).
        worker_prefetch_multiplier=1,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_hijack_root_logger=False,
        # The filesystem transport has no broadcast: remote control (and so mingle/gossip) is off.
        worker_enable_remote_control=not embedded,
        beat_schedule=BEAT_SCHEDULE,
        beat_scheduler="django_celery_beat.schedulers:DatabaseScheduler",
        timezone="UTC",
    )


_configure()
