"""What DPO and online RL share: the real-model settings, loading the parent, saving the child.

Both trainers are TRL's (``DPOTrainer``, ``RLOOTrainer``, ``GRPOTrainer``); this module turns our
settings into their ``TrainingArguments``, loads the parent in the requested dtype (4-bit for
QLoRA), and saves the child: by default a LoRA adapter folder that names the parent by path (the
frozen backbone is never copied), or a merged / fully fine-tuned model when asked. Next to it,
``lovelace_training.json`` records the algorithm, the config, the result and the provenance of the
parent's weights (path plus content hash or hub revision) and the dtype.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch import nn

from workers.ml.model_loading import is_adapter, load_causal_lm, load_tokenizer, weights_identity
from workers.ml.policy_config import (
    SHARDED,
    DistributedSettings,
    DPOConfig,
    OnlineRLConfig,
    PolicySettings,
    combination_problem,
    position_limit,
)
from workers.ml.preference_data import write_directory_atomically

METADATA_NAME = "lovelace_training.json"


def on_cuda(settings: DistributedSettings) -> bool:
    """Whether the run trains on a CUDA device."""
    if settings.device is not None:
        return torch.device(settings.device).type == "cuda"
    return torch.cuda.is_available()


def resolved_dtype(settings: DistributedSettings) -> torch.dtype:
    """The weights' dtype; refuses bfloat16 where this machine cannot run it."""
    cuda_bf16 = on_cuda(settings) and torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if settings.dtype == "bfloat16" and not cuda_bf16:
        raise ValueError(
            "dtype 'bfloat16' needs a CUDA device with bfloat16 support, and this run has none: "
            "use dtype 'auto' or 'float32'"
        )
    if settings.dtype == "bfloat16" or (settings.dtype == "auto" and cuda_bf16):
        return torch.bfloat16
    return torch.float32


def weights_dtype(settings: DistributedSettings) -> torch.dtype:
    """The dtype the parent is loaded in. With LoRA the frozen parent takes the run's dtype (peft
    keeps the adapters in float32). Full fine-tuning keeps float32 master weights and computes in
    the run's dtype through the trainer's autocast (``bf16``): AdamW steps on bfloat16 weights
    round away (bf16(0.02) + 1e-6 == bf16(0.02)), so a bf16-loaded full fine-tune would barely
    move at the default learning rate of 1e-6. FSDP and ZeRO-3 then shard the float32 weights."""
    if settings.lora is None:
        return torch.float32
    return resolved_dtype(settings)


