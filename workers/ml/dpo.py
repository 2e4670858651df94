"""Direct preference optimisation (Rafailov et al. 2023) of a causal LM against a frozen reference.

Loss per pair, with y_w the chosen and y_l the rejected response:

    −log σ(β [(log π(y_w) − log π_ref(y_w)) − (log π(y_l) − log π_ref(y_l))])

where log π(y) is summed over the response tokens only (prompt tokens are masked out) and
β·(log π(y) − log π_ref(y)) is the implicit reward. The reference is the parent model as loaded
from ``parent_model_path``: its log-probabilities of every pair are computed once, before the first
update, and stored in the checkpoint, so no second copy of the model stays in memory and nothing is
ever reloaded from ``config._name_or_path`` (the TRL ``ref_model=None`` trap).

A plain torch loop rather than TRL's ``DPOTrainer``: float32 and no activation checkpointing (TRL
defaults to bf16 and checkpointing, also on CPUs; checkpointing would also be inert here, since HF
models only checkpoint in train mode), exact resume from an atomic checkpoint,
and the policy runs without dropout (TRL's ``disable_dropout=True``), so the log-probabilities of
policy and reference are comparable and a run is deterministic.

The helpers ``load_policy``, ``token_log_probs``, ``prompt_token_ids``, ``trainable_state`` and
``save_policy`` are shared with ``online_rl``.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as functional
from torch import nn
from transformers import AutoModelForCausalLM, AutoTokenizer

from workers.ml.checkpoint import load_if_exists, save_atomic
from workers.ml.preference_data import (
    PreferencePair,
    capture_rng_state,
    check_resumable,
    config_for_checkpoint,
    derived_generator,
    fingerprint,
    resolve_device,
    restore_rng_state,
    seed_everything,
    write_directory_atomically,
)
from workers.ml.progress import Cancelled, ProgressReporter, null_reporter

FORMAT_VERSION = 1
# Pairs per forward pass when nothing needs gradients (reference and evaluation passes).
EVALUATION_BATCH_SIZE = 16
# Points kept of a per-step curve in a result (means of equal chunks of steps).
CURVE_POINTS = 20


@dataclass
class LoraSettings:
    """Low-rank adapters (peft) instead of full fine-tuning; merged into the weights when saved."""

    # Rank of the update; 16 is the common choice for 1–8 B models and costs ~0.1–1 % of parameters.
    rank: int = 16
    # Scale α (the update is multiplied by α / rank); 2 × rank is the usual pairing.
    alpha: int = 32
    # Module names to adapt; None = peft's default for the architecture (attention projections).
    target_modules: list[str] | None = None


@dataclass
class DPOConfig:
    """Every setting of one DPO run; stored in the checkpoint and next to the saved child model."""

    # Strength of the pull toward the reference: 0.1 is the DPO paper's and TRL's default; smaller
    # lets the policy drift further from the parent.
    beta: float = 0.1
    # AdamW learning rate, constant. 1e-6 is TRL's DPO default for full fine-tuning; with LoRA
    # raise it to ~5e-5.
    learning_rate: float = 1e-6
    # Passes over the training pairs. DPO overfits near-deterministic preferences (IPO paper):
    # one pass is the safe default.
    epochs: int = 1
    # Pairs per optimizer step (each pair = two sequences). 8 fits a 2-core CPU with a small model;
    # the DPO paper used 64 on GPUs.
    batch_size: int = 8
    # Tokens of prompt + response; longer pairs are truncated (never dropped): the prompt loses its
    # beginning (down to ``max_prompt_length``), then the response its end. Capped at the model's
    # position limit.
    max_length: int = 512
    max_prompt_length: int = 256
    # Gradient-norm clipping; 1.0 as in TRL, guards against the rare huge step of a margin loss.
    max_grad_norm: float = 1.0
    # None = full fine-tuning; LoraSettings() = adapters (needs the ``peft`` package).
    lora: LoraSettings | None = None
    # Seeds the batch order (the model itself is the parent's, unchanged).
    seed: int = 0
    # Optimizer steps between checkpoints. A full checkpoint holds the weights and twice their size
    # of AdamW state: ~1.5 GB for a 124 M model; keep it sparse there, or use LoRA.
    checkpoint_every: int = 50
    # "cpu", "cuda", ...; None = the first GPU when present. May differ on resume.
    device: str | None = None


@dataclass
class DPOResult:
    """What a DPO run reports. Margins are mean implicit-reward margins
    β[(log π(y_w) − log π_ref(y_w)) − (log π(y_l) − log π_ref(y_l))]; 0 at the start by
    construction, since the policy starts as the reference."""

    output_dir: str
    steps: int
    resumed_from_step: int
    train_pairs: int
    validation_pairs: int
    truncated_pairs: int
    initial_train_margin: float
    final_train_margin: float
    # Share of training pairs with a positive margin at the end (0 at the start).
    final_train_reward_accuracy: float
    initial_validation_margin: float | None
    final_validation_margin: float | None
    final_validation_reward_accuracy: float | None
    # Mean over training pairs of log π(y) − log π_ref(y) at the end, in nats; DPO usually lowers
    # both and the rejected one more.
    chosen_log_prob_change: float
    rejected_log_prob_change: float
    # Mean of log π(y_w) − log π(y_l) over training pairs under the reference and at the end.
    reference_preference_gap: float
    final_preference_gap: float
    first_loss: float
    last_loss: float
    loss_curve: list[float]


def load_policy(
    path: str | Path,
    device: torch.device,
    *,
    lora: LoraSettings | None,
) -> nn.Module:
    """The causal LM at ``path`` in float32, in eval mode (no dropout), optionally with adapters."""
    model: Any = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    model.to(device)
    model.eval()
    if lora is not None:
        from peft import LoraConfig, get_peft_model  # optional dependency, only for LoRA runs

        adapter = LoraConfig(
            r=lora.rank,
            lora_alpha=lora.alpha,
            lora_dropout=0.0,  # the policy runs in eval mode: dropout would not apply anyway
            target_modules=lora.target_modules,
            task_type="CAUSAL_LM",
        )
        model = get_peft_model(model, adapter)
        model.eval()
    return model


def load_tokenizer(path: str | Path) -> Any:
    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token  # padded positions are masked out
    return tokenizer


def position_limit(model: nn.Module) -> int | None:
    limit = getattr(model.config, "max_position_embeddings", None)
    return int(limit) if isinstance(limit, int) else None


def prompt_token_ids(tokenizer: Any, prompt: str) -> list[int]:
    """Prompt ids with the tokenizer's own special tokens (e.g. Llama's BOS).

    An empty prompt becomes the BOS (or EOS) token: the first response token needs something to be
    predicted from.
    """
    ids: list[int] = tokenizer(prompt)["input_ids"]
    if not ids:
        start = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
        ids = [start]
    return ids


def response_token_ids(tokenizer: Any, response: str) -> list[int]:
    """Response ids without special tokens, ending with EOS so the policy learns where to stop."""
    ids: list[int] = tokenizer(response, add_special_tokens=False)["input_ids"]
    return [*ids, tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else ids


def token_log_probs(model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """log π(token t | tokens < t) for t = 1 .. T − 1: [B, T − 1], float32.

    Positions come from the attention mask, so left padding (sampling) and right padding (DPO)
    both give every real token the position it would have unpadded.
    """
    positions = (attention_mask.cumsum(dim=-1) - 1).clamp(min=0)
    logits = model(
        input_ids=input_ids, attention_mask=attention_mask, position_ids=positions, use_cache=False
    ).logits[:, :-1]
    logits = logits.float()
    targets = input_ids[:, 1:].unsqueeze(-1)
    # gather − logsumexp instead of log_softmax: avoids a second [B, T, vocab] tensor.
    return logits.gather(-1, targets).squeeze(-1) - logits.logsumexp(dim=-1)


def trainable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The parameters that training changes (all of them, or only the adapters), on the CPU."""
    return {name: p.detach().cpu().clone() for name, p in model.named_parameters() if p.requires_grad}


