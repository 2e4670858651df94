"""Surprise: how unexpected generated text is to a reference language model.

Surprisal is the negative log-probability of each token under a fixed reference model. On its own
it mixes creativity with noise (random text is very surprising), so it is reported next to the
surprisal of human-written text under the same model: a generator whose samples are as surprising
as people's writing is neither parroting the model's most likely continuation nor babbling.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from evaluation.bootstrap import percentile_interval

FloatArray = npt.NDArray[np.float64]

# Rounds are drawn in chunks of at most this many [rounds × texts] indices (~80 MB).
_MAX_CHUNK_ENTRIES = 10_000_000


@dataclass(frozen=True)
class SurprisalComparison:
    """Mean surprisal per token (nats) of the samples and of the human baseline, and
    samples − baseline with its bootstrap percentile interval."""

    sample_mean: float
    baseline_mean: float
    difference: float
    lower: float
    upper: float
    sample_tokens: int
    baseline_tokens: int


def mean_surprisal(token_log_probabilities: Sequence[npt.ArrayLike]) -> float:
    """Mean negative log-probability per token (nats), pooled over all tokens of all texts.

    Pooled, so that a long text weighs by its length: the quantity is "per token".
    Degenerate input: NaN when there are no tokens (no texts, or only empty texts).
    """
    sums, counts = _text_sums(token_log_probabilities)
    total = counts.sum()
    return float(sums.sum() / total) if total > 0 else math.nan


def compare_surprisal(
    sample_log_probabilities: Sequence[npt.ArrayLike],
    baseline_log_probabilities: Sequence[npt.ArrayLike],
    *,
    rounds: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> SurprisalComparison:
    """Surprisal of samples relative to a human baseline under the same reference model.

    What: ``mean_surprisal`` of each set and their difference (samples − baseline, nats per
    token); the interval resamples the texts of each set independently with replacement (all
    rounds at once) and recomputes both pooled means. Inputs are per-token log-probabilities
    (natural log), one array per text. Positive difference: the samples surprise the model more
    than people's writing does.
    Degenerate input: a set with no tokens gives NaN for its mean and for the difference and the
    bounds; ``rounds`` = 0 gives NaN bounds.
    """
    sample_sums, sample_counts = _text_sums(sample_log_probabilities)
    baseline_sums, baseline_counts = _text_sums(baseline_log_probabilities)
    sample_mean = mean_surprisal(sample_log_probabilities)
    baseline_mean = mean_surprisal(baseline_log_probabilities)
    difference = sample_mean - baseline_mean
    if math.isnan(difference):
        lower = upper = math.nan
    else:
        generator = np.random.default_rng(seed)
        replicates = _resampled_means(sample_sums, sample_counts, rounds, generator) - _resampled_means(
            baseline_sums, baseline_counts, rounds, generator
        )
        low, high = percentile_interval(replicates, confidence)
        lower, upper = float(low), float(high)
    return SurprisalComparison(
        sample_mean=sample_mean,
        baseline_mean=baseline_mean,
        difference=difference,
        lower=lower,
        upper=upper,
        sample_tokens=int(sample_counts.sum()),
        baseline_tokens=int(baseline_counts.sum()),
    )


def _text_sums(token_log_probabilities: Sequence[npt.ArrayLike]) -> tuple[FloatArray, FloatArray]:
    """Per text: total surprisal (−Σ log p) and token count."""
    arrays = [np.asarray(text, dtype=np.float64).reshape(-1) for text in token_log_probabilities]
    sums = np.array([-a.sum() for a in arrays], dtype=np.float64)
    counts = np.array([a.size for a in arrays], dtype=np.float64)
    return sums, counts


def _resampled_means(
    sums: FloatArray, counts: FloatArray, rounds: int, generator: np.random.Generator
) -> FloatArray:
    """Pooled mean surprisal of ``rounds`` resamples of the texts (NaN for a resample that drew
    only empty texts)."""
    texts = sums.size
    out = np.empty(rounds)
    chunk = max(1, _MAX_CHUNK_ENTRIES // max(texts, 1))
    for start in range(0, rounds, chunk):
        stop = min(rounds, start + chunk)
        index = generator.integers(0, texts, size=(stop - start, texts))
        tokens = counts[index].sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[start:stop] = np.where(tokens > 0, sums[index].sum(axis=1) / np.maximum(tokens, 1.0), np.nan)
    return out
