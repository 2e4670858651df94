from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.utils import timezone

from server.core.exceptions import ApplicationError, Conflict
from server.jobs.models import Job, JobStatus
from server.jobs.services import (
    JobCancelled,
    LostClaim,
    _resend_delay,
    job_cancel,
    job_claim,
    job_enqueue,
    job_fail,
    job_log,
    job_mark_cancelled,
    job_reap_stale,
    job_report_progress,
    job_resend_queued,
    job_succeed,
)
from workers.runner import run_job


@pytest.mark.django_db
def test_enqueue_sends_the_task_only_after_commit(django_capture_on_commit_callbacks) -> None:
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        job = job_enqueue(kind="noop", params={"steps": 1})
    assert job.status == JobStatus.QUEUED
    assert job.queue == "default"
    assert len(callbacks) == 1


@pytest.mark.django_db
def test_enqueue_of_unknown_kind_is_refused_and_writes_nothing() -> None:
    with pytest.raises(ApplicationError, match="Unknown job kind 'bake'"):
        job_enqueue(kind="bake")
    assert Job.objects.count() == 0


@pytest.mark.django_db
def test_second_claim_of_a_job_does_nothing() -> None:
    job = Job.objects.create(kind="noop", queue="default")
    assert job_claim(job_id=job.id, worker="first") is True
    assert job_claim(job_id=job.id, worker="second") is False
    job.refresh_from_db()
    assert (job.status, job.worker, job.attempts) == (JobStatus.RUNNING, "first", 1)


