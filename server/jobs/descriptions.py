"""A job for people: its error in plain words and its parameters in one short line.

Pure functions over what the job row stores (``Job.error`` is ``"ExceptionType: message"`` for
an exception, or a sentence the services wrote), so each rule is pinned by a test on a string.
"""

from __future__ import annotations

import json
import re
from typing import Any

# (pattern in the stored error, what it means for the operator); the first that matches wins.
_PLAIN_ERRORS: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern, re.IGNORECASE), sentence)
    for pattern, sentence in (
        (
            r"out of memory|OutOfMemoryError|CUBLAS_STATUS_ALLOC_FAILED",
            "The GPU ran out of memory. Try a smaller batch size, shorter texts (maximum length) or "
            "LoRA, or run it on a larger GPU.",
        ),
        (
            r"\bMemoryError\b|\bKilled\b|SIGKILL|signal 9|exit code -9|exitcode -9",
            "The job's process was stopped by the system, most likely for using too much memory.",
        ),
        (
            r"SoftTimeLimitExceeded|TimeLimitExceeded|time limit",
            "The job ran longer than its time limit and was stopped.",
        ),
        (
            r"heartbeat|WorkerLostError|worker lost",
            "The worker running the job stopped (a restart or a crash) before the job finished.",
        ),
        (
            r"FileNotFoundError|No such file or directory|does not appear to have a file"
            r"|is not a local folder",
            "A file the job needs is missing: check the model path or the files named in its settings.",
        ),
        (
            r"ConnectionError|Connection refused|OperationalError|could not connect"
            r"|Name or service not known",
            "A service the job needs (the database, the broker or an inference server) could not be reached.",
        ),
        (
            r"PermissionError|Permission denied",
            "The worker is not allowed to read or write a file the job needs (file permissions).",
        ),
    )
)
# Exceptions whose message is written for a person already (the domain's own error).
_READABLE_TYPES = ("ApplicationError", "NotFound", "Conflict", "ValidationError")
_FIRST_LINE_CHARACTERS = 240


def job_error_in_words(error: str) -> str:
    """One sentence saying why a job failed, for an operator who did not write the code; "" for
    no error. Known causes get their explanation; an error from our own services keeps its
    message (written for people); anything else is "The job failed: <its first line>".

    >>> job_error_in_words("OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB")[:28]
    'The GPU ran out of memory. T'
    >>> job_error_in_words("ApplicationError: The study has no eligible judgments to snapshot yet.")
    'The study has no eligible judgments to snapshot yet.'
    """
    text = error.strip()
    if not text:
        return ""
    for pattern, sentence in _PLAIN_ERRORS:
        if pattern.search(text):
            return sentence
    first_line = text.splitlines()[0].strip()
    kind, separator, message = first_line.partition(": ")
    if separator and kind in _READABLE_TYPES and message.strip():
        return _shortened(message.strip())
    if separator and re.fullmatch(r"[A-Za-z_][\w.]*(Error|Exception)", kind) and message.strip():
        return _shortened(f"The job failed ({kind}): {message.strip()}")
    return _shortened(f"The job failed: {first_line}")


def _shortened(text: str, limit: int = _FIRST_LINE_CHARACTERS) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


# Parameters that the row shows elsewhere or that say nothing to a person.
_HIDDEN_PARAMETERS = frozenset({"warnings", "then", "parent_reason"})
_VALUE_CHARACTERS = 40
_SUMMARY_CHARACTERS = 300


def job_params_summary(params: dict[str, Any] | None) -> str:
    """The job's parameters in one line, ``name=value`` joined by " · ", plain values first and
    nested settings as ``config.epochs=2``; empty values left out, long values and the whole line
    shortened with "…".

    >>> job_params_summary({"snapshot_id": 3, "config": {"epochs": 2, "lora": {"rank": 8}}, "then": []})
    'snapshot_id=3 · config.epochs=2 · config.lora.rank=8'
    >>> job_params_summary({})
    ''
    """
    parts: list[str] = []

    def add(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for key in sorted(value):
                add(f"{prefix}.{key}" if prefix else str(key), value[key])
            return
        if value in (None, "", [], {}):
            return
        shown = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
        parts.append(f"{prefix}={_shortened(str(shown), _VALUE_CHARACTERS)}")

    shown = {key: value for key, value in (params or {}).items() if key not in _HIDDEN_PARAMETERS}
    # Plain values (ids, method, kind) first, then the nested settings; each group by name (the
    # database does not keep the order the service wrote them in).
    for key in sorted(shown, key=lambda name: (isinstance(shown[name], dict), name)):
        add(key, shown[key])
    return _shortened(" · ".join(parts), _SUMMARY_CHARACTERS)