def load_trainable_state(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    parameters = dict(model.named_parameters())
    with torch.no_grad():
        for name, value in state.items():
            parameters[name].copy_(value)


def save_policy(
    model: Any, tokenizer: Any, output_dir: Path, *, metadata: dict[str, Any], metadata_name: str
) -> None:
    """Save the (merged) child model and tokenizer in Hugging Face format, atomically.

    ``metadata`` (config and metrics) goes next to it as ``metadata_name``, so a model folder says
    how it was made.
    """
    if hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()  # plain weights: any loader reads them without peft

    def write(folder: Path) -> None:
        model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        (folder / metadata_name).write_text(json.dumps(metadata, indent=2, default=str))

    write_directory_atomically(Path(output_dir), write)


def downsample_curve(values: Sequence[float], points: int = CURVE_POINTS) -> list[float]:
    """Means of ``points`` nearly equal chunks of a per-step curve (all values if fewer)."""
    if len(values) <= points:
        return list(values)
    bounds = [round(index * len(values) / points) for index in range(points + 1)]
    return [sum(values[a:b]) / (b - a) for a, b in itertools.pairwise(bounds)]


@dataclass
class _EncodedPairs:
    """Each pair as (prompt + chosen, prompt + rejected) ids and the index where responses start."""

    chosen: list[list[int]]
    rejected: list[list[int]]
    chosen_start: list[int]
    rejected_start: list[int]
    truncated: int


def _encode_pairs(
    tokenizer: Any, pairs: Sequence[PreferencePair], max_length: int, max_prompt_length: int
) -> _EncodedPairs:
    encoded = _EncodedPairs([], [], [], [], 0)
    for pair in pairs:
        prompt = prompt_token_ids(tokenizer, pair.prompt)
        was_truncated = False
        sequences = []
        for response_text in (pair.chosen, pair.rejected):
            response = response_token_ids(tokenizer, response_text)
            kept_prompt = prompt
            if len(prompt) + len(response) > max_length:
                was_truncated = True
                kept_prompt = prompt[-max_prompt_length:]  # the prompt's end borders the response
                response = response[: max_length - len(kept_prompt)]
            sequences.append((kept_prompt + response, len(kept_prompt)))
        (chosen, chosen_start), (rejected, rejected_start) = sequences
        encoded.chosen.append(chosen)
        encoded.rejected.append(rejected)
        encoded.chosen_start.append(chosen_start)
        encoded.rejected_start.append(rejected_start)
        encoded.truncated += was_truncated
    return encoded


def response_log_probs(
    model: nn.Module, sequences: list[list[int]], starts: list[int], pad_id: int, device: torch.device
) -> torch.Tensor:
    """Sum of log π over response tokens (positions ≥ start) of right-padded sequences: [B]."""
    length = max(len(sequence) for sequence in sequences)
    input_ids = torch.full((len(sequences), length), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(sequences), length), dtype=torch.long)
    response_mask = torch.zeros((len(sequences), length), dtype=torch.float32)
    for row, (sequence, start) in enumerate(zip(sequences, starts, strict=True)):
        input_ids[row, : len(sequence)] = torch.tensor(sequence)
        attention_mask[row, : len(sequence)] = 1
        response_mask[row, start : len(sequence)] = 1.0
    log_probs = token_log_probs(model, input_ids.to(device), attention_mask.to(device))
    return (log_probs * response_mask[:, 1:].to(device)).sum(dim=-1)


