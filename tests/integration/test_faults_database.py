"""Fault: PostgreSQL crashes and comes back while raters vote.

The load bench (gunicorn, simulated raters over HTTP) runs against a private PostgreSQL server;
once votes are being stored, the server is stopped with ``-m immediate`` (every server process
killed, as in a crash), left down for a moment and started again (crash recovery). The raters
resend what failed, same idempotency keys. Afterwards the bench reconciles: every acknowledged
vote stored once, nothing stored that was not acknowledged. The machine's shared PostgreSQL is
never touched.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest

from tests.integration.fault_table import FaultTable
from tests.integration.private_postgres import PrivatePostgres
from tests.integration.worker_process import environment, stop, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.postgres]

ROOT = Path(__file__).resolve().parents[2]
DATABASE = "lovelace_fault_bench"
VOTES_BEFORE_RESTART = 40  # stored before the crash: the raters are in full flow
DOWN_SECONDS = 1.5  # no server at all: new connections are refused
FAULT = f"PostgreSQL crash (stop -m immediate, {DOWN_SECONDS} s down, start) under rating load"
CHECK = "stored = acknowledged, once each; failures resent; voting resumes"


def stored_judgments(server: PrivatePostgres) -> int:
    """Judgments in the bench's database; 0 while it, or its tables, do not exist yet."""
    try:
        with psycopg.connect(server.url(DATABASE), connect_timeout=5) as connection:
            # Asked first: a query on a missing table would fill the server log with errors.
            exists = connection.execute("SELECT to_regclass('ratings_judgment')").fetchone()
            if exists is None or exists[0] is None:
                return 0
            row = connection.execute("SELECT count(*) FROM ratings_judgment").fetchone()
    except psycopg.OperationalError:  # no database yet
        return 0
    return int(row[0]) if row else 0


def figure(pattern: str, output: str) -> int | None:
    match = re.search(pattern, output)
    return int(match.group(1)) if match else None


def test_postgres_restart_under_rating_load_loses_and_duplicates_nothing(
    private_pg: PrivatePostgres, fault_table: FaultTable, tmp_path: Path
) -> None:
    # 20 s of load: the crash must fall inside it even when the test processes of a parallel run
    # share two cores with it (with 8 s, the bench once ended before 40 votes were stored).
    arguments = ["--raters", "4", "--seconds", "20", "--warmup", "0", "--no-baseline"]
    arguments += ["--comparisons", "1000", "--golds", "10", "--workers", "2"]
    log_path = tmp_path / "bench.log"
    try:
        with open(log_path, "wb") as log:
            bench = subprocess.Popen(
                [sys.executable, "-m", "bench.rating_load", *arguments],
                cwd=ROOT,
                env=environment(BENCH_DATABASE_URL=private_pg.url(DATABASE)),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            try:
                wait_for(
                    lambda: stored_judgments(private_pg) >= VOTES_BEFORE_RESTART or bench.poll() is not None,
                    timeout=120,
                    what=f"{VOTES_BEFORE_RESTART} stored votes",
                    log_path=log_path,
                )
                if bench.poll() is not None:
                    tail = log_path.read_text(errors="replace")[-3000:]
                    raise AssertionError(f"the bench ended before the restart\n--- bench log ---\n{tail}")
                began = time.monotonic()
                private_pg.restart(down_for=DOWN_SECONDS)
                outage = time.monotonic() - began
                # After crash recovery: every vote committed before the crash, and nothing after.
                stored_at_restart = stored_judgments(private_pg)
                bench.wait(timeout=120)
            finally:
                stop(bench)
        output = log_path.read_text(errors="replace")
        stored = stored_judgments(private_pg)
        acknowledged = figure(r"judgments stored, (\d+) acknowledged", output)
        retried = figure(r"retried requests\s+(\d+)", output) or 0
        problems = []
        if bench.returncode != 0:
            problems.append(f"the bench exited {bench.returncode}")
        if "OK: nothing lost, nothing duplicated" not in output:
            problems.append("reconciliation did not pass")
        if "client errors             0" not in output:
            problems.append("clients saw errors")
        if acknowledged != stored:
            problems.append(f"{stored} stored but {acknowledged} acknowledged")
        if retried == 0:
            problems.append("no request was retried: the restart missed the load")
        if stored <= stored_at_restart:
            problems.append("no vote stored after the restart")
    except Exception as error:
        fault_table.record(FAULT, CHECK, f"FAILED: {type(error).__name__}: {str(error).splitlines()[0]}")
        raise
    fault_table.record(
        FAULT,
        CHECK,
        (
            f"passed: {stored} stored = {acknowledged} acknowledged, {retried} requests resent, "
            f"{stored - stored_at_restart} votes after the restart ({outage:.1f} s outage)"
        )
        if not problems
        else "FAILED: " + "; ".join(problems),
    )
    assert not problems, f"{problems}\n--- bench output ---\n{output[-4000:]}\n--- server log ---\n" + (
        private_pg.log_tail()
    )
