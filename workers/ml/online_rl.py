"""Online RL of a causal LM against the study's reward model, on TRL's ``RLOOTrainer`` / ``GRPOTrainer``.

Each step samples ``num_generations`` completions per prompt from the current policy, scores them
with the reward function and takes a policy-gradient step with a KL penalty β toward the parent:

- **RLOO** (Ahmadian et al. 2024, "Back to basics"): advantage = reward − mean of the other
  completions of the same prompt (the leave-one-out baseline); TRL folds β·KL into the reward.
- **GRPO** (Shao et al. 2024): advantage = reward − the group mean (scaled by the group's std,
  TRL's default), a clipped surrogate, and β·KL as a loss term. TRL's default β = 0 drops the
  reference entirely; ours is 0.05 as for RLOO, so the policy stays near the parent.

The reward is the reward-model ensemble's normalised mean score, or, with
``reward_std_penalty`` k > 0, the pessimistic mean − k·std over members: completions on which the
members disagree (where the reward model knows least) earn less, which damps reward hacking
(Coste et al. 2024, "Reward model ensembles help mitigate overoptimization").

The reference: with LoRA (the default) the parent is the policy with its adapters disabled; with
full fine-tuning TRL loads it from ``config._name_or_path``, which ``load_parent`` sets to the
parent's folder (a plain model folder: an adapter parent is refused for full fine-tuning, since no
folder holds its merged weights). Dropout is off. Prompts reach the model as in generation
(``chat_format``); the reward model sees the raw prompt text and the completion's text.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from datasets import Dataset
from transformers.trainer_callback import PrinterCallback
from trl import GRPOConfig, GRPOTrainer, RLOOConfig, RLOOTrainer

from workers.ml.chat_format import completion_text, training_prompt, truncate_prompt
from workers.ml.dpo import downsample_curve
from workers.ml.lm_head import use_plain_lm_heads
from workers.ml.model_loading import is_adapter
from workers.ml.policy_config import OnlineRLConfig, fitted_lengths
from workers.ml.policy_training import (
    check_environment,
    load_parent,
    logged,
    model_positions,
    peft_config,
    resolved_dtype,
    save_child,
    set_lora_dropout,
    training_arguments,
)
from workers.ml.preference_data import seed_everything
from workers.ml.progress import ProgressReporter, null_reporter
from workers.ml.trainer_bridge import JobBridge, last_checkpoint, run_bridged

# (prompts, completions) → one reward per completion, higher is better.
RewardFunction = Callable[[Sequence[str], Sequence[str]], Sequence[float]]


@dataclass
class OnlineRLResult:
    """What an RLOO / GRPO run reports. Rewards are the reward function's, before the KL penalty,
    means over each step's completions."""

    output_dir: str
    method: str
    steps: int
    resumed_from_step: int
    # Mean reward of the first and of the last step's completions (the first samples the parent).
    first_mean_reward: float
    last_mean_reward: float
    # Mean per-token KL(π ‖ π_ref) estimate, as TRL logs it; 0 at the first step.
    first_kl: float
    last_kl: float
    last_mean_completion_tokens: float
    reward_curve: list[float]  # means of equal chunks of steps, ≤ 20 points
    kl_curve: list[float]


def check_config(config: OnlineRLConfig, parent_model_path: str | Path) -> None:
    """Refuse a config that cannot run (the service checks each option's range already)."""
    check_environment(config)
    if config.reward_std_penalty < 0:
        raise ValueError("reward_std_penalty must be at least 0")
    if config.lora is None and is_adapter(parent_model_path):
        raise ValueError(
            "full fine-tuning needs a parent saved as plain weights (the reference is reloaded from "
            "its folder); this parent is an adapter: use LoRA, or train from a merged parent"
        )


def ensemble_reward(ensemble: Any, *, std_penalty: float) -> RewardFunction:
    """The reward-model ensemble as a reward: the normalised mean over members, minus
    ``std_penalty`` × their std (the pessimistic reward) when it is positive."""
    from workers.ml.reward_model import reward_function, score_texts

    if std_penalty == 0:
        return reward_function(ensemble)

    def rewards(prompts: Sequence[str], completions: Sequence[str]) -> list[float]:
        scores = score_texts(ensemble, completions, prompts=prompts)
        return (scores.mean - std_penalty * scores.std).tolist()

    return rewards


