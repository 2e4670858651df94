"""Start and stop real ``celery worker`` processes for integration tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CELERY = str(Path(sys.executable).with_name("celery"))


def environment(**overrides: str) -> dict[str, str]:
    # The browser tests allow Django's sync ORM inside Playwright's event loop in this process
    # only; a subprocess must not inherit that (it would also fail the deploy checks).
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("PYTEST") and key != "DJANGO_ALLOW_ASYNC_UNSAFE"
    }
    env.update(overrides)
    env["PYTHONPATH"] = str(ROOT)
    return env


@contextmanager
def celery_worker(
    env: dict[str, str],
    *,
    queues: str = "gpu,cpu,default",
    beat: bool = False,
    log_path: Path,
    extra: list[str] | None = None,
) -> Iterator[subprocess.Popen[bytes]]:
    command = [
        CELERY,
        "-A",
        "workers.celery_app",
        "worker",
        "-Q",
        queues,
        "-c",
        "1",
        "--loglevel=INFO",
        "--without-mingle",
        "--without-gossip",
    ]
    if beat:
        command += ["-B", "--schedule", str(log_path.with_suffix(".beat"))]
    command += extra or []
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            yield process
        finally:
            stop(process)


def stop(process: subprocess.Popen[bytes], *, kill: bool = False) -> None:
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGKILL if kill else signal.SIGTERM)
        process.wait(timeout=20)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


def wait_for(
    predicate: Callable[[], object], *, timeout: float, what: str, log_path: Path | None = None
) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.3)
    log = log_path.read_text(errors="replace")[-4000:] if log_path and log_path.exists() else ""
    raise AssertionError(f"timed out after {timeout} s waiting for {what}\n--- worker log ---\n{log}")
