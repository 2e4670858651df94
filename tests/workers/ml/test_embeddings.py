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


def test_cached_embeddings_are_computed_once_and_keyed_by_texts_and_model(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from workers.ml.embeddings import embed_texts_cached, embedding_cache_key

    texts = ["The sea at night.", "A lamp in the window."]
    first = embed_texts_cached(texts, cache_dir=tmp_path)
    stored = tmp_path / f"{embedding_cache_key(texts)}.npy"
    assert stored.is_file() and np.array_equal(np.load(stored), first)
    assert np.allclose(first, embed_texts(texts), atol=1e-6)

    # the second call reads the file: what it holds is what comes back
    planted = np.full_like(first, 0.5)
    np.save(stored, planted)
    assert np.array_equal(embed_texts_cached(texts, cache_dir=tmp_path), planted)

    # other texts, or the texts split differently, are other keys
    assert embedding_cache_key(["The sea at night.A lamp in the window."]) != embedding_cache_key(texts)
    assert embedding_cache_key(texts[::-1]) != embedding_cache_key(texts)


def test_a_cache_file_that_does_not_fit_is_recomputed(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from workers.ml.embeddings import embed_texts_cached, embedding_cache_key

    texts = ["one line", "another line", "a third"]
    stored = tmp_path / f"{embedding_cache_key(texts)}.npy"
    stored.write_bytes(b"torn")  # a write that never finished
    vectors = embed_texts_cached(texts, cache_dir=tmp_path)
    assert vectors.shape == (3, 384) and np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-6)
    np.save(stored, np.zeros((2, 384), dtype=np.float32))  # another number of texts
    assert np.allclose(embed_texts_cached(texts, cache_dir=tmp_path), vectors, atol=1e-6)
    assert [path.name for path in tmp_path.iterdir()] == [stored.name]  # no temporary file left


def test_a_changed_model_folder_is_another_key(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import shutil

    from workers.ml.embeddings import embedding_cache_key

    model = tmp_path / "model"
    shutil.copytree(default_model_path(), model)
    before = embedding_cache_key(["a text"], model)
    weights = next(path for path in model.rglob("*.safetensors"))
    weights.write_bytes(weights.read_bytes() + b"\0")  # new weights, same folder
    after_weights = embedding_cache_key(["a text"], model)
    assert after_weights != before
    settings = model / "sentence_bert_config.json"
    settings.write_text(settings.read_text().replace("256", "128"))  # another length, same weights
    assert embedding_cache_key(["a text"], model) != after_weights
