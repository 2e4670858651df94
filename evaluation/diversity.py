"""Diversity within a set of samples (typically the k samples of one prompt from one version).

Lexical: distinct-n and its expectation-adjusted form, self-BLEU. Semantic: the Vendi score of
sentence embeddings. Samples are sequences of token ids (see ``evaluation.novelty`` for a word
tokenizer); n-grams never span two samples.

All of these depend on the number and length of the samples: compare versions at equal budgets.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

DEFAULT_BLEU_ORDER = 4
# Chen & Cherry (2014) smoothing method 1: a precision with no matching n-gram counts as ε
# matches instead of 0, so one missing 4-gram does not zero the whole score. 0.1 is NLTK's default.
DEFAULT_BLEU_EPSILON = 0.1


def _ngram_ids(samples: Sequence[npt.ArrayLike], n: int) -> tuple[IntArray, IntArray]:
    """(sample index, n-gram id) for every n-gram of every sample; ids are dense over the set."""
    owners: list[IntArray] = []
    rows: list[IntArray] = []
    for position, sample in enumerate(samples):
        tokens = np.asarray(sample, dtype=np.int64).reshape(-1)
        if tokens.size < n:
            continue
        windows = np.lib.stride_tricks.sliding_window_view(tokens, n)
        rows.append(windows)
        owners.append(np.full(windows.shape[0], position, dtype=np.int64))
    if not rows:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    _, ids = np.unique(np.concatenate(rows), axis=0, return_inverse=True)
    return np.concatenate(owners), ids.reshape(-1).astype(np.int64)


def distinct_n(samples: Sequence[npt.ArrayLike], n: int) -> float:
    """Distinct n-grams / all n-grams, pooled over the set (Li et al. 2016).

    What: the share of n-gram occurrences that are new; 1.0 means no n-gram repeats anywhere in
    the set. Degenerate input: NaN when the set has no n-gram (no samples, or all shorter than n);
    k identical samples give (distinct n-grams of one) / (k × n-grams of one).
    """
    _, ids = _ngram_ids(samples, n)
    if ids.size == 0:
        return math.nan
    return float(np.unique(ids).size / ids.size)


def expected_distinct_count(vocabulary_size: float, draws: float) -> float:
    """Expected number of distinct items in ``draws`` uniform draws from ``vocabulary_size`` items:
    V · (1 − ((V − 1)/V)^C), computed as −V · expm1(C · log1p(−1/V)) so it stays exact for huge V.
    Degenerate input: no draws or V ≤ 0 gives 0.0; V = 1 gives 1.0 for any positive number of draws."""
    if draws <= 0 or vocabulary_size <= 0:
        return 0.0
    if vocabulary_size == 1:
        return 1.0
    return float(-vocabulary_size * math.expm1(draws * math.log1p(-1.0 / vocabulary_size)))


def expectation_adjusted_distinct_n(
    samples: Sequence[npt.ArrayLike], n: int, *, vocabulary_size: float
) -> float:
    """EAD (Liu et al. 2022): distinct n-grams / expected distinct n-grams under uniform draws.

    What: distinct count divided by V · (1 − ((V − 1)/V)^C), C the number of n-grams in the set
    and V = ``vocabulary_size`` as given (the paper uses the token vocabulary size for every n;
    pass V**n to use the size of the n-gram space instead). Why: plain distinct-n falls with text
    length even for a perfectly random source; EAD removes that trend, so sets of different sizes
    are comparable. Degenerate input: NaN when the set has no n-gram or V ≤ 0.
    """
    _, ids = _ngram_ids(samples, n)
    expected = expected_distinct_count(vocabulary_size, ids.size)
    if ids.size == 0 or expected <= 0:
        return math.nan
    return float(np.unique(ids).size / expected)


def bleu(
    hypothesis: npt.ArrayLike,
    references: Sequence[npt.ArrayLike],
    *,
    max_n: int = DEFAULT_BLEU_ORDER,
    epsilon: float = DEFAULT_BLEU_EPSILON,
) -> float:
    """Sentence BLEU of one token sequence against several references (Papineni et al. 2002).

    What: brevity penalty × geometric mean of the clipped n-gram precisions, n = 1..max_n, equal
    weights. Clipping is by the largest count of the n-gram in any one reference; the brevity
    penalty uses the reference length closest to the hypothesis length (the shorter on a tie):
    BP = 1 if c > r else exp(1 − r/c). Smoothing: Chen & Cherry method 1 — a precision with zero
    matches becomes ε / (number of hypothesis n-grams), or ε / 1 if the hypothesis has no n-grams
    of that order (NLTK's convention).
    Degenerate input: an empty hypothesis or no references gives 0.0.
    """
    if not references:
        return 0.0
    samples = [hypothesis, *references]

    def reference_maximum(counts: FloatArray) -> FloatArray:
        return np.asarray(counts[1:].max(axis=0, keepdims=True), dtype=np.float64)

    lengths = np.array([np.asarray(s).size for s in samples], dtype=np.float64)
    return float(
        _bleu_scores(samples, reference_maximum, [lengths[1:]], hypotheses=1, max_n=max_n, epsilon=epsilon)[0]
    )


def self_bleu(
    samples: Sequence[npt.ArrayLike],
    *,
    max_n: int = DEFAULT_BLEU_ORDER,
    epsilon: float = DEFAULT_BLEU_EPSILON,
) -> float:
    """Self-BLEU (Zhu et al. 2018): mean BLEU of each sample against all the others.

    What: how much each sample could have been assembled from its siblings; 1.0 for identical
    samples, near 0 for unrelated ones. Lower is more diverse. Each BLEU is ``bleu`` with the
    other samples as references (same smoothing).
    Degenerate input: NaN with fewer than two samples; an empty sample scores 0.0 as a
    hypothesis and counts as a reference of length 0.
    """
    k = len(samples)
    if k < 2:
        return math.nan

    def maximum_over_others(counts: FloatArray) -> FloatArray:
        # Max over j ≠ i of counts[j, g]: the column maximum, unless row i holds the only
        # maximum, in which case the second largest value. O(k · distinct) instead of O(k² · ...).
        ordered = np.sort(counts, axis=0)
        largest, second = ordered[-1], ordered[-2]
        holders = (counts == largest).sum(axis=0)
        only_holder = (counts == largest) & (holders == 1)
        return np.asarray(np.where(only_holder, second, largest), dtype=np.float64)

    lengths = np.array([np.asarray(s).size for s in samples], dtype=np.float64)
    reference_lengths = [np.delete(lengths, i) for i in range(k)]
    return float(
        np.mean(
            _bleu_scores(
                samples, maximum_over_others, reference_lengths, hypotheses=k, max_n=max_n, epsilon=epsilon
            )
        )
    )


def _bleu_scores(
    samples: Sequence[npt.ArrayLike],
    reference_maximum: Callable[[FloatArray], FloatArray],
    reference_lengths: Sequence[FloatArray],
    *,
    hypotheses: int,
    max_n: int,
    epsilon: float,
) -> FloatArray:
    """BLEU of samples[0..hypotheses) given, per n, the clipping counts of their references.

    ``reference_maximum`` maps the [samples, distinct n-grams] count matrix to the largest count
    of each n-gram in the references of each hypothesis ([hypotheses or 1, distinct n-grams]).
    """
    k = len(samples)
    lengths = np.array([np.asarray(s).size for s in samples[:hypotheses]], dtype=np.float64)
    log_precision = np.zeros(hypotheses)
    for n in range(1, max_n + 1):
        owners, ids = _ngram_ids(samples, n)
        distinct = int(ids.max()) + 1 if ids.size else 0
        counts: FloatArray = (
            np.bincount(owners * distinct + ids, minlength=k * distinct)
            .reshape(k, distinct)
            .astype(np.float64)
        )
        if distinct:
            matches = np.minimum(counts[:hypotheses], reference_maximum(counts)).sum(axis=1)
        else:
            matches = np.zeros(hypotheses)
        totals = counts[:hypotheses].sum(axis=1)
        numerator = np.where(matches > 0, matches, epsilon)
        log_precision += np.log(numerator / np.maximum(totals, 1.0)) / max_n
    scores = np.zeros(hypotheses)
    for i in range(hypotheses):
        c = lengths[i]
        if c == 0:
            continue
        # Closest reference length, the shorter one on a tie.
        r = min(reference_lengths[i], key=lambda length: (abs(length - c), length))
        brevity = 1.0 if c > r else math.exp(1.0 - r / c)
        scores[i] = brevity * math.exp(log_precision[i])
    return scores


def vendi_score(embeddings: npt.ArrayLike) -> float:
    """Vendi score (Friedman & Dieng 2023): the effective number of distinct samples.

    What: exp(−Σ λ log λ) over the eigenvalues λ of K/n, K the cosine-similarity matrix of the
    L2-normalised embeddings (so K has unit diagonal and the λ sum to 1). n orthogonal samples
    score n; n identical samples score 1. Computed from the smaller of the n×n and d×d Gram
    matrices (their nonzero eigenvalues agree).
    Degenerate input: no samples gives 0.0; one sample gives 1.0; an all-zero embedding counts as
    orthogonal to every other sample (its row is set to unit self-similarity).
    """
    matrix = np.asarray(embeddings, dtype=np.float64)
    if matrix.size == 0:
        return 0.0
    matrix = np.atleast_2d(matrix)
    count = matrix.shape[0]
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    unit = matrix / np.where(norms > 0, norms, 1.0)
    if count > unit.shape[1] and bool((norms > 0).all()):
        gram = unit.T @ unit / count
    else:
        gram = unit @ unit.T
        np.fill_diagonal(gram, 1.0)
        gram /= count
    eigenvalues = np.clip(np.linalg.eigvalsh(gram), 0.0, None)
    positive = eigenvalues[eigenvalues > 0]
    return float(np.exp(-(positive * np.log(positive)).sum()))
