"""A generate job at scale: 10,000 prompts through a real Celery worker, killed mid-way, resumed.

Run: ``.venv/bin/python -m bench.generation_scale`` (needs this machine's PostgreSQL and Redis; it
creates and drops its own database, ``lovelace_bench_scale`` unless ``BENCH_SCALE_DATABASE`` says
otherwise, and uses Redis database 11). Options: ``--prompts`` (10,000), ``--max-new-tokens`` (8),
``--batch-size`` (64), ``--kill-at`` (0.3: the share of samples stored when the worker is killed).

What it shows, on the tiny demo model built for it (a few seconds):

1. the job streams: samples are in the database a chunk at a time while the job runs, and the
   dashboard's job row (``server.dashboard.selectors.study_jobs``, what the page polls) shows the
   job's throughput and ETA as it goes;
2. the worker is killed with SIGKILL (no clean-up, no acknowledgement) once ``--kill-at`` of the
   samples are stored: what was stored stays;
3. a new worker starts; the reaper re-queues the silent job after its heartbeat timeout, and the
   re-run generates only the missing samples: at the end there are exactly ``--prompts`` samples,
   one per (prompt, seed), none lost and none twice.

Printed: the timeline, samples/s before the kill and after the resume, the ETA the dashboard showed,
and the final accounting. Timing on 2 CPU cores: about 2-4 minutes for 10,000 prompts.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATABASE = os.environ.get("BENCH_SCALE_DATABASE", "lovelace_bench_scale")
SCRATCH = Path(tempfile.mkdtemp(prefix="lovelace-bench-scale-"))
ENVIRONMENT = {
    "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{DATABASE}",
    "CELERY_BROKER_URL": "redis://127.0.0.1:6379/11",
    "LOVELACE_VAR_DIR": str(SCRATCH / "var"),
    "LOVELACE_MODEL_ROOTS": str(SCRATCH / "models"),
    "DJANGO_SETTINGS_MODULE": "server.config.settings",
    "DJANGO_DEBUG": "true",  # development mode on PostgreSQL (off by default there)
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    # A killed job is noticed within seconds instead of five minutes.
    "LOVELACE_JOB_HEARTBEAT_TIMEOUT": "6",
    "LOVELACE_REAPER_INTERVAL": "2",
    "LOVELACE_JOB_RESEND_AFTER": "5",
}
os.environ.update(ENVIRONMENT)


def _database(action: str) -> None:
    import psycopg

    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as connection:
        connection.execute(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")
        if action == "create":
            connection.execute(f"CREATE DATABASE {DATABASE}")


def _worker(log: Path) -> subprocess.Popen[bytes]:
    command = [str(Path(sys.executable).with_name("celery")), "-A", "workers.celery_app", "worker"]
    command += ["-Q", "gpu,cpu,default", "-c", "1", "--loglevel=INFO", "--without-mingle", "--without-gossip"]
    command += ["-B", "--schedule", str(log.with_suffix(".beat"))]
    with open(log, "wb") as output:
        return subprocess.Popen(
            command, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
            stdout=output, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip


def _kill(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=20)


def _first(counts: list[int], shown: int = 8) -> str:
    more = ", …" if len(counts) > shown else ""
    return ", ".join(f"{count:,}" for count in counts[:shown]) + more


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prompts", type=int, default=10_000)
    parser.add_argument("--max-new-tokens", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--kill-at", type=float, default=0.3)
    arguments = parser.parse_args()
    if not 0 < arguments.kill_at < 1:
        parser.error("--kill-at is a share strictly between 0 and 1")
    _database("create")
    try:
        run(arguments)
    finally:
        _database("drop")


def run(arguments: argparse.Namespace) -> None:
    import django

    django.setup()
    from django.core.management import call_command

    from server.dashboard.selectors import study_jobs
    from server.generators.models import Sample, VersionKind
    from server.generators.services import generate_start, generator_version_register
    from server.jobs.models import JobStatus
    from server.studies.models import Prompt, Study, prompt_text_hash
    from workers.ml.base_model import DEMO_CORPUS_PATH, TINY_BUILD_CONFIG, build_base_model

    call_command("migrate", verbosity=0)
    began = time.perf_counter()
    model_dir = SCRATCH / "models" / "tiny"
    build_base_model(
        corpus=DEMO_CORPUS_PATH.read_text(encoding="utf-8")[:20_000],
        output_dir=model_dir,
        checkpoint_dir=SCRATCH / "build",
        config=TINY_BUILD_CONFIG,
    )
    print(f"tiny model built in {time.perf_counter() - began:.1f} s")
    study = Study.objects.create(name="Scale", slug="scale", question="Which is better?")
    texts = [
        f"Prompt number {number}: the {('sea', 'clock', 'bread', 'road')[number % 4]}"
        for number in range(arguments.prompts)
    ]
    Prompt.objects.bulk_create(
        [Prompt(study=study, text=text, text_hash=prompt_text_hash(text)) for text in texts], batch_size=2000
    )
    version = generator_version_register(
        generator_name="tiny", label="scale", kind=VersionKind.BASE, model_path=str(model_dir), study=study,
        decoding={"max_new_tokens": arguments.max_new_tokens, "batch_size": arguments.batch_size},
    )  # fmt: skip
    job = generate_start(study=study, version_ids=[version.id], samples_per_prompt=1)
    total = arguments.prompts

    def stored() -> int:
        return Sample.objects.filter(version=version).count()

    def dashboard_row() -> dict[str, object]:
        return next(row for row in study_jobs(study=study) if row["id"] == job.id)

    logs = SCRATCH / "logs"
    logs.mkdir()
    print(
        f"{total:,} prompts, 1 sample each, max {arguments.max_new_tokens} new tokens, "
        f"batch {arguments.batch_size}"
    )
    worker = _worker(logs / "worker-1.log")
    started = time.perf_counter()
    seen_counts: list[int] = []
    shown: dict[str, object] = {}
    try:
        while (count := stored()) < arguments.kill_at * total:
            if not seen_counts or count != seen_counts[-1]:
                seen_counts.append(count)
            row = dashboard_row()
            if row.get("steps_per_second") and row.get("eta_seconds") is not None:
                shown = row
            if worker.poll() is not None:
                raise SystemExit(f"the worker died: see {logs / 'worker-1.log'}")
            if time.perf_counter() - started > 1800:
                raise SystemExit("no progress for 30 minutes")
            time.sleep(0.5)
        first_rate = count / (time.perf_counter() - started)
        _kill(worker)
        killed_at = time.perf_counter() - started
        kept = stored()
        print(f"  {killed_at:6.1f} s  worker killed (SIGKILL) with {kept:,} of {total:,} samples stored "
              f"({first_rate:.0f} samples/s since start, worker start-up included)")  # fmt: skip
        print(f"           the database saw {len(seen_counts)} distinct sample counts while the job ran: "
              f"it streams in chunks ({_first(seen_counts)})")  # fmt: skip
        if shown:
            print(f"           the dashboard's job row showed {shown['steps_per_second']:.1f} samples/s, "
                  f"ETA {shown['eta_seconds']:.0f} s, at step {shown['step']:,} "
                  f"of {shown['total']:,}")  # fmt: skip
        else:
            print("           the dashboard's job row showed no throughput or ETA before the kill")
        worker = _worker(logs / "worker-2.log")
        resumed = time.perf_counter()
        while True:
            job.refresh_from_db()
            if job.status in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED):
                break
            if time.perf_counter() - resumed > 1800:
                raise SystemExit("the job did not finish within 30 minutes of the restart")
            time.sleep(0.5)
        finished = time.perf_counter() - resumed
    finally:
        _kill(worker)
    count = stored()
    pairs = Sample.objects.filter(version=version).values("prompt_id", "seed").distinct().count()
    print(f"  {killed_at + finished:6.1f} s  job {job.status} after {job.attempts} attempts; "
          f"{(count - kept) / finished:.0f} samples/s after the restart "
          "(the reaper's wait included)")  # fmt: skip
    lost = total - pairs
    duplicated = count - pairs
    print(f"accounting: {count:,} samples for {total:,} prompts, {pairs:,} distinct (prompt, seed); "
          f"{lost} lost, {duplicated} twice; the {kept:,} stored before the kill were kept")  # fmt: skip
    verdict = job.status == JobStatus.SUCCEEDED and lost == 0 and duplicated == 0 and kept > 0
    print(f"verdict: {'streams, resumes and accounts for every sample' if verdict else 'FAILED'}")


if __name__ == "__main__":
    main()
