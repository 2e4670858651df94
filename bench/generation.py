"""Generation benchmark: builds the demo model, measures its corpus fidelity and sampling speed.

Run from the repository root: ``.venv/bin/python -m bench.generation``. Prints figures; asserts
nothing. Parts:

1. builds the demo base model (default BaseModelConfig, demo corpus) on the CPU with 2 threads
   and prints the build time and final loss;
2. samples 200 texts from it with the default SamplingConfig and prints the share of their words
   that occur in the corpus (target: at least 80 %);
3. tokens/s of ``generate_samples`` at batch sizes 1, 4, 16 and 32 against a one-prompt-at-a-time
   ``model.generate`` loop, in the same run, on the demo model on the CPU (target at batch >= 16:
   at least 5x the loop), and how many samples came out identical at every batch size;
4. the same on a randomly initialised GPT-2-small-shaped model (124 M) when CUDA is available;
5. the endpoint path: ``endpoint_generate`` against a local OpenAI-compatible server process
   (``workers.ml.openai_server --simulated-latency``: every request answered after a fixed delay,
   all in parallel, as an inference server that batches concurrent requests would), samples/s at
   concurrency 16 against 1 over repeats (target: at least 8x), with every sample accounted for,
   including requests the server first refuses with 429. ``--endpoint-only`` runs this part alone
   (no model build, about a minute).
"""

from __future__ import annotations

import os

# Must precede the torch import. Idle OpenMP threads spin by default; on a machine shared with
# other processes a spinning thread steals the core its partner needs, and a training step of the
# demo model measured 1.6 s instead of 0.3 s. On an idle machine passive waiting costs a thread
# wake-up per parallel region.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

from workers.ml.base_model import (
    DEMO_CORPUS_PATH,
    BaseModelConfig,
    build_base_model,
    in_corpus_word_share,
    split_corpus,
)
from workers.ml.sampling import (
    LoadedModel,
    SampleRequest,
    SamplingConfig,
    encode_prompt,
    generate_samples,
    load_model,
)

BATCH_SIZES = (1, 4, 16, 32)
MAX_NEW_TOKENS = 64
SAMPLES_PER_PROMPT = 4


def main() -> None:
    if "--endpoint-only" in sys.argv[1:]:
        compare_endpoint_concurrency()
        return
    torch.set_num_threads(2)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, load average {os.getloadavg()}")
    corpus = DEMO_CORPUS_PATH.read_text()
    with tempfile.TemporaryDirectory() as scratch:
        loaded = build_demo(corpus, Path(scratch))
        measure_word_share(loaded, corpus)
        prompts = [" ".join(piece.split()[:2]) for piece in split_corpus(corpus)[:32]]
        compare_throughput("demo model, CPU float32", loaded, prompts)
    if torch.cuda.is_available():
        compare_throughput(
            "GPT-2-small shape (124 M, random init), CUDA bfloat16", gpt2_small(loaded), prompts
        )
    else:
        print("\nCUDA not available: GPT-2-small GPU comparison skipped.")
    compare_endpoint_concurrency()


ENDPOINT_REQUESTS = 96
ENDPOINT_LATENCY_SECONDS = 0.1
ENDPOINT_REPEATS = 5


