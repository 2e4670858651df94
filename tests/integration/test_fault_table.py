"""The "Faults tried" table: rows recorded through the ``fault_table`` fixture are printed after
the run, in the order recorded; a run that recorded none prints no table."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

TESTS = """
def test_first(fault_table):
    fault_table.record("worker killed", "job finished once", "passed: 1 run")

def test_second(fault_table):
    fault_table.record("Redis restarted mid-run", "no message lost", "FAILED: 2 lost")

def test_without_a_row():
    pass
"""


def run_pytest(tmp_path: Path, source: str) -> str:
    (tmp_path / "test_sample.py").write_text(source)
    (tmp_path / "pytest.ini").write_text("[pytest]\n")  # not the project's settings
    command = [sys.executable, "-m", "pytest", "-p", "tests.integration.conftest", "-p", "no:django"]
    command += [
        "-p",
        "no:cacheprovider",
        "-c",
        str(tmp_path / "pytest.ini"),
        str(tmp_path / "test_sample.py"),
    ]
    finished = subprocess.run(
        command,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert finished.returncode == 0, finished.stdout + finished.stderr
    return finished.stdout


def test_recorded_rows_are_printed_as_a_table_after_the_run(tmp_path: Path) -> None:
    output = run_pytest(tmp_path, TESTS)
    lines = output.splitlines()
    start = next(index for index, line in enumerate(lines) if " Faults tried " in line)
    assert lines[start].startswith("=") and lines[start].endswith("=")
    assert lines[start + 1 : start + 5] == [
        "fault                    checked            outcome",
        "-----------------------  -----------------  -------",
        "worker killed            job finished once  passed: 1 run",
        "Redis restarted mid-run  no message lost    FAILED: 2 lost",
    ]
    assert "3 passed" in lines[start + 5]


def test_no_table_when_no_fault_was_recorded(tmp_path: Path) -> None:
    output = run_pytest(tmp_path, "def test_nothing(fault_table):\n    pass\n")
    assert "Faults tried" not in output
    assert "1 passed" in output
