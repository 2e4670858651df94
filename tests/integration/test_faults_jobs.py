"""Faults injected into the job system, then reconciled: a broker that loses every message, and
workers killed with SIGKILL in the middle of each step of the training loop.

Real processes throughout: PostgreSQL, Redis servers, Celery workers with beat. Each test records
its faults and outcomes in the table printed at the end of the run.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from server.generators.models import GeneratorVersion, Sample, VersionKind
from server.jobs.models import Job, JobKind, JobStatus
from server.ratings.models import Comparison
from server.training.models import PreferenceSnapshot, RewardModel
from server.training.services import snapshot_start
from tests.integration.private_redis import private_redis
from tests.integration.test_worker_postgres_redis import production_env  # noqa: F401
from tests.integration.worker_process import ROOT, celery_worker, stop, wait_for
from tests.server.training.test_training_chain import judged_study

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

ENQUEUE = """
import json, os, sys
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "server.config.settings")
import django
django.setup()
from server.jobs.services import job_enqueue
params = json.loads(sys.argv[2])
print(json.dumps([job_enqueue(kind="noop", params=params).id for _ in range(int(sys.argv[1]))]))
"""


def enqueue_noops(env: dict[str, str], count: int, params: dict[str, object]) -> list[int]:
    """Start jobs from another process, which sends their tasks to ``env``'s broker."""
    done = subprocess.run(
        [sys.executable, "-c", ENQUEUE, str(count), json.dumps(params)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return [int(job_id) for job_id in json.loads(done.stdout.strip().splitlines()[-1])]


def statuses(job_ids: list[int]) -> Counter[str]:
    return Counter(Job.objects.filter(id__in=job_ids).values_list("status", flat=True))


def test_redis_restarted_with_jobs_queued_and_running_every_job_completes_once(
    production_env: dict[str, str],  # noqa: F811
    tmp_path: Path,
    fault_table,  # type: ignore[no-untyped-def]
) -> None:
    with private_redis(tmp_path) as redis:
        env = {
            **production_env,
            "CELERY_BROKER_URL": redis.url,
            "LOVELACE_VAR_DIR": str(tmp_path / "var"),
            "LOVELACE_JOB_RESEND_AFTER": "2",
            "LOVELACE_REAPER_INTERVAL": "1",
        }
        # 1. Jobs queued while no worker runs; the broker restarts empty.
        queued = enqueue_noops(env, 6, {"steps": 2})
        redis.kill()
        redis.start()
        log = tmp_path / "worker.log"
        with celery_worker(env, beat=True, log_path=log):
            wait_for(
                lambda: statuses(queued) == Counter({JobStatus.SUCCEEDED: 6}),
                timeout=120,
                what="the queued jobs to be sent again and run",
                log_path=log,
            )
            fault_table.record(
                "Redis killed and restarted empty, 6 jobs queued, no worker",
                "every job succeeds, each run once",
                f"{dict(statuses(queued))}; attempts "
                f"{sorted(set(Job.objects.filter(id__in=queued).values_list('attempts', flat=True)))}",
            )

            # 2. The broker dies while the worker runs one job and holds the others' messages.
            running = enqueue_noops(env, 6, {"steps": 4, "sleep": 0.3})
            wait_for(
                lambda: statuses(running)[JobStatus.RUNNING] == 1,
                timeout=60,
                what="a job to start",
                log_path=log,
            )
            redis.kill()
            time.sleep(3)
            redis.start()
            wait_for(
                lambda: statuses(running) == Counter({JobStatus.SUCCEEDED: 6}),
                timeout=180,
                what="every job to finish after the broker came back",
                log_path=log,
            )
    jobs = list(Job.objects.filter(id__in=queued + running))
    assert {job.status for job in jobs} == {JobStatus.SUCCEEDED}
    assert {job.attempts for job in jobs} == {1}  # no job ran twice
    assert all(len(job.metrics) == job.params["steps"] for job in jobs)  # no step reported twice
    assert all(job.sends >= 2 for job in Job.objects.filter(id__in=queued))
    fault_table.record(
        "Redis killed for 3 s while a worker ran 1 of 6 jobs",
        "every job succeeds, each run once, no step twice",
        f"{dict(statuses(running))}; attempts {sorted({job.attempts for job in jobs})}",
    )


def _first_of(study_id: int, kind: str) -> Job | None:
    return Job.objects.filter(study_id=study_id, kind=kind).order_by("id").first()


def _started(study_id: int, kind: str, *, timeout: float) -> Job:
    """The study's job of ``kind`` once a worker has claimed it, polled every 20 ms so that a kill
    can land inside a step that takes a fraction of a second."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = _first_of(study_id, kind)
        if job is not None and job.status != JobStatus.QUEUED:
            return job
        time.sleep(0.02)
    raise AssertionError(f"the {kind} step did not start within {timeout} s")


def test_a_worker_killed_in_each_kind_of_job_resumes_it_or_fails_it_cleanly(
    production_env: dict[str, str],  # noqa: F811
    tmp_path: Path,
    tiny_model_allowed: Path,
    fault_table,  # type: ignore[no-untyped-def]
) -> None:
    from server.evaluations.services import evaluation_start, leaderboard_recompute_start
    from server.training.exports import export_start

    tiny_model_dir = tiny_model_allowed  # the service here and the workers may load it
    study, *_ = judged_study(tiny_model_dir, prompts=8)
    holdout = study.prompts.order_by("id").first()
    holdout.split = "holdout"
    holdout.save(update_fields=["split"])
    env = {
        **production_env,
        "LOVELACE_VAR_DIR": str(tmp_path / "var"),
        "LOVELACE_MODEL_ROOTS": str(tiny_model_dir.parent),
        "LOVELACE_JOB_HEARTBEAT_TIMEOUT": "3",
        "LOVELACE_REAPER_INTERVAL": "1",
        "LOVELACE_JOB_RESEND_AFTER": "5",
    }
    workers: list[subprocess.Popen[bytes]] = []
    logs: list[Path] = []

    def start_worker() -> subprocess.Popen[bytes]:
        logs.append(tmp_path / f"worker-{len(logs) + 1}.log")
        command = [str(Path(sys.executable).with_name("celery")), "-A", "workers.celery_app", "worker"]
        command += ["-Q", "gpu,cpu,default", "-c", "1", "--loglevel=INFO", "--without-mingle"]
        command += ["--without-gossip", "-B", "--schedule", str(logs[-1].with_suffix(".beat"))]
        with open(logs[-1], "wb") as log:
            workers.append(
                subprocess.Popen(
                    command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
                )
            )
        return workers[-1]

    outcomes: dict[str, str] = {}

    def kill_while_running(
        kind: str, worker: subprocess.Popen[bytes], *, after_step: int = 0
    ) -> subprocess.Popen[bytes]:
        """Kill the worker once the job of ``kind`` runs and has reported ``after_step``."""
        job = _started(study.id, kind, timeout=300)
        deadline = time.monotonic() + 300
        while job.status == JobStatus.RUNNING and job.progress_step < after_step:
            assert time.monotonic() < deadline, f"the {kind} step never reported step {after_step}"
            time.sleep(0.02)
            job.refresh_from_db()
        if job.status != JobStatus.RUNNING:
            outcomes[kind] = f"{job.status} before the kill could land: not killed"
            return worker
        stop(worker, kill=True)  # SIGKILL to the worker and its pool: no clean-up, no ack
        job.refresh_from_db()
        if job.status == JobStatus.RUNNING:
            outcomes[kind] = f"killed at step {job.progress_step}/{job.progress_total}"
        else:  # it finished between the last look and the signal
            outcomes[kind] = f"{job.status} just before the kill landed: not killed"
        return start_worker()

    chain = [
        JobKind.SNAPSHOT,
        JobKind.TRAIN_REWARD_MODEL,
        JobKind.TRAIN_POLICY,
        JobKind.GENERATE,
        JobKind.SELECT_PAIRS,
    ]
    try:
        worker = start_worker()
        snapshot_start(study=study, then=["reward_model", "policy"])
        # Training steps are killed after a progress report (mid-training, past a checkpoint);
        # the others as soon as a worker claims them (generation reports once per chunk, and
        # this study's 24 samples are one chunk).
        later = {JobKind.TRAIN_REWARD_MODEL: 2, JobKind.TRAIN_POLICY: 1}
        for kind in chain:
            worker = kill_while_running(kind, worker, after_step=later.get(kind, 0))

        def chain_finished() -> bool:
            jobs = [_first_of(study.id, kind) for kind in chain]
            return all(job is not None and job.is_finished for job in jobs)

        wait_for(chain_finished, timeout=600, what="the loop to finish", log_path=logs[-1])
        child = GeneratorVersion.objects.get(kind=VersionKind.TRAINED)
        generated_in_the_loop = Sample.objects.filter(version=child).count()
        leaderboard_recompute_start(study=study, rounds=2000)
        worker = kill_while_running(JobKind.RECOMPUTE_LEADERBOARD, worker)
        evaluation_start(study=study, version_id=child.id, split="holdout", samples_per_prompt=8)
        worker = kill_while_running(JobKind.EVALUATE, worker, after_step=2)
        export_start(study=study, kind="preferences")
        worker = kill_while_running(JobKind.EXPORT, worker)
        everything = [*chain, JobKind.RECOMPUTE_LEADERBOARD, JobKind.EVALUATE, JobKind.EXPORT]
        wait_for(
            lambda: all(job.is_finished for job in Job.objects.filter(study=study)),
            timeout=600,
            what="every job to finish",
            log_path=logs[-1],
        )
    finally:
        for process in workers:
            stop(process)

    jobs = {job.kind: job for job in Job.objects.filter(study=study)}
    assert Counter(Job.objects.filter(study=study).values_list("kind", flat=True)) == Counter(everything)
    for kind in everything:
        job = jobs[kind]
        killed = outcomes[kind].startswith("killed")
        fault_table.record(
            f"worker SIGKILLed during a {kind} job",
            "re-queued by the reaper, then resumed or failed cleanly; no duplicates",
            f"{outcomes[kind]}; then {job.status} after {job.attempts} attempt(s)",
        )
        assert job.status == JobStatus.SUCCEEDED, (kind, job.error, job.log_tail[-2000:])
        assert job.attempts == (2 if killed else 1), (kind, outcomes[kind])
    # The steps that take seconds were really killed mid-run (fast ones may finish first).
    for kind in (JobKind.TRAIN_REWARD_MODEL, JobKind.TRAIN_POLICY, JobKind.GENERATE, JobKind.EVALUATE):
        assert outcomes[kind].startswith("killed"), (kind, outcomes[kind])
    # No duplicate results anywhere in the chain.
    assert PreferenceSnapshot.objects.filter(study=study).count() == 1
    assert RewardModel.objects.filter(study=study).count() == 1
    assert GeneratorVersion.objects.filter(kind=VersionKind.TRAINED).count() == 1
    assert generated_in_the_loop == study.prompts.count() * 3  # CHILD_SAMPLES_PER_PROMPT
    child_samples = Sample.objects.filter(version=child)
    assert child_samples.values("prompt", "seed").distinct().count() == child_samples.count()
    pairs = Comparison.objects.filter(study=study).values_list("sample_a", "sample_b")
    assert len(set(pairs)) == len(pairs)
    assert study.evaluations.count() == 1
    assert study.leaderboards.count() == 1