def _pair_log_probs(
    model: nn.Module, encoded: _EncodedPairs, indices: list[int], pad_id: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """(log π(chosen), log π(rejected)) of the given pairs, in one forward pass of 2B sequences."""
    sequences = [encoded.chosen[i] for i in indices] + [encoded.rejected[i] for i in indices]
    starts = [encoded.chosen_start[i] for i in indices] + [encoded.rejected_start[i] for i in indices]
    log_probs = response_log_probs(model, sequences, starts, pad_id, device)
    return log_probs[: len(indices)], log_probs[len(indices) :]


@torch.no_grad()
def _all_pair_log_probs(
    model: nn.Module, encoded: _EncodedPairs, pad_id: int, device: torch.device
) -> torch.Tensor:
    """[N, 2] (chosen, rejected) log-probabilities of every pair, on the CPU."""
    rows = []
    for start in range(0, len(encoded.chosen), EVALUATION_BATCH_SIZE):
        indices = list(range(start, min(start + EVALUATION_BATCH_SIZE, len(encoded.chosen))))
        chosen, rejected = _pair_log_probs(model, encoded, indices, pad_id, device)
        rows.append(torch.stack([chosen, rejected], dim=-1).cpu())
    return torch.cat(rows) if rows else torch.zeros(0, 2)


def dpo_loss(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    reference_chosen: torch.Tensor,
    reference_rejected: torch.Tensor,
    beta: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean DPO loss, per-pair implicit reward margins) from summed response log-probabilities."""
    margins = beta * ((policy_chosen - reference_chosen) - (policy_rejected - reference_rejected))
    return -functional.logsigmoid(margins).mean(), margins


def train_dpo(
    pairs: Sequence[PreferencePair],
    parent_model_path: str | Path,
    output_dir: Path,
    config: DPOConfig,
    checkpoint_path: Path,
    reporter: ProgressReporter = null_reporter,
    *,
    validation_pairs: Sequence[PreferencePair] = (),
) -> DPOResult:
    """Fine-tune the parent on ``pairs`` with DPO; save the child (HF format) into ``output_dir``.

    Reports every optimizer step (loss, mean margin, reward accuracy of the batch); checkpoints
    atomically every ``config.checkpoint_every`` steps, when the reporter raises ``Cancelled``
    (then re-raised) and at the end. A rerun with the same checkpoint path, config, parent and pairs
    continues where the checkpoint stopped; a finished one only re-evaluates and re-saves.
    """
    if not pairs:
        raise ValueError("no training pairs")
    if config.max_prompt_length >= config.max_length:
        raise ValueError("max_prompt_length must leave room for the response")
    device = resolve_device(config.device)
    seed_everything(config.seed)
    tokenizer = load_tokenizer(parent_model_path)
    policy = load_policy(parent_model_path, device, lora=config.lora)
    limit = position_limit(policy)
    max_length = min(config.max_length, limit) if limit else config.max_length
    max_prompt_length = min(config.max_prompt_length, max_length - 1)
    train = _encode_pairs(tokenizer, pairs, max_length, max_prompt_length)
    validation = _encode_pairs(tokenizer, validation_pairs, max_length, max_prompt_length)
    pad_id = int(tokenizer.pad_token_id)

    parameters = [p for p in policy.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(parameters, lr=config.learning_rate, weight_decay=0.0)
    steps_per_epoch = math.ceil(len(pairs) / config.batch_size)
    total_steps = config.epochs * steps_per_epoch
    data_fingerprint = fingerprint([str(parent_model_path), *pairs, *validation_pairs])

    checkpoint = load_if_exists(checkpoint_path)
    if checkpoint is None:
        # The reference: the parent before any update (policy == parent now, eval mode, no grad).
        reference_train = _all_pair_log_probs(policy, train, pad_id, device)
        reference_validation = _all_pair_log_probs(policy, validation, pad_id, device)
        step, losses = 0, []
    else:
        check_resumable(checkpoint, config, data_fingerprint)
        load_trainable_state(policy, checkpoint["trainable"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        restore_rng_state(checkpoint["rng"])
        reference_train = checkpoint["reference_train"]
        reference_validation = checkpoint["reference_validation"]
        step, losses = int(checkpoint["step"]), list(checkpoint["losses"])
    resumed_from_step = step

    def save_checkpoint() -> None:
        save_atomic(
            {
                "format_version": FORMAT_VERSION,
                "config": config_for_checkpoint(config),
                "data_fingerprint": data_fingerprint,
                "step": step,
                "trainable": trainable_state(policy),
                "optimizer": optimizer.state_dict(),
                "rng": capture_rng_state(),
                "losses": losses,
                "reference_train": reference_train,
                "reference_validation": reference_validation,
            },
            checkpoint_path,
        )

    reporter(step=step, total=total_steps, message=f"resumed from step {step}" if step else "training DPO")
    while step < total_steps:
        epoch, position = divmod(step, steps_per_epoch)
        order = torch.randperm(len(pairs), generator=derived_generator(config.seed, epoch))
        batch = order[position * config.batch_size : (position + 1) * config.batch_size].tolist()
        policy_chosen, policy_rejected = _pair_log_probs(policy, train, batch, pad_id, device)
        reference = reference_train[batch].to(device)
        loss, margins = dpo_loss(
            policy_chosen, policy_rejected, reference[:, 0], reference[:, 1], config.beta
        )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(parameters, config.max_grad_norm)
        optimizer.step()
        step += 1
        losses.append(loss.item())
        if step % config.checkpoint_every == 0:
            save_checkpoint()
        metrics = {
            "loss": loss.item(),
            "margin": margins.mean().item(),
            "reward_accuracy": (margins > 0).float().mean().item(),
        }
        try:
            reporter(step=step, total=total_steps, metrics=metrics)
        except Cancelled:
            save_checkpoint()
            raise
    if step % config.checkpoint_every != 0:  # else the periodic checkpoint holds the last step
        save_checkpoint()

    reporter(step=step, total=total_steps, message="evaluating")
    final_train = _all_pair_log_probs(policy, train, pad_id, device)
    train_margins = config.beta * (
        (final_train[:, 0] - reference_train[:, 0]) - (final_train[:, 1] - reference_train[:, 1])
    )
    validation_margins: torch.Tensor | None = None
    if validation_pairs:
        final_validation = _all_pair_log_probs(policy, validation, pad_id, device)
        validation_margins = config.beta * (
            (final_validation[:, 0] - reference_validation[:, 0])
            - (final_validation[:, 1] - reference_validation[:, 1])
        )
    result = DPOResult(
        output_dir=str(output_dir),
        steps=step,
        resumed_from_step=resumed_from_step,
        train_pairs=len(pairs),
        validation_pairs=len(validation_pairs),
        truncated_pairs=train.truncated + validation.truncated,
        initial_train_margin=0.0,
        final_train_margin=float(train_margins.mean()),
        final_train_reward_accuracy=float((train_margins > 0).float().mean()),
        initial_validation_margin=0.0 if validation_pairs else None,
        final_validation_margin=None if validation_margins is None else float(validation_margins.mean()),
        final_validation_reward_accuracy=(
            None if validation_margins is None else float((validation_margins > 0).float().mean())
        ),
        chosen_log_prob_change=float((final_train[:, 0] - reference_train[:, 0]).mean()),
        rejected_log_prob_change=float((final_train[:, 1] - reference_train[:, 1]).mean()),
        reference_preference_gap=float((reference_train[:, 0] - reference_train[:, 1]).mean()),
        final_preference_gap=float((final_train[:, 0] - final_train[:, 1]).mean()),
        first_loss=losses[0] if losses else math.nan,
        last_loss=losses[-1] if losses else math.nan,
        loss_curve=downsample_curve(losses),
    )
    save_policy(
        policy,
        tokenizer,
        output_dir,
        metadata={
            "algorithm": "dpo",
            "parent": str(parent_model_path),
            "config": asdict(config),
            "result": asdict(result),
        },
        metadata_name="lovelace_training.json",
    )
    reporter(step=step, total=total_steps, message="saved")
    return result