def floating_cast(state_dict: dict[str, torch.Tensor], dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """``state_dict`` with its floating-point tensors in ``dtype`` (integer buffers kept); tensors
    that share storage (tied embeddings) stay shared."""
    cast: dict[tuple[Any, ...], torch.Tensor] = {}
    result = {}
    for name, tensor in state_dict.items():
        if not tensor.is_floating_point() or tensor.dtype == dtype:
            result[name] = tensor
            continue
        # The same view of the same storage is the same (tied) tensor.
        key = (tensor.untyped_storage().data_ptr(), tensor.storage_offset(), *tensor.shape, *tensor.stride())
        if key not in cast:
            cast[key] = tensor.to(dtype)
        result[name] = cast[key]
    return result


def check_environment(settings: DPOConfig | OnlineRLConfig) -> None:
    """Refuse what cannot run on this machine or in combination, before any model is loaded."""
    problem = combination_problem(settings)
    if problem:
        raise ValueError(problem)
    resolved_dtype(settings)
    if settings.qlora_4bit:
        if importlib.util.find_spec("bitsandbytes") is None:
            raise ValueError("qlora_4bit needs the bitsandbytes package, which is not installed")
        if not (on_cuda(settings) and torch.cuda.is_available()):
            raise ValueError("qlora_4bit needs a CUDA device (bitsandbytes 4-bit kernels)")
    if settings.distributed != "none":
        check_distribution(settings)


def check_distribution(settings: DistributedSettings) -> None:
    """Refuse a distributed run this worker cannot launch: sharding without GPUs, ZeRO-3 without
    deepspeed, more processes than GPUs (or, on the CPU, than cores)."""
    cuda = on_cuda(settings) and torch.cuda.is_available()
    if settings.distributed in SHARDED and not cuda:
        raise ValueError(
            f"distributed {settings.distributed!r} needs CUDA GPUs and this worker has none: "
            "on the CPU only 'ddp' runs (over gloo)"
        )
    if settings.distributed == "zero3" and importlib.util.find_spec("deepspeed") is None:
        raise ValueError(
            "distributed 'zero3' needs the deepspeed package, which is not installed on this "
            "worker: use 'fsdp', or install deepspeed"
        )
    if cuda and settings.processes > torch.cuda.device_count():
        raise ValueError(
            f"processes ({settings.processes}) is more than the {torch.cuda.device_count()} "
            "GPUs this worker sees"
        )
    cores = os.cpu_count() or 1
    if not cuda and settings.processes > cores:
        raise ValueError(
            f"processes ({settings.processes}) is more than the {cores} CPU cores of this worker"
        )


def training_arguments(settings: PolicySettings, output_dir: Path) -> dict[str, Any]:
    """Keyword arguments of TRL's configs (``TrainingArguments``) for these settings."""
    return {
        "output_dir": str(output_dir),
        "learning_rate": settings.resolved_learning_rate(),
        "lr_scheduler_type": settings.lr_scheduler,
        "warmup_steps": settings.warmup_ratio,  # a float below 1 is a share of the steps
        "num_train_epochs": settings.epochs,
        "max_steps": settings.max_steps if settings.max_steps is not None else -1,
        "per_device_train_batch_size": settings.per_device_batch_size,
        "per_device_eval_batch_size": settings.per_device_batch_size,
        "gradient_accumulation_steps": settings.gradient_accumulation_steps,
        # TRL defaults to bf16 and checkpointing even on CPUs: both set deliberately.
        "bf16": resolved_dtype(settings) == torch.bfloat16,
        "fp16": False,
        "gradient_checkpointing": settings.gradient_checkpointing,
        "use_cpu": not on_cuda(settings),
        # CPU ranks talk over gloo; on GPUs the launcher's default (NCCL) is right.
        "ddp_backend": "gloo" if settings.distributed != "none" and not on_cuda(settings) else None,
        # A causal LM uses every trainable parameter in each forward pass: DDP need not search
        # the autograd graph for unused ones (an extra traversal per step when it does).
        "ddp_find_unused_parameters": False,
        "seed": settings.seed,
        "data_seed": settings.seed,
        "save_strategy": "steps",
        "save_steps": settings.checkpoint_every,
        "save_total_limit": 2,  # the newest and the one before (a crash while saving leaves one)
        "logging_steps": 1,  # every optimizer step reaches the job's metrics timeline
        "report_to": [],
        "disable_tqdm": True,
        "dataloader_num_workers": 0,
    }


def shared_dataset(dataset: Any, folder: Path, arguments: Any) -> Any:
    """``dataset`` as every rank of a multi-process run must see it: saved to ``folder`` by the main
    process and loaded from there by all. datasets keeps the cache files of later maps next to a
    saved dataset, so the file TRL's main process writes (the reference log-probabilities) is the
    file the other ranks read; an in-memory dataset caches in a temporary folder per process, and
    the other ranks look for the file in vain."""
    from datasets import load_from_disk

    with arguments.main_process_first(desc="sharing the dataset between ranks"):
        if arguments.process_index == 0:
            shutil.rmtree(folder, ignore_errors=True)  # an earlier attempt's copy and caches
            dataset.save_to_disk(str(folder))
        return load_from_disk(str(folder))


def peft_config(settings: PolicySettings) -> Any:
    """The peft ``LoraConfig`` (None for full fine-tuning)."""
    if settings.lora is None:
        return None
    from peft import LoraConfig

    return LoraConfig(
        r=settings.lora.rank,
        lora_alpha=settings.lora.alpha,
        lora_dropout=settings.lora.dropout,
        target_modules=settings.lora.target_modules,
        task_type="CAUSAL_LM",
    )


def load_parent(path: str | Path, settings: DPOConfig | OnlineRLConfig) -> tuple[Any, Any]:
    """(model, tokenizer) of the parent version, ready for a TRL trainer.

    An adapter parent (a child of a child) is merged into its base in memory; the new adapter then
    names the parent folder as its base. ``config._name_or_path`` is set to the parent path, so
    whatever TRL reloads from it is the parent.
    """
    check_environment(settings)
    dtype = weights_dtype(settings)
    kwargs: dict[str, Any] = {}
    if settings.qlora_4bit:
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_compute_dtype=torch.bfloat16,
            bnb_4bit_use_double_quant=True,
        )
    pinned = {"revision": settings.parent_revision} if settings.parent_revision else {}
    model = load_causal_lm(path, dtype=dtype, **kwargs, **pinned)
    model.config._name_or_path = str(path)
    tokenizer = load_tokenizer(path, **pinned)
    return model, tokenizer


