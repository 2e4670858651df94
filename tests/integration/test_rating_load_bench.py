"""The load bench, run small: gunicorn on PostgreSQL, concurrent raters over HTTP, and the
reconciliation that every acknowledged vote is stored once. Correctness only; its speed figures
are the bench's business, never asserted here."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from django.db import connection

pytestmark = [pytest.mark.integration, pytest.mark.django_db]

ROOT = Path(__file__).resolve().parents[2]


def test_a_short_load_run_reconciles_with_nothing_lost_or_duplicated() -> None:
    if connection.vendor != "postgresql":
        pytest.skip("the bench serves the app on PostgreSQL (make test sets DATABASE_URL)")
    settings = connection.settings_dict
    bench_url = (
        f"postgres://{settings['USER']}@{settings['HOST']}:{settings['PORT'] or 5432}/"
        f"{settings['NAME']}_load_smoke"
    )
    arguments = ["--raters", "4", "--seconds", "2", "--warmup", "0.5", "--comparisons", "80"]
    arguments += ["--golds", "4", "--workers", "2"]

    try:
        finished = subprocess.run(
            [sys.executable, "-m", "bench.rating_load", *arguments],
            cwd=ROOT,
            env={**os.environ, "BENCH_DATABASE_URL": bench_url},
            capture_output=True,
            text=True,
            timeout=240,
        )
    finally:
        maintenance = bench_url.rsplit("/", 1)[0] + "/postgres"
        with psycopg.connect(maintenance, autocommit=True) as server:
            server.execute(f'DROP DATABASE IF EXISTS "{settings["NAME"]}_load_smoke" WITH (FORCE)')

    output = finished.stdout + finished.stderr
    assert finished.returncode == 0, output[-3000:]
    assert "baseline: next pair and vote as two requests" in output
    assert "rating page: each vote answered with the next pair" in output
    assert "OK: nothing lost, nothing duplicated" in output
    assert "client errors             0" in output
    assert "retried requests" not in output  # nothing failed, so nothing was resent