@pytest.mark.django_db(transaction=True)
def test_concurrent_claims_on_one_job_have_exactly_one_winner() -> None:
    job = Job.objects.create(kind="noop", queue="default")
    contenders = 8
    barrier = threading.Barrier(contenders)
    wins: list[bool] = []
    lock = threading.Lock()

    def contend(number: int) -> None:
        try:
            barrier.wait()
            won = job_claim(job_id=job.id, worker=f"worker-{number}")
            with lock:
                wins.append(won)
        finally:
            connection.close()

    threads = [threading.Thread(target=contend, args=(number,)) for number in range(contenders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(wins) == [False] * (contenders - 1) + [True]
    job.refresh_from_db()
    assert job.attempts == 1


@pytest.mark.django_db
def test_progress_records_step_message_and_metrics_timeline() -> None:
    job = Job.objects.create(kind="noop", queue="default")
    job_claim(job_id=job.id, worker="w")
    job_report_progress(job_id=job.id, step=1, total=4, message="warming up", metrics={"loss": 2.5})
    job_report_progress(job_id=job.id, step=2, total=4, metrics={"loss": 1.5})
    job.refresh_from_db()
    assert (job.progress_step, job.progress_total, job.progress_message) == (2, 4, "warming up")
    assert [(point["step"], point["loss"]) for point in job.metrics] == [(1, 2.5), (2, 1.5)]


@pytest.mark.django_db
def test_log_tail_keeps_only_the_end() -> None:
    job = Job.objects.create(kind="noop", queue="default")
    for number in range(400):
        job_log(job_id=job.id, line=f"line {number:05d} " + "x" * 80)
    job.refresh_from_db()
    assert len(job.log_tail) <= 20_000
    assert job.log_tail.rstrip().endswith("line 00399 " + "x" * 80)
    assert "line 00000" not in job.log_tail


@pytest.mark.django_db
def test_cancel_of_queued_job_cancels_it_at_once() -> None:
    job = Job.objects.create(kind="noop", queue="default")
    cancelled = job_cancel(job_id=job.id)
    assert cancelled.status == JobStatus.CANCELLED
    assert job_claim(job_id=job.id, worker="w") is False


@pytest.mark.django_db
def test_cancel_of_running_job_stops_it_at_its_next_progress_report() -> None:
    job = Job.objects.create(kind="noop", queue="default")
    job_claim(job_id=job.id, worker="w")
    assert job_cancel(job_id=job.id).status == JobStatus.RUNNING
    with pytest.raises(JobCancelled):
        job_report_progress(job_id=job.id, step=1, total=2)


@pytest.mark.django_db
def test_cancel_of_finished_job_is_a_conflict() -> None:
    job = Job.objects.create(kind="noop", queue="default")
    job_claim(job_id=job.id, worker="w")
    job_succeed(job_id=job.id)
    with pytest.raises(Conflict, match="already succeeded"):
        job_cancel(job_id=job.id)


@pytest.mark.django_db
def test_runner_records_failure_summary_and_traceback() -> None:
    job = Job.objects.create(kind="noop", queue="default", params={"steps": 3, "fail_at": 2})
    from server.jobs.services import job_run_noop

    assert run_job(job.id, job_run_noop) == "failed"
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED
    assert job.error == "RuntimeError: asked to fail at step 2"
    assert "Traceback" in job.log_tail
    assert job.progress_step == 2


@pytest.mark.django_db
def test_runner_turns_a_cancel_request_into_cancelled() -> None:
    job = Job.objects.create(kind="noop", queue="default", params={"steps": 3})

    def handler(*, job, report):  # type: ignore[no-untyped-def]
        report(step=1, total=3)
        Job.objects.filter(id=job.id).update(cancel_requested=True)
        report(step=2, total=3)
        raise AssertionError("the second report must stop the job")

    assert run_job(job.id, handler) == "cancelled"
    job.refresh_from_db()
    assert (job.status, job.progress_step) == (JobStatus.CANCELLED, 2)


@pytest.mark.django_db
def test_runner_skips_a_job_that_is_not_queued() -> None:
    job = Job.objects.create(kind="noop", queue="default")
    job_claim(job_id=job.id, worker="other")
    calls: list[int] = []
    assert run_job(job.id, lambda **_: calls.append(1)) == "skipped"
    assert calls == []


@pytest.mark.django_db
def test_reaper_requeues_a_silent_job_then_fails_it_after_the_last_attempt(
    django_capture_on_commit_callbacks,
) -> None:
    job = Job.objects.create(kind="noop", queue="default")
    job_claim(job_id=job.id, worker="dead")
    long_ago = timezone.now() - timedelta(hours=1)
    Job.objects.filter(id=job.id).update(heartbeat_at=long_ago)

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        assert job_reap_stale(timeout_seconds=60, max_attempts=2) == {
            "requeued": 1,
            "failed": 0,
            "cancelled": 0,
        }
    job.refresh_from_db()
    assert job.status == JobStatus.QUEUED
    assert len(callbacks) == 1  # the task is sent again

    job_claim(job_id=job.id, worker="dead again")
    Job.objects.filter(id=job.id).update(heartbeat_at=long_ago)
    assert job_reap_stale(timeout_seconds=60, max_attempts=2) == {"requeued": 0, "failed": 1, "cancelled": 0}
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED
    assert "stopped sending heartbeats" in job.error


@pytest.mark.django_db
def test_reaper_leaves_jobs_with_a_recent_heartbeat_alone() -> None:
    job = Job.objects.create(kind="noop", queue="default")
    job_claim(job_id=job.id, worker="alive")
    assert job_reap_stale(timeout_seconds=60) == {"requeued": 0, "failed": 0, "cancelled": 0}
    job.refresh_from_db()
    assert job.status == JobStatus.RUNNING


@pytest.mark.django_db
def test_an_attempt_the_reaper_gave_up_on_cannot_touch_the_attempt_that_replaced_it(
    django_capture_on_commit_callbacks,
) -> None:  # type: ignore[no-untyped-def]
    job = Job.objects.create(kind="noop", queue="default")
    job_claim(job_id=job.id, worker="old")
    old = ("old", 1)
    Job.objects.filter(id=job.id).update(heartbeat_at=timezone.now() - timedelta(hours=1))
    with django_capture_on_commit_callbacks(execute=False):
        job_reap_stale(timeout_seconds=60)

    with pytest.raises(LostClaim):  # re-queued: the old attempt stops, and is not "cancelled"
        job_report_progress(job_id=job.id, step=1, total=2, owner=old)
    job_claim(job_id=job.id, worker="new")
    with pytest.raises(LostClaim):
        job_report_progress(job_id=job.id, step=1, total=2, owner=old)
    assert job_succeed(job_id=job.id, result={"by": "old"}, owner=old) is False
    assert job_fail(job_id=job.id, error="old failure", owner=old) is False
    assert job_mark_cancelled(job_id=job.id, owner=old) is False

    job_report_progress(job_id=job.id, step=2, total=2, owner=("new", 2))
    assert job_succeed(job_id=job.id, result={"by": "new"}, owner=("new", 2)) is True
    job.refresh_from_db()
    assert (job.status, job.result, job.worker, job.attempts) == (
        JobStatus.SUCCEEDED,
        {"by": "new"},
        "new",
        2,
    )


@pytest.mark.django_db
def test_reaper_cancels_a_silent_job_that_staff_asked_to_stop() -> None:
    job = Job.objects.create(kind="noop", queue="default")
    job_claim(job_id=job.id, worker="dead")
    job_cancel(job_id=job.id)
    Job.objects.filter(id=job.id).update(heartbeat_at=timezone.now() - timedelta(hours=1))
    assert job_reap_stale(timeout_seconds=60) == {"requeued": 0, "failed": 0, "cancelled": 1}
    job.refresh_from_db()
    assert job.status == JobStatus.CANCELLED


def queued_messages(queue: str) -> int:
    """How many messages the test broker holds in ``queue`` (the real broker, either topology)."""
    from workers.celery_app import app

    with app.connection_for_read() as broker:
        return broker.default_channel.queue_declare(queue, passive=True).message_count


@pytest.mark.django_db
def test_a_job_row_is_due_for_a_resend_even_if_its_first_send_never_happens(
    django_capture_on_commit_callbacks, settings
) -> None:
    settings.LOVELACE_JOB_RESEND_AFTER = 120
    before = timezone.now()
    with django_capture_on_commit_callbacks(execute=False):  # the process dies before sending
        job = job_enqueue(kind="noop")
    job.refresh_from_db()
    assert job.sends == 0
    assert before + timedelta(seconds=120) <= job.resend_at <= timezone.now() + timedelta(seconds=120)


@pytest.mark.django_db
def test_reaper_sends_a_still_queued_job_again_with_backoff(
    django_capture_on_commit_callbacks, settings
) -> None:
    settings.LOVELACE_JOB_RESEND_AFTER = 60
    with django_capture_on_commit_callbacks(execute=True):
        job = job_enqueue(kind="noop")
    job.refresh_from_db()
    assert job.sends == 1
    assert job_resend_queued() == 0  # not due yet

    Job.objects.filter(id=job.id).update(resend_at=timezone.now() - timedelta(seconds=1))  # message lost
    waiting = queued_messages("default")
    assert job_resend_queued() == 1
    assert queued_messages("default") == waiting + 1
    job.refresh_from_db()
    assert job.status == JobStatus.QUEUED
    assert job.sends == 2
    assert timezone.now() + timedelta(seconds=110) < job.resend_at <= timezone.now() + timedelta(seconds=120)
    assert "still queued: task sent again (send 2)" in job.log_tail
    assert job_resend_queued() == 0


def test_resend_waits_double_with_each_send_up_to_an_hour(settings) -> None:
    settings.LOVELACE_JOB_RESEND_AFTER = 120
    assert [_resend_delay(sends).total_seconds() for sends in range(7)] == [
        120,
        120,
        240,
        480,
        960,
        1920,
        3600,
    ]
    settings.LOVELACE_JOB_RESEND_AFTER = 7200  # a longer setting is never shortened by the cap
    assert _resend_delay(5).total_seconds() == 7200


@pytest.mark.django_db
def test_only_queued_jobs_that_nobody_cancelled_are_sent_again() -> None:
    past = timezone.now() - timedelta(minutes=5)
    running = Job.objects.create(kind="noop", queue="default")
    job_claim(job_id=running.id, worker="busy")
    cancelled = Job.objects.create(kind="noop", queue="default")
    job_cancel(job_id=cancelled.id)
    finished = Job.objects.create(kind="noop", queue="default")
    job_claim(job_id=finished.id, worker="done")
    job_succeed(job_id=finished.id)
    Job.objects.update(resend_at=past)

    assert job_resend_queued() == 0
    assert list(Job.objects.order_by("id").values_list("sends", flat=True)) == [0, 0, 0]


@pytest.mark.django_db
def test_a_job_whose_task_cannot_be_sent_stays_queued_for_the_reaper(
    django_capture_on_commit_callbacks, monkeypatch, settings
) -> None:
    from workers.celery_app import app

    settings.LOVELACE_JOB_RESEND_AFTER = 60

    def broker_down(*args: object, **kwargs: object) -> None:  # the broker is another process
        raise ConnectionRefusedError("[Errno 111] Connection refused")

    monkeypatch.setattr(app, "send_task", broker_down)
    with django_capture_on_commit_callbacks(execute=True):
        job = job_enqueue(kind="noop")
    job.refresh_from_db()
    assert (job.status, job.error, job.sends) == (JobStatus.QUEUED, "", 1)
    assert "could not send the task to the broker ([Errno 111] Connection refused)" in job.log_tail
    assert job.resend_at > timezone.now()


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("params", "message"),
    [
        ("[" * 10_000 + "]" * 10_000, "--params nests arrays and objects deeper than 64 levels."),
        ('{"steps": NaN}', "--params is not valid JSON (NaN is not a number)."),
        ('{"note": "\\u0000"}', "--params note contains a NUL character (\\u0000), which cannot be stored."),
    ],
)
def test_the_job_command_refuses_params_it_cannot_store(params: str, message: str) -> None:
    with pytest.raises(CommandError) as raised:
        call_command("job", "start", "noop", "--params", params)

    assert str(raised.value) == message
    assert Job.objects.count() == 0


@pytest.mark.django_db(transaction=True)
def test_job_status_follow_shows_progress_until_the_job_ends(monkeypatch) -> None:
    import io
    import json

    from server.jobs.management.commands import job as job_command

    monkeypatch.setattr(job_command, "FOLLOW_POLL_SECONDS", 0.05)
    job = Job.objects.create(kind="noop", queue="default")
    job_claim(job_id=job.id, worker="w")

    def work() -> None:
        try:
            for step in (1, 2, 3, 4):
                time.sleep(0.3)
                job_report_progress(job_id=job.id, step=step, total=4, message=f"step {step}")
            job_succeed(job_id=job.id, result={"done": True})
        finally:
            connection.close()

    worker = threading.Thread(target=work)
    worker.start()
    out = io.StringIO()
    call_command("job", "status", str(job.id), "--follow", stdout=out)
    worker.join(timeout=10)

    lines = out.getvalue().splitlines()
    bars = [line for line in lines if line.startswith(f"job {job.id} noop [")]
    assert bars[0].startswith(f"job {job.id} noop [{'-' * 30}]   0.0% · running")
    assert any(" · running · 2/4 · " in line and "steps/s · ETA 0:0" in line for line in bars)
    assert bars[-1].startswith(f"job {job.id} noop [{'#' * 30}] 100.0% · succeeded · 4/4")
    final = json.loads(lines[-1])
    assert (final["status"], final["result"], final["eta_seconds"]) == ("succeeded", {"done": True}, None)
    assert final["steps_per_second"] > 0


@pytest.mark.django_db
def test_a_running_job_knows_its_pace_and_time_left() -> None:
    job = Job.objects.create(kind="noop", queue="default")
    job_claim(job_id=job.id, worker="w")
    Job.objects.filter(id=job.id).update(
        started_at=timezone.now() - timedelta(seconds=10), progress_step=5, progress_total=20
    )
    job.refresh_from_db()

    assert job.steps_per_second == pytest.approx(0.5, rel=0.05)
    assert job.eta_seconds == pytest.approx(30, rel=0.05)
    assert Job(kind="noop", queue="default").eta_seconds is None
