"""Tiny models built on the spot, so ML tests need no download and run in seconds on a CPU.

``build_tiny_gpt2`` writes a 2-layer, 64-wide GPT-2 (~0.1 M parameters) with a byte-level BPE
tokenizer trained in-process on ``TINY_CORPUS`` into a folder that ``from_pretrained`` loads.
``planted_pairs`` makes preference pairs whose chosen side carries a planted word.
"""

from __future__ import annotations

import random
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

from workers.ml.preference_data import PreferencePair
from workers.ml.progress import Cancelled

END_OF_TEXT = "<|endoftext|>"
PAD = "<pad>"
FILLER_WORDS = [
    *["the", "cat", "dog", "sat", "ran", "on", "a", "mat", "hill", "river", "stone", "tree", "bird"],
    *["sky", "blue", "green", "red", "slow", "quick", "small", "large", "old", "new", "day", "night"],
    *["sea", "wind", "rain", "snow", "field", "road", "house", "door", "window", "book", "song", "light"],
]
PLANTED_WORD = "golden"
TINY_CORPUS = [" ".join(FILLER_WORDS[i:] + FILLER_WORDS[:i]) for i in range(len(FILLER_WORDS))] + [
    "a golden bird sang yes yes yes",
    "no no no said the old dog",
]


def build_tiny_tokenizer(vocab_size: int = 320) -> PreTrainedTokenizerFast:
    """Byte-level BPE: every string is encodable (256 byte tokens), plus merges of the corpus."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[END_OF_TEXT, PAD],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(TINY_CORPUS * 4, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, bos_token=END_OF_TEXT, eos_token=END_OF_TEXT, pad_token=PAD
    )


def build_tiny_gpt2(folder: Path, *, seed: int = 0, dropout: float = 0.0) -> Path:
    """Save a randomly initialised 2-layer, 64-wide GPT-2 and its tokenizer into ``folder``."""
    tokenizer = build_tiny_tokenizer()
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=128,
        n_embd=64,
        n_layer=2,
        n_head=2,
        resid_pdrop=dropout,
        embd_pdrop=dropout,
        attn_pdrop=dropout,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    model = GPT2LMHeadModel(config)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def filler_sentence(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(FILLER_WORDS) for _ in range(words))


def planted_pairs(
    count: int, *, seed: int, split: str = "train", margin: float = 0.0
) -> list[PreferencePair]:
    """Pairs whose chosen response contains ``PLANTED_WORD`` at a random place; rejected never does."""
    rng = random.Random(seed)
    pairs = []
    for _ in range(count):
        chosen_words = filler_sentence(rng, rng.randint(4, 7)).split()
        chosen_words.insert(rng.randint(0, len(chosen_words)), PLANTED_WORD)
        pairs.append(
            PreferencePair(
                prompt=filler_sentence(rng, 3),
                chosen=" ".join(chosen_words),
                rejected=filler_sentence(rng, rng.randint(4, 8)),
                margin=margin,
                split=split,
            )
        )
    return pairs


class RecordingReporter:
    """A ProgressReporter that records every call and can stop the run at one step.

    ``cancel_at`` raises ``Cancelled`` (the job was cancelled); ``crash_at`` raises RuntimeError
    (the worker died: no checkpoint is written at that step).
    """

    def __init__(self, *, cancel_at: int | None = None, crash_at: int | None = None) -> None:
        self.calls: list[tuple[int, int, str, dict[str, float] | None]] = []
        self.cancel_at = cancel_at
        self.crash_at = crash_at

    def __call__(
        self, *, step: int, total: int, message: str = "", metrics: dict[str, float] | None = None
    ) -> None:
        self.calls.append((step, total, message, metrics))
        per_step = metrics is not None and not message
        if per_step and step == self.cancel_at:
            raise Cancelled
        if per_step and step == self.crash_at:
            raise RuntimeError("worker lost")

    @property
    def first_step(self) -> int:
        return self.calls[0][0]

    @property
    def training_steps(self) -> list[int]:
        """Steps reported with training metrics (the per-step reports)."""
        return [step for step, _, message, metrics in self.calls if metrics is not None and not message]
