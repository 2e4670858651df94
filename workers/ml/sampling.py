"""Batched, seeded sampling from any Hugging Face causal language model.

Why our own decoding loop instead of ``model.generate``: ``generate`` draws every row's randomness
from the one global RNG, so a sample depends on which other prompts shared its batch and in which
order. Here each row owns a ``torch.Generator`` seeded with the request's seed, and draws exactly one
uniform number per generated token from it (inverse-CDF sampling). The same seed, prompt, settings
and model therefore give the same text whatever the batch around it. That is what makes a Sample's
recorded seed enough to reproduce it. The limit is floating point: different batch shapes round
logits differently (~1e-6 in float32), which changes a token when its uniform lands that close to
a CDF boundary. Measured on the demo model on the CPU: 126 of 128 samples identical at batch sizes
1, 4, 16 and 32, log-probability sums within 3e-5 (bench/generation.py). In bfloat16 on a GPU the
rounding is coarser, so expect more samples to diverge; regenerate with the same batch size, or
in float32, where exact reproduction matters.

The loop: left-pad a group of prompts, run one forward pass over them (prefill), then one token
per step with the KV cache. Rows that finish (EOS, stop string, length) leave the batch and its
cache, and waiting requests take their places (continuous batching): texts end at very different
lengths, and a batch left to drain ran half empty on average (4x instead of 7x the throughput of
one prompt at a time at batch size 16, bench/generation.py).

Log-probabilities: ``Sample.logprob`` is the raw model's (temperature 1, no top-k / top-p), which is
what DPO, KL penalties and surprisal need and what ``scoring.token_logprobs`` recomputes;
``Sample.sampling_logprob`` is under the distribution actually sampled from (after temperature,
top-k, top-p), which is the proposal probability an importance weight needs.
"""

from __future__ import annotations

import functools
import inspect
import re
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

from workers.ml.chat_format import prompt_ids
from workers.ml.model_loading import load_causal_lm, load_tokenizer
from workers.ml.progress import ProgressReporter, null_reporter

FinishReason = Literal["eos", "stop", "length"]


@dataclass(frozen=True)
class SamplingConfig:
    """Decoding settings of one generation run; recorded with every Sample as its provenance."""

    temperature: float = 1.0
    """Logits are divided by this before sampling. 1.0 samples the model's own distribution (the
    honest default for evaluation); 0 means greedy decoding (argmax, seeds then do not matter)."""

    top_p: float = 1.0
    """Nucleus sampling: keep the smallest set of most likely tokens whose probability sums to at
    least top_p, in (0, 1]. 1.0 disables it."""

    top_k: int = 0
    """Keep only the k most likely tokens (ties at the k-th logit are kept too). 0 disables it."""

    max_new_tokens: int = 64
    """Upper bound on generated tokens per sample; a row also stops at the model's context length.
    64 tokens is a few lines of verse, the artifact size raters compare."""

    stop: tuple[str, ...] = ()
    """Stop strings. A row stops as soon as its text contains one; the text is cut before the
    earliest occurrence (the stop string itself is not part of the text)."""

    end_at_sentence: bool = False
    """A sample that ran out of room (``max_new_tokens`` or the context) ends after its last
    complete sentence: at the last ".", "!" or "?" (with any closing quotes or brackets after it)
    that is followed by whitespace, or ends the text. Its tokens and log-probabilities are cut with
    it; its finish reason stays "length". A sample without a complete sentence is kept whole. For
    short-text demos, where a text broken off mid-sentence reads as broken whatever the model."""

    batch_size: int = 16
    """Most rows in flight at once. On a GPU larger is faster until memory runs out (the batch is
    then halved and retried); on 2 CPU cores 16 rows give ~5-7x the tokens/s of one at a time."""

    device: str = "auto"
    """"auto" (CUDA when available, else CPU), "cpu", "cuda" or "cuda:N"."""

    dtype: str = "auto"
    """"auto" (bfloat16 on CUDA when supported, float32 on CPU), "float32", "bfloat16" or
    "float16". Logits are always processed in float32."""

    def __post_init__(self) -> None:
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0, got {self.top_k}")
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if any(not stop for stop in self.stop):
            raise ValueError("stop strings must be non-empty")


@dataclass(frozen=True)
class SampleRequest:
    """One sample to draw: the prompt and the seed of this row's random numbers."""

    prompt: str
    seed: int


