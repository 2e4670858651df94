"""Online RL of a causal LM against a reward function: RLOO with a KL penalty to the reference.

Each iteration takes a batch of prompts, samples k completions per prompt from the current policy
(plain ancestral sampling at temperature 1: the distribution the policy gradient assumes), scores
them with the reward function and makes one policy-gradient step (Ahmadian et al. 2024, "Back to
basics"; Kool et al. 2019):

    R_i = reward_i − β · Σ_t [log π(a_t) − log π_ref(a_t)]       (KL penalty in the reward)
    A_i = R_i − mean_{j ≠ i} R_j                                  (leave-one-out baseline, k samples)
    loss = − mean_i A_i · Σ_t log π(a_t)

The KL term is the per-token estimate log π − log π_ref at the sampled tokens, summed over the
completion and subtracted from the reward, as in Ziegler et al. 2019 and TRL's RLOO; its mean over
samples is an unbiased estimate of KL(π ‖ π_ref) and is what the result reports as ``kl``. β > 0
keeps the policy near the reference: with normalised rewards (std 1 on reference samples) β keeps
its meaning from one reward model to the next.

The reference is a frozen copy loaded from ``parent_model_path`` (or, with LoRA, the same weights
with the adapters switched off); it is never reloaded from ``config._name_or_path``. One gradient
step per batch keeps the update on-policy, so no importance ratio or clipping is needed. The
policy runs without dropout: sampling and scoring see the same distribution, and a run is
deterministic given its seed.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from workers.ml.checkpoint import load_if_exists, save_atomic
from workers.ml.dpo import (
    LoraSettings,
    downsample_curve,
    load_policy,
    load_tokenizer,
    load_trainable_state,
    position_limit,
    prompt_token_ids,
    save_policy,
    token_log_probs,
    trainable_state,
)
from workers.ml.preference_data import (
    capture_rng_state,
    check_resumable,
    config_for_checkpoint,
    derived_generator,
    fingerprint,
    resolve_device,
    restore_rng_state,
    seed_everything,
)
from workers.ml.progress import Cancelled, ProgressReporter, null_reporter

FORMAT_VERSION = 1

# (prompts, completions) → one reward per completion, higher is better. Must be deterministic for
# a resumed run to equal an uninterrupted one. ``reward_model.reward_function(ensemble)`` gives the
# ensemble's normalised mean score in this shape.
RewardFunction = Callable[[Sequence[str], Sequence[str]], Sequence[float]]


@dataclass
class RLOOConfig:
    """Every setting of one RLOO run; stored in the checkpoint and next to the saved child model."""

    # k completions per prompt; the leave-one-out baseline needs k ≥ 2. Ahmadian et al. compare
    # k = 2 (TRL's default) and 4: 4 gives a less noisy baseline at twice the sampling cost.
    samples_per_prompt: int = 4
    # Prompts per iteration (batch = prompts × k sequences); 8 × 4 fits a 2-core CPU, small model.
    prompts_per_iteration: int = 8
    # Policy updates (one per batch of fresh samples).
    iterations: int = 100
    # Tokens sampled per completion; sampling stops earlier at EOS.
    max_new_tokens: int = 64
    # KL coefficient β (> 0). 0.05 is TRL's RLOO default; with rewards normalised to std 1 that
    # lets the policy trade one standard deviation of reward for 20 nats of KL.
    beta: float = 0.05
    # AdamW learning rate, constant. 1e-6 is TRL's default for full fine-tuning; ~1e-5 with LoRA.
    learning_rate: float = 1e-6
    # Prompts longer than this lose their beginning; also capped so that prompt + completion fits
    # the model's position limit.
    max_prompt_length: int = 256
    # Gradient-norm clipping, as in TRL: REINFORCE gradients have heavy tails.
    max_grad_norm: float = 1.0
    # None = full fine-tuning (then a second, frozen copy of the parent is the reference);
    # LoraSettings() = adapters, and the reference is the same model with adapters disabled.
    lora: LoraSettings | None = None
    # Seeds the prompt order and every sampling draw (iteration i uses its own generator).
    seed: int = 0
    # Iterations between checkpoints: an iteration costs seconds to minutes, a checkpoint of a full
    # model ~3 × its size; 10 bounds the work lost to a crash.
    checkpoint_every: int = 10
    # "cpu", "cuda", ...; None = the first GPU when present. May differ on resume.
    device: str | None = None


@dataclass
class RLOOResult:
    """What an RLOO run reports. Rewards are the reward function's, before the KL penalty."""

    output_dir: str
    iterations: int
    resumed_from_iteration: int
    # Mean reward of the samples of the first and of the last iteration (the first iteration
    # samples the parent, the last one the policy after iterations − 1 updates).
    first_mean_reward: float
    last_mean_reward: float
    # Mean over samples of Σ_t log π − log π_ref (nats per completion); 0 at the first iteration.
    first_kl: float
    last_kl: float
    last_mean_completion_tokens: float
    reward_curve: list[float]  # means of equal chunks of iterations, ≤ 20 points
    kl_curve: list[float]


