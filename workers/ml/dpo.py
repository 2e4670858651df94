"""Direct preference optimisation (Rafailov et al. 2023) of a causal LM, on TRL's ``DPOTrainer``.

Loss per pair (``loss_type="sigmoid"``), y_w chosen, y_l rejected, log π summed over response
tokens:

    −log σ(β [(log π(y_w) − log π_ref(y_w)) − (log π(y_l) − log π_ref(y_l))])

``"ipo"`` (Azar et al. 2023) regresses the margin to 1/(2β) instead, which does not overfit
near-deterministic preferences; ``"robust"`` (Chowdhury et al. 2024) with ``label_smoothing`` ε
is unbiased when a share ε of the crowd's labels is flipped.

What we configure around TRL, and why:
- the reference is the parent: its log-probabilities are precomputed before the first update
  (``precompute_ref_log_probs``), so no second model stays in memory and nothing is reloaded from
  ``config._name_or_path`` (TRL's ``ref_model=None`` trap). A resumed run rebuilds the trainer from
  the parent, so the reference is recomputed from the same weights;
- dropout off (TRL's ``disable_dropout``): policy and reference log-probabilities are comparable;
- prompts are cut to ``max_prompt_length`` tokens here (TRL 1.16 has only ``max_length``, which
  keeps the start and would cut the response), then prompt + response to ``max_length``;
- chat models get TRL's conversational rows through ``chat_format``, the same rendering that
  generation uses;
- on a device without TRL's fused LM head kernel (a CPU), log-probabilities come from plain
  logits + log-softmax over the response tokens only (``lm_head``): the same values, several
  times faster there.
Progress, metrics, cancel and resume go through ``trainer_bridge``.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from datasets import Dataset
from transformers.trainer_callback import PrinterCallback
from trl import DPOConfig as TRLDPOConfig
from trl import DPOTrainer

from workers.ml.chat_format import preference_row, truncate_prompt
from workers.ml.lm_head import use_plain_lm_heads
from workers.ml.policy_config import DPOConfig, fitted_lengths
from workers.ml.policy_training import (
    load_parent,
    logged,
    model_positions,
    peft_config,
    save_child,
    set_lora_dropout,
    shared_dataset,
    training_arguments,
)
from workers.ml.preference_data import PreferencePair, seed_everything
from workers.ml.progress import ProgressReporter, null_reporter
from workers.ml.trainer_bridge import JobBridge, last_checkpoint, run_bridged

# Points kept of a per-step curve in a result (means of equal chunks of steps).
CURVE_POINTS = 20


@dataclass
class DPOResult:
    """What a DPO run reports. Margins are mean implicit-reward margins
    β[(log π(y_w) − log π_ref(y_w)) − (log π(y_l) − log π_ref(y_l))], as TRL logs them; 0 before
    the first update by construction (the policy starts as the reference)."""

    output_dir: str
    steps: int
    resumed_from_step: int
    train_pairs: int
    validation_pairs: int
    # Pairs whose prompt or response was cut to the length limits.
    truncated_pairs: int
    # The margin of the first and of the last optimizer step's batches (before that step's update).
    initial_train_margin: float
    final_train_margin: float
    # Share of the last step's pairs with a positive margin.
    final_train_reward_accuracy: float
    initial_validation_margin: float | None
    # Margin and accuracy of the trained policy on the validation pairs.
    final_validation_margin: float | None
    final_validation_reward_accuracy: float | None
    first_loss: float
    last_loss: float
    loss_curve: list[float]
    margin_curve: list[float]


def downsample_curve(values: Sequence[float], points: int = CURVE_POINTS) -> list[float]:
    """Means of ``points`` nearly equal chunks of a per-step curve (all values if fewer)."""
    if len(values) <= points:
        return list(values)
    bounds = [round(index * len(values) / points) for index in range(points + 1)]
    return [sum(values[a:b]) / (b - a) for a, b in itertools.pairwise(bounds)]


class _DPOTrainer(DPOTrainer):  # type: ignore[misc]
    """TRL's trainer with the plain LM head (``lm_head``) on devices without TRL's kernel, from the
    first forward on: the constructor precomputes the reference log-probabilities, after it has
    added its fused head, through ``compute_ref_log_probs``."""

    _plain_head_checked = False

    def use_plain_head(self) -> None:
        if not self._plain_head_checked:
            # The fields DPOTrainer asks its fused head for (TRL 1.16).
            outputs: tuple[str, ...] = ("log_probs", "entropy", "mean_logits", "is_top1")
            if self.use_weighting:
                outputs += ("log_sum_sq_probs",)
            use_plain_lm_heads(self, outputs=outputs)
            self._plain_head_checked = True

    def compute_ref_log_probs(self, model: Any, inputs: dict[str, Any]) -> Any:
        self.use_plain_head()
        return super().compute_ref_log_probs(model, inputs)


def _rows(tokenizer: object, pairs: Sequence[PreferencePair], max_prompt_length: int) -> Dataset:
    rows = []
    for pair in pairs:
        prompt = truncate_prompt(tokenizer, pair.prompt, max_prompt_length)
        row = preference_row(tokenizer, prompt=prompt, chosen=pair.chosen, rejected=pair.rejected)
        rows.append({**row, "prompt_cut": prompt != pair.prompt})
    return Dataset.from_list(rows)


def _truncated(dataset: Dataset, max_length: int) -> int:
    """Rows whose prompt was cut here or whose prompt + longer response exceeds ``max_length``."""
    return sum(
        bool(row["prompt_cut"])
        or len(row["prompt_ids"]) + max(len(row["chosen_ids"]), len(row["rejected_ids"])) > max_length
        for row in dataset
    )


def train_dpo(
    pairs: Sequence[PreferencePair],
    parent_model_path: str | Path,
    output_dir: Path,
    config: DPOConfig,
    checkpoint_dir: Path,
    reporter: ProgressReporter = null_reporter,
    *,
    validation_pairs: Sequence[PreferencePair] = (),
) -> DPOResult:
    """Fine-tune the parent on ``pairs`` with DPO; save the child into ``output_dir``.

    Checkpoints go to ``checkpoint_dir`` every ``config.checkpoint_every`` steps and when the
    reporter raises ``Cancelled`` (then re-raised); a rerun with the same folder resumes from the
    newest checkpoint there.
    """
    if not pairs:
        raise ValueError("no training pairs")
    seed_everything(config.seed)
    model, tokenizer = load_parent(parent_model_path, config)
    config = fitted_lengths(config, model_positions(model))
    train = _rows(tokenizer, pairs, config.max_prompt_length)
    validation = _rows(tokenizer, validation_pairs, config.max_prompt_length)
    arguments = TRLDPOConfig(
        **training_arguments(config, checkpoint_dir),
        beta=config.beta,
        loss_type=[config.loss_type],
        label_smoothing=config.label_smoothing,
        max_length=config.max_length,
        precompute_ref_log_probs=True,
        disable_dropout=True,
    )
    if arguments.world_size > 1:
        train = shared_dataset(train, checkpoint_dir / "datasets" / "train", arguments)
        if validation_pairs:
            validation = shared_dataset(validation, checkpoint_dir / "datasets" / "validation", arguments)
    trainer = _DPOTrainer(
        model=model,
        args=arguments,
        train_dataset=train,
        eval_dataset=validation if validation_pairs else None,
        processing_class=tokenizer,
        peft_config=peft_config(config),
    )
    trainer.remove_callback(PrinterCallback)
    trainer.use_plain_head()  # when no reference log-probability was computed in the constructor
    if config.lora is not None:
        set_lora_dropout(trainer.model, config.lora.dropout)
    bridge = JobBridge(reporter, label="DPO")
    trainer.add_callback(bridge)

    resumed_from = last_checkpoint(checkpoint_dir)
    run_bridged(trainer, bridge, checkpoints=checkpoint_dir)
    validation_metrics = trainer.evaluate() if validation_pairs else {}

    truncated = _truncated(trainer.train_dataset, config.max_length)
    if validation_pairs:
        truncated += _truncated(trainer.eval_dataset, config.max_length)
    losses = logged(trainer, "loss")
    margins = logged(trainer, "rewards/margins")
    accuracies = logged(trainer, "rewards/accuracies")
    result = DPOResult(
        output_dir=str(output_dir),
        steps=trainer.state.global_step,
        resumed_from_step=int(Path(resumed_from).name.split("-")[-1]) if resumed_from else 0,
        train_pairs=len(pairs),
        validation_pairs=len(validation_pairs),
        truncated_pairs=truncated,
        initial_train_margin=margins[0] if margins else 0.0,
        final_train_margin=margins[-1] if margins else 0.0,
        final_train_reward_accuracy=accuracies[-1] if accuracies else 0.0,
        initial_validation_margin=0.0 if validation_pairs else None,
        final_validation_margin=validation_metrics.get("eval_rewards/margins"),
        final_validation_reward_accuracy=validation_metrics.get("eval_rewards/accuracies"),
        first_loss=losses[0] if losses else float("nan"),
        last_loss=losses[-1] if losses else float("nan"),
        loss_curve=downsample_curve(losses),
        margin_curve=downsample_curve(margins),
    )
    step = trainer.state.global_step
    reporter(step=step, total=step, message="saving the child")
    save_child(
        trainer,
        parent_path=parent_model_path,
        output_dir=output_dir,
        settings=config,
        metadata={
            "algorithm": "dpo",
            "parent": str(parent_model_path),
            "config": asdict(config),
            "result": asdict(result),
        },
    )
    reporter(step=step, total=step, message="saved")
    return result