@dataclass(frozen=True)
class Sample:
    """One generated text with its provenance figures."""

    prompt: str
    seed: int
    text: str
    """Decoded continuation (special tokens skipped), cut before the first stop string."""
    token_ids: tuple[int, ...]
    """The generated tokens that produced ``text``: the EOS token and tokens lying wholly inside or
    after a stop string are excluded. When a stop string starts inside a token, that token is kept
    (its text is cut)."""
    token_count: int
    """len(token_ids)."""
    logprob: float
    """Sum over token_ids of log p(token | prefix) under the raw model (temperature 1, no
    filtering): equals the sum of ``scoring.token_logprobs`` of the same prompt and tokens."""
    sampling_logprob: float
    """The same sum under the distribution actually sampled from (after temperature, top-k and
    top-p); 0.0 for greedy decoding."""
    finish_reason: FinishReason
    """"eos" (the model ended the text), "stop" (a stop string), "length" (max_new_tokens or the
    model's context length)."""
    latency_s: float
    """Seconds from the row's admission to the batch (its prefill included) until it finished.
    Rows in flight together share every forward pass, so these do not add up to wall time."""


@dataclass(frozen=True)
class OutOfMemoryEvent:
    """A forward pass that ran out of accelerator memory; the unfinished requests were retried."""

    batch_size: int
    """Rows allowed in flight when it happened (batch size, or fewer when fewer were left)."""
    retried_with: int
    """Half of that: the batch size from then on."""


@dataclass
class GenerationResult:
    samples: list[Sample]
    """In the order of the requests."""
    out_of_memory_events: list[OutOfMemoryEvent] = field(default_factory=list)
    final_batch_size: int = 0
    """Batch size in use at the end (the configured one unless memory ran out)."""
    wall_time_s: float = 0.0

    @property
    def total_tokens(self) -> int:
        return sum(sample.token_count for sample in self.samples)


@dataclass
class LoadedModel:
    """A causal LM in eval mode with its tokenizer, and where its tensors live."""

    model: Any
    """A transformers causal LM (or anything with its forward signature and a ``config``)."""
    tokenizer: Any
    device: torch.device
    dtype: torch.dtype


