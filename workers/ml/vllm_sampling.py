"""Generation through vLLM on a GPU worker, with the local sampler's requests and results.

Used when a version's decoding asks for ``engine: "vllm"``, or ``"auto"`` on a worker where the
``vllm`` package imports and CUDA is present (``engine_choose``); everywhere else the local
sampler (``workers.ml.sampling``) runs. Install on a GPU worker: ``pip install vllm`` into the
worker's environment, in the version that matches its torch (vLLM pins one torch release; the
worker image's torch may have to follow it).

What stays the same as the local sampler: the prompt's token ids (``chat_format.prompt_ids``: the
chat template for a chat model, BOS for a plain one) are passed to vLLM as tokens, so a prompt
reaches the model exactly as in training and local generation; each request carries its own seed
(vLLM's per-request ``SamplingParams.seed``), so a sample does not depend on its batch; stop
strings cut the text before the stop; the results come back as ``sampling.Sample`` in request
order and ``on_sample`` hears each one. What differs: the random numbers are vLLM's, so the same
seed gives a different text than the local sampler; ``logprob`` is vLLM's cumulative log-probability
of the sampled tokens, and ``sampling_logprob`` is not available (recorded as NaN); a sample that
``end_at_sentence`` cut has no ``logprob`` either (vLLM reports only the sum over all its tokens).
Continuous batching is vLLM's own.

Not run on this project's CI machines (no GPU, no vllm): ``engine_choose`` and the request mapping
are tested; the engine itself is exercised only on a GPU worker.
"""

from __future__ import annotations

import functools
import importlib.util
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

from workers.ml.chat_format import prompt_ids
from workers.ml.model_loading import load_tokenizer
from workers.ml.sampling import GenerationResult, Sample, SampleRequest, SamplingConfig, cut_at_sentence_end

ENGINES = ("auto", "local", "vllm")


class EngineUnavailable(RuntimeError):
    """The engine a version asks for cannot run on this worker."""


def vllm_usable() -> bool:
    """Whether this worker can run vLLM: the package imports and a CUDA device is present."""
    if importlib.util.find_spec("vllm") is None:
        return False
    import torch

    return torch.cuda.is_available()


def engine_choose(requested: str, *, usable: bool | None = None) -> str:
    """The engine that runs: "vllm" or "local". ``auto`` takes vLLM where it is usable; asking for
    ``vllm`` where it is not raises ``EngineUnavailable`` in plain words (the job fails with them)."""
    if requested not in ENGINES:
        raise ValueError(f"engine must be one of {', '.join(ENGINES)}, not {requested!r}")
    usable = vllm_usable() if usable is None else usable
    if requested == "vllm" and not usable:
        raise EngineUnavailable(
            "engine 'vllm' needs the vllm package and a CUDA GPU on the worker; this worker has "
            + ("no CUDA GPU" if importlib.util.find_spec("vllm") else "no vllm package installed")
            + " (use engine 'auto' or 'local', or install vllm on a GPU worker)"
        )
    return "vllm" if requested == "vllm" or (requested == "auto" and usable) else "local"


def sampling_parameters(config: SamplingConfig, seed: int) -> dict[str, Any]:
    """vLLM ``SamplingParams`` keyword arguments for one request of ``config``."""
    return {
        "n": 1,
        "temperature": config.temperature,
        "top_p": config.top_p,
        "top_k": config.top_k if config.top_k > 0 else -1,  # vLLM: -1 disables top-k
        "max_tokens": config.max_new_tokens,
        "stop": list(config.stop),
        "seed": seed,
        "skip_special_tokens": True,
    }


def finish_reason(output: Any) -> str:
    """vLLM's finish reason in the local sampler's words: "eos", "stop" or "length"."""
    if output.finish_reason == "length":
        return "length"
    return "stop" if isinstance(output.stop_reason, str) else "eos"


VLLM_CHUNK = 512  # requests per generate call: vLLM batches inside it; results are stored between


@functools.lru_cache(maxsize=1)
def _engine(model_path: str, revision: str | None, dtype: str) -> Any:
    """One vLLM engine per worker process and model (building one loads the weights and
    captures CUDA graphs: tens of seconds)."""
    from vllm import LLM

    return LLM(model=model_path, revision=revision, dtype=dtype, seed=0)


def generate_with_vllm(
    model_path: str,
    requests: Sequence[SampleRequest],
    *,
    config: SamplingConfig,
    revision: str | None = None,
    on_sample: Callable[[int, Sample], None] | None = None,
) -> GenerationResult:
    """One sample per request through vLLM, in request order (see the module docstring), sent
    ``VLLM_CHUNK`` requests at a time so that ``on_sample`` (storage, progress) hears of results
    while the rest are generated."""
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    started = time.perf_counter()
    tokenizer = load_tokenizer(model_path, **({"revision": revision} if revision else {}))
    engine = _engine(model_path, revision, config.dtype)
    samples: list[Sample] = []
    for first in range(0, len(requests), VLLM_CHUNK):
        chunk = requests[first : first + VLLM_CHUNK]
        began = time.perf_counter()
        prompts = [TokensPrompt(prompt_token_ids=prompt_ids(tokenizer, request.prompt)) for request in chunk]
        parameters = [SamplingParams(**sampling_parameters(config, request.seed)) for request in chunk]
        outputs = engine.generate(prompts, parameters, use_tqdm=False)
        waited = time.perf_counter() - began  # each sample of a chunk waited for the chunk
        for offset, (request, output) in enumerate(zip(chunk, outputs, strict=True)):
            completion = output.outputs[0]
            cumulative = completion.cumulative_logprob
            text, token_ids = completion.text, tuple(completion.token_ids)
            logprob = float(cumulative) if cumulative is not None else math.nan
            reason = finish_reason(completion)
            if config.end_at_sentence and reason == "length":
                text, kept = cut_at_sentence_end(tokenizer, token_ids, text)
                if kept < len(token_ids):
                    token_ids, logprob = token_ids[:kept], math.nan
            sample = Sample(
                prompt=request.prompt,
                seed=request.seed,
                text=text,
                token_ids=token_ids,
                token_count=len(token_ids),
                logprob=logprob,
                sampling_logprob=math.nan,
                finish_reason=reason,  # type: ignore[arg-type]
                latency_s=waited,
            )
            samples.append(sample)
            if on_sample is not None:
                on_sample(first + offset, sample)
    return GenerationResult(
        samples=samples,
        final_batch_size=min(len(requests), VLLM_CHUNK),
        wall_time_s=time.perf_counter() - started,
    )
