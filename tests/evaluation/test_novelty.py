from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
import pytest

from evaluation.novelty import (
    build_ngram_index,
    build_vocabulary,
    corpus_match_lengths,
    embedding_novelty,
    encode_tokens,
    longest_copied_spans,
    ngram_novelty_curves,
    tokenize_words,
)


def brute_force_match_lengths(corpus: list[int], sample: list[int]) -> list[int]:
    """Longest k with sample[i:i+k] a contiguous run of corpus, by direct search. Negative ids
    never match (unknown words in the sample, separators in the corpus)."""
    lengths = []
    for i in range(len(sample)):
        best = 0
        for start in range(len(corpus)):
            k = 0
            while (
                i + k < len(sample)
                and start + k < len(corpus)
                and sample[i + k] >= 0
                and sample[i + k] == corpus[start + k]
            ):
                k += 1
            best = max(best, k)
        lengths.append(best)
    return lengths


def test_tokenize_words_lowercases_and_splits_punctuation() -> None:
    assert tokenize_words("Don't stop, World!") == ["don", "'", "t", "stop", ",", "world", "!"]
    assert tokenize_words("") == []
    assert tokenize_words("  \n ") == []


def test_vocabulary_assigns_ids_in_order_of_appearance_and_unknown_is_minus_one() -> None:
    vocabulary = build_vocabulary([["b", "a"], ["b", "c"]])
    assert vocabulary == {"b": 0, "a": 1, "c": 2}
    assert encode_tokens(["c", "z", "b"], vocabulary).tolist() == [2, -1, 0]
    assert encode_tokens([], vocabulary).tolist() == []


def test_suffix_array_sorts_every_suffix() -> None:
    rng = np.random.default_rng(0)
    corpus = rng.integers(0, 3, 200)
    corpus[[50, 120]] = -1  # separators
    index = build_ngram_index(corpus)
    codes = [int(c) for c in index.codes[:-1]]
    expected = sorted(range(len(codes)), key=lambda p: codes[p:])
    assert index.suffix_array.tolist() == expected


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_match_lengths_equal_brute_force_search(seed: int) -> None:
    # Given: a small alphabet (many repeats), separators in the corpus, unknown ids in samples.
    rng = np.random.default_rng(seed)
    corpus = rng.integers(0, 4, 300)
    corpus[rng.integers(0, 300, 5)] = -1
    samples: list[npt.NDArray[np.int64]] = [rng.integers(-1, 5, size) for size in (0, 1, 7, 30)]
    samples.append(corpus[40:90].clip(0))  # a copied passage
    # When
    lengths = corpus_match_lengths(build_ngram_index(corpus), samples)
    # Then
    for sample, found in zip(samples, lengths, strict=True):
        assert found.tolist() == brute_force_match_lengths(corpus.tolist(), sample.tolist())


def test_novelty_curve_and_longest_copied_span_hand_computed() -> None:
    # Given: corpus "the cat sat on the mat", sample "the cat sat on a mat" ("a" is unknown).
    vocabulary = build_vocabulary([tokenize_words("the cat sat on the mat")])
    corpus = encode_tokens(tokenize_words("the cat sat on the mat"), vocabulary)
    sample = encode_tokens(tokenize_words("the cat sat on a mat"), vocabulary)
    index = build_ngram_index(corpus)
    # When
    curve = ngram_novelty_curves(index, [sample])[0]
    span = longest_copied_spans(index, [sample])
    # Then: match lengths per position are [4, 3, 2, 1, 0, 1].
    # n=1: only "a" is new → 1/6. n=2: (on a), (a mat) of 5 → 2/5. n=3: (sat on a), (on a mat)
    # of 4 → 2/4. n=4: only "the cat sat on" is old, of 3 → 2/3. n=5, 6: all new. n=7, 8: none.
    assert corpus_match_lengths(index, [sample])[0].tolist() == [4, 3, 2, 1, 0, 1]
    assert curve[:6].tolist() == [1 / 6, 2 / 5, 2 / 4, 2 / 3, 1.0, 1.0]
    assert np.isnan(curve[6:]).all()
    assert span.tolist() == [4]


def test_novelty_degenerate_inputs() -> None:
    index = build_ngram_index(np.array([0, 1, 2, 3]))
    # Empty sample: no n-grams, nothing copied.
    assert np.isnan(ngram_novelty_curves(index, [np.array([], dtype=np.int64)])).all()
    assert longest_copied_spans(index, [[]]).tolist() == [0]
    # A sample identical to the corpus: nothing new, the whole sample copied.
    assert ngram_novelty_curves(index, [[0, 1, 2, 3]], max_n=4).tolist() == [[0.0, 0.0, 0.0, 0.0]]
    assert longest_copied_spans(index, [[0, 1, 2, 3]]).tolist() == [4]
    # Empty corpus: everything new.
    empty = build_ngram_index(np.array([], dtype=np.int64))
    assert ngram_novelty_curves(empty, [[0, 1]], max_n=2).tolist() == [[1.0, 1.0]]
    assert longest_copied_spans(empty, [[0, 1]]).tolist() == [0]
    # No samples.
    assert ngram_novelty_curves(index, []).shape == (0, 8)


def test_embedding_novelty_is_one_minus_nearest_cosine_whatever_the_chunk_size() -> None:
    corpus = np.array([[1.0, 0.0], [0.0, 2.0], [-1.0, 0.0]])
    samples = np.array([[1.0, 1.0], [3.0, 0.0], [0.0, -1.0]])
    # (1, 1) is 45° from (1, 0) and (0, 2); (3, 0) lies on (1, 0); (0, −1) is 90° from (±1, 0).
    expected = [1 - 1 / math.sqrt(2), 0.0, 1.0]
    assert embedding_novelty(samples, corpus).tolist() == pytest.approx(expected, abs=1e-15)
    assert embedding_novelty(samples, corpus, chunk_size=1).tolist() == pytest.approx(expected, abs=1e-15)


def test_embedding_novelty_degenerate_inputs() -> None:
    assert np.isnan(embedding_novelty(np.ones((2, 3)), np.zeros((0, 3)))).all()
    assert embedding_novelty(np.zeros((0, 3)), np.ones((2, 3))).shape == (0,)
    assert embedding_novelty(np.zeros((1, 3)), np.ones((2, 3))).tolist() == [1.0]
