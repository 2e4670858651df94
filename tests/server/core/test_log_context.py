"""Every log line says when, how bad, where from, and which request or job; JSON lines on demand."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from server.jobs.models import Job
from workers.runner import run_job

ROOT = Path(__file__).resolve().parents[3]

LOG_SOME_LINES = """
import logging, logging.config
from server.core import log_context
from server.core.log_context import logging_config
logging.config.dictConfig(logging_config(level="INFO", json_lines={json_lines}))
logging.getLogger("lovelace.test").info("outside")
token = log_context.request_id.set("req-42")
logging.getLogger("lovelace.test").warning("in a request")
log_context.request_id.reset(token)
log_context.job_id.set(7)
try:
    1 / 0
except ZeroDivisionError:
    logging.getLogger("lovelace.test").exception("in a job")
"""


def log_lines(*, json_lines: bool) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-c", LOG_SOME_LINES.format(json_lines=json_lines)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stderr.splitlines()


def test_text_lines_carry_time_level_logger_and_ids() -> None:
    lines = log_lines(json_lines=False)
    stamp = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}"
    assert re.fullmatch(rf"{stamp} INFO lovelace\.test \[request=- job=-\] outside", lines[0])
    assert re.fullmatch(rf"{stamp} WARNING lovelace\.test \[request=req-42 job=-\] in a request", lines[1])
    assert re.fullmatch(rf"{stamp} ERROR lovelace\.test \[request=- job=7\] in a job", lines[2])
    assert lines[-1] == "ZeroDivisionError: division by zero"


def test_json_lines_are_one_object_each_with_the_same_fields() -> None:
    entries = [json.loads(line) for line in log_lines(json_lines=True)]
    assert len(entries) == 3
    assert [(e["level"], e["logger"], e["message"], e["request_id"], e["job_id"]) for e in entries] == [
        ("INFO", "lovelace.test", "outside", "-", "-"),
        ("WARNING", "lovelace.test", "in a request", "req-42", "-"),
        ("ERROR", "lovelace.test", "in a job", "-", 7),
    ]
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", e["time"]) for e in entries)
    assert entries[2]["exception"].endswith("ZeroDivisionError: division by zero")


@pytest.mark.django_db
def test_a_job_runs_with_its_id_in_the_log_context() -> None:
    from server.core import log_context

    job = Job.objects.create(kind="noop", queue="default")
    seen: list[int | None] = []

    def handler(**_: object) -> dict[str, object]:
        seen.append(log_context.job_id.get())
        return {}

    assert run_job(job.id, handler) == "succeeded"
    assert seen == [job.id]
    assert log_context.job_id.get() is None
