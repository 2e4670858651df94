"""Build a small GPT-2-architecture base model and its byte-level BPE tokenizer from a text corpus.

The result is a Hugging Face model directory (``save_pretrained``), so the rest of the system loads
it like any hub model. Reads top to bottom: split the corpus into pieces, train the tokenizer,
encode the pieces into one token stream with an end-of-text token between pieces, train on random
windows of that stream, checkpoint every ``checkpoint_every`` steps, write the final model.

Resumable: a checkpoint holds the model, optimizer, step, both RNG states, the tokenizer, the config
and the loss history, written atomically. A build started again with the same checkpoint directory
continues from the last checkpoint and ends bit-for-bit where an uninterrupted build would (same
device and thread count). A build that already finished only rewrites the final model, so a
redelivered task costs seconds.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shutil
import string
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from tokenizers import ByteLevelBPETokenizer, Tokenizer
from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

from workers.ml.checkpoint import load_if_exists, save_atomic
from workers.ml.progress import ProgressReporter, null_reporter

END_OF_TEXT = "<|endoftext|>"
DEMO_CORPUS_PATH = Path(__file__).parent / "corpus" / "lovelace.txt"
CHECKPOINT_FILE = "base_model.pt"
BUILD_INFO_FILE = "lovelace_build.json"


@dataclass(frozen=True)
class BaseModelConfig:
    """What to build and how long to train. The defaults build the demo model: on the 2.1 MB demo
    corpus with 2 CPU threads on an idle machine (bench/demo_quality.py) it took 408 s of CPU time
    and 292 s of wall time (233 s in another run: the wall time varies from run to run on this
    machine), ended at training loss ~3.45 nats/token and held-out perplexity 76 per word (on the
    pieces held out of the 117 KB corpus; the demo model of the 1 MB corpus with AdamW for 1200
    steps reached 115 there, the one before it 262), and 100 % of the words of its careful samples
    (99.8 % of its bold ones at temperature 0.8, 98.9 % at 1) occur in the corpus (targets: <= 5
    minutes, >= 80 %)."""

    vocab_size: int = 6000
    """BPE vocabulary including the 256 byte tokens and END_OF_TEXT. At 6000 almost every word of
    the 1 MB demo corpus (5,191 distinct; 7,226 in today's 2.1 MB) is one token (1.15 tokens per
    word; 2048: 1.29), so a sample is made of the corpus's words, not of pieces a small model
    glues into non-words. The tied embedding is also the output layer, so a token costs more (0.22
    s of CPU a step against 0.18 s at 2048); measured side by side on the 1 MB corpus at 4 x 128
    with AdamW (bench.demo_quality):
    2048 for 1390 steps, held-out perplexity 129 per word, 94.3 % corpus words at temperature 1;
    6000 for 1200 steps (about the same CPU time), 115 and 98.6 %; 6000 for 1390 steps, 108 and
    98.4 % at 15 % more CPU."""

    min_frequency: int = 2
    """A pair must occur this often to become a merge; 1 would learn merges from typos."""

    context_length: int = 128
    """Tokens per training window and the model's maximum length. Demo pieces are 60 tokens
    (median) to 105 (longest), so 128 holds any piece plus a prompt."""

    n_layer: int = 4
    """Transformer blocks."""

    n_head: int = 4
    """Attention heads per block; n_embd must be divisible by it (32 dimensions per head)."""

    n_embd: int = 128
    """Width. 4 x 128 is ~1.6 M parameters with the 6000-token vocabulary (~1.1 M at 2048). With
    a corpus larger than the budget can show many times, a narrower model taking more steps in
    the same CPU time learns more. On a 620 KB draft of the demo corpus, dropout 0, 2048 tokens,
    equal CPU budgets (held-out perplexity per word): 4 x 256 for
    625 steps 183, 6 x 192 for 680 steps 189, 4 x 192 for 950 steps 151, 4 x 128 for 1390 steps
    142; on the 1 MB corpus 4 x 96 for 1700 steps reached 137, as 4 x 128 did (a plateau). (On
    the 117 KB corpus, seen ~18 times, it was the other way round: 4 x 256 won.)"""

    dropout: float = 0.0
    """Dropout in attention, residual and embeddings. Off: the build shows the 2.1 MB demo corpus
    ~3.5 times (1600 x 8 x 128 tokens against its ~470 k training tokens), and dropout costs a fifth to
    a quarter of a step's CPU time (random masks, and attention without the fused kernel). On a 418 KB
    draft of the corpus at 4 x 256 and equal CPU budgets: 0.1 for 540 steps reached held-out
    perplexity 198 per word, 0 for 620 steps 170. (On the 117 KB corpus, seen ~18 times, 0.2
    was needed: without it a model recited what it half-remembered.)"""

    steps: int = 1600
    """Optimizer steps: about 0.25 s of CPU and 0.15-0.18 s of wall time each on 2 threads, so
    1600 fill most of the 5-minute budget (233-292 s of wall time on an idle machine) with room
    for a slower run. 1800 reached held-out perplexity 73 per word against 1600's 76 in 318 s of
    wall time; 6 x 128 for 1300 steps (the same CPU) 82. The dimensions below were chosen with
    AdamW at 1390 steps with 2048 tokens (0.190 s of CPU a step)."""

    batch_size: int = 8
    """Windows per step: 8 x 128 tokens, ~0.2 s of CPU at the default width (16 doubles it; 4
    saves only 40 %, so it shows fewer tokens in the same time)."""

    learning_rate: float = 2e-3
    """Peak AdamW learning rate; small models tolerate (and need) more than GPT-2's 6e-4. On the
    620 KB draft, 4 x 192 for 950 steps: 2e-3 reached held-out perplexity 151 per word, 1.4e-3
    159; 4 x 256 with 3e-3 reached 261 (2e-3: 183). On the 1 MB corpus at 4 x 128, 3e-3 reached
    133 against 2e-3's 137: too small a gain for one seed to change the default."""

    min_learning_rate: float = 2e-4
    """Cosine decay ends here (a tenth of the peak, as in nanoGPT). The Muon learning rate follows
    the same schedule, scaled to its own peak."""

    optimizer: str = "muon"
    """"muon": Muon (``torch.optim.Muon``: momentum, its update orthogonalised by Newton-Schulz
    iterations) for the transformer blocks' weight matrices and AdamW for the rest; "adamw":
    AdamW for everything (the demo model until December 2026). Muon learns more per token: on
    the 1 MB demo corpus at 1200 steps (4 x 128, 6000 tokens, float32) it reached held-out
    perplexity 88 per word where AdamW reached 117, for ~10 % more CPU a step. It also began to
    learn that corpus by heart (training loss 2.9 nats per token at 1800 steps, 3.9 held out),
    which is why the corpus grew to 2.1 MB."""

    muon_learning_rate: float = 8e-3
    """Peak learning rate of the Muon-updated matrices, on AdamW's scale (Muon's update is matched
    to an AdamW update's RMS). At 1200 steps on the 1 MB corpus, in a variant whose token
    embeddings started from a sentence encoder's (a 2 % gain, dropped as not worth the
    dependency): 2e-3 (AdamW's) reached held-out perplexity 91 per word, 4e-3 86, 8e-3 81;
    without it, 1.6e-2 reached 93 where 8e-3 reached 88."""

    warmup_steps: int = 20
    """Linear warm-up from 0: Adam's second-moment estimates are noisy for the first steps."""

    weight_decay: float = 0.1
    """AdamW weight decay (nanoGPT's 0.1): keeps the model from reciting the corpus."""

    grad_clip: float = 1.0
    """Clip the global gradient norm: guards the high learning rate against rare spikes."""

    seed: int = 0
    """Seeds model initialisation, window sampling and dropout."""

    checkpoint_every: int = 200
    """Steps between checkpoints: ~30-35 s of work at the default size; the file is ~13 MB
    (weights, Adam moments and Muon momenta)."""

    report_every: int = 10
    """Steps between reporter calls (each may write a database row); the reported loss is the mean
    over these steps. Cancellation takes effect at the next report."""

    held_out_every: int = 10
    """About one piece in this many is held out of training and scores the model at the end
    (held-out perplexity). Which pieces: those whose text hashes to 0 modulo this number, so a
    piece stays held out when others are added, removed or reordered. 0 holds nothing out. A
    corpus of fewer than MIN_PIECES_TO_HOLD_OUT pieces is never split: a handful of held-out
    pieces measures little and costs a small corpus a sizeable share of its text."""

    bf16: bool | None = None
    """Run the forward and backward passes under bfloat16 autocast (weights, optimizer state and
    the loss stay float32). None decides by the hardware: on where the CPU computes bfloat16
    natively (AVX-512 BF16 or AMX; measured once on the 1 MB corpus, 1200 steps took 250 s of CPU
    against 283 s in float32; ``bench.demo_quality --set bf16=false`` compares), off elsewhere,
    where emulated bfloat16 would be slower than float32. A build resumes bit for bit on the machine
    that started it (as before)."""

    def __post_init__(self) -> None:
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd {self.n_embd} is not divisible by n_head {self.n_head}")
        if self.vocab_size <= 257:
            raise ValueError("vocab_size must exceed the 256 byte tokens plus END_OF_TEXT")
        for name in ("steps", "batch_size", "checkpoint_every", "report_every", "context_length"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")
        if self.optimizer not in ("muon", "adamw"):
            raise ValueError(f"optimizer must be 'muon' or 'adamw', got {self.optimizer!r}")
        if self.held_out_every < 0 or self.held_out_every == 1:
            raise ValueError("held_out_every must be 0 (hold nothing out) or >= 2")


TINY_BUILD_CONFIG = BaseModelConfig(
    vocab_size=320,
    context_length=64,
    n_layer=2,
    n_head=2,
    n_embd=32,
    steps=40,
    batch_size=8,
    learning_rate=1e-2,
    min_learning_rate=1e-3,
    warmup_steps=5,
    checkpoint_every=10,
    report_every=5,
)
"""A model that builds in about a second: for tests and smoke runs, not for reading its output."""


MIN_PIECES_TO_HOLD_OUT = 100


@dataclass(frozen=True)
class HeldOutPerplexity:
    """How well a model predicts pieces it was not trained on (lower is better)."""

    pieces: int
    tokens: int
    """Tokens predicted: every token of every piece plus the END_OF_TEXT that closes it."""
    words: int
    """Whitespace-separated words of the pieces, plus one per piece for its end."""
    per_token: float
    """exp(mean negative log-likelihood per token). Depends on the tokenizer."""
    per_word: float
    """exp(total negative log-likelihood / words): the same text costs the same whatever the
    tokenizer, so models with different vocabularies compare on this one."""

    def as_dict(self) -> dict[str, float | int]:
        return {
            "pieces": self.pieces,
            "tokens": self.tokens,
            "words": self.words,
            "per_token": round(self.per_token, 3),
            "per_word": round(self.per_word, 3),
        }


@dataclass
class BuildResult:
    output_dir: Path
    steps: int
    """Optimizer steps the final model has taken (config.steps)."""
    resumed_from_step: int
    """Step of the checkpoint this process started from; 0 for a fresh build."""
    losses: list[float] = field(default_factory=list)
    """Training loss of every step, 1..steps (including steps done before a resume)."""
    seconds: float = 0.0
    """Wall time of this call."""
    parameters: int = 0
    vocab_size: int = 0
    held_out: HeldOutPerplexity | None = None
    """Perplexity on the held-out pieces; None when the corpus was too small to split."""


def split_corpus(text: str) -> list[str]:
    """Split a corpus into pieces at blank lines (lines empty or only whitespace).

    Each piece is stripped of surrounding whitespace; line breaks inside a piece are kept (verse
    keeps its lines); empty pieces are dropped. The model is trained on the pieces joined by
    END_OF_TEXT, so it learns where a piece starts and ends.

    >>> split_corpus("Roses.\\nViolets.\\n\\n  \\nThe sea.\\n")
    ['Roses.\\nViolets.', 'The sea.']
    """
    return [piece.strip() for piece in re.split(r"\n[ \t\r\f\v]*\n", text) if piece.strip()]


def held_out_split(pieces: Sequence[str], every: int) -> tuple[list[str], list[str]]:
    """(training pieces, held-out pieces): a piece is held out when the SHA-256 of its text is 0
    modulo ``every``. Nothing is held out when ``every`` is 0 or there are fewer than
    MIN_PIECES_TO_HOLD_OUT pieces (or when no piece would be left to train on)."""
    if every == 0 or len(pieces) < MIN_PIECES_TO_HOLD_OUT:
        return list(pieces), []
    train: list[str] = []
    held_out: list[str] = []
    for piece in pieces:
        digest = int.from_bytes(hashlib.sha256(piece.encode()).digest()[:8], "big")
        (held_out if digest % every == 0 else train).append(piece)
    return (train, held_out) if train else (list(pieces), [])


@torch.no_grad()
def held_out_perplexity(model: Any, tokenizer: Any, pieces: Sequence[str]) -> HeldOutPerplexity:
    """Perplexity of ``model`` on ``pieces``, each scored as END_OF_TEXT piece END_OF_TEXT (as in
    training) from its own start. A piece longer than the model's context is scored in
    consecutive windows, each from its own start (slightly pessimistic at window edges)."""
    end_of_text = tokenizer.backend_tokenizer.token_to_id(END_OF_TEXT)
    window = int(model.config.n_positions)
    was_training = model.training
    model.eval()
    total_nll = 0.0
    tokens = 0
    for encoded in tokenizer(list(pieces), add_special_tokens=False)["input_ids"]:
        ids = [end_of_text, *encoded, end_of_text]
        for start in range(0, len(ids) - 1, window - 1):
            chunk = torch.tensor([ids[start : start + window]], device=model.device)
            if chunk.shape[1] < 2:
                continue
            logits = model(input_ids=chunk, attention_mask=torch.ones_like(chunk)).logits[0, :-1].float()
            total_nll += float(torch.nn.functional.cross_entropy(logits, chunk[0, 1:], reduction="sum"))
            tokens += chunk.shape[1] - 1
    model.train(was_training)
    words = sum(len(piece.split()) + 1 for piece in pieces)
    return HeldOutPerplexity(
        pieces=len(pieces),
        tokens=tokens,
        words=words,
        per_token=math.exp(total_nll / max(1, tokens)),
        per_word=math.exp(total_nll / max(1, words)),
    )


def train_tokenizer(pieces: Iterable[str], *, vocab_size: int, min_frequency: int) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE tokenizer (GPT-2's scheme) whose only special token is END_OF_TEXT,
    which serves as BOS, EOS, padding and unknown, as in GPT-2."""
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(
        pieces,
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=[END_OF_TEXT],
        show_progress=False,
    )
    return _wrap_tokenizer(bpe.to_str())


def _wrap_tokenizer(tokenizer_json: str) -> PreTrainedTokenizerFast:
    return PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(tokenizer_json),
        bos_token=END_OF_TEXT,
        eos_token=END_OF_TEXT,
        unk_token=END_OF_TEXT,
        pad_token=END_OF_TEXT,
    )


def build_base_model(
    *,
    corpus: str,
    output_dir: Path,
    checkpoint_dir: Path,
    config: BaseModelConfig | None = None,
    reporter: ProgressReporter = null_reporter,
) -> BuildResult:
    """Train tokenizer and model on ``corpus`` (text) and write them to ``output_dir``.

    ``checkpoint_dir`` belongs to this build (key it by job id): when it holds a checkpoint, the
    build resumes from it; a checkpoint of a different config or corpus raises ValueError. The
    checkpoint is left in place after success (the caller deletes it) so that a redelivered task
    finishes at once. The reporter gets ``step``/``total`` and ``metrics={"loss": ...}`` every
    ``config.report_every`` steps; raising ``Cancelled`` from it stops the build, and a later call
    resumes from the last checkpoint. ``output_dir`` is replaced atomically (written next to it,
    then renamed), so readers never see a half-written model.
    """
    started = time.perf_counter()
    config = config or BaseModelConfig()
    corpus_sha256 = hashlib.sha256(corpus.encode()).hexdigest()
    checkpoint_path = checkpoint_dir / CHECKPOINT_FILE
    checkpoint = load_if_exists(checkpoint_path)
    if checkpoint is not None:
        _check_checkpoint_matches(checkpoint, config, corpus_sha256, checkpoint_path)

    pieces, held_out = held_out_split(split_corpus(corpus), config.held_out_every)
    if not pieces:
        raise ValueError("the corpus has no text")
    if checkpoint is not None:
        tokenizer_json: str = checkpoint["tokenizer_json"]
        tokenizer = _wrap_tokenizer(tokenizer_json)
    else:
        tokenizer = train_tokenizer(pieces, vocab_size=config.vocab_size, min_frequency=config.min_frequency)
        tokenizer_json = tokenizer.backend_tokenizer.to_str()
    end_of_text = tokenizer.backend_tokenizer.token_to_id(END_OF_TEXT)
    if end_of_text is None:
        raise ValueError(f"the tokenizer lacks {END_OF_TEXT}")  # only a tampered checkpoint gets here
    stream = _token_stream(tokenizer, pieces, end_of_text, config.context_length)
    # Set after encoding the corpus: pieces longer than a window are fine in the stream.
    tokenizer.model_max_length = config.context_length

    torch.manual_seed(config.seed)
    model = GPT2LMHeadModel(_model_config(config, vocab_size=len(tokenizer), end_of_text=end_of_text))
    # transformers infers the loss from the class name, which "GPT2LMHeadModel" does not match
    # (it warns, then uses this loss anyway).
    model.loss_type = "ForCausalLM"
    optimizer = base_model_optimizer(model, config)
    autocast_bf16 = uses_bf16(config)

    # Window sampling has its own generator, so its stream does not depend on dropout's draws.
    windows = torch.Generator().manual_seed(config.seed + 1)
    losses: list[float] = []
    step = 0
    if checkpoint is not None:
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        windows.set_state(checkpoint["window_rng"])
        torch.set_rng_state(checkpoint["torch_rng"])
        losses = list(checkpoint["losses"])
        step = int(checkpoint["step"])
    resumed_from_step = step

    def save_checkpoint() -> None:
        save_atomic(
            {
                "config": asdict(config),
                "corpus_sha256": corpus_sha256,
                "tokenizer_json": tokenizer_json,
                "step": step,
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "window_rng": windows.get_state(),
                "torch_rng": torch.get_rng_state(),
                "losses": losses,
            },
            checkpoint_path,
        )

    reporter(
        step=step,
        total=config.steps,
        message=f"resumed at step {step}" if step else f"tokenizer: {len(tokenizer)} tokens; training",
    )
    model.train()
    while step < config.steps:
        schedule = _learning_rate(step, config) / config.learning_rate
        for group in optimizer.param_groups:
            group["lr"] = group["peak_lr"] * schedule
        starts = torch.randint(
            0, len(stream) - config.context_length + 1, (config.batch_size,), generator=windows
        )
        batch = torch.stack([stream[start : start + config.context_length] for start in starts.tolist()])
        # END_OF_TEXT doubles as the padding id, but nothing here is padding: an explicit all-ones
        # mask says so (and silences transformers' warning about unmasked padding).
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast_bf16):
            loss = model(input_ids=batch, attention_mask=torch.ones_like(batch), labels=batch).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
        losses.append(float(loss.item()))
        step += 1
        # Checkpoint before reporting: a reporter that raises Cancelled at this step still leaves
        # this step's checkpoint behind.
        if step % config.checkpoint_every == 0 or step == config.steps:
            save_checkpoint()
        if step % config.report_every == 0 or step == config.steps:
            recent = losses[-config.report_every :]
            reporter(
                step=step,
                total=config.steps,
                message=f"step {step}/{config.steps}",
                metrics={"loss": sum(recent) / len(recent)},
            )

    model.eval()
    perplexity = held_out_perplexity(model, tokenizer, held_out) if held_out else None
    if perplexity is not None:
        reporter(
            step=step,
            total=config.steps,
            message=f"held-out perplexity {perplexity.per_word:.1f} per word, "
            f"{perplexity.per_token:.2f} per token ({perplexity.pieces} pieces)",
        )
    _write_atomically(
        output_dir,
        model,
        tokenizer,
        info={
            "config": asdict(config),
            "corpus_sha256": corpus_sha256,
            "steps": step,
            "final_loss": losses[-1],
            "held_out_perplexity": perplexity.as_dict() if perplexity else None,
        },
    )
    return BuildResult(
        output_dir=output_dir,
        steps=step,
        resumed_from_step=resumed_from_step,
        losses=losses,
        seconds=time.perf_counter() - started,
        parameters=sum(parameter.numel() for parameter in model.parameters()),
        vocab_size=len(tokenizer),
        held_out=perplexity,
    )


def uses_bf16(config: BaseModelConfig) -> bool:
    """Whether a build of ``config`` on this machine runs under bfloat16 autocast (``config.bf16``)."""
    if config.bf16 is not None:
        return config.bf16
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def _check_checkpoint_matches(
    checkpoint: dict[str, Any], config: BaseModelConfig, corpus_sha256: str, path: Path
) -> None:
    if checkpoint["config"] != asdict(config):
        raise ValueError(f"{path} was written by a build with another config: {checkpoint['config']}")
    if checkpoint["corpus_sha256"] != corpus_sha256:
        raise ValueError(f"{path} was written by a build of another corpus")


def _token_stream(
    tokenizer: Any, pieces: Sequence[str], end_of_text: int, context_length: int
) -> torch.Tensor:
    """END_OF_TEXT piece END_OF_TEXT piece ... END_OF_TEXT, repeated until one window fits."""
    ids: list[int] = [end_of_text]
    for encoded in tokenizer(list(pieces), add_special_tokens=False)["input_ids"]:
        ids.extend(encoded)
        ids.append(end_of_text)
    stream = torch.tensor(ids, dtype=torch.long)
    repeats = math.ceil(context_length / len(stream))
    return stream.repeat(repeats) if repeats > 1 else stream


def _model_config(config: BaseModelConfig, *, vocab_size: int, end_of_text: int) -> GPT2Config:
    return GPT2Config(
        vocab_size=vocab_size,
        n_positions=config.context_length,
        n_embd=config.n_embd,
        n_layer=config.n_layer,
        n_head=config.n_head,
        resid_pdrop=config.dropout,
        embd_pdrop=config.dropout,
        attn_pdrop=config.dropout,
        bos_token_id=end_of_text,
        eos_token_id=end_of_text,
        pad_token_id=end_of_text,
    )


class MuonAndAdamW:
    """Muon for the transformer blocks' weight matrices, AdamW for everything else (embeddings,
    biases, layer norms), stepped together: the split Muon's authors prescribe. Just enough of
    the optimizer interface for the training loop and its checkpoints."""

    def __init__(self, muon: torch.optim.Optimizer, adamw: torch.optim.Optimizer) -> None:
        self.muon = muon
        self.adamw = adamw

    @property
    def param_groups(self) -> list[dict[str, Any]]:
        return [*self.muon.param_groups, *self.adamw.param_groups]

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.muon.zero_grad(set_to_none=set_to_none)
        self.adamw.zero_grad(set_to_none=set_to_none)

    def step(self) -> None:
        self.muon.step()
        self.adamw.step()

    def state_dict(self) -> dict[str, Any]:
        return {"muon": self.muon.state_dict(), "adamw": self.adamw.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.muon.load_state_dict(state["muon"])
        self.adamw.load_state_dict(state["adamw"])


def base_model_optimizer(model: Any, config: BaseModelConfig) -> torch.optim.Optimizer | MuonAndAdamW:
    """The optimizer of ``config.optimizer``; each parameter group carries its ``peak_lr``, which
    the schedule scales step by step."""
    if config.optimizer == "adamw":
        adamw = _adamw(list(model.parameters()), config)
        adamw.param_groups[0]["peak_lr"] = config.learning_rate
        return adamw
    # The blocks' 2-D weights (GPT-2's Conv1D attention and MLP matrices). The embeddings (the
    # output layer is the token embedding) stay with AdamW, as Muon's authors prescribe: Muon is
    # for the hidden layers' matrices; the input and output layers train better with Adam.
    matrices = [
        parameter
        for name, parameter in model.named_parameters()
        if name.startswith("transformer.h.") and parameter.ndim == 2
    ]
    chosen = {id(parameter) for parameter in matrices}
    others = [parameter for parameter in model.parameters() if id(parameter) not in chosen]
    # "match_rms_adamw" scales Muon's orthogonalised update to the RMS of an AdamW update, so its
    # learning rate and weight decay read on AdamW's scale.
    muon = torch.optim.Muon(
        matrices,
        lr=config.muon_learning_rate,
        weight_decay=config.weight_decay,
        adjust_lr_fn="match_rms_adamw",
    )
    adamw = _adamw(others, config)
    muon.param_groups[0]["peak_lr"] = config.muon_learning_rate
    adamw.param_groups[0]["peak_lr"] = config.learning_rate
    return MuonAndAdamW(muon, adamw)


def _adamw(parameters: list[torch.nn.Parameter], config: BaseModelConfig) -> torch.optim.AdamW:
    # The fused kernel updates all of its parameters in one pass: at the demo model's size the
    # default implementation's per-tensor loop is mostly overhead.
    return torch.optim.AdamW(
        parameters, lr=config.learning_rate, betas=(0.9, 0.95), weight_decay=config.weight_decay, fused=True
    )


def _learning_rate(step: int, config: BaseModelConfig) -> float:
    """Linear warm-up, then cosine decay to min_learning_rate at the last step."""
    if step < config.warmup_steps:
        return config.learning_rate * (step + 1) / config.warmup_steps
    progress = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
    cosine = 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return config.min_learning_rate + cosine * (config.learning_rate - config.min_learning_rate)


def _write_atomically(output_dir: Path, model: Any, tokenizer: Any, info: dict[str, Any]) -> None:
    """Write model and tokenizer to a sibling temporary directory, then rename it into place."""
    output_dir = output_dir.resolve()
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    prefix = f".{output_dir.name}.tmp-"
    for stale in output_dir.parent.glob(f"{prefix}*"):  # left behind by a build killed while writing
        shutil.rmtree(stale, ignore_errors=True)
    staging = Path(tempfile.mkdtemp(dir=output_dir.parent, prefix=prefix))
    try:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        (staging / BUILD_INFO_FILE).write_text(json.dumps(info, indent=2))
        if output_dir.exists():
            # rename() cannot replace a non-empty directory: move the old one aside first.
            retired = Path(tempfile.mkdtemp(dir=output_dir.parent, prefix=prefix))
            os.replace(output_dir, retired / "old")
            os.replace(staging, output_dir)
            shutil.rmtree(retired, ignore_errors=True)
        else:
            os.replace(staging, output_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


_PUNCTUATION = string.punctuation + "“”‘’«»—–…"


def normalize_word(word: str) -> str:
    """Lower-case a word and strip punctuation from both ends ("Moon," -> "moon"; "don't" stays)."""
    return word.strip(_PUNCTUATION).lower()


def corpus_words(corpus: str) -> set[str]:
    """The corpus's whitespace-separated words, normalised with ``normalize_word``."""
    return {word for word in map(normalize_word, corpus.split()) if word}


def in_corpus_word_share(texts: Iterable[str], corpus: str) -> float:
    """Share of the words in ``texts`` that also occur in ``corpus``.

    Words are whitespace-separated, lower-cased, with punctuation stripped from both ends
    (``normalize_word``); tokens that are all punctuation are not words. Every occurrence counts
    (a word generated twice counts twice). Measures how much of a model's output is made of its
    corpus's vocabulary: 1.0 for text built only of corpus words, lower for invented or garbled
    words. Returns nan when the texts contain no words.
    """
    vocabulary = corpus_words(corpus)
    words = [word for text in texts for word in map(normalize_word, text.split()) if word]
    if not words:
        return math.nan
    return sum(word in vocabulary for word in words) / len(words)
