from __future__ import annotations

import numpy as np
import pytest

from workers.ml import embeddings
from workers.ml.embeddings import default_model_path, embed_texts


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    # The bundled model must load with the hub unreachable.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")


def test_similar_sentences_are_closer_than_unrelated_ones() -> None:
    # Given
    texts = [
        "The cat sat on the mat.",
        "A cat was sitting on a rug.",
        "Quarterly tax filings are due in April.",
    ]
    # When
    vectors = embed_texts(texts, batch_size=2)
    # Then
    similarity = vectors @ vectors.T
    assert vectors.shape == (3, 384)
    assert vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-6)
    assert similarity[0, 1] > similarity[0, 2] + 0.3
    assert similarity[0, 1] > similarity[1, 2] + 0.3


def test_model_is_loaded_once_per_path_and_empty_input_keeps_the_dimension() -> None:
    embed_texts(["warm up"])
    loads_before = embeddings.load_embedding_model.cache_info().misses
    empty = embed_texts([], model_path=default_model_path())
    assert empty.shape == (0, 384) and empty.dtype == np.float32
    assert embeddings.load_embedding_model.cache_info().misses == loads_before
    # An empty string still gets a unit vector.
    assert np.linalg.norm(embed_texts([""])[0]) == pytest.approx(1.0, abs=1e-6)
