"""Two schedulers starting the loop at the same moment start one chain (PostgreSQL row lock)."""

from __future__ import annotations

import threading
import time

import pytest
from django.db import connection, transaction

from server.jobs.models import Job, JobKind
from server.training.services import training_loops_start_due
from tests.server.training.test_training_chain import judged_study

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def test_two_beats_at_once_start_one_chain() -> None:
    if connection.vendor != "postgresql":
        pytest.skip("row locks need PostgreSQL (SQLite serialises writers by itself)")
    study, *_ = judged_study(prompts=3)  # 6 judgments, threshold 5
    first_started = threading.Event()
    results: dict[str, list[int]] = {}

    def first_beat() -> None:
        try:
            with transaction.atomic():
                results["first"] = training_loops_start_due()
                first_started.set()
                time.sleep(1.0)  # still inside its transaction when the second beat runs
        finally:
            first_started.set()
            connection.close()

    def second_beat() -> None:
        try:
            first_started.wait(timeout=30)
            results["second"] = training_loops_start_due()
        finally:
            connection.close()

    threads = [threading.Thread(target=first_beat), threading.Thread(target=second_beat)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert len(results["first"]) == 1
    assert results["second"] == []
    assert Job.objects.filter(study=study, kind=JobKind.SNAPSHOT).count() == 1
