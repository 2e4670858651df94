from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see workers/celery_app.py
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from pathlib import Path

import pytest

DEMO_CORPUS = Path(__file__).resolve().parents[1] / "workers" / "ml" / "corpus" / "lovelace.txt"


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny GPT-2 and its tokenizer, built from the demo corpus in a few seconds."""
    from workers.ml.base_model import TINY_BUILD_CONFIG, build_base_model

    root = tmp_path_factory.mktemp("tiny-model")
    build_base_model(
        corpus=DEMO_CORPUS.read_text(encoding="utf-8")[:20_000],
        output_dir=root / "model",
        checkpoint_dir=root / "checkpoints",
        config=TINY_BUILD_CONFIG,
    )
    return root / "model"


@pytest.fixture
def tiny_model_allowed(tiny_model_dir: Path, settings) -> Path:  # type: ignore[no-untyped-def]
    """The tiny model, in a folder that jobs may load models from (``LOVELACE_MODEL_ROOTS``)."""
    settings.LOVELACE_MODEL_ROOTS = [*settings.LOVELACE_MODEL_ROOTS, tiny_model_dir.parent]
    return tiny_model_dir


@pytest.fixture
def image_storage(settings, tmp_path: Path) -> Path:  # type: ignore[no-untyped-def]
    """The images storage in a folder of this test's own (the var dir is left alone)."""
    folder = tmp_path / "images"
    settings.STORAGES = {
        **settings.STORAGES,
        "images": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(folder)},
        },
    }
    return folder
