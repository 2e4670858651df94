"""Loading a generator version's weights, and identifying the weights a child was trained from.

A trained child is usually a LoRA adapter folder (``adapter_config.json`` + adapter weights + the
tokenizer) that names its base by path in ``base_model_name_or_path``; the base is never copied.
The base may itself be an adapter folder (a child of a child): loading follows the chain, merging
each adapter into the weights below it, so generation and scoring run a plain model.

Provenance: ``weights_identity`` says which exact weights a path holds, as the hub revision
(``config._commit_hash``) for a hub model, and the SHA-256 of the weight files for a local folder.
The hash is cached next to the weights (``.lovelace_weights.json``, keyed by file names, sizes and
modification times), so each folder is read once: ~2 s per GB.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

ADAPTER_CONFIG = "adapter_config.json"
HASH_CACHE = ".lovelace_weights.json"
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".gguf")
MAX_ADAPTER_CHAIN = 16  # a child of a child of ...; a cycle of adapter folders would loop forever


def is_adapter(path: str | Path) -> bool:
    """True when ``path`` is a local PEFT adapter folder."""
    return (Path(path) / ADAPTER_CONFIG).is_file()


def adapter_base(path: str | Path) -> str:
    """The base path or hub id an adapter folder names."""
    config = json.loads((Path(path) / ADAPTER_CONFIG).read_text())
    base = config.get("base_model_name_or_path")
    if not base:
        raise ValueError(f"{path}/{ADAPTER_CONFIG} names no base model (base_model_name_or_path)")
    return str(base)


def adapter_chain(path: str | Path) -> tuple[list[Path], str, str | None]:
    """(the adapter folders from ``path`` down, the plain model at the bottom, the hub revision the
    deepest adapter recorded for it or None). A plain model gives ([], path, None)."""
    chain: list[Path] = []
    current = str(path)
    while is_adapter(current):
        if len(chain) >= MAX_ADAPTER_CHAIN:
            raise ValueError(f"{path}: more than {MAX_ADAPTER_CHAIN} adapters stacked (or a cycle)")
        chain.append(Path(current))
        current = adapter_base(current)
    revision = None
    if chain:
        recorded = json.loads((chain[-1] / ADAPTER_CONFIG).read_text()).get("revision")
        revision = recorded if isinstance(recorded, str) and recorded else None
    return chain, current, revision


def load_causal_lm(path: str | Path, *, dtype: torch.dtype, **kwargs: Any) -> Any:
    """The causal LM at ``path`` in ``dtype``: a plain model folder or hub id, or an adapter folder
    (its base loaded first, then the adapter merged in). ``kwargs`` go to ``from_pretrained`` of
    the plain model at the bottom of the chain; without a ``revision`` there, the one the deepest
    adapter recorded pins a hub base (a child of a pinned parent). Not moved to a device, not in
    eval mode."""
    chain, current, recorded = adapter_chain(path)
    if recorded and not kwargs.get("revision"):
        kwargs["revision"] = recorded
    model: Any = AutoModelForCausalLM.from_pretrained(current, dtype=dtype, **kwargs)
    if chain:
        from peft import PeftModel  # only needed for adapter folders

        for adapter in reversed(chain):
            model = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
    return model


def load_tokenizer(path: str | Path, **kwargs: Any) -> Any:
    """The tokenizer saved with a model or adapter folder (a pad token is set when missing:
    padded positions are masked out, so EOS serves)."""
    tokenizer = AutoTokenizer.from_pretrained(str(path), **kwargs)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def _weight_files(folder: Path) -> list[Path]:
    return sorted(
        entry for entry in folder.iterdir() if entry.is_file() and entry.name.endswith(WEIGHT_SUFFIXES)
    )


def weights_sha256(folder: str | Path) -> str:
    """SHA-256 over the weight files of a local model folder (names and contents, in name order).

    Cached in ``HASH_CACHE`` inside the folder; a folder that cannot be written (a read-only
    mount) is hashed again each time.
    """
    folder = Path(folder)
    files = _weight_files(folder)
    if not files:
        raise ValueError(f"{folder} holds no weight files ({', '.join(WEIGHT_SUFFIXES)})")
    key = [[entry.name, entry.stat().st_size, entry.stat().st_mtime_ns] for entry in files]
    cache = folder / HASH_CACHE
    try:
        cached = json.loads(cache.read_text())
        if cached.get("files") == key:
            return str(cached["sha256"])
    except (OSError, ValueError, KeyError, AttributeError):
        pass
    digest = hashlib.sha256()
    for entry in files:
        digest.update(entry.name.encode() + b"\0")
        with entry.open("rb") as handle:
            while chunk := handle.read(1 << 24):  # 16 MB
                digest.update(chunk)
    sha256 = digest.hexdigest()
    try:
        descriptor, temporary = tempfile.mkstemp(dir=folder, prefix=HASH_CACHE, suffix=".tmp")
        with os.fdopen(descriptor, "w") as handle:
            json.dump({"files": key, "sha256": sha256}, handle)
        os.replace(temporary, cache)
    except OSError:
        pass  # read-only: correct, only slower next time
    return sha256


def weights_identity(path: str | Path, model: Any | None = None) -> dict[str, Any]:
    """Which weights ``path`` holds: {"path", "sha256"} for a local folder, {"path", "revision"}
    for a hub model (the commit ``from_pretrained`` resolved, when ``model`` is given)."""
    if Path(path).is_dir():
        return {"path": str(path), "sha256": weights_sha256(path)}
    revision = getattr(getattr(model, "config", None), "_commit_hash", None)
    return {"path": str(path), "revision": revision}
