"""Shared by the fault tests: a private PostgreSQL server, and the table of faults tried that
pytest prints at the end of the run."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.integration.fault_table import FaultRow, FaultTable, format_fault_table
from tests.integration.private_postgres import (
    PrivatePostgres,
    PrivatePostgresUnavailable,
    find_bin_dir,
    private_postgres,
    run_as_prefix,
)

FAULT_ROWS = pytest.StashKey[list[FaultRow]]()


@pytest.fixture
def fault_table(request: pytest.FixtureRequest) -> FaultTable:
    """``fault_table.record(fault, check, outcome)`` adds a row to the "Faults tried" table."""
    return FaultTable(request.config.stash.setdefault(FAULT_ROWS, []))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    rows = config.stash.get(FAULT_ROWS, [])
    if not rows:
        return
    terminalreporter.write_sep("=", "Faults tried")
    for text in format_fault_table(rows):
        terminalreporter.write_line(text)


@pytest.fixture
def private_pg() -> Iterator[PrivatePostgres]:
    """A private PostgreSQL server, started; stopped and deleted after the test. Skips where this
    machine cannot run one (no server binaries; as root, no ``postgres`` user to run it as)."""
    try:
        find_bin_dir()
        run_as_prefix()
    except PrivatePostgresUnavailable as reason:
        pytest.skip(f"no private PostgreSQL server: {reason}")
    with private_postgres() as server:
        yield server
