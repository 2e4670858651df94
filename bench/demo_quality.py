"""Demo-model quality: held-out perplexity, samples and their novelty, before and after, one run.

Run from the repository root: ``.venv/bin/python -m bench.demo_quality``. Prints figures; asserts
nothing. On 2 CPU threads (the demo's budget: a build of at most 5 minutes) it builds

- before: the demo model as it was until the corpus grew in December 2026 (``BEFORE_CONFIG``:
  4 x 256, 2048-token vocabulary, dropout 0.2, 500 steps of 8 windows) on the corpus as it was
  then (its first ``BEFORE_PIECES`` pieces, 117 KB; everything since was appended), sampled with
  the demo's decodings and prompts of then (``BEFORE_DECODINGS``: no ``end_at_sentence``;
  ``BEFORE_PROMPTS``: titles);
- after: ``BaseModelConfig()`` on the whole corpus, sampled with the demo's decodings and prompts
  (story openings) now;

both with the corpus's held-out pieces kept out of training (``held_out_split``). For each it
prints build time (wall and CPU), held-out perplexity per word (comparable across tokenizers) on
the held-out pieces the two corpora share and on its own, and, for the demo's two decodings
(``DEMO_VERSIONS``), samples for the demo's prompts: the in-corpus word share, n-gram novelty
(share of the samples' word n-grams found nowhere in the corpus) and the share of samples that are
mostly copied (their longest verbatim corpus span covers more than half of their words), all of
the continuation alone (the prompt is not the model's). Ten samples of each careful decoding and
five of each other are printed, the continuation in brackets after its prompt. ``--after-only``
and ``--before-only`` skip a build (CPU times compare only when taken at the same load: run both
in one call to compare); ``--set name=value`` overrides a field of the after config (for
experiments: ``--set optimizer=adamw``, ``--set bf16=false``).
"""

from __future__ import annotations

import os

# Must precede the torch import (see bench/generation.py): passive OpenMP waiting on a shared machine.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import argparse
import dataclasses
import resource
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from evaluation.novelty import (
    build_ngram_index,
    build_vocabulary,
    encode_tokens,
    longest_copied_spans,
    ngram_novelty_curves,
    tokenize_words,
)
from server.core.demo_texts import DEMO_PROMPTS_HOLDOUT, DEMO_PROMPTS_TRAIN, DEMO_VERSIONS
from workers.ml.base_model import (
    DEMO_CORPUS_PATH,
    BaseModelConfig,
    build_base_model,
    held_out_perplexity,
    held_out_split,
    in_corpus_word_share,
    split_corpus,
    uses_bf16,
)
from workers.ml.sampling import SampleRequest, SamplingConfig, generate_samples, load_model

BEFORE_PIECES = 736
"""The corpus had 736 pieces (117 KB) before it grew; the later pieces were appended after them."""

BEFORE_CONFIG = BaseModelConfig(
    vocab_size=2048, min_frequency=2, context_length=128, n_layer=4, n_head=8, n_embd=256, dropout=0.2,
    steps=500, batch_size=8, learning_rate=2e-3, min_learning_rate=2e-4, warmup_steps=20, weight_decay=0.1,
    grad_clip=1.0, seed=0, checkpoint_every=100, held_out_every=10, optimizer="adamw", bf16=False,
)  # fmt: skip
"""BaseModelConfig's defaults until the corpus grew past 736 pieces (December 2026): AdamW alone,
in float32."""

# The demo study's prompts and its two versions' decodings, as the demo seeds and enrols them.
PROMPTS = DEMO_PROMPTS_TRAIN + DEMO_PROMPTS_HOLDOUT
BEFORE_PROMPTS = [
    "The sea at night", "A letter to the moon", "The old clock in the kitchen", "Rain on the city",
    "A lighthouse keeper's morning", "The garden in winter", "A train that never stops",
    "Bread and the baker's hands", "The river remembers", "Stars over the harbour",
    "A library after closing", "The loom and the numbers", "A small cat on a warm roof",
    "Friendship in autumn", "The weather of memory", "A machine that dreams", "The first snow",
    "A lamp in the window", "The sound of the tide", "An evening walk by the river",
]  # fmt: skip
"""The demo's prompts until December 2026: titles, where the prompts now are story openings."""
DECODINGS = {
    # A version's decoding is JSON (stop strings a list); the generate job passes them as a tuple.
    label: SamplingConfig(**{**decoding, "stop": tuple(decoding["stop"])})
    for label, decoding in DEMO_VERSIONS.items()
}
BEFORE_DECODINGS = {
    "careful": dataclasses.replace(DECODINGS["careful"], end_at_sentence=False),
    "bold": dataclasses.replace(DECODINGS["bold"], temperature=1.0, end_at_sentence=False),
}
"""The before model's decodings: bold at temperature 1, and a text that runs out of tokens is not
cut back to its last complete sentence (``end_at_sentence`` came with the larger corpus)."""
SEEDS = 3  # samples per prompt, as the demo asks (DEMO_SAMPLES_PER_PROMPT)
NOVELTY_N = 4
MOSTLY_COPIED = 0.5


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--after-only", action="store_true")
    parser.add_argument("--before-only", action="store_true")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--decoding", action="append", default=[], metavar="LABEL:TEMPERATURE:TOP_P")
    arguments = parser.parse_args()
    torch.set_num_threads(2)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, load average {os.getloadavg()}")
    corpus = DEMO_CORPUS_PATH.read_text(encoding="utf-8")
    pieces = split_corpus(corpus)
    before_corpus = "\n\n".join(pieces[:BEFORE_PIECES]) + "\n"
    _, shared_held_out = held_out_split(pieces[:BEFORE_PIECES], BaseModelConfig().held_out_every)
    overrides = {}
    for assignment in arguments.set:
        name, value = assignment.split("=", 1)
        default = getattr(BaseModelConfig(), name)
        if default is None or isinstance(default, bool):  # bf16: true, false or none (auto)
            overrides[name] = {"true": True, "false": False, "none": None}[value.lower()]
        else:
            overrides[name] = type(default)(value)
    extra = {}
    for spec in arguments.decoding:
        label, temperature, top_p = spec.split(":")
        extra[label] = dataclasses.replace(
            DECODINGS["careful"], temperature=float(temperature), top_p=float(top_p)
        )
    before = ("before", before_corpus, BEFORE_CONFIG, BEFORE_DECODINGS, BEFORE_PROMPTS)
    runs = [] if arguments.after_only else [before]
    if not arguments.before_only:
        after = dataclasses.replace(BaseModelConfig(), **overrides)
        runs.append(("after", corpus, after, DECODINGS, PROMPTS))
    for name, text, config, decodings, prompts in runs:
        measure(name, text, config, shared_held_out, {**decodings, **extra}, prompts)


