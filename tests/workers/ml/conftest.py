"""Tiny models for the ML tests: built once per session from a text in this file, on the CPU."""

from __future__ import annotations

import os

# Before transformers is imported: the tests must never reach the Hugging Face hub.
os.environ["HF_HUB_OFFLINE"] = "1"

from pathlib import Path

import pytest
import torch

from workers.ml.base_model import TINY_BUILD_CONFIG, BuildResult, build_base_model
from workers.ml.sampling import LoadedModel, load_model

# Tiny models run op by op in microseconds, so a second thread only adds synchronisation: on a
# shared 2-core machine the tiny build took 15 s with 2 threads and 1 s with one.
torch.set_num_threads(1)

TINY_CORPUS = """\
The tide came in at dawn
and wrote its name along the sand.

The tide went out at noon
and took the letters home.

A lighthouse is a patient friend who stays awake so that others may sleep.

Rain on the window,
bread in the oven,
a letter half written
and nowhere to go.

Every river is a long letter from the mountains to the sea.

The loom goes back and forth,
the thread goes over and under,
and slowly, row by row,
a pattern learns to speak.

Stars are the old lamps of the night, and nobody knows who lights them.

A garden is a slow argument between the gardener and the weeds.

Winter came with a white coat
and sat down on the hill.
Spring came with a green coat
and asked it, kindly, to leave.

The sea keeps no calendar, but it always knows the hour of the moon.
"""


@pytest.fixture(scope="session")
def tiny_build(tmp_path_factory: pytest.TempPathFactory) -> BuildResult:
    """The tiny model built without interruption (TINY_BUILD_CONFIG, ~1 s)."""
    root = tmp_path_factory.mktemp("tiny_build")
    return build_base_model(
        corpus=TINY_CORPUS,
        output_dir=root / "model",
        checkpoint_dir=root / "checkpoints",
        config=TINY_BUILD_CONFIG,
    )


@pytest.fixture(scope="session")
def tiny_model(tiny_build: BuildResult) -> LoadedModel:
    return load_model(tiny_build.output_dir, device="cpu")


@pytest.fixture()
def tiny_model_dir(tiny_build: BuildResult) -> Path:
    return tiny_build.output_dir