@dataclass
class _Batch:
    """Prompts left-padded to one width, completions right-padded after them."""

    input_ids: torch.Tensor  # [B, P + N]
    attention_mask: torch.Tensor  # [B, P + N]
    completion_mask: torch.Tensor  # [B, N] float: 1 for sampled tokens (EOS included)
    prompt_width: int


def _left_pad(
    sequences: list[list[int]], pad_id: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(sequence) for sequence in sequences)
    input_ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, sequence in enumerate(sequences):
        input_ids[row, width - len(sequence) :] = torch.tensor(sequence)
        attention_mask[row, width - len(sequence) :] = 1
    return input_ids.to(device), attention_mask.to(device)


@torch.no_grad()
def sample_completions(
    model: nn.Module,
    prompts: list[list[int]],
    *,
    max_new_tokens: int,
    eos_id: int,
    pad_id: int,
    generator: torch.Generator,
    device: torch.device,
) -> _Batch:
    """Ancestral sampling at temperature 1 (no top-k / top-p), with a KV cache.

    Rows that produced EOS keep receiving masked pad tokens until every row is done.
    """
    input_ids, attention_mask = _left_pad(prompts, pad_id, device)
    positions = (attention_mask.cumsum(dim=-1) - 1).clamp(min=0)
    output = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=positions, use_cache=True)
    next_position = positions[:, -1:] + 1
    finished = torch.zeros(len(prompts), dtype=torch.bool, device=device)
    tokens, alive = [], []
    for _ in range(max_new_tokens):
        probabilities = torch.softmax(output.logits[:, -1].float(), dim=-1)
        token = torch.multinomial(probabilities, 1, generator=generator).squeeze(1)
        token = torch.where(finished, torch.full_like(token, pad_id), token)
        tokens.append(token)
        alive.append(~finished)
        finished = finished | (token == eos_id)
        if bool(finished.all()) or len(tokens) == max_new_tokens:
            break
        attention_mask = torch.cat([attention_mask, alive[-1].long()[:, None]], dim=1)
        output = model(
            input_ids=token[:, None],
            attention_mask=attention_mask,
            position_ids=next_position,
            cache=output.cache,
            use_cache=True,
        )
        next_position = next_position + 1
    completion = torch.stack(tokens, dim=1)
    completion_alive = torch.stack(alive, dim=1)
    prompt_ids, prompt_mask = _left_pad(prompts, pad_id, device)
    return _Batch(
        input_ids=torch.cat([prompt_ids, completion], dim=1),
        attention_mask=torch.cat([prompt_mask, completion_alive.long()], dim=1),
        completion_mask=completion_alive.float(),
        prompt_width=prompt_ids.shape[1],
    )


