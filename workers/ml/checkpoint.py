"""Atomic checkpoints: a crash while writing never leaves a half-written file behind."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch


def save_atomic(state: dict[str, Any], path: Path) -> None:
    """Write ``state`` with torch.save to a temporary file in the same folder, then rename it.

    The rename is atomic on POSIX file systems, so a reader sees either the previous checkpoint
    or the new one, never a truncated file.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(descriptor, "wb") as handle:
            torch.save(state, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def load_if_exists(path: Path) -> dict[str, Any] | None:
    """Return the checkpoint at ``path``, or None when there is none yet.

    ``weights_only=True``: only tensors and plain containers are unpickled, so a checkpoint file
    someone else wrote cannot run code in the worker. What the trainers save fits that (the numpy
    generator state is stored as a tensor, configs as plain dicts).
    """
    if not path.exists():
        return None
    return torch.load(path, map_location="cpu", weights_only=True)
