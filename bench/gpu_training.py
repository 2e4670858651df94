"""GPU check of policy training at real-model scale: our DPO trainer (TRL underneath) on
random-initialised Qwen2-architecture models built from a config — nothing is downloaded.

Run: ``.venv/bin/python -m bench.gpu_training`` on a machine with one CUDA GPU (about 8 minutes on
an H200-class GPU). Two runs, each through ``workers.ml.dpo.train_dpo`` exactly as a job runs it:

1. a 0.5 B model (Qwen2-0.5B's shape), full fine-tuning in bfloat16;
2. a 7 B model (Qwen2-7B's shape), LoRA in bfloat16 with gradient checkpointing;

both at 1,024 tokens per sequence (256 of prompt, 768 of response). Printed per run: parameters,
peak GPU memory (allocated by torch), wall time of the training steps and of the whole call, and
tokens per second (policy forward + backward tokens of the training steps; the reference
log-probabilities are precomputed before them and timed apart).

Without a GPU it says so and runs nothing; ``--cpu-smoke`` runs the same code on tiny shapes on
the CPU (float32), to check the script itself.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "workers" / "ml" / "corpus" / "lovelace.txt"


@dataclass(frozen=True)
class Shape:
    name: str
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    intermediate: int
    vocab: int


# The published shapes of Qwen2-0.5B and Qwen2-7B (config.json of each); weights are random.
QWEN2_0_5B = Shape(
    "qwen2-0.5b", hidden=896, layers=24, heads=14, kv_heads=2, intermediate=4864, vocab=151_936
)
QWEN2_7B = Shape("qwen2-7b", hidden=3584, layers=28, heads=28, kv_heads=4, intermediate=18_944, vocab=152_064)
TINY = Shape("qwen2-tiny", hidden=64, layers=2, heads=4, kv_heads=2, intermediate=128, vocab=4096)


@dataclass(frozen=True)
class Run:
    shape: Shape
    lora: bool
    gradient_checkpointing: bool
    batch: int  # pairs per device and step
    steps: int
    prompt_tokens: int
    response_tokens: int


def build_model(shape: Shape, folder: Path, *, device: str, dtype_name: str) -> int:
    """A random Qwen2 of ``shape`` with a byte-level BPE tokenizer, saved into ``folder``; returns
    its parameter count. The model is initialised on ``device`` (a 7 B init on the CPU takes
    minutes)."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from workers.ml.base_model import split_corpus, train_tokenizer

    tokenizer = train_tokenizer(
        split_corpus(CORPUS.read_text(encoding="utf-8")), vocab_size=2000, min_frequency=2
    )
    config = Qwen2Config(
        vocab_size=shape.vocab,
        hidden_size=shape.hidden,
        num_hidden_layers=shape.layers,
        num_attention_heads=shape.heads,
        num_key_value_heads=shape.kv_heads,
        intermediate_size=shape.intermediate,
        max_position_embeddings=4096,
        tie_word_embeddings=shape.hidden < 1024,  # as the published 0.5 B shape does
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    dtype = getattr(torch, dtype_name)
    with torch.device(device):
        model = Qwen2ForCausalLM(config).to(dtype)
    parameters = sum(parameter.numel() for parameter in model.parameters())
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    del model
    if device == "cuda":
        torch.cuda.empty_cache()
    return parameters


def synthetic_pairs(count: int, *, prompt_tokens: int, response_tokens: int, seed: int) -> list[object]:
    """Pairs of at least the requested lengths in tokens (one corpus word is one token or more);
    the trainer cuts them to exactly ``max_prompt_length`` and ``max_length``, so every sequence
    has the nominal length the tokens per second are counted with."""
    from workers.ml.preference_data import PreferencePair

    words = CORPUS.read_text(encoding="utf-8").split()
    rng = random.Random(seed)

    def text(tokens: int) -> str:
        return " ".join(rng.choice(words) for _ in range(tokens))

    return [
        PreferencePair(
            prompt=text(prompt_tokens),
            chosen=text(response_tokens),
            rejected=text(response_tokens),
            margin=1.0,
            split="train",
        )
        for _ in range(count)
    ]


def measure(run: Run, work: Path, *, device: str, dtype_name: str) -> dict[str, object]:
    import torch

    from workers.ml.dpo import train_dpo
    from workers.ml.policy_config import DPOConfig, LoraSettings

    parent = work / run.shape.name
    started = time.perf_counter()
    parameters = build_model(run.shape, parent, device=device, dtype_name=dtype_name)
    built = time.perf_counter() - started
    pairs = synthetic_pairs(
        run.batch * run.steps, prompt_tokens=run.prompt_tokens, response_tokens=run.response_tokens, seed=0
    )
    config = DPOConfig(
        lora=LoraSettings(rank=16, alpha=32, target_modules="all-linear") if run.lora else None,
        dtype="bfloat16" if dtype_name == "bfloat16" else "float32",
        gradient_checkpointing=run.gradient_checkpointing,
        per_device_batch_size=run.batch,
        max_steps=run.steps,
        max_prompt_length=run.prompt_tokens,
        max_length=run.prompt_tokens + run.response_tokens,
        checkpoint_every=10_000,  # no checkpoint inside the measured steps
    )
    step_times: list[float] = []

    def reporter(
        *, step: int, total: int, message: str = "", metrics: dict[str, float] | None = None
    ) -> None:
        step_times.append(time.perf_counter())

    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    result = train_dpo(
        pairs, parent, work / f"{run.shape.name}-child", config, work / "checkpoints", reporter
    )
    total = time.perf_counter() - started
    # The first report comes when training begins (after the reference log-probabilities).
    training = step_times[-1] - step_times[0] if len(step_times) >= 2 else total
    tokens = run.steps * run.batch * 2 * (run.prompt_tokens + run.response_tokens)
    shutil.rmtree(parent, ignore_errors=True)
    shutil.rmtree(work / f"{run.shape.name}-child", ignore_errors=True)
    shutil.rmtree(work / "checkpoints", ignore_errors=True)
    return {
        "model": run.shape.name,
        "parameters_billions": round(parameters / 1e9, 3),
        "mode": ("LoRA" if run.lora else "full")
        + (" + gradient checkpointing" if run.gradient_checkpointing else ""),
        "dtype": dtype_name,
        "sequence_tokens": run.prompt_tokens + run.response_tokens,
        "pairs_per_step": run.batch,
        "steps": result.steps,
        "build_seconds": round(built, 1),
        "train_call_seconds": round(total, 1),
        "training_steps_seconds": round(training, 1),
        "tokens_per_second": round(tokens / training, 1) if training > 0 else None,
        "peak_gpu_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2)
        if device == "cuda"
        else None,
        "first_loss": result.first_loss,
        "last_loss": result.last_loss,
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cpu-smoke", action="store_true", help="tiny shapes on the CPU: checks the script")
    parser.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temporary one)")
    arguments = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    import torch

    if arguments.cpu_smoke:
        runs = [
            Run(
                TINY,
                lora=False,
                gradient_checkpointing=False,
                batch=2,
                steps=2,
                prompt_tokens=32,
                response_tokens=96,
            ),
            Run(
                TINY,
                lora=True,
                gradient_checkpointing=True,
                batch=2,
                steps=2,
                prompt_tokens=32,
                response_tokens=96,
            ),
        ]
        device, dtype_name = "cpu", "float32"
    elif not torch.cuda.is_available():
        print("No GPU present: this check needs a CUDA GPU and ran nothing.")
        print("(--cpu-smoke runs the same code on tiny shapes on the CPU, to check the script.)")
        return 0
    else:
        runs = [
            Run(
                QWEN2_0_5B,
                lora=False,
                gradient_checkpointing=False,
                batch=4,
                steps=10,
                prompt_tokens=256,
                response_tokens=768,
            ),
            Run(
                QWEN2_7B,
                lora=True,
                gradient_checkpointing=True,
                batch=2,
                steps=6,
                prompt_tokens=256,
                response_tokens=768,
            ),
        ]
        device, dtype_name = "cuda", "bfloat16"
        memory = torch.cuda.get_device_properties(0).total_memory / 2**30
        print(f"GPU: {torch.cuda.get_device_name(0)}, {memory:.0f} GiB")
    work = arguments.work or Path(tempfile.mkdtemp(prefix="lovelace-gpu-training-"))
    try:
        for run in runs:
            figures = measure(run, work, device=device, dtype_name=dtype_name)
            print(json.dumps(figures))
            sys.stdout.flush()
    finally:
        if arguments.work is None:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