def compare_endpoint_concurrency() -> None:
    """Samples/s through the endpoint client at concurrency 1 and 16 against one server process."""
    import subprocess
    import threading

    from workers.ml.endpoint_client import (
        EndpointConfig,
        EndpointDecoding,
        EndpointRequest,
        EndpointSample,
        endpoint_generate,
    )

    print(
        f"\nEndpoint path: {ENDPOINT_REQUESTS} requests to workers.ml.openai_server with a simulated "
        f"{ENDPOINT_LATENCY_SECONDS * 1000:.0f} ms per answer (parallel), {ENDPOINT_REPEATS} repeats"
    )
    server = subprocess.Popen(
        [sys.executable, "-m", "workers.ml.openai_server", "--port", "0", "--served-model-name", "sim",
         "--simulated-latency", str(ENDPOINT_LATENCY_SECONDS), "--faults"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.append(server.stdout.readline()), daemon=True)  # type: ignore[union-attr]
    reader.start()
    reader.join(timeout=60)
    try:
        if not lines or not lines[0].startswith("listening on "):
            print(f"the server did not start: {lines}")
            return
        base_url = lines[0].split()[-1]
        requests = [
            EndpointRequest(prompt=f"prompt {n // 4}", seed=n % 4, key=n) for n in range(ENDPOINT_REQUESTS)
        ]
        decoding = EndpointDecoding(temperature=1.0, max_tokens=16)
        rates: dict[int, list[float]] = {1: [], 16: []}
        for repeat in range(ENDPOINT_REPEATS):
            for concurrency in (1, 16) if repeat % 2 == 0 else (16, 1):
                _faults(base_url, [{"prompt": "prompt 3", "answer": "429", "retry_after": "0", "times": 2}])
                config = EndpointConfig(
                    base_url=base_url, model="sim", concurrency=concurrency, backoff_seconds=0.05
                )
                started = time.perf_counter()
                results = list(endpoint_generate(config, decoding, requests))
                elapsed = time.perf_counter() - started
                answered = sorted(r.request.key for r in results if isinstance(r, EndpointSample))
                failed = [r for r in results if not isinstance(r, EndpointSample)]
                if answered != list(range(ENDPOINT_REQUESTS)) or failed:
                    print(
                        f"  ACCOUNTING FAILED at concurrency {concurrency}: "
                        f"{len(answered)} answered, {len(failed)} failed"
                    )
                    return
                retried = sum(r.attempts - 1 for r in results if isinstance(r, EndpointSample))
                rates[concurrency].append(ENDPOINT_REQUESTS / elapsed)
                print(
                    f"  repeat {repeat + 1}, concurrency {concurrency:2d}: "
                    f"{ENDPOINT_REQUESTS / elapsed:7.1f} samples/s "
                    f"({elapsed:5.2f} s; every sample once, {retried} retried after a 429)"
                )
        ratios = [fast / slow for fast, slow in zip(rates[16], rates[1], strict=True)]
        mean = statistics.mean(ratios)
        se = statistics.stdev(ratios) / len(ratios) ** 0.5 if len(ratios) > 1 else float("nan")
        verdict = "met" if mean - 2 * se >= 8 else "NOT MET" if mean + 2 * se < 8 else "inconclusive"
        print(f"  concurrency 16 vs 1: {mean:.1f}x ± {se:.1f} (target >= 8x): {verdict}")
    finally:
        server.terminate()
        server.wait(timeout=10)


def _faults(base_url: str, faults: list[dict[str, Any]]) -> None:
    import json
    import urllib.request

    request = urllib.request.Request(
        base_url.removesuffix("/v1") + "/control/faults",
        data=json.dumps({"faults": faults}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    urllib.request.urlopen(request, timeout=10).read()


def build_demo(corpus: str, scratch: Path) -> LoadedModel:
    config = BaseModelConfig()
    print(
        f"\n== demo build: {len(corpus) / 1000:.0f} KB corpus, {len(split_corpus(corpus))} pieces; "
        f"{config.n_layer} layers x {config.n_embd}, context {config.context_length}, "
        f"{config.steps} steps x {config.batch_size} windows"
    )
    cpu_before = _cpu_seconds()
    result = build_base_model(
        corpus=corpus, output_dir=scratch / "demo", checkpoint_dir=scratch / "checkpoints", config=config
    )
    print(
        f"build time {result.seconds:.1f} s wall, {_cpu_seconds() - cpu_before:.1f} s CPU; "
        f"{result.parameters / 1e6:.2f} M parameters, vocabulary {result.vocab_size}; "
        f"loss {statistics.mean(result.losses[:10]):.2f} -> {statistics.mean(result.losses[-10:]):.2f}"
    )
    print(f"target <= 300 s: {'met' if result.seconds <= 300 else 'MISSED'}")
    return load_model(result.output_dir, device="cpu")


def measure_word_share(loaded: LoadedModel, corpus: str) -> None:
    config = SamplingConfig()
    requests = [SampleRequest(prompt="", seed=seed) for seed in range(200)]
    result = generate_samples(loaded, requests, config=config)
    share = in_corpus_word_share([sample.text for sample in result.samples], corpus)
    words = sum(len(sample.text.split()) for sample in result.samples)
    print(
        f"\n== 200 samples (temperature {config.temperature}, top_p {config.top_p}, "
        f"max {config.max_new_tokens} new tokens) in {result.wall_time_s:.1f} s: {words} words, "
        f"in-corpus word share {share:.1%} (target >= 80 %: {'met' if share >= 0.8 else 'MISSED'})"
    )
    for sample in result.samples[:3]:
        print("  |", sample.text.replace("\n", " / "))


def compare_throughput(title: str, loaded: LoadedModel, prompts: Sequence[str]) -> None:
    """Both sides get the same requests: each prompt with SAMPLES_PER_PROMPT seeds, as a generate
    job asks for k samples per prompt."""
    requests = [
        SampleRequest(prompt=prompt, seed=seed) for seed in range(SAMPLES_PER_PROMPT) for prompt in prompts
    ]
    print(
        f"\n== throughput, {title}: {len(prompts)} prompts x {SAMPLES_PER_PROMPT} seeds, "
        f"up to {MAX_NEW_TOKENS} new tokens each, ending at EOS"
    )
    generate_samples(loaded, requests[:4], config=SamplingConfig(max_new_tokens=8))  # warm-up
    # The loop is timed before and after the batched runs: the machine is shared, and the two
    # timings show how much its speed drifted meanwhile.
    naive_before = naive_tokens_per_second(loaded, requests)
    batched: dict[int, float] = {}
    texts: dict[int, list[str]] = {}
    for batch_size in BATCH_SIZES:
        config = SamplingConfig(max_new_tokens=MAX_NEW_TOKENS, batch_size=batch_size)
        result = generate_samples(loaded, requests, config=config)
        # EOS counted as generated, as the loop's output includes it.
        tokens = sum(sample.token_count + (sample.finish_reason == "eos") for sample in result.samples)
        batched[batch_size] = tokens / result.wall_time_s
        texts[batch_size] = [sample.text for sample in result.samples]
    naive_after = naive_tokens_per_second(loaded, requests)
    naive = (naive_before + naive_after) / 2
    print(
        f"model.generate, one prompt at a time: {naive_before:.0f} / {naive_after:.0f} tokens/s "
        "(before / after the batched runs)"
    )
    for batch_size, speed in batched.items():
        verdict = f"  (target >= 5x: {'met' if speed >= 5 * naive else 'MISSED'})" if batch_size >= 16 else ""
        print(
            f"generate_samples batch {batch_size:>2}: {speed:>7.0f} tokens/s = {speed / naive:5.1f}x{verdict}"
        )
    same = sum(
        len({texts[batch_size][index] for batch_size in BATCH_SIZES}) == 1 for index in range(len(requests))
    )
    print(f"samples identical at all {len(BATCH_SIZES)} batch sizes: {same}/{len(requests)}")


@torch.inference_mode()
def naive_tokens_per_second(loaded: LoadedModel, requests: Sequence[SampleRequest]) -> float:
    """The baseline: ``model.generate`` per prompt, pure sampling like SamplingConfig's defaults."""
    model, tokenizer = loaded.model, loaded.tokenizer
    tokens = 0
    started = time.perf_counter()
    for request in requests:
        torch.manual_seed(request.seed)
        input_ids = torch.tensor([encode_prompt(tokenizer, request.prompt)], device=loaded.device)
        output = model.generate(
            input_ids=input_ids,
            attention_mask=torch.ones_like(input_ids),
            do_sample=True,
            temperature=1.0,
            top_k=0,
            top_p=1.0,
            max_new_tokens=MAX_NEW_TOKENS,
            pad_token_id=tokenizer.pad_token_id,
        )
        tokens += output.shape[1] - input_ids.shape[1]
    if loaded.device.type == "cuda":
        torch.cuda.synchronize()
    return tokens / (time.perf_counter() - started)


def gpt2_small(demo: LoadedModel) -> LoadedModel:
    """GPT-2 small's configuration (124 M parameters, 50257-token vocabulary), random weights, with
    the demo tokenizer for the prompts (it decodes ids beyond its vocabulary to nothing). Random
    weights rarely emit EOS, so nearly every row runs the full MAX_NEW_TOKENS."""
    tokenizer: PreTrainedTokenizerFast = demo.tokenizer
    eos = tokenizer.eos_token_id
    config = GPT2Config(
        vocab_size=50257, n_positions=1024, bos_token_id=eos, eos_token_id=eos, pad_token_id=eos
    )
    torch.manual_seed(0)
    model: Any = GPT2LMHeadModel(config)
    model = model.to(device="cuda", dtype=torch.bfloat16).eval()
    return LoadedModel(model=model, tokenizer=tokenizer, device=torch.device("cuda"), dtype=torch.bfloat16)


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


if __name__ == "__main__":
    main()
