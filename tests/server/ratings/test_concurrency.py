"""Many raters at once on PostgreSQL: the overlap holds and the counters stay true.

Each thread has its own database connection (Django opens one per thread), so the row locks
(``FOR UPDATE SKIP LOCKED``) and the conditional counter updates are exercised for real.
"""

from __future__ import annotations

import random
import threading
from collections import Counter
from collections.abc import Callable
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.db.models import Count, Q
from django.utils import timezone

from server.ratings.models import Assignment, AssignmentStatus, Comparison, Judgment, Rater
from server.ratings.services import (
    NoWork,
    assignment_expire_stale,
    assignment_next_for_rater,
    judgment_submit,
)
from tests import factories
from tests.server.ratings.conftest import make_comparisons, make_study

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

RATERS = 50
COMPARISONS = 40
OVERLAP = 3


@pytest.fixture(autouse=True)
def _postgres_only() -> None:
    if connection.vendor != "postgresql":
        pytest.skip("row locks are what this test exercises; SQLite serialises writers instead")


def run_threads(targets: list[Callable[[], None]]) -> list[BaseException]:
    errors: list[BaseException] = []
    start = threading.Barrier(len(targets))

    def wrapped(target: Callable[[], None]) -> None:
        try:
            start.wait()
            target()
        except BaseException as error:  # collected and re-raised by the test
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=wrapped, args=(target,)) for target in targets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    return errors


def rate_until_done(rater_id: int, seed: int) -> None:
    rng = random.Random(seed)
    rater = Rater.objects.select_related("study").get(id=rater_id)
    empty_in_a_row = 0
    while empty_in_a_row < 3:
        result = assignment_next_for_rater(rater=rater, rng=rng)
        if result.assignment is None:
            assert result.no_work == NoWork.EMPTY
            empty_in_a_row += 1
            continue
        empty_in_a_row = 0
        if rng.random() < 0.1:
            # An abandoned reservation: its time runs out and the slot must come back.
            past = timezone.now() - timedelta(seconds=1)
            Assignment.objects.filter(id=result.assignment.id).update(
                reserved_at=past - timedelta(minutes=10), expires_at=past
            )
            continue
        judgment_submit(
            rater=rater,
            token=result.assignment.token,
            choice=rng.choice(["left", "right", "tie", "both_bad"]),
            idempotency_key=f"{rater_id}-{result.assignment.id}",
        )


def live_assignments_per_comparison() -> dict[int, int]:
    live = Q(assignments__status__in=[AssignmentStatus.RESERVED, AssignmentStatus.COMPLETED])
    return dict(Comparison.objects.annotate(live=Count("assignments", filter=live)).values_list("id", "live"))


def test_fifty_concurrent_raters_never_push_a_comparison_past_its_overlap() -> None:
    study = make_study(overlap=OVERLAP, reservation_seconds=600)
    make_comparisons(study, COMPARISONS)
    # Account raters (an empty pool leaves them active, so the sweep below can use them again),
    # created without password hashing, which would take most of this test's time.
    users = [get_user_model().objects.create(username=f"concurrent-{number}") for number in range(RATERS)]
    rater_ids = [Rater.objects.create(study=study, user=user).id for user in users]
    stop = threading.Event()

    def expire_in_a_loop() -> None:
        try:
            while not stop.is_set():
                assignment_expire_stale(limit=50)
        finally:
            connection.close()

    def rater_target(rater_id: int, seed: int) -> Callable[[], None]:
        return lambda: rate_until_done(rater_id, seed)

    targets = [rater_target(rater_id, seed) for seed, rater_id in enumerate(rater_ids)]
    expirer = threading.Thread(target=expire_in_a_loop)
    expirer.start()
    try:
        errors = run_threads(targets)
    finally:
        stop.set()
        expirer.join()
    assert errors == []
    assignment_expire_stale()
    for seed, rater_id in enumerate(rater_ids):  # sweep up slots a rater skipped while locked
        rate_until_done(rater_id, 1000 + seed)
    assignment_expire_stale()

    live = live_assignments_per_comparison()
    assert max(live.values()) <= OVERLAP
    counters = {c.id: (c.active_assignments, c.completed_assignments) for c in Comparison.objects.all()}
    completed = Counter(
        Assignment.objects.filter(status=AssignmentStatus.COMPLETED).values_list("comparison_id", flat=True)
    )
    assert counters == {
        comparison_id: (live[comparison_id], completed[comparison_id]) for comparison_id in live
    }
    assert set(completed.values()) == {OVERLAP}  # every pair got exactly its overlap of judgments
    assert Judgment.objects.count() == COMPARISONS * OVERLAP
    assert Assignment.objects.values("comparison", "rater").distinct().count() == Assignment.objects.count()


def test_a_vote_sent_ten_times_at_once_is_stored_once() -> None:
    study = make_study()
    make_comparisons(study, 1)
    rater = factories.rater(study=study)
    assignment = assignment_next_for_rater(rater=rater).assignment
    answers: list[int] = []

    def submit() -> None:
        rater_here = Rater.objects.select_related("study").get(id=rater.id)
        submission = judgment_submit(
            rater=rater_here, token=assignment.token, choice="left", idempotency_key="same-key-1"
        )
        answers.append(submission.judgment.id)

    assert run_threads([submit] * 10) == []
    assert Judgment.objects.count() == 1
    assert answers == [Judgment.objects.get().id] * 10
    assert Comparison.objects.get().completed_assignments == 1