def _trl_reward(reward: RewardFunction) -> Callable[..., list[float]]:
    """Our (prompts, completions) reward in TRL's shape: keyword arguments, one float each."""

    def ensemble(*, completions: list[Any], raw_prompt: list[str], **_: Any) -> list[float]:
        values = [float(value) for value in reward(raw_prompt, [completion_text(c) for c in completions])]
        if len(values) != len(completions):
            raise ValueError("the reward function must return one reward per completion")
        return values

    return ensemble


def train_online_rl(
    prompts: Sequence[str],
    parent_model_path: str | Path,
    reward_function: RewardFunction,
    output_dir: Path,
    config: OnlineRLConfig,
    checkpoint_dir: Path,
    reporter: ProgressReporter = null_reporter,
) -> OnlineRLResult:
    """Run RLOO or GRPO from the parent on ``prompts``; save the child into ``output_dir``.

    Checkpoints go to ``checkpoint_dir`` every ``config.checkpoint_every`` steps and when the
    reporter raises ``Cancelled`` (then re-raised); a rerun with the same folder resumes there.
    """
    if not prompts:
        raise ValueError("no prompts")
    check_config(config, parent_model_path)
    seed_everything(config.seed)
    model, tokenizer = load_parent(parent_model_path, config)
    config = fitted_lengths(config, model_positions(model))
    rows = []
    for prompt in prompts:
        kept = truncate_prompt(tokenizer, prompt, config.max_prompt_length)
        rows.append({"prompt": training_prompt(tokenizer, kept), "raw_prompt": prompt})
    shared: dict[str, Any] = {
        **training_arguments(config, checkpoint_dir),
        "num_generations": config.num_generations,
        "max_completion_length": config.max_completion_length,
        "beta": config.beta,
        "temperature": config.temperature,
        "log_completions": False,
    }
    if config.lora is None:
        # Full fine-tuning: TRL loads the frozen reference from the parent's path with these. In
        # the run's dtype (the policy's float32 master weights would double it) and at the
        # parent's revision, as ``load_parent`` loaded the policy.
        shared["model_init_kwargs"] = {
            "dtype": resolved_dtype(config),
            **({"revision": config.parent_revision} if config.parent_revision else {}),
        }
    trainer_class: Any
    if config.method == "rloo":
        arguments: Any = RLOOConfig(**shared)
        trainer_class = RLOOTrainer
    else:
        arguments = GRPOConfig(**shared)
        trainer_class = GRPOTrainer
    trainer = trainer_class(
        model=model,
        reward_funcs=_trl_reward(reward_function),
        args=arguments,
        train_dataset=Dataset.from_list(rows),
        processing_class=tokenizer,
        peft_config=peft_config(config),
    )
    trainer.remove_callback(PrinterCallback)
    # The fields both trainers ask their fused LM head for (TRL 1.16), from the plain head on a CPU.
    use_plain_lm_heads(trainer, outputs=("log_probs", "entropy"), temperature=trainer.temperature)
    if config.lora is not None:
        set_lora_dropout(trainer.model, config.lora.dropout)
    bridge = JobBridge(reporter, label=config.method.upper())
    trainer.add_callback(bridge)

    resumed_from = last_checkpoint(checkpoint_dir)
    run_bridged(trainer, bridge, checkpoints=checkpoint_dir)

    rewards = logged(trainer, "reward")
    kls = logged(trainer, "kl")
    lengths = logged(trainer, "completions/mean_length")
    nan = float("nan")
    result = OnlineRLResult(
        output_dir=str(output_dir),
        method=config.method,
        steps=trainer.state.global_step,
        resumed_from_step=int(Path(resumed_from).name.split("-")[-1]) if resumed_from else 0,
        first_mean_reward=rewards[0] if rewards else nan,
        last_mean_reward=rewards[-1] if rewards else nan,
        first_kl=kls[0] if kls else nan,
        last_kl=kls[-1] if kls else nan,
        last_mean_completion_tokens=lengths[-1] if lengths else nan,
        reward_curve=downsample_curve(rewards),
        kl_curve=downsample_curve(kls),
    )
    step = trainer.state.global_step
    reporter(step=step, total=step, message="saving the child")
    save_child(
        trainer,
        parent_path=parent_model_path,
        output_dir=output_dir,
        settings=config,
        metadata={
            "algorithm": config.method,
            "parent": str(parent_model_path),
            "config": asdict(config),
            "result": asdict(result),
        },
    )
    reporter(step=step, total=step, message="saved")
    return result
