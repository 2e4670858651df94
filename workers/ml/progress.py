"""How long-running ML code reports progress without knowing about Django or Celery.

A trainer or generator receives a ``ProgressReporter`` and calls it at every step. The caller (a
Celery task) turns those calls into Job updates, and may raise ``Cancelled`` from inside the
call: that is how a running job stops at its next progress report.
"""

from __future__ import annotations

from typing import Protocol


class Cancelled(Exception):
    """Raised by a reporter when the run must stop at the current step."""


class ProgressReporter(Protocol):
    def __call__(
        self,
        *,
        step: int,
        total: int,
        message: str = "",
        metrics: dict[str, float] | None = None,
    ) -> None: ...


def null_reporter(
    *, step: int, total: int, message: str = "", metrics: dict[str, float] | None = None
) -> None:
    """A reporter that ignores everything: for scripts, benchmarks and tests."""
    return None
