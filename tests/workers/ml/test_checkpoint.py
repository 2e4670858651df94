"""Checkpoints are read with ``weights_only=True``: a file that someone else wrote cannot run code
in the worker, and what the trainers save still loads and restores."""

from __future__ import annotations

import os
import pickle
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from workers.ml.checkpoint import load_if_exists, save_atomic
from workers.ml.preference_data import capture_rng_state, restore_rng_state


class _RunsCode:
    """Unpickles as a call to ``os.mkdir``: what a planted checkpoint would do with a worse call."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (os.mkdir, (str(self.marker),))


def test_a_checkpoint_that_would_run_code_is_refused_without_running_it(tmp_path: Path) -> None:
    marker = tmp_path / "code-ran"
    checkpoint = tmp_path / "planted.pt"
    torch.save({"step": 3, "payload": _RunsCode(marker)}, checkpoint)
    with pytest.raises(pickle.UnpicklingError):
        load_if_exists(checkpoint)
    assert not marker.exists()


def test_the_random_state_of_a_checkpoint_restores_every_generator(tmp_path: Path) -> None:
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    save_atomic({"step": 7, "rng": capture_rng_state()}, tmp_path / "run.pt")
    expected = (random.random(), np.random.random_sample(3).tolist(), torch.rand(2).tolist())
    random.seed(10)
    np.random.seed(20)
    torch.manual_seed(30)

    loaded = load_if_exists(tmp_path / "run.pt")
    assert loaded is not None and loaded["step"] == 7
    restore_rng_state(loaded["rng"])
    assert (random.random(), np.random.random_sample(3).tolist(), torch.rand(2).tolist()) == expected
