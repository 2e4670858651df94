"""The reference corpus's embeddings in an evaluation: computed every time against kept once.

Run from the repository root: ``.venv/bin/python -m bench.corpus_embeddings`` (``--repeats N``,
default 3). Prints figures; asserts nothing; nothing is downloaded.

Every evaluation of a model version (each round of the loop evaluates its child) measures
embedding novelty against the study's reference corpus: the same 5,000 corpus pieces
(``CORPUS_EMBEDDING_PIECES``, shuffled by the evaluation's seed) embedded with the bundled MiniLM.
This times that step as the evaluation runs it, on the demo corpus, three ways in one process:
``embed_texts`` (what every evaluation did before the cache), ``embed_texts_cached`` on an empty
cache (the first evaluation: embedding plus writing the file), and ``embed_texts_cached`` on a
warm cache (every later evaluation against the corpus: reading the file). Mean ± standard error
over repeats; the warm figure is also checked to equal the computed embeddings.

Measured 2026-12-02 on the 2-core development machine, idle, 3 repeats (5,000 pieces):
``embed_texts`` 27.63 ± 0.19 s, cached on an empty cache 27.83 ± 0.15 s (the file's write is in
the noise), cached on a warm cache 0.005 s: each evaluation after the first against a corpus saves
about 28 s of CPU, and gets the same embeddings (checked).
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see bench/generation.py
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import math
import random
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from workers.ml.base_model import split_corpus
from workers.ml.embeddings import embed_texts, embed_texts_cached

CORPUS = Path(__file__).resolve().parents[1] / "workers" / "ml" / "corpus" / "lovelace.txt"


def mean_and_error(values: Sequence[float]) -> tuple[float, float]:
    mean = statistics.fmean(values)
    return mean, (statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else math.nan)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    arguments = parser.parse_args(argv)
    from server.evaluations.creativity import CORPUS_EMBEDDING_PIECES  # after django.setup()

    pieces = split_corpus(CORPUS.read_text(encoding="utf-8"))
    random.Random(0).shuffle(pieces)  # as an evaluation with seed 0 does
    pieces = pieces[:CORPUS_EMBEDDING_PIECES]
    embed_texts(["warm up"])  # the model's loading is not what is compared
    plain, cold, warm = [], [], []
    identical = True
    for _ in range(arguments.repeats):
        started = time.perf_counter()
        computed = embed_texts(pieces)
        plain.append(time.perf_counter() - started)
        with tempfile.TemporaryDirectory() as folder:
            started = time.perf_counter()
            embed_texts_cached(pieces, cache_dir=Path(folder))
            cold.append(time.perf_counter() - started)
            started = time.perf_counter()
            kept = embed_texts_cached(pieces, cache_dir=Path(folder))
            warm.append(time.perf_counter() - started)
        identical = identical and bool(np.allclose(kept, computed, atol=1e-5))
    print(f"corpus pieces: {len(pieces)} of the demo corpus; repeats: {arguments.repeats}")
    for name, values in (("embed_texts", plain), ("cached, empty cache", cold), ("cached, warm", warm)):
        mean, error = mean_and_error(values)
        print(f"{name:<22} {mean:8.3f} s ± {error:.3f}")
    ratio = [a / b for a, b in zip(plain, warm, strict=True)]
    mean, error = mean_and_error(ratio)
    print(f"summary corpus_embeddings: warm_speedup {mean:.0f} se {error:.0f} equal {identical}")


if __name__ == "__main__":
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "server.config.settings")
    django.setup()
    main()
