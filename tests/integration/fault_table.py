"""The "Faults tried" table: each fault test records what it did, what it checked and what it
found; ``tests/integration/conftest.py`` prints the rows at the end of the pytest run."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FaultRow:
    fault: str  # what was done to the system
    check: str  # what was verified afterwards
    outcome: str  # what was found


class FaultTable:
    """Rows of the table (the ``fault_table`` fixture). A test records its row whether its checks
    held or not, so that the table says what failed, then asserts."""

    def __init__(self, rows: list[FaultRow]) -> None:
        self._rows = rows

    def record(self, fault: str, check: str, outcome: str) -> None:
        self._rows.append(FaultRow(fault=fault, check=check, outcome=outcome))


def format_fault_table(rows: list[FaultRow]) -> list[str]:
    """Aligned columns: fault, checked, outcome (the last one unpadded, it is the longest)."""
    header = FaultRow(fault="fault", check="checked", outcome="outcome")
    widths = [max(len(getattr(row, name)) for row in [header, *rows]) for name in ("fault", "check")]

    def line(row: FaultRow) -> str:
        return f"{row.fault:<{widths[0]}}  {row.check:<{widths[1]}}  {row.outcome}".rstrip()

    rule = "  ".join("-" * width for width in [*widths, len("outcome")])
    return [line(header), rule, *map(line, rows)]
