from __future__ import annotations

from server.jobs.models import JobKind
from workers.celery_app import app
from workers.queues import QUEUE_OF_JOB_KIND, Queue, task_name_for_job_kind
from workers.schedule import BEAT_SCHEDULE


def test_every_scheduled_entry_names_a_registered_task_on_a_known_queue() -> None:
    import workers.tasks  # noqa: F401 - registers the tasks

    for name, entry in BEAT_SCHEDULE.items():
        assert entry["task"] in app.tasks, name
        assert entry["options"]["queue"] in {queue.value for queue in Queue}, name  # type: ignore[index]


def test_every_job_kind_has_a_task_on_its_queue() -> None:
    import workers.tasks  # noqa: F401

    for kind in JobKind.values:
        task = app.tasks[task_name_for_job_kind(kind)]
        assert task.queue == QUEUE_OF_JOB_KIND[kind].value, kind
        if QUEUE_OF_JOB_KIND[kind] == Queue.GPU:
            assert task.acks_late and task.reject_on_worker_lost, kind
            assert task.soft_time_limit < task.time_limit, kind
