"""What the preference trainers consume, and the run plumbing they share.

The trainers in ``reward_model``, ``dpo`` and ``online_rl`` take plain dataclasses, never database
rows: the Celery task turns a PreferenceSnapshot into ``PreferencePair`` objects. The helpers below
(seeding, random-number-generator state, fingerprints, atomic directory writes) are what makes every
one of those runs reproducible and resumable in the same way.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import random
import shutil
import tempfile
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch


@dataclass(frozen=True)
class PreferencePair:
    """One human judgment in trainer-ready form (the TRL prompt / chosen / rejected layout).

    ``margin`` is the preference strength turned into a reward gap the reward model must exceed:
    0.0 for a plain "A is better", larger for "much better" (Llama-2-style margin loss). Ties and
    "both bad" are not pairs; the task drops them before training (Christiano et al. drop
    "can't tell"). ``split`` is ``"train"`` or ``"validation"`` as frozen in the snapshot.
    """

    prompt: str
    chosen: str
    rejected: str
    margin: float = 0.0
    split: str = "train"


def resolve_device(device: str | None) -> torch.device:
    """The explicit device, or the first GPU when one is present, else the CPU."""
    if device is not None:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def seed_everything(seed: int) -> None:
    """Seed every generator a run may touch, so two runs with one seed draw the same numbers."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device


def capture_rng_state() -> dict[str, Any]:
    """The state of every global generator, for a checkpoint (dropout draws from these)."""
    legacy: tuple[str, np.ndarray, int, int, float] = np.random.get_state(legacy=True)  # type: ignore[assignment]
    kind, keys, position, has_gauss, cached_gaussian = legacy
    state: dict[str, Any] = {
        "python": random.getstate(),
        # As a tensor, not an ndarray: checkpoints are read with ``weights_only=True``, which
        # refuses numpy objects (their unpickling could run arbitrary code).
        "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), position, has_gauss, cached_gaussian),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Put back what ``capture_rng_state`` saved (the CUDA part only where CUDA exists now)."""
    random.setstate(state["python"])
    kind, keys, position, has_gauss, cached_gaussian = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), position, has_gauss, cached_gaussian))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def fingerprint(items: Sequence[Any]) -> str:
    """SHA-256 of the items' JSON form: a checkpoint remembers which data it was trained on.

    Dataclasses are converted field by field; anything else must be JSON-serialisable.
    """
    digest = hashlib.sha256()
    for item in items:
        is_instance = dataclasses.is_dataclass(item) and not isinstance(item, type)
        value = dataclasses.asdict(item) if is_instance else item
        digest.update(json.dumps(value, sort_keys=True, ensure_ascii=False).encode())
        digest.update(b"\n")
    return digest.hexdigest()


def config_for_checkpoint(config: Any) -> dict[str, Any]:
    """A config dataclass as a plain dict (of strings, numbers, lists and dicts), which
    ``torch.load(weights_only=True)`` restores."""
    return {
        key: (str(value) if isinstance(value, Path) else value)
        for key, value in dataclasses.asdict(config).items()
    }


def check_resumable(checkpoint: dict[str, Any], config: Any, data_fingerprint: str) -> None:
    """Refuse to resume a checkpoint written by a run with other settings or other data.

    The device is the only field allowed to differ: a job may resume on another machine.
    """
    saved = dict(checkpoint["config"])
    current = config_for_checkpoint(config)
    saved.pop("device", None)
    current.pop("device", None)
    if saved != current:
        raise ValueError(f"checkpoint was written with another config: {saved} != {current}")
    if checkpoint["data_fingerprint"] != data_fingerprint:
        raise ValueError("checkpoint was written for other training data")


def write_directory_atomically(output_dir: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(folder)`` on a temporary sibling folder, then rename it to ``output_dir``.

    A crash while writing leaves only a hidden ``.name.*.tmp`` folder behind, never a half-written
    model at ``output_dir``. When ``output_dir`` exists already (a redelivered job), the old folder is
    moved aside first and deleted after the rename; only the instant between the two renames sees no
    folder at all.
    """
    output_dir = Path(output_dir)
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    temporary = Path(tempfile.mkdtemp(dir=output_dir.parent, prefix=f".{output_dir.name}.", suffix=".tmp"))
    try:
        write(temporary)
        if output_dir.exists():
            previous = output_dir.with_name(f".{output_dir.name}.old-{uuid.uuid4().hex}")
            os.replace(output_dir, previous)
            os.replace(temporary, output_dir)
            shutil.rmtree(previous, ignore_errors=True)
        else:
            os.replace(temporary, output_dir)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise


def derived_generator(seed: int, *parts: int) -> torch.Generator:
    """A CPU generator seeded from ``seed`` and ``parts`` (member, epoch, iteration, ...).

    Drawing the batch order of epoch ``e`` from its own generator, instead of from one stream that
    the whole run consumes, makes the order a pure function of (seed, e): a resumed run draws exactly
    what the uninterrupted run would have drawn, without replaying anything.
    """
    digest = hashlib.sha256(repr((seed, *parts)).encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") & ((1 << 63) - 1))