def measure(
    name: str,
    corpus: str,
    config: BaseModelConfig,
    shared_held_out: Sequence[str],
    decodings: dict[str, SamplingConfig],
    prompts: Sequence[str],
) -> None:
    pieces = split_corpus(corpus)
    print(
        f"\n== {name}: {len(corpus.encode()) / 1000:.0f} KB corpus, {len(pieces)} pieces; "
        f"{config.n_layer} layers x {config.n_embd}, vocabulary {config.vocab_size}, context "
        f"{config.context_length}, {config.steps} steps x {config.batch_size} windows, "
        f"{config.optimizer}, learning rate {config.learning_rate:g} -> {config.min_learning_rate:g}, "
        f"dropout {config.dropout:g}, bfloat16 autocast {uses_bf16(config)}",
        flush=True,
    )
    started = time.perf_counter()
    cpu_before = _cpu_seconds()

    def progress(
        *, step: int, total: int, message: str = "", metrics: dict[str, float] | None = None
    ) -> None:
        if step % 250 == 0 and metrics:
            print(
                f"   step {step}/{total}: loss {metrics['loss']:.2f}, "
                f"{time.perf_counter() - started:.0f} s wall, {_cpu_seconds() - cpu_before:.0f} s CPU",
                flush=True,
            )

    with tempfile.TemporaryDirectory() as scratch:
        result = build_base_model(
            corpus=corpus,
            output_dir=Path(scratch) / "model",
            checkpoint_dir=Path(scratch) / "checkpoints",
            config=config,
            reporter=progress,
        )
        cpu = _cpu_seconds() - cpu_before
        loaded = load_model(result.output_dir, device="cpu")
    print(
        f"build {result.seconds:.0f} s wall, {cpu:.0f} s CPU; {result.parameters / 1e6:.2f} M parameters, "
        f"vocabulary {result.vocab_size}; training loss {statistics.mean(result.losses[:10]):.2f} -> "
        f"{statistics.mean(result.losses[-20:]):.2f}"
    )
    own = result.held_out
    shared = held_out_perplexity(loaded.model, loaded.tokenizer, shared_held_out)
    print(
        f"held-out perplexity per word: {shared.per_word:.1f} on the {shared.pieces} pieces held out "
        f"of the old corpus; {own.per_word:.1f} on its own {own.pieces} (per token {own.per_token:.2f})"
        if own
        else "no held-out pieces"
    )
    index_vocabulary = build_vocabulary([tokenize_words(corpus)])
    index = build_ngram_index(encode_tokens(tokenize_words(corpus), index_vocabulary))
    requests = [SampleRequest(prompt=prompt, seed=seed) for seed in range(SEEDS) for prompt in prompts]
    for label, decoding in decodings.items():
        started = time.perf_counter()
        samples = generate_samples(loaded, requests, config=decoding).samples
        # The figures are of what the model wrote; the prompt (a title before, an opening sentence
        # that the corpus lacks now) counts for neither novelty nor copying.
        texts = [sample.text for sample in samples]
        tokens = [tokenize_words(text) for text in texts]
        words = [[token for token in sample if token.isalnum()] for sample in tokens]
        vocabulary = dict(index_vocabulary)
        encoded = [encode_tokens(sample, vocabulary) for sample in tokens]
        longest = longest_copied_spans(index, encoded)
        mostly_copied = np.mean(
            [span > MOSTLY_COPIED * len(sample) for span, sample in zip(longest, tokens, strict=True)]
        )
        novelty = np.nanmean(ngram_novelty_curves(index, encoded, NOVELTY_N)[:, NOVELTY_N - 1])
        print(
            f"-- {label} (temperature {decoding.temperature}, top_p {decoding.top_p}): {len(texts)} samples "
            f"in {time.perf_counter() - started:.1f} s, {statistics.mean(map(len, words)):.0f} words each; "
            f"in-corpus words {in_corpus_word_share(texts, corpus):.1%}; {NOVELTY_N}-gram novelty "
            f"{novelty:.1%}; mostly copied {mostly_copied:.1%}; longest copied span median "
            f"{int(np.median(longest))} tokens"
        )
        shown = 10 if label.startswith("careful") else 5
        for request, text in list(zip(requests, texts, strict=True))[:shown]:
            written = " / ".join(line.strip() for line in text.strip().splitlines())
            print(f"  | {request.prompt} [{written}]")


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


if __name__ == "__main__":
    main()