def _completion_log_probs(model: nn.Module, batch: _Batch) -> torch.Tensor:
    """log π of each completion token [B, N] (token t is predicted at position t − 1)."""
    log_probs = token_log_probs(model, batch.input_ids, batch.attention_mask)
    return log_probs[:, batch.prompt_width - 1 :]


def rloo_advantages(rewards: torch.Tensor) -> torch.Tensor:
    """R_i − mean of the other k − 1 rewards of the same prompt, for rewards shaped [prompts, k]."""
    k = rewards.shape[1]
    baseline = (rewards.sum(dim=1, keepdim=True) - rewards) / (k - 1)
    return rewards - baseline


def _prompt_indices(config: RLOOConfig, iteration: int, prompt_count: int) -> list[int]:
    """Prompts of one iteration: consecutive slots of a walk through shuffled passes over all."""
    indices = []
    for slot in range(
        iteration * config.prompts_per_iteration, (iteration + 1) * config.prompts_per_iteration
    ):
        cycle, offset = divmod(slot, prompt_count)
        indices.append(
            int(torch.randperm(prompt_count, generator=derived_generator(config.seed, cycle))[offset])
        )
    return indices


def train_online_rl(
    prompts: Sequence[str],
    parent_model_path: str | Path,
    reward_function: RewardFunction,
    output_dir: Path,
    config: RLOOConfig,
    checkpoint_path: Path,
    reporter: ProgressReporter = null_reporter,
) -> RLOOResult:
    """Run RLOO from the parent on ``prompts``; save the child (HF format) into ``output_dir``.

    Reports every iteration (mean reward, KL, loss, completion length); checkpoints atomically every
    ``config.checkpoint_every`` iterations, when the reporter raises ``Cancelled`` (then re-raised)
    and at the end. A rerun with the same checkpoint path, config, parent and prompts continues from
    the checkpoint.
    """
    if not prompts:
        raise ValueError("no prompts")
    if config.samples_per_prompt < 2:
        raise ValueError("the leave-one-out baseline needs at least two samples per prompt")
    if config.beta <= 0:
        raise ValueError("beta must be positive: without the KL penalty the policy drifts freely")
    device = resolve_device(config.device)
    seed_everything(config.seed)
    tokenizer = load_tokenizer(parent_model_path)
    policy = load_policy(parent_model_path, device, lora=config.lora)
    reference: nn.Module | None = None
    if config.lora is None:
        reference = load_policy(parent_model_path, device, lora=None)
        reference.requires_grad_(False)
    limit = position_limit(policy)
    max_prompt_length = config.max_prompt_length
    if limit is not None:
        max_prompt_length = min(max_prompt_length, limit - config.max_new_tokens)
    if max_prompt_length < 1:
        raise ValueError("max_new_tokens leaves no room for the prompt within the position limit")
    encoded_prompts = [prompt_token_ids(tokenizer, prompt)[-max_prompt_length:] for prompt in prompts]
    eos_id = int(tokenizer.eos_token_id)
    pad_id = int(tokenizer.pad_token_id)

    parameters = [p for p in policy.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(parameters, lr=config.learning_rate, weight_decay=0.0)
    data_fingerprint = fingerprint([str(parent_model_path), *prompts])
    history: dict[str, list[float]] = {"reward": [], "kl": [], "loss": [], "completion_tokens": []}
    iteration = 0
    checkpoint = load_if_exists(checkpoint_path)
    if checkpoint is not None:
        check_resumable(checkpoint, config, data_fingerprint)
        load_trainable_state(policy, checkpoint["trainable"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        restore_rng_state(checkpoint["rng"])
        iteration = int(checkpoint["iteration"])
        history = {key: list(values) for key, values in checkpoint["history"].items()}
    resumed_from_iteration = iteration

    def save_checkpoint() -> None:
        save_atomic(
            {
                "format_version": FORMAT_VERSION,
                "config": config_for_checkpoint(config),
                "data_fingerprint": data_fingerprint,
                "iteration": iteration,
                "trainable": trainable_state(policy),
                "optimizer": optimizer.state_dict(),
                "rng": capture_rng_state(),
                "history": history,
            },
            checkpoint_path,
        )

    @contextlib.contextmanager
    def reference_model() -> Iterator[nn.Module]:
        if reference is not None:
            yield reference
        else:
            with policy.disable_adapter():  # type: ignore[operator]
                yield policy

    total = config.iterations
    k = config.samples_per_prompt
    reporter(
        step=iteration,
        total=total,
        message=f"resumed from iteration {iteration}" if iteration else "training RLOO",
    )
    while iteration < total:
        indices = [index for index in _prompt_indices(config, iteration, len(prompts)) for _ in range(k)]
        sampling_seed = derived_generator(config.seed, iteration).initial_seed()
        generator = torch.Generator(device=device).manual_seed(sampling_seed)
        batch = sample_completions(
            policy,
            [encoded_prompts[index] for index in indices],
            max_new_tokens=config.max_new_tokens,
            eos_id=eos_id,
            pad_id=pad_id,
            generator=generator,
            device=device,
        )
        completion_ids = batch.input_ids[:, batch.prompt_width :].masked_fill(
            batch.completion_mask == 0, pad_id
        )
        completions = tokenizer.batch_decode(completion_ids.tolist(), skip_special_tokens=True)
        rewards = torch.tensor(
            [float(value) for value in reward_function([prompts[i] for i in indices], completions)],
            dtype=torch.float32,
            device=device,
        )
        if rewards.shape[0] != len(completions):
            raise ValueError("the reward function must return one reward per completion")

        policy_log_probs = _completion_log_probs(policy, batch)
        with torch.no_grad(), reference_model() as frozen:
            reference_log_probs = _completion_log_probs(frozen, batch)
        mask = batch.completion_mask
        kl = ((policy_log_probs.detach() - reference_log_probs) * mask).sum(dim=1)
        shaped = rewards - config.beta * kl
        advantages = rloo_advantages(shaped.view(-1, k)).view(-1)
        loss = -(advantages * (policy_log_probs * mask).sum(dim=1)).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(parameters, config.max_grad_norm)
        optimizer.step()

        iteration += 1
        metrics = {
            "reward": rewards.mean().item(),
            "kl": kl.mean().item(),
            "loss": loss.item(),
            "completion_tokens": mask.sum(dim=1).mean().item(),
        }
        for key, value in metrics.items():
            history[key].append(value)
        if iteration % config.checkpoint_every == 0:
            save_checkpoint()
        try:
            reporter(step=iteration, total=total, metrics=metrics)
        except Cancelled:
            save_checkpoint()
            raise
    if iteration % config.checkpoint_every != 0:  # else the periodic checkpoint holds it
        save_checkpoint()

    result = RLOOResult(
        output_dir=str(output_dir),
        iterations=iteration,
        resumed_from_iteration=resumed_from_iteration,
        first_mean_reward=history["reward"][0] if history["reward"] else math.nan,
        last_mean_reward=history["reward"][-1] if history["reward"] else math.nan,
        first_kl=history["kl"][0] if history["kl"] else math.nan,
        last_kl=history["kl"][-1] if history["kl"] else math.nan,
        last_mean_completion_tokens=history["completion_tokens"][-1]
        if history["completion_tokens"]
        else math.nan,
        reward_curve=downsample_curve(history["reward"]),
        kl_curve=downsample_curve(history["kl"]),
    )
    metadata: dict[str, Any] = {
        "algorithm": "rloo",
        "parent": str(parent_model_path),
        "config": asdict(config),
        "result": asdict(result),
    }
    save_policy(policy, tokenizer, output_dir, metadata=metadata, metadata_name="lovelace_training.json")
    reporter(step=iteration, total=total, message="saved")
    return result