def resolve_device_and_dtype(device: str = "auto", dtype: str = "auto") -> tuple[torch.device, torch.dtype]:
    """Turn the config's strings into torch objects: CUDA + bfloat16 when available, else CPU + float32."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    resolved_device = torch.device(device)
    if dtype == "auto":
        on_cuda = resolved_device.type == "cuda"
        # bfloat16 halves memory and bandwidth on the GPU without float16's overflow; on most CPUs
        # bfloat16 matmuls are slower than float32.
        resolved_dtype = torch.bfloat16 if on_cuda and torch.cuda.is_bf16_supported() else torch.float32
    else:
        resolved_dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[
            dtype
        ]
    return resolved_device, resolved_dtype


def load_model(
    name_or_path: str | Path, *, device: str = "auto", dtype: str = "auto", revision: str | None = None
) -> LoadedModel:
    """Load a causal LM and its tokenizer from a hub id or a local directory, cached in-process.

    ``revision`` pins a hub model to a branch, tag or commit (a local directory has none). The two
    most recently used models stay loaded (a GPU worker alternates between a policy and its
    parent). A local directory's modification time is part of the cache key, so a model rebuilt
    into the same path (written to a new directory, then renamed) is loaded afresh.
    """
    resolved_device, resolved_dtype = resolve_device_and_dtype(device, dtype)
    path = Path(name_or_path)
    stamp = path.stat().st_mtime_ns if path.is_dir() else 0
    return _load_model_cached(
        str(name_or_path), str(resolved_device), str(resolved_dtype), stamp, revision or None
    )


@functools.lru_cache(maxsize=2)
def _load_model_cached(
    name_or_path: str, device: str, dtype: str, stamp: int, revision: str | None
) -> LoadedModel:
    torch_dtype = getattr(torch, dtype.removeprefix("torch."))
    pinned: dict[str, Any] = {"revision": revision} if revision else {}
    # An adapter folder (a trained child) carries its tokenizer; its base weights are loaded from
    # the path it names and the adapter merged in (see model_loading).
    tokenizer = load_tokenizer(name_or_path, **pinned)
    model: Any = load_causal_lm(name_or_path, dtype=torch_dtype, **pinned)
    model.to(device)
    model.eval()
    return LoadedModel(model=model, tokenizer=tokenizer, device=torch.device(device), dtype=torch_dtype)


def clear_model_cache() -> None:
    """Forget the loaded models (frees their memory once no caller holds them)."""
    _load_model_cached.cache_clear()


def encode_prompt(tokenizer: Any, prompt: str) -> list[int]:
    """Token ids of a prompt as the model continues it: through the chat template for a chat
    model, else the text after the BOS token when the tokenizer has one (``chat_format``).

    A GPT-2-style tokenizer adds no BOS by itself, but its models saw ``<|endoftext|>`` before every
    document; starting there makes an empty prompt mean "the beginning of a piece". Scoring and the
    policy trainers use the same rule, so generation, scoring and training see identical contexts.
    An empty plain-text prompt without a BOS token gives an empty list.
    """
    return prompt_ids(tokenizer, prompt)


GENERATION_DEFAULTS = ("temperature", "top_p", "top_k", "max_new_tokens")


def generation_defaults(model: Any) -> dict[str, Any]:
    """The decoding settings the model's authors chose in its ``generation_config.json``, as
    ``SamplingConfig`` fields: only those that differ from transformers' own defaults (so an
    untouched ``top_k=50`` is not taken for a choice). A version's or job's settings override them.
    """
    generation_config = getattr(model, "generation_config", None)
    if generation_config is None:
        return {}
    chosen = generation_config.to_diff_dict()
    return {name: chosen[name] for name in GENERATION_DEFAULTS if chosen.get(name) is not None}


def generation_defaults_of(name_or_path: str | Path, *, revision: str | None = None) -> dict[str, Any]:
    """``generation_defaults`` read from the model's folder or hub id without loading the model
    (for an engine that loads it itself); none when it has no ``generation_config.json``."""
    from transformers import GenerationConfig

    try:
        config = GenerationConfig.from_pretrained(str(name_or_path), revision=revision or "main")
    except OSError:
        return {}

    class _Holder:
        generation_config = config

    return generation_defaults(_Holder())


def context_length(model: Any) -> int | None:
    """Longest sequence the model takes (GPT-2's absolute positions) or was trained for (rotary
    models), or None when its config names no limit."""
    config = model.config
    limit = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)
    return int(limit) if limit else None


def generate_samples(
    model: LoadedModel | str | Path,
    requests: Sequence[SampleRequest],
    *,
    config: SamplingConfig | None = None,
    reporter: ProgressReporter = null_reporter,
    on_sample: Callable[[int, Sample], None] | None = None,
) -> GenerationResult:
    """Draw one sample per request, with at most ``config.batch_size`` rows in flight.

    Requests are admitted shortest prompt first; results come back in request order, and
    ``on_sample(request_index, sample)`` hears of each one as soon as it is finished, so that a
    caller can store results while the rest are still being decoded: one call over all requests
    keeps the batch full to the end, where calls over consecutive chunks would let it drain at
    every chunk's end. The reporter is called each time another ``batch_size`` samples are
    finished, and after the last one. When
    a forward pass runs out of accelerator memory, the unfinished requests are retried with half
    the batch size, which stays in force for the rest of the run; the event is recorded in the
    result (finished samples are kept; each row's randomness is its own, so the retried rows come
    out as they would have). Raises ValueError for a prompt that leaves no room in the context.
    """
    config = config or SamplingConfig()
    loaded = (
        model
        if isinstance(model, LoadedModel)
        else load_model(model, device=config.device, dtype=config.dtype)
    )
    started = time.perf_counter()
    limit = context_length(loaded.model)
    rows: list[_Row] = []
    for index, request in enumerate(requests):
        ids = encode_prompt(loaded.tokenizer, request.prompt)
        if not ids:
            raise ValueError(f"prompt {index} is empty and the tokenizer has no BOS token to start from")
        if limit is not None and len(ids) >= limit:
            raise ValueError(f"prompt {index} has {len(ids)} tokens; the model's context is {limit}")
        rows.append(
            _Row(
                index=index,
                request=request,
                prompt_ids=ids,
                max_new=config.max_new_tokens
                if limit is None
                else min(config.max_new_tokens, limit - len(ids)),
            )
        )

    samples: dict[int, Sample] = {}
    reported = 0

    def finished(row: _Row, reason: FinishReason) -> None:
        nonlocal reported
        samples[row.index] = _finish_sample(
            row, loaded.tokenizer, reason, config.stop, config.end_at_sentence
        )
        if on_sample is not None:
            on_sample(row.index, samples[row.index])
        if len(samples) - reported >= config.batch_size or len(samples) == len(rows):
            reported = len(samples)
            reporter(
                step=reported,
                total=len(rows),
                message=f"generated {reported}/{len(rows)} samples (batch size {batch_size})",
            )

    events: list[OutOfMemoryEvent] = []
    batch_size = config.batch_size
    while len(samples) < len(rows):
        # Shortest prompts first: rows admitted together need less padding.
        queue = deque(
            sorted((row for row in rows if row.index not in samples), key=lambda row: len(row.prompt_ids))
        )
        try:
            _decode(loaded, queue, config, batch_size, finished)
        except RuntimeError as error:  # torch.cuda.OutOfMemoryError is a RuntimeError
            if not _is_out_of_memory(error):
                raise
            in_flight = min(batch_size, len(rows) - len(samples))
            if in_flight == 1:
                raise
        else:
            break
        # Outside the except block, so the traceback (and the tensors its frames hold) is gone.
        batch_size = in_flight // 2
        events.append(OutOfMemoryEvent(batch_size=in_flight, retried_with=batch_size))
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    return GenerationResult(
        samples=[samples[index] for index in range(len(rows))],
        out_of_memory_events=events,
        final_batch_size=batch_size,
        wall_time_s=time.perf_counter() - started,
    )


@dataclass
class _Row:
    """One request on its way through the decoder."""

    index: int
    request: SampleRequest
    prompt_ids: list[int]
    max_new: int
    """max_new_tokens, lowered where the prompt leaves less room in the context."""
    uniforms: list[float] = field(default_factory=list)
    """One uniform number per token this row may sample, from the row's own generator."""
    generated: list[int] = field(default_factory=list)
    raw_logprobs: list[float] = field(default_factory=list)
    sampled_logprobs: list[float] = field(default_factory=list)
    admitted: float = 0.0
    latency_s: float = 0.0
    done: bool = False