def model_positions(model: Any) -> int | None:
    """The positions of a loaded model (None when its config names none)."""
    return position_limit(model.config.to_dict())


def set_lora_dropout(model: Any, rate: float) -> None:
    """Put the adapters' dropout back to ``rate`` after TRL switched every dropout module off."""
    for name, module in model.named_modules():
        if "lora_dropout" in name and isinstance(module, nn.Dropout):
            module.p = rate


def save_child(
    trainer: Any,
    *,
    parent_path: str | Path,
    output_dir: Path,
    settings: PolicySettings,
    metadata: dict[str, Any],
) -> dict[str, Any]:
    """Save the trained child atomically into ``output_dir``; returns its provenance record.

    LoRA without ``merge_adapter``: the adapter alone (``adapter_config.json`` names the parent by
    path). Otherwise plain weights in the training dtype.

    In a distributed run every rank calls this: under FSDP or ZeRO-3 the full weights are gathered
    from the shards (a collective), then only the main process writes.
    """
    accelerator = trainer.accelerator
    model = accelerator.unwrap_model(trainer.model)
    state_dict = None
    if settings.distributed in SHARDED:
        engine = trainer.deepspeed if getattr(trainer, "is_deepspeed_enabled", False) else trainer.model
        state_dict = accelerator.get_state_dict(engine)
    if not accelerator.is_main_process:
        accelerator.wait_for_everyone()  # returns once the main process has written the child
        return {}
    tokenizer = trainer.processing_class
    adapter = settings.lora is not None and not settings.merge_adapter
    compute_dtype = resolved_dtype(settings)
    if settings.lora is None and compute_dtype != torch.float32:
        # Trained as float32 master weights (``weights_dtype``); stored in the run's dtype, as
        # the parent was given: half the disk, and what the child is run in.
        full = state_dict if state_dict is not None else model.state_dict()
        state_dict = floating_cast(full, compute_dtype)
    if settings.lora is not None:
        model.peft_config["default"].base_model_name_or_path = str(parent_path)
        # A hub parent pinned to a revision stays pinned for whoever loads the child.
        model.peft_config["default"].revision = settings.parent_revision
        if not adapter:
            model = model.merge_and_unload()
    provenance = {
        "base": weights_identity(parent_path, model),
        "base_is_adapter": is_adapter(parent_path),
        "dtype": str(compute_dtype).removeprefix("torch."),
        # What the trained weights were held in: float32 master weights for full fine-tuning.
        "weights_dtype": str(weights_dtype(settings) if not settings.qlora_4bit else "nf4").removeprefix(
            "torch."
        ),
        "saved_as": "adapter" if adapter else ("merged" if settings.lora is not None else "full"),
        "qlora_4bit": settings.qlora_4bit,
    }
    record = {**metadata, "config": asdict_config(metadata.get("config")), "provenance": provenance}

    def write(folder: Path) -> None:
        model.save_pretrained(folder, state_dict=state_dict)
        tokenizer.save_pretrained(folder)
        (folder / METADATA_NAME).write_text(json.dumps(record, indent=2, default=str))

    write_directory_atomically(output_dir, write)
    accelerator.wait_for_everyone()
    return provenance


def asdict_config(config: Any) -> Any:
    return asdict(config) if hasattr(config, "__dataclass_fields__") else config


def logged(trainer: Any, key: str) -> list[float]:
    """The values of ``key`` in the trainer's training logs, one per logging step, in order."""
    return [float(entry[key]) for entry in trainer.state.log_history if key in entry]
