"""The configs of the policy trainers (DPO, RLOO, GRPO): plain dataclasses, no torch import.

The web process reads them too: the service that starts a training job builds the config from the
operator's options with ``config_from_options`` and refuses bad combinations with
``combination_problem`` before anything is queued. What depends on the worker's machine (CUDA,
bfloat16 support, bitsandbytes, the GPUs and packages a distributed run needs) is checked by
``policy_training.check_environment`` when the job runs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, Protocol, overload

DType = Literal["auto", "float32", "bfloat16"]
Schedule = Literal["linear", "cosine", "constant", "constant_with_warmup"]
LossType = Literal["sigmoid", "ipo", "robust"]
Method = Literal["rloo", "grpo"]
Distributed = Literal["none", "ddp", "fsdp", "zero3"]
# The modes that shard weights, gradients and optimizer state across GPUs.
SHARDED = ("fsdp", "zero3")


@dataclass
class LoraSettings:
    """Low-rank adapters (peft) on a frozen parent; the child is saved as the adapter alone."""

    # Rank of the update; 16 is the common choice for 1–8 B models (~0.1–1 % of the parameters).
    rank: int = 16
    # Scale α (the update is multiplied by α / rank); 2 × rank is the usual pairing.
    alpha: int = 32
    # Dropout on the adapter's input. 0: the trainers switch every other dropout off so that the
    # policy's and the reference's log-probabilities are comparable; ~0.05 regularises small sets.
    dropout: float = 0.0
    # Module names to adapt; None = peft's default for the architecture (GPT-2 ``c_attn``,
    # Llama / Qwen2 ``q_proj, v_proj``); ["all-linear"] adapts every linear layer but the head.
    target_modules: list[str] | str | None = None  # or "all-linear" (every linear layer)


@dataclass
class PolicySettings:
    """The settings DPO and online RL share. Defaults fit a 0.5–8 B model with LoRA on one GPU and
    the tiny test models on a CPU alike."""

    # AdamW learning rate; None = 5e-5 with LoRA, 1e-6 for full fine-tuning (TRL's DPO default):
    # adapters start at zero and need larger steps than whole weight matrices.
    learning_rate: float | None = None
    # Learning-rate schedule after warmup (transformers' names); linear decay to 0 is TRL's default.
    lr_scheduler: Schedule = "linear"
    # Share of the optimizer steps spent warming the learning rate up from 0, in [0, 1).
    warmup_ratio: float = 0.0
    # Passes over the data; ignored when ``max_steps`` is set.
    epochs: int = 1
    # Optimizer steps; None = as many as ``epochs`` take.
    max_steps: int | None = None
    # Examples per forward pass per device (DPO: pairs; RL: completions); an optimizer step sees
    # per_device_batch_size × gradient_accumulation_steps × devices of them.
    per_device_batch_size: int = 8
    gradient_accumulation_steps: int = 1
    # Prompt tokens kept (its end, which borders the response), before the chat template.
    max_prompt_length: int = 256
    # "auto" = bfloat16 on a CUDA device that supports it, else float32. bfloat16 is refused
    # elsewhere: CPUs run it slower than float32, and transformers refuses its mixed precision there.
    dtype: DType = "auto"
    # Recompute activations in the backward pass: ~30 % slower, far less memory for long sequences.
    gradient_checkpointing: bool = False
    # None = full fine-tuning; LoraSettings() = adapters (the default: a child is a small folder).
    lora: LoraSettings | None = field(default_factory=LoraSettings)
    # QLoRA: the frozen parent in 4-bit NF4 (bitsandbytes, CUDA only), the adapters in bfloat16.
    qlora_4bit: bool = False
    # Save the child as plain weights (adapter merged into a copy of the parent) instead of the
    # adapter alone. Costs a full model's disk space; loads without peft.
    merge_adapter: bool = False
    # Seeds data order, adapter initialisation and sampling.
    seed: int = 0
    # Optimizer steps between checkpoints (the job also checkpoints when cancelled). A full
    # fine-tuning checkpoint holds weights and twice their size of AdamW state; adapters are small.
    checkpoint_every: int = 50
    # "cpu", "cuda", ...; None = the first GPU when present.
    device: str | None = None
    # How the run spreads over processes. "none": one process inside the worker (the default).
    # "ddp": data parallel, a full copy per process (GPUs over NCCL, CPU processes over gloo).
    # "fsdp" (fully sharded data parallel, full shard) and "zero3" (DeepSpeed ZeRO stage 3) split
    # weights, gradients and optimizer state across GPUs: full fine-tuning of models one GPU cannot
    # hold. Anything but "none" runs under torchrun / accelerate launch, supervised by the worker
    # (``workers.ml.distributed``).
    distributed: Distributed = "none"
    # Processes of a distributed run, one per GPU (at most the GPUs the worker sees). An optimizer
    # step sees per_device_batch_size × gradient_accumulation_steps × processes examples.
    processes: int = 1
    # The hub revision (branch, tag or commit) the parent version pins, set by the job from the
    # version, not an operator option: the parent is loaded at it, and an adapter child records
    # it, so the child's base is that revision ever after. None: a local folder, or the hub's main.
    parent_revision: str | None = None

    def resolved_learning_rate(self) -> float:
        if self.learning_rate is not None:
            return self.learning_rate
        return 5e-5 if self.lora is not None else 1e-6


@dataclass
class DPOConfig(PolicySettings):
    """Every setting of one DPO run (the shared ones are documented on ``PolicySettings``)."""

    # Strength of the pull toward the reference: 0.1 is the DPO paper's and TRL's default; smaller
    # lets the policy drift further from the parent. For IPO it is the regulariser τ.
    beta: float = 0.1
    # "sigmoid" (DPO), "ipo" (no overfitting of near-certain preferences) or "robust" (noisy
    # crowd labels, with label_smoothing = the assumed share of flipped labels).
    loss_type: LossType = "sigmoid"
    # Assumed probability that a crowd label is flipped, in [0, 0.5); 0 = trust every label. Only
    # "robust" uses it (the unbiased robust-DPO loss): TRL 1.16's "sigmoid" and "ipo" ignore it
    # (its conservative DPO is gone), so a value with them is refused rather than dropped.
    label_smoothing: float = 0.0
    # Tokens of prompt + response; the response loses its end beyond this (never dropped).
    max_length: int = 512


@dataclass
class OnlineRLConfig(PolicySettings):
    """Every setting of one RLOO / GRPO run (the shared ones are documented on ``PolicySettings``;
    ``per_device_batch_size`` counts completions and, times ``gradient_accumulation_steps``, must
    be a multiple of ``num_generations``)."""

    # "rloo" or "grpo" (see ``online_rl``).
    method: Method = "rloo"
    # Completions per prompt; the baselines need ≥ 2. Ahmadian et al. compare 2 and 4: 4 gives a
    # less noisy baseline at twice the sampling cost.
    num_generations: int = 4
    # Tokens sampled per completion; sampling stops earlier at EOS.
    max_completion_length: int = 64
    # KL coefficient β (> 0). 0.05 is TRL's RLOO default; with rewards normalised to std 1 the
    # policy trades one standard deviation of reward for 20 nats of KL. (TRL's GRPO default is 0:
    # no reference at all.)
    beta: float = 0.05
    # Sampling temperature of the completions: 1.0 samples the policy itself, which the policy
    # gradient assumes.
    temperature: float = 1.0
    # k in the pessimistic reward mean − k·std over reward-model ensemble members; 0 = the mean.
    reward_std_penalty: float = 0.0


LORA_OPTIONS = {
    "lora_rank": "rank",
    "lora_alpha": "alpha",
    "lora_dropout": "dropout",
    "lora_target_modules": "target_modules",
}


def config_from_options(method: str, options: dict[str, Any]) -> DPOConfig | OnlineRLConfig:
    """The trainer's config from a job's flat options: ``lora`` (default true) and the
    ``lora_*`` options become ``LoraSettings``, or none for full fine-tuning."""
    options = dict(options)
    problem = ignored_options_problem(options)
    if problem:
        raise ValueError(problem)
    use_lora = options.pop("lora", True)
    lora_options = {name: options.pop(key) for key, name in LORA_OPTIONS.items() if key in options}
    lora = LoraSettings(**lora_options) if use_lora else None
    if method == "dpo":
        return DPOConfig(**options, lora=lora)
    return OnlineRLConfig(**options, method=method, lora=lora)  # type: ignore[arg-type]


def ignored_options_problem(options: dict[str, Any]) -> str | None:
    """Options that the others would make a run ignore, named (an operator who sets them expects
    them to act); None if there are none."""
    given = [key for key in LORA_OPTIONS if key in options]
    if options.get("lora", True) is False and given:
        return (
            f"{', '.join(given)} shape LoRA adapters, and lora false trains the whole model: "
            "remove them or set lora true"
        )
    return None


def schedule_problem(lr_scheduler: str, warmup_ratio: float) -> str | None:
    """A warmup the schedule would ignore ("constant" has none), named; None if it fits."""
    if lr_scheduler == "constant" and warmup_ratio > 0:
        return (
            f"lr_scheduler 'constant' has no warmup, so warmup_ratio {warmup_ratio:g} would be "
            "ignored: use lr_scheduler 'constant_with_warmup', or warmup_ratio 0"
        )
    return None


def combination_problem(config: DPOConfig | OnlineRLConfig) -> str | None:
    """What is wrong with a combination of options that are each in range, naming them; None if
    nothing is."""
    if config.qlora_4bit and config.dtype == "float32":
        return (
            "qlora_4bit computes in bfloat16 on its 4-bit parent: dtype must be 'auto' or "
            "'bfloat16', not 'float32'"
        )
    problem = schedule_problem(config.lr_scheduler, config.warmup_ratio)
    if problem:
        return problem
    if config.qlora_4bit and config.lora is None:
        return "qlora_4bit trains adapters on a 4-bit parent: it needs lora true"
    if config.qlora_4bit and config.merge_adapter:
        return (
            "merge_adapter with qlora_4bit would merge into 4-bit weights: keep the adapter "
            "(merge_adapter false) and merge it into the parent separately"
        )
    problem = distribution_problem(config)
    if problem:
        return problem
    if isinstance(config, DPOConfig):
        if config.max_prompt_length >= config.max_length:
            return (
                f"max_prompt_length ({config.max_prompt_length}) must be below max_length "
                f"({config.max_length}), to leave room for the response"
            )
        if not 0 <= config.label_smoothing < 0.5:
            return "label_smoothing must be in [0, 0.5)"
        if config.label_smoothing > 0 and config.loss_type != "robust":
            return (
                f"label_smoothing {config.label_smoothing:g} acts only with loss_type 'robust' "
                f"(TRL's {config.loss_type!r} loss ignores it): set loss_type 'robust' for noisy "
                "labels, or label_smoothing 0"
            )
        return None
    if config.num_generations < 2:
        return "num_generations must be at least 2: the baselines compare completions of one prompt"
    if config.beta <= 0:
        return "beta must be positive: without the KL penalty the policy drifts freely"
    # TRL samples a generation batch of per-device batch × accumulation steps × processes
    # completions at once, and splits it into groups of num_generations per prompt.
    batch = config.per_device_batch_size * config.gradient_accumulation_steps * config.processes
    if batch % config.num_generations:
        return (
            f"per_device_batch_size × gradient_accumulation_steps × processes ({batch}) must be a "
            f"multiple of num_generations ({config.num_generations}): a prompt's completions are "
            "sampled together"
        )
    return None


def length_cuts(config: DPOConfig | OnlineRLConfig, position_limit: int | None) -> list[tuple[str, str]]:
    """What ``fitted_lengths`` cuts to fit the parent's positions: (option, a sentence naming it
    and both values) per length cut (the service shows them as warnings before a job is queued)."""
    fitted = fitted_lengths(config, position_limit)
    names = ("max_length", "max_prompt_length", "max_completion_length")
    return [
        (
            name,
            f"{name} {getattr(config, name)} is cut to {getattr(fitted, name)}: the parent model "
            f"has {position_limit} positions",
        )
        for name in names
        if hasattr(config, name) and getattr(config, name) != getattr(fitted, name)
    ]


@overload
def fitted_lengths(config: DPOConfig, position_limit: int | None) -> DPOConfig: ...
@overload
def fitted_lengths(config: OnlineRLConfig, position_limit: int | None) -> OnlineRLConfig: ...
def fitted_lengths(
    config: DPOConfig | OnlineRLConfig, position_limit: int | None
) -> DPOConfig | OnlineRLConfig:
    """``config`` with its token lengths cut to the parent's positions (``position_limit``; None =
    unknown, nothing cut), as the reward model caps its inputs: the defaults suit real models
    (DPO 512 tokens, prompts of 256) and a tiny model has 64-128 positions. Beyond them a run would
    fail at its first long example with an index error deep in the model. DPO: the prompt keeps
    room for the response (half when it would fill everything). Online RL: the completion keeps
    its length and the prompt takes the rest, or both get half when the completion alone would
    fill the positions."""
    if position_limit is None:
        return config
    changes: dict[str, Any]
    if isinstance(config, DPOConfig):
        length = min(config.max_length, position_limit)
        prompt = config.max_prompt_length if config.max_prompt_length < length else length // 2
        changes = {"max_length": length, "max_prompt_length": max(prompt, 1)}
    else:
        completion = config.max_completion_length
        if completion >= position_limit:
            completion = position_limit // 2
        prompt = min(config.max_prompt_length, position_limit - completion)
        changes = {"max_completion_length": max(completion, 1), "max_prompt_length": max(prompt, 1)}
    return replace(config, **changes)


def position_limit(config: dict[str, Any]) -> int | None:
    """The positions of a model's ``config.json`` contents (GPT-2 ``n_positions``, the others
    ``max_position_embeddings``); None when it names none."""
    for name in ("max_position_embeddings", "n_positions"):
        limit = config.get(name)
        if isinstance(limit, int) and not isinstance(limit, bool) and limit > 0:
            return limit
    return None


def local_position_limit(path: str | Path, *, depth: int = 8) -> int | None:
    """``position_limit`` of the model in a local folder, through the bases of adapter folders
    (their ``adapter_config.json``); None for a hub id or a folder that says nothing. Reads JSON
    only: the web process checks lengths with it before a job is queued."""
    folder = Path(path)
    for _ in range(depth):
        adapter = folder / "adapter_config.json"
        if adapter.is_file():
            try:
                base = json.loads(adapter.read_text(encoding="utf-8")).get("base_model_name_or_path")
            except (OSError, ValueError):
                return None
            if not isinstance(base, str) or not Path(base).is_dir():
                return None
            folder = Path(base)
            continue
        try:
            return position_limit(json.loads((folder / "config.json").read_text(encoding="utf-8")))
        except (OSError, ValueError, AttributeError):
            return None
    return None


class DistributedSettings(Protocol):
    """What a run spread over processes is launched from: the policy's settings and the
    reward model's (``RewardModelConfig``) alike."""

    @property
    def distributed(self) -> Distributed: ...
    @property
    def processes(self) -> int: ...
    @property
    def lora(self) -> object | None: ...
    @property
    def qlora_4bit(self) -> bool: ...
    @property
    def dtype(self) -> DType: ...
    @property
    def device(self) -> str | None: ...
    @property
    def gradient_accumulation_steps(self) -> int: ...


def distribution_problem(config: DistributedSettings) -> str | None:
    """What is wrong with ``distributed`` and ``processes`` together with the other options
    (what the worker's machine must have is checked there: ``policy_training.check_environment``)."""
    return spread_problem(
        distributed=config.distributed,
        processes=config.processes,
        lora=config.lora is not None,
        qlora_4bit=config.qlora_4bit,
    )


def spread_problem(*, distributed: str, processes: int, lora: bool, qlora_4bit: bool) -> str | None:
    """``distribution_problem`` on plain values, for options that are not a config yet."""
    if processes < 1:
        return "processes must be at least 1"
    if distributed == "none" and processes > 1:
        return (
            f"processes {processes} needs distributed 'ddp', 'fsdp' or 'zero3' "
            "(distributed 'none' trains in one process)"
        )
    if distributed in SHARDED and lora:
        return (
            f"distributed {distributed!r} shards full fine-tuning: it needs lora false "
            "(LoRA adapters are small enough for 'ddp')"
        )
    if qlora_4bit and distributed != "none":
        return "qlora_4bit trains in one process: it needs distributed 'none'"
    return None