def _is_out_of_memory(error: RuntimeError) -> bool:
    return isinstance(error, torch.cuda.OutOfMemoryError) or "out of memory" in str(error).lower()


def _forward_arguments(model: Any) -> tuple[str, bool]:
    """The keyword for the KV cache and whether forward takes ``logits_to_keep``.

    transformers 5 renamed ``past_key_values`` to ``cache``; remote-code models may still use the
    old name.
    """
    parameters = inspect.signature(model.forward).parameters
    takes_any = any(parameter.kind is inspect.Parameter.VAR_KEYWORD for parameter in parameters.values())
    cache_keyword = (
        "past_key_values" if "past_key_values" in parameters and "cache" not in parameters else "cache"
    )
    return cache_keyword, "logits_to_keep" in parameters or takes_any


@torch.inference_mode()
def _decode(
    loaded: LoadedModel,
    queue: deque[_Row],
    config: SamplingConfig,
    max_rows: int,
    finished: Callable[[_Row, FinishReason], None],
) -> None:
    """Decode every row of ``queue`` with continuous batching.

    Rows end at different lengths (EOS, stop strings); instead of letting the batch drain, freed
    places are refilled from the queue: the newcomers' prompts are prefilled on their own, their
    KV cache is left-padded to the batch's length and appended on the batch dimension. Columns that
    no remaining row attends to are cut from the left, so the cache never outgrows the longest row.
    A row's logits depend only on its own tokens and positions (the rest is masked), and its random
    numbers come from its own generator, so its sample does not depend on its neighbours.
    """
    model, device = loaded.model, loaded.device
    cache_keyword, takes_logits_to_keep = _forward_arguments(model)
    extra: dict[str, Any] = {"logits_to_keep": 1} if takes_logits_to_keep else {}
    eos_ids = _eos_ids(model, loaded.tokenizer)
    stop_window = _stop_window_tokens(config.stop)
    # Admitting newcomers costs one extra forward pass, so wait until a quarter of the places are
    # free (a few steps on average) rather than prefill each newcomer alone.
    admit_when_free = max(1, max_rows // 4)

    # The rows in flight and their tensors, aligned on the batch dimension.
    active: list[_Row] = []
    cache: Any = None
    attention_mask = torch.zeros((0, 0), dtype=torch.long, device=device)  # one column per cached token
    next_position = torch.zeros(0, dtype=torch.long, device=device)  # position of the next input
    next_input = torch.zeros(0, dtype=torch.long, device=device)  # each row's last sampled token
    # Cache surgery (append rows, cut columns) assumes plain full-attention layers; other cache
    # layouts (sliding windows, linear attention) run as fixed batches that drain before refilling.
    can_refill = True

    while queue or active:
        free = max_rows - len(active)
        if queue and (not active or (can_refill and free >= min(admit_when_free, len(queue)))):
            newcomers = [queue.popleft() for _ in range(min(free, len(queue)))]
            new_cache, new_mask, new_position, logits = _prefill(loaded, newcomers, cache_keyword, extra)
            tokens = _sample_rows(newcomers, logits, config, eos_ids, stop_window, loaded.tokenizer, finished)
            if active:
                cache, attention_mask = _append_rows(cache, attention_mask, new_cache, new_mask)
                next_position = torch.cat([next_position, new_position])
                next_input = torch.cat([next_input, tokens])
            else:
                cache, attention_mask, next_position, next_input = new_cache, new_mask, new_position, tokens
                can_refill = all(type(layer) is DynamicLayer for layer in cache.layers)
            active = active + newcomers
        else:
            attention_mask = torch.cat([attention_mask, attention_mask.new_ones((len(active), 1))], dim=-1)
            output = model(
                input_ids=next_input[:, None],
                attention_mask=attention_mask,
                position_ids=next_position[:, None],
                use_cache=True,
                **{cache_keyword: cache},
                **extra,
            )
            next_position = next_position + 1
            next_input = _sample_rows(
                active, output.logits[:, -1, :], config, eos_ids, stop_window, loaded.tokenizer, finished
            )

        keep = [position for position, row in enumerate(active) if not row.done]
        if len(keep) == len(active):
            continue
        if not keep:
            active, cache = [], None  # the tensors are replaced at the next admission
            continue
        # Drop finished rows from the batch and from every layer's cached keys and values.
        index = torch.tensor(keep, device=device)
        cache.batch_select_indices(index)
        attention_mask, next_position, next_input = (
            attention_mask[index],
            next_position[index],
            next_input[index],
        )
        active = [active[position] for position in keep]
        if can_refill:
            cache, attention_mask = _cut_unused_columns(cache, attention_mask)


def _prefill(
    loaded: LoadedModel, rows: Sequence[_Row], cache_keyword: str, extra: dict[str, Any]
) -> tuple[Any, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Run the rows' prompts, left-padded, through the model: (cache, mask, next position, logits)."""
    now = time.perf_counter()
    width = max(len(row.prompt_ids) for row in rows)
    pad_id = loaded.tokenizer.pad_token_id if loaded.tokenizer.pad_token_id is not None else 0
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
    for position, row in enumerate(rows):
        input_ids[position, width - len(row.prompt_ids) :] = torch.tensor(row.prompt_ids)
        attention_mask[position, width - len(row.prompt_ids) :] = 1
        # Every uniform the row may need, drawn on the CPU from the row's own generator: the same
        # stream whatever the batch and whatever the device.
        generator = torch.Generator().manual_seed(row.request.seed)
        row.uniforms = torch.rand(row.max_new, generator=generator).tolist()
        row.admitted = now
        # A row retried after running out of memory starts over.
        row.generated, row.raw_logprobs, row.sampled_logprobs = [], [], []
    # Left padding shifts each prompt right; positions count real tokens only, so a row's positions
    # (and hence its logits) do not depend on the longest prompt beside it.
    position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
    input_ids, attention_mask, position_ids = (
        input_ids.to(loaded.device),
        attention_mask.to(loaded.device),
        position_ids.to(loaded.device),
    )
    cache = DynamicCache(config=loaded.model.config)
    output = loaded.model(
        input_ids=input_ids,
        attention_mask=attention_mask,
        position_ids=position_ids,
        use_cache=True,
        **{cache_keyword: cache},
        **extra,
    )
    return cache, attention_mask, attention_mask.sum(-1), output.logits[:, -1, :]


def _append_rows(
    cache: Any, attention_mask: torch.Tensor, new_cache: Any, new_mask: torch.Tensor
) -> tuple[Any, torch.Tensor]:
    """Stack new rows under the batch, left-padding whichever cache is shorter (masked out)."""
    width = max(attention_mask.shape[1], new_mask.shape[1])
    for layer, new_layer in zip(cache.layers, new_cache.layers, strict=True):
        layer.keys = torch.cat([_left_pad(layer.keys, width), _left_pad(new_layer.keys, width)])
        layer.values = torch.cat([_left_pad(layer.values, width), _left_pad(new_layer.values, width)])
    mask = torch.cat([_left_pad_mask(attention_mask, width), _left_pad_mask(new_mask, width)])
    return cache, mask


def _left_pad(states: torch.Tensor, width: int) -> torch.Tensor:
    """Zero-pad (batch, heads, tokens, head_dim) cached states on the left to ``width`` tokens."""
    return torch.nn.functional.pad(states, (0, 0, width - states.shape[-2], 0))


def _left_pad_mask(mask: torch.Tensor, width: int) -> torch.Tensor:
    return torch.nn.functional.pad(mask, (width - mask.shape[-1], 0))


def _cut_unused_columns(cache: Any, attention_mask: torch.Tensor) -> tuple[Any, torch.Tensor]:
    """Remove leading cache columns that every remaining row masks out."""
    first = int(attention_mask.any(dim=0).int().argmax())
    if first == 0:
        return cache, attention_mask
    for layer in cache.layers:
        layer.keys = layer.keys[:, :, first:]
        layer.values = layer.values[:, :, first:]
    return cache, attention_mask[:, first:]


def _sample_rows(
    rows: Sequence[_Row],
    logits: torch.Tensor,
    config: SamplingConfig,
    eos_ids: set[int],
    stop_window: int,
    tokenizer: Any,
    finished: Callable[[_Row, FinishReason], None],
) -> torch.Tensor:
    """Sample each row's next token, record it, and finish rows that end here. Returns the tokens."""
    uniforms = torch.tensor([row.uniforms[len(row.generated)] for row in rows], device=logits.device)
    tokens, token_raw, token_sampled = _sample_next(logits.float(), uniforms, config)
    for row, token, raw, sampled in zip(
        rows, tokens.tolist(), token_raw.tolist(), token_sampled.tolist(), strict=True
    ):
        reason: FinishReason | None = None
        if token in eos_ids:
            reason = "eos"
        else:
            row.generated.append(token)
            row.raw_logprobs.append(raw)
            row.sampled_logprobs.append(sampled)
            if stop_window and _tail_contains_stop(tokenizer, row.generated, stop_window, config.stop):
                reason = "stop"
            elif len(row.generated) >= row.max_new:
                reason = "length"
        if reason is not None:
            row.done = True
            row.latency_s = time.perf_counter() - row.admitted
            finished(row, reason)
    return tokens


def _sample_next(
    logits: torch.Tensor, uniforms: torch.Tensor, config: SamplingConfig
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pick one token per row by inverse-CDF sampling with the row's uniform number.

    Returns the tokens, their raw-model log-probabilities and their log-probabilities under the
    filtered, tempered distribution. ``logits`` is float32 of shape (rows, vocabulary).
    """
    raw = torch.log_softmax(logits, dim=-1)
    if config.temperature == 0:
        tokens = logits.argmax(dim=-1)
        return tokens, raw.gather(-1, tokens[:, None])[:, 0], torch.zeros_like(uniforms)
    scaled = logits / config.temperature
    if config.top_k > 0 and config.top_k < scaled.shape[-1]:
        kth = torch.topk(scaled, config.top_k, dim=-1).values[:, -1:]
        scaled = scaled.masked_fill(scaled < kth, float("-inf"))
    if config.top_p < 1:
        sorted_logits, sorted_index = torch.sort(scaled, dim=-1, descending=True, stable=True)
        sorted_probs = torch.softmax(sorted_logits, dim=-1)
        # Drop a token when the more likely tokens before it already reach top_p; the most likely
        # token always stays.
        drop_sorted = (sorted_probs.cumsum(-1) - sorted_probs) >= config.top_p
        drop = drop_sorted.scatter(-1, sorted_index, drop_sorted)
        scaled = scaled.masked_fill(drop, float("-inf"))
    probabilities = torch.softmax(scaled, dim=-1)
    cumulative = probabilities.cumsum(-1)
    # The first index whose cumulative mass exceeds u * total: never a zero-probability token,
    # because a token with zero mass does not raise the cumulative sum above its predecessor.
    targets = (uniforms * cumulative[:, -1]).unsqueeze(-1)
    tokens = torch.searchsorted(cumulative, targets, right=True)[:, 0].clamp(max=logits.shape[-1] - 1)
    sampled = torch.log(probabilities.gather(-1, tokens[:, None])[:, 0])
    return tokens, raw.gather(-1, tokens[:, None])[:, 0], sampled


def _eos_ids(model: Any, tokenizer: Any) -> set[int]:
    """Every token that ends a text: the config's, the tokenizer's, and the generation config's
    (chat models list their end-of-turn tokens there, e.g. Llama 3's ``<|eot_id|>``)."""
    ids: set[int] = set()
    generation_config = getattr(model, "generation_config", None)
    for candidate in (
        getattr(model.config, "eos_token_id", None),
        tokenizer.eos_token_id,
        getattr(generation_config, "eos_token_id", None),
    ):
        if isinstance(candidate, int):
            ids.add(candidate)
        elif isinstance(candidate, list):
            ids.update(candidate)
    return ids


def _stop_window_tokens(stops: Sequence[str]) -> int:
    """How many trailing tokens can contain a stop string that the newest token completed.

    Every token carries at least one byte, so a stop string of b UTF-8 bytes spans at most b tokens;
    one more covers a character split across tokens. Decoding only this tail keeps the check O(1)
    per step instead of re-decoding the whole row.
    """
    return max((len(stop.encode()) + 1 for stop in stops), default=0)


def _decode_text(tokenizer: Any, ids: Sequence[int]) -> str:
    return str(tokenizer.decode(list(ids), skip_special_tokens=True, clean_up_tokenization_spaces=False))


def _tail_contains_stop(tokenizer: Any, ids: list[int], window: int, stops: Sequence[str]) -> bool:
    tail = _decode_text(tokenizer, ids[-window:])
    return any(stop in tail for stop in stops)


_SENTENCE_END = re.compile(r"[.!?][\"')\]]*(?=\s|$)")


def last_sentence_end(text: str) -> int:
    """Length of ``text`` up to the end of its last complete sentence (see
    ``SamplingConfig.end_at_sentence``); 0 when it has none.

    >>> last_sentence_end('She sang. "Come home!" The boat')
    22
    >>> last_sentence_end("3.5 miles and")
    0
    """
    ends = [match.end() for match in _SENTENCE_END.finditer(text)]
    return ends[-1] if ends else 0


def cut_at_sentence_end(tokenizer: Any, ids: Sequence[int], text: str) -> tuple[str, int]:
    """(text up to its last complete sentence, how many of ``ids`` cover it) for a sample whose
    tokens ``ids`` decode to ``text``; the text and len(ids) unchanged when it has no complete
    sentence or already ends with one. The local sampler and the vLLM engine share it."""
    end = last_sentence_end(text)
    if not 0 < end < len(text):
        return text, len(ids)
    return text[:end], _tokens_covering(tokenizer, ids, text[:end])


def _tokens_covering(tokenizer: Any, ids: Sequence[int], text: str) -> int:
    """The shortest run of leading tokens whose text starts with ``text`` (a prefix of their text)."""
    return next(
        (count for count in range(len(ids) + 1) if _decode_text(tokenizer, ids[:count]).startswith(text)),
        len(ids),
    )


def _finish_sample(
    row: _Row, tokenizer: Any, reason: FinishReason, stops: Sequence[str], end_at_sentence: bool = False
) -> Sample:
    ids = row.generated
    text = _decode_text(tokenizer, ids)
    positions = [text.find(stop) for stop in stops if stop in text]
    if positions:
        text = text[: min(positions)]
        # Keep the shortest run of tokens whose text covers the cut text.
        ids = ids[: _tokens_covering(tokenizer, ids, text)]
        reason = "stop"
    elif reason == "length" and end_at_sentence:
        text, kept = cut_at_sentence_end(tokenizer, ids, text)
        ids = ids[:kept]
    return Sample(
        prompt=row.request.prompt,
        seed=row.request.seed,
        text=text,
        token_ids=tuple(ids),
        token_count=len(ids),
        logprob=float(sum(row.raw_logprobs[: len(ids)])),
        sampling_logprob=float(sum(row.sampled_logprobs[: len(ids)])),
        finish_reason=reason,
        latency_s=row.latency_s,
    )
