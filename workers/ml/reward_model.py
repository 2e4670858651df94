"""A reward-model ensemble trained on human preference pairs (Christiano et al. 2017).

Each of the K members scores a (prompt, response) with a scalar and is trained with the
Bradley–Terry loss ``−log σ(r_chosen − r_rejected − margin)`` on its own bootstrap resample of the
training pairs. After training, every member is normalised on a reference set of texts
(reference-policy samples, as in Ziegler et al. 2019) so that a reward of 1 means "one standard
deviation better than what the reference policy writes", which keeps a KL coefficient meaningful
across reward models. The spread of the members' normalised scores is the uncertainty that active
pair selection uses.

Two kinds of member (``RewardModelConfig.kind``):

- ``"sequence_classification"``: an ``AutoModelForSequenceClassification`` (``num_labels=1``) over
  any Hugging Face backbone, the policy's own causal-LM base included, trained with TRL's
  ``RewardTrainer`` (full fine-tuning, LoRA or QLoRA; bf16 and gradient checkpointing on GPUs).
  Progress, cancel and resume go through ``workers.ml.trainer_bridge``: each member resumes from
  its newest ``checkpoint-N`` in the run's checkpoint folder, and a finished member is kept. With
  ``distributed`` (DDP, FSDP, ZeRO-3) the members train one after another on supervised ranks
  (``workers.ml.distributed``), and this process normalises and evaluates them afterwards.
- ``"embedding_heads"``: K linear heads over the pooled features of one frozen encoder (MiniLM by
  default), trained by the small loop below on features computed once. TRL has no trainer for
  "many heads over one frozen feature matrix"; this is the cheap option that trains in seconds on
  a CPU, and the default of the embedded demo for that reason.

What stays our own code, and why: the ensemble (TRL trains one model), bootstrap resampling,
normalisation on reference texts, the spread across members, and the calibration metrics.

On-disk layout of a trained ensemble (``output_dir``)::

    reward_model.json      kind, text format, max length, normalisation, config, metrics, provenance
    provenance.json        the backbone: path, revision or content hash, dtype
    tokenizer/             the backbone's tokenizer
    heads.pt               embedding_heads: the K linear heads (the frozen encoder is referenced
                           by path, never copied)
    member_0/ ... member_{K-1}/   sequence_classification: a LoRA adapter (with the trained
                           ``score`` head) that references the base model by path, or a full model
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as functional
from torch import nn
from transformers import AutoConfig, AutoModel, AutoTokenizer, PreTrainedModel

from evaluation.calibration import reliability_bins
from evaluation.proportions import wilson_interval
from workers.ml import chat_format
from workers.ml.chat_format import prompt_messages, response_messages
from workers.ml.checkpoint import load_if_exists, save_atomic
from workers.ml.distributed import Supervision
from workers.ml.policy_config import SHARDED
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
from workers.ml.reward_model_config import Pooling, RewardModelConfig
from workers.ml.reward_model_config import (  # re-exported: callers import them from here too
    RewardLora as RewardLora,
)
from workers.ml.reward_model_config import (
    default_backbone_path as default_backbone_path,
)

FORMAT_VERSION = 2
# Texts per forward pass when nothing needs gradients (features, scoring): ~40 MB of activations
# for MiniLM at 256 tokens.
SCORING_BATCH_SIZE = 64
# Weight files whose bytes identify a local base model (the content hash of the provenance).
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf")
# Next to the base model's weights: their SHA-256, keyed by name, size and mtime, so a 15 GB base is
# hashed once, not at every load. Skipped where the folder is read-only.
CONTENT_HASH_CACHE = ".lovelace-content-hash.json"


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
    kind: str
    # Optimizer steps of all members together, and how many of them were done before this run
    # started (0 when it started fresh; a resumed run continues after them).
    steps: int
    resumed_from_step: int
    train_pairs: int
    validation_pairs: int
    truncated_pairs: int  # training + validation pairs with at least one side truncated
    dropped_pairs: int  # training pairs the trainer left out (0: long pairs are truncated first)
    # Share of validation pairs whose chosen side gets the higher ensemble reward (None: no pairs),
    # with its 95 % Wilson interval over the pairs as independent trials (the caller, who knows
    # which pairs judge one comparison, clusters ``validation_right``: server/training/agreement.py).
    validation_accuracy: float | None
    validation_accuracy_interval: tuple[float, float] | None
    member_validation_accuracy: list[float]
    # ECE of P(chosen preferred) = mean over members of σ(r_c − r_r), ``calibration_bins`` bins.
    expected_calibration_error: float | None
    # Mean over members of the margin loss on the validation pairs.
    validation_loss: float | None
    first_train_loss: float  # mean over members, first logged step
    last_train_loss: float  # mean over members, last logged step
    normalisation: Normalisation
    provenance: dict[str, Any]
    # The reliability diagram behind that ECE: the non-empty confidence bins, each
    # {lower, upper, count, mean_confidence, accuracy} (evaluation.calibration.reliability_bins).
    reliability_bins: list[dict[str, Any]] = field(default_factory=list)
    # Whether the ensemble ranked each validation pair's chosen side higher, in the given order.
    validation_right: list[bool] = field(default_factory=list)


# --- The ensemble at scoring time --------------------------------------------------------------


class RewardEnsemble:
    """K reward members over one tokenizer; subclasses say how a member scores a batch.

    ``raw_scores`` gives the members' un-normalised rewards [K, N]; ``normalise`` maps them with
    the normalisation measured on reference texts (see ``score_texts``).
    """

    kind: str = ""

    def __init__(
        self, *, tokenizer: Any, max_length: int, normalisation: Normalisation | None, device: torch.device
    ) -> None:
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.normalisation = normalisation
        self.device = device

    @property
    def size(self) -> int:
        raise NotImplementedError

    def raw_scores(self, prompts: Sequence[str], responses: Sequence[str]) -> torch.Tensor:
        """Un-normalised rewards [K, N] on the CPU."""
        raise NotImplementedError

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


class HeadsEnsemble(RewardEnsemble):
    """K linear heads over the pooled features of one frozen backbone (``embedding_heads``)."""

    kind = "embedding_heads"

    def __init__(
        self,
        *,
        tokenizer: Any,
        backbone: PreTrainedModel,
        heads: nn.ModuleList,
        pooling: Pooling,
        max_length: int,
        normalisation: Normalisation | None,
        device: torch.device,
    ) -> None:
        super().__init__(
            tokenizer=tokenizer, max_length=max_length, normalisation=normalisation, device=device
        )
        self.backbone = backbone
        self.heads = heads
        self.pooling = pooling

    @property
    def size(self) -> int:
        return len(self.heads)

    def encode(self, prompts: Sequence[str], responses: Sequence[str]) -> list[dict[str, list[int]]]:
        """Token ids of (prompt, response) inputs, truncated to ``max_length`` (never dropped)."""
        if not responses:
            return []  # the tokenizer fails on an empty batch
        encoded = self.tokenizer(
            list(prompts), list(responses), truncation="longest_first", max_length=self.max_length
        )
        keys = [key for key in ("input_ids", "token_type_ids", "attention_mask") if key in encoded]
        return [{key: encoded[key][index] for key in keys} for index in range(len(prompts))]

    @torch.no_grad()
    def pooled(self, encodings: Sequence[dict[str, list[int]]]) -> torch.Tensor:
        """Pooled hidden states [B, H] of the frozen backbone."""
        batch = self.tokenizer.pad(list(encodings), padding=True, return_tensors="pt")
        batch = {key: value.to(self.device) for key, value in batch.items()}
        hidden = self.backbone(**batch).last_hidden_state
        mask = batch["attention_mask"]
        if self.pooling == "mean":
            weights = mask.unsqueeze(-1).to(hidden.dtype)
            return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)
        if self.pooling == "cls":
            return hidden[:, 0]
        # last_token: the tokenizer pads on the right, so the last real token sits at length − 1.
        last = mask.sum(dim=1) - 1
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]

    def features(self, encodings: Sequence[dict[str, list[int]]]) -> torch.Tensor:
        parts = [
            self.pooled(encodings[start : start + SCORING_BATCH_SIZE])
            for start in range(0, len(encodings), SCORING_BATCH_SIZE)
        ]
        return torch.cat(parts) if parts else torch.zeros(0)

    @torch.no_grad()
    def raw_scores(self, prompts: Sequence[str], responses: Sequence[str]) -> torch.Tensor:
        encodings = self.encode(prompts, responses)
        if not encodings:
            return torch.zeros(self.size, 0)
        features = self.features(encodings)
        return torch.stack([head(features).squeeze(-1).float().cpu() for head in self.heads])


class SequenceClassificationEnsemble(RewardEnsemble):
    """K sequence classifiers: K full models, or K LoRA adapters on one shared frozen base."""

    kind = "sequence_classification"

    def __init__(
        self,
        *,
        tokenizer: Any,
        models: list[Any],
        adapters: list[str] | None,
        chat: bool,
        max_length: int,
        normalisation: Normalisation | None,
        device: torch.device,
        bos: bool = True,
    ) -> None:
        super().__init__(
            tokenizer=tokenizer, max_length=max_length, normalisation=normalisation, device=device
        )
        if adapters is not None and len(models) != 1:
            raise ValueError("adapters share one base model")
        self.models = models
        self.adapters = adapters
        self.chat = chat
        self.bos = bos

    @property
    def size(self) -> int:
        return len(self.adapters) if self.adapters is not None else len(self.models)

    def member_model(self, member: int) -> Any:
        if self.adapters is None:
            return self.models[member]
        model = self.models[0]
        model.set_adapter(self.adapters[member])
        return model

    def encode(self, prompts: Sequence[str], responses: Sequence[str]) -> list[list[int]]:
        return [
            encode_conversation(
                self.tokenizer, prompt, response, self.max_length, chat=self.chat, bos=self.bos
            )[0]
            for prompt, response in zip(prompts, responses, strict=True)
        ]

    @torch.no_grad()
    def raw_scores(self, prompts: Sequence[str], responses: Sequence[str]) -> torch.Tensor:
        encodings = self.encode(prompts, responses)
        scores = torch.zeros(self.size, len(encodings))
        for member in range(self.size):
            model = self.member_model(member)
            for start in range(0, len(encodings), SCORING_BATCH_SIZE):
                chunk = encodings[start : start + SCORING_BATCH_SIZE]
                batch = self.tokenizer.pad({"input_ids": chunk}, padding=True, return_tensors="pt")
                batch = {key: value.to(self.device) for key, value in batch.items()}
                logits = model(**batch).logits[:, 0]
                scores[member, start : start + len(chunk)] = logits.float().cpu()
        return scores


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


# --- Inputs of sequence classifiers --------------------------------------------------------------


def uses_chat_template(tokenizer: Any) -> bool:
    """Chat models read (prompt, response) as a user turn and an assistant turn."""
    return bool(getattr(tokenizer, "chat_template", None))


def _chat_text(tokenizer: Any, prompt: str, response: str) -> str:
    # The conversation as the policy saw it (workers.ml.chat_format: the prompt as the user's turn)
    # with the response as the assistant's, so the reward model reads what the policy wrote.
    messages = [*prompt_messages(prompt), *response_messages(response)]
    return str(tokenizer.apply_chat_template(messages, tokenize=False))


def _longest_first(
    prompt_ids: list[int], response_ids: list[int], budget: int
) -> tuple[list[int], list[int]]:
    """Cut the longer side first until both fit ``budget`` tokens: the prompt loses its start (the
    end is the context the response answers), the response its end."""
    keep_prompt, keep_response = len(prompt_ids), len(response_ids)
    while keep_prompt + keep_response > max(budget, 0):
        if keep_prompt > keep_response:
            keep_prompt -= 1
        else:
            keep_response -= 1
    return prompt_ids[len(prompt_ids) - keep_prompt :], response_ids[:keep_response]


def encode_conversation(
    tokenizer: Any, prompt: str, response: str, max_length: int, *, chat: bool, bos: bool = True
) -> tuple[list[int], bool]:
    """Token ids a sequence classifier reads for (prompt, response), at most ``max_length``, and
    whether they were truncated. The same function feeds training and scoring.

    Plain text: the prompt exactly as the policy sees it (``chat_format.prompt_ids``: with the BOS
    token even when the tokenizer does not add one, so an empty prompt still reads as "the start of
    a piece"), then the response as its continuation; truncation keeps the BOS. ``bos=False`` is
    the encoding of reward models saved before it (their manifests lack ``bos``). Chat models: the
    tokenizer's chat template with a user and an assistant turn; when too long, prompt and
    response are cut (longest first) and re-templated.
    """
    lead: list[int] = []
    if chat or not bos:
        prompt_ids: list[int] = tokenizer(prompt, add_special_tokens=True)["input_ids"] if prompt else []
    else:
        prompt_ids = chat_format.prompt_ids(tokenizer, prompt)
        if prompt_ids and prompt_ids[0] == tokenizer.bos_token_id:
            lead, prompt_ids = prompt_ids[:1], prompt_ids[1:]
    response_ids: list[int] = tokenizer(response, add_special_tokens=False)["input_ids"]
    if chat:
        ids: list[int] = tokenizer(_chat_text(tokenizer, prompt, response), add_special_tokens=False)[
            "input_ids"
        ]
        if len(ids) <= max_length:
            return ids, False
        overhead = max(len(ids) - len(prompt_ids) - len(response_ids), 0)
        prompt_ids, response_ids = _longest_first(prompt_ids, response_ids, max_length - overhead)
        text = _chat_text(
            tokenizer,
            tokenizer.decode(prompt_ids, skip_special_tokens=True),
            tokenizer.decode(response_ids, skip_special_tokens=True),
        )
        return tokenizer(text, add_special_tokens=False)["input_ids"][:max_length], True
    budget = max_length - len(lead)
    truncated = len(prompt_ids) + len(response_ids) > budget
    if truncated:
        prompt_ids, response_ids = _longest_first(prompt_ids, response_ids, budget)
    ids = lead + prompt_ids + response_ids
    if not ids:  # an empty prompt and response: one token for the classifier to read
        ids = [tokenizer.eos_token_id if tokenizer.eos_token_id is not None else tokenizer.pad_token_id]
    return ids, truncated


# --- Losses and metrics ----------------------------------------------------------------------------


def preference_loss(
    chosen_rewards: torch.Tensor, rejected_rewards: torch.Tensor, margins: torch.Tensor
) -> torch.Tensor:
    """Mean Bradley–Terry loss −log σ(r_chosen − r_rejected − margin).

    A margin m > 0 asks the chosen reward to exceed the rejected one by m before the loss becomes
    small (Llama 2 reward models); m = 0 is the plain Christiano / InstructGPT loss. TRL's
    ``RewardTrainer`` computes the same loss from the ``margin`` column.
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
        return {
            "accuracy": None,
            "interval": None,
            "member_accuracy": [],
            "ece": None,
            "reliability": [],
            "loss": None,
            "right": [],
        }
    prompts = [pair.prompt for pair in pairs]
    raw = ensemble.raw_scores(prompts + prompts, [p.chosen for p in pairs] + [p.rejected for p in pairs])
    raw_chosen, raw_rejected = raw[:, : len(pairs)], raw[:, len(pairs) :]
    scores = ensemble.normalise(raw)
    margins = torch.tensor([pair.margin for pair in pairs])
    probabilities = torch.sigmoid(raw_chosen - raw_rejected).mean(dim=0)
    right = [bool(hit) for hit in (scores.mean[: len(pairs)] > scores.mean[len(pairs) :]).tolist()]
    return {
        "accuracy": sum(right) / len(pairs),
        "interval": wilson_interval(sum(right), len(pairs)),
        "right": right,
        "member_accuracy": (raw_chosen > raw_rejected).float().mean(dim=1).tolist(),
        "ece": expected_calibration_error(probabilities, bins),
        "reliability": [item.as_dict() for item in reliability_bins(probabilities.tolist(), bins)],
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
    return {key: float(value) for key, value in values.items() if value is not None and math.isfinite(value)}


# --- Provenance of the backbone --------------------------------------------------------------------


def weights_content_hash(folder: Path) -> str | None:
    """SHA-256 over the names and bytes of a local model folder's weight files (None: no folder,
    or no weight file). Cached in ``CONTENT_HASH_CACHE`` next to the weights, keyed by each file's
    name, size and modification time, where the folder is writable."""
    folder = Path(folder)
    if not folder.is_dir():
        return None
    files = sorted(
        path for path in folder.iterdir() if path.is_file() and path.name.endswith(WEIGHT_SUFFIXES)
    )
    if not files:
        return None
    stamp = {path.name: [path.stat().st_size, path.stat().st_mtime_ns] for path in files}
    cache = folder / CONTENT_HASH_CACHE
    try:
        cached = json.loads(cache.read_text())
        if cached.get("files") == stamp and isinstance(cached.get("sha256"), str):
            return str(cached["sha256"])
    except (OSError, ValueError):
        pass
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.name.encode() + b"\0")
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    value = digest.hexdigest()
    try:
        temporary = cache.with_name(f"{cache.name}.{os.getpid()}.tmp")
        temporary.write_text(json.dumps({"files": stamp, "sha256": value}))
        os.replace(temporary, cache)
    except OSError:
        pass  # a read-only model folder: hash again next time
    return value


def backbone_provenance(
    path: str, revision: str | None, dtype: str, commit: str | None = None
) -> dict[str, Any]:
    """What identifies the backbone a reward model was trained on: its path, the hub revision and
    commit (hub models) or the content hash of its weights (local folders), and the dtype."""
    import peft
    import transformers
    import trl

    return {
        "backbone_path": path,
        "revision": revision,
        "commit": commit,
        "content_sha256": weights_content_hash(Path(path)),
        "dtype": dtype,
        "versions": {
            "transformers": transformers.__version__,
            "trl": trl.__version__,
            "peft": peft.__version__,
        },
    }


def check_backbone_unchanged(provenance: dict[str, Any]) -> None:
    """Refuse a referenced backbone whose weights changed since training (scores would drift)."""
    expected = provenance.get("content_sha256")
    if not expected:
        return
    actual = weights_content_hash(Path(provenance["backbone_path"]))
    if actual != expected:
        raise ValueError(
            f"the backbone at {provenance['backbone_path']} changed since the reward model was trained "
            f"(weights sha256 {actual} != {expected})"
        )


# --- Loading -----------------------------------------------------------------------------------------


def resolve_pooling(backbone_path: str, pooling: Pooling) -> Pooling:
    if pooling != "auto":
        return pooling
    config = AutoConfig.from_pretrained(backbone_path)
    architectures = config.architectures or []
    causal = any(name.endswith(("ForCausalLM", "LMHeadModel")) for name in architectures)
    return "last_token" if causal or getattr(config, "is_decoder", False) else "mean"


def _load_tokenizer(path: str | Path, revision: str | None = None) -> Any:
    tokenizer = AutoTokenizer.from_pretrained(path, revision=revision)
    tokenizer.padding_side = "right"  # last-token pooling relies on it
    if tokenizer.pad_token is None:
        # GPT-2-style tokenizers have no pad token; padded positions are masked out anyway.
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def _position_limit(path: str | Path, revision: str | None = None) -> int | None:
    config = AutoConfig.from_pretrained(path, revision=revision)
    for name in ("max_position_embeddings", "n_positions"):
        limit = getattr(config, name, None)
        if isinstance(limit, int):
            return limit
    return None


def _capped_length(config: RewardModelConfig) -> int:
    limit = _position_limit(config.backbone_path, config.backbone_revision)
    return min(config.max_length, limit) if limit else config.max_length


# --- embedding_heads: K linear heads on frozen features --------------------------------------------


def _build_heads_ensemble(config: RewardModelConfig, device: torch.device) -> HeadsEnsemble:
    """The frozen backbone and freshly initialised heads; member m's head is seeded by (seed, m)."""
    tokenizer = _load_tokenizer(config.backbone_path, config.backbone_revision)
    # float32 on purpose: no silent bf16 (a TRL trap), and heads on frozen features are cheap.
    base = AutoModel.from_pretrained(
        config.backbone_path, revision=config.backbone_revision, dtype=torch.float32
    ).to(device)
    base.requires_grad_(False)
    base.eval()
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
    return HeadsEnsemble(
        tokenizer=tokenizer,
        backbone=base,
        heads=heads.to(device),
        pooling=resolve_pooling(config.backbone_path, config.pooling),
        max_length=_capped_length(config),
        normalisation=None,
        device=device,
    )


class _PairTable:
    """Pairs as indices into one feature matrix of the unique (prompt, response) inputs."""

    def __init__(self, ensemble: HeadsEnsemble, pairs: Sequence[PreferencePair]) -> None:
        keys: dict[tuple[str, str], int] = {}
        chosen, rejected = [], []
        for pair in pairs:
            chosen.append(keys.setdefault((pair.prompt, pair.chosen), len(keys)))
            rejected.append(keys.setdefault((pair.prompt, pair.rejected), len(keys)))
        texts = list(keys)
        encodings = ensemble.encode([prompt for prompt, _ in texts], [text for _, text in texts])
        self.chosen = torch.tensor(chosen, dtype=torch.long)
        self.rejected = torch.tensor(rejected, dtype=torch.long)
        self.margins = torch.tensor([pair.margin for pair in pairs], dtype=torch.float32)
        self.features = ensemble.features(encodings)  # [unique inputs, H], computed once

    def __len__(self) -> int:
        return len(self.margins)

    def rewards(
        self, ensemble: HeadsEnsemble, member: int, pair_indices: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(chosen rewards, rejected rewards) of one member on the given pairs."""
        text_indices = torch.cat([self.chosen[pair_indices], self.rejected[pair_indices]])
        rewards = ensemble.heads[member](self.features[text_indices.to(self.features.device)]).squeeze(-1)
        return rewards[: len(pair_indices)], rewards[len(pair_indices) :]


def _bootstrap_indices(config: RewardModelConfig, member: int, pair_count: int) -> torch.Tensor:
    """Member ``member``'s resample of the training pairs: n draws with replacement (or all)."""
    if not config.bootstrap:
        return torch.arange(pair_count)
    return torch.randint(pair_count, (pair_count,), generator=derived_generator(config.seed, member, -1))


def _member_order(config: RewardModelConfig, member: int, epoch: int, pair_count: int) -> torch.Tensor:
    """Pair indices member ``member`` visits in ``epoch``: its bootstrap resample, shuffled."""
    resample = _bootstrap_indices(config, member, pair_count)
    return resample[torch.randperm(pair_count, generator=derived_generator(config.seed, member, epoch))]


def _truncated_heads_pairs(ensemble: HeadsEnsemble, pairs: Sequence[PreferencePair]) -> int:
    """Pairs with a side longer than ``max_length`` tokens: they are truncated, and counted."""
    if not pairs:
        return 0
    prompts = [pair.prompt for pair in pairs]
    responses = [pair.chosen for pair in pairs] + [pair.rejected for pair in pairs]
    lengths = [len(ids) for ids in ensemble.tokenizer(prompts + prompts, responses)["input_ids"]]
    count = len(pairs)
    return sum(1 for i in range(count) if max(lengths[i], lengths[i + count]) > ensemble.max_length)


def _train_heads(
    train_pairs: Sequence[PreferencePair],
    config: RewardModelConfig,
    checkpoint_dir: Path,
    reporter: ProgressReporter,
    device: torch.device,
) -> tuple[HeadsEnsemble, dict[str, Any]]:
    """The K heads, trained on the frozen features; an atomic checkpoint every
    ``checkpoint_every`` steps, at a cancel and at the end."""
    seed_everything(config.seed)
    ensemble = _build_heads_ensemble(config, device)
    train = _PairTable(ensemble, train_pairs)
    epochs = config.resolved_epochs()
    steps_per_epoch = math.ceil(len(train) / config.batch_size)
    total_steps = config.max_steps or epochs * steps_per_epoch
    # weight_decay=0: AdamW's default 0.01 would pull the randomly initialised heads toward zero.
    optimizer = torch.optim.AdamW(
        ensemble.heads.parameters(), lr=config.resolved_learning_rate(), weight_decay=0.0
    )
    checkpoint_path = Path(checkpoint_dir) / "heads.pt"
    data_fingerprint = fingerprint(list(train_pairs))
    step = 0
    losses: list[float] = []
    checkpoint = load_if_exists(checkpoint_path)
    if checkpoint is not None:
        check_resumable(checkpoint, config, data_fingerprint)
        ensemble.heads.load_state_dict(checkpoint["heads"])
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
            # The frozen backbone is the folder at backbone_path: only the heads change.
            "heads": ensemble.heads.state_dict(),
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
    return ensemble, {
        "steps": step,
        "resumed_from_step": resumed_from_step,
        "losses": losses,
        "dropped": 0,
        "total_steps": total_steps,
    }


# --- sequence_classification: TRL's RewardTrainer per member ---------------------------------------

RUN_FILE = "run.json"  # in the checkpoint folder: the config and data a checkpoint belongs to
MEMBER_FILE = "member.json"  # in a finished member's folder: its steps and losses


def _resolve_dtype(config: RewardModelConfig, device: torch.device) -> torch.dtype:
    """bfloat16 only on a CUDA GPU (that supports it); float32 elsewhere."""
    cuda_bf16 = device.type == "cuda" and torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if config.dtype == "bfloat16" and not cuda_bf16:
        raise ValueError(f"dtype bfloat16 needs a CUDA GPU with bf16 support; this run is on {device}")
    if config.dtype == "auto":
        return torch.bfloat16 if cuda_bf16 else torch.float32
    return torch.bfloat16 if config.dtype == "bfloat16" else torch.float32


def _quantization(config: RewardModelConfig, device: torch.device) -> Any:
    """The 4-bit NF4 config of QLoRA, or None; refused without bitsandbytes or CUDA."""
    if not config.qlora_4bit:
        return None
    import importlib.util

    if device.type != "cuda" or not torch.cuda.is_available():
        raise ValueError(f"qlora_4bit needs a CUDA GPU; this run is on {device}")
    if importlib.util.find_spec("bitsandbytes") is None:
        raise ValueError("qlora_4bit needs the bitsandbytes package, which is not installed")
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch.bfloat16,
    )


def _head_name(model: Any) -> str:
    """The classification head's module name (``score`` on decoders, ``classifier`` on encoders)."""
    for name in ("score", "classifier"):
        if isinstance(getattr(model, name, None), nn.Module):
            return name
    raise ValueError(f"{type(model).__name__} has no 'score' or 'classifier' head")


def _load_classifier(
    path: str | Path,
    *,
    revision: str | None,
    dtype: torch.dtype,
    quantization: Any,
    pad_token_id: int,
) -> Any:
    """AutoModelForSequenceClassification with one output; a causal LM gets a fresh ``score`` head
    (seeded by the caller's ``set_seed``)."""
    from transformers import AutoModelForSequenceClassification
    from trl.trainer.reward_trainer import suppress_seqcls_warning

    # TRL's context: a causal LM's lm_head unused and its score head new are expected, not news.
    with suppress_seqcls_warning():
        model = AutoModelForSequenceClassification.from_pretrained(
            path, num_labels=1, revision=revision, dtype=dtype, quantization_config=quantization
        )
    # The classifier reads the last token that is not padding: it must know the pad id.
    model.config.pad_token_id = pad_token_id
    return model


def _member_seed(config: RewardModelConfig, member: int) -> int:
    """Member m's seed: its score head's initialisation, data order and dropout."""
    return int(derived_generator(config.seed, member).initial_seed() % (2**31 - 1))


def _peft_config(config: RewardModelConfig, head: str) -> Any:
    from peft import LoraConfig

    assert config.lora is not None
    return LoraConfig(
        task_type="SEQ_CLS",
        r=config.lora.rank,
        lora_alpha=config.lora.alpha,
        lora_dropout=config.lora.dropout,
        target_modules=config.lora.target_modules,
        # Without it the random head stays random and frozen (a TRL trap).
        modules_to_save=[head],
    )


# How a (prompt, response) reaches the classifier (``encode_conversation``); a run's checkpoints
# record it, so that no run mixes members trained on two encodings.
ENCODING = "prompt_ids_bos"


def _check_run(checkpoint_dir: Path, config: RewardModelConfig, data_fingerprint: str) -> None:
    """Refuse checkpoints of another config, other data or another encoding; record ours for the
    next run."""
    run_file = checkpoint_dir / RUN_FILE
    state = {
        "config": config_for_checkpoint(config),
        "data_fingerprint": data_fingerprint,
        "encoding": ENCODING,
    }
    if run_file.exists():
        saved = json.loads(run_file.read_text())
        check_resumable(saved, config, data_fingerprint)
        if saved.get("encoding") != ENCODING:
            raise ValueError(
                "these checkpoints were trained on plain-text prompts without the BOS token the "
                "policy sees (before Lovelace encoded them as the policy does); members of the two "
                "encodings cannot be mixed: start a new reward-model job instead of resuming"
            )
        return
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    temporary = run_file.with_name(f"{RUN_FILE}.tmp")
    temporary.write_text(json.dumps(state, default=str))
    os.replace(temporary, run_file)


def _checkpoint_step(folder: Path) -> int:
    from workers.ml.trainer_bridge import last_checkpoint

    newest = last_checkpoint(folder)
    return int(Path(newest).name.rsplit("-", 1)[1]) if newest else 0


def _member_reporter(reporter: ProgressReporter, member: int, members: int) -> ProgressReporter:
    """Steps of member m counted after those of members 0 .. m − 1 (all members take as many)."""

    def report(*, step: int, total: int, message: str = "", metrics: dict[str, float] | None = None) -> None:
        reporter(step=member * total + step, total=members * total, message=message, metrics=metrics)

    return report


def _train_member(
    member: int,
    rows: dict[str, list[Any]],
    config: RewardModelConfig,
    tokenizer: Any,
    checkpoint_dir: Path,
    final_dir: Path,
    reporter: ProgressReporter,
    device: torch.device,
) -> dict[str, Any]:
    """One member through ``RewardTrainer``, resumed from its newest checkpoint; saved to
    ``final_dir`` (an adapter with its head, or a full model) with its steps and losses."""
    from datasets import Dataset
    from transformers import set_seed
    from transformers.trainer_callback import PrinterCallback
    from trl import RewardConfig, RewardTrainer

    from workers.ml.trainer_bridge import JobBridge, run_bridged

    seed = _member_seed(config, member)
    dtype = _resolve_dtype(config, device)
    quantization = _quantization(config, device)
    set_seed(seed)  # before loading: the score head of a causal-LM base is drawn here
    # LoRA: the frozen base in the run's dtype. Full fine-tuning: float32 master weights, bf16
    # autocast through the trainer (AdamW on bf16 weights loses small updates).
    load_dtype = dtype if config.lora is not None else torch.float32
    model = _load_classifier(
        config.backbone_path,
        revision=config.backbone_revision,
        dtype=load_dtype,
        quantization=quantization,
        pad_token_id=tokenizer.pad_token_id,
    )
    member_dir = checkpoint_dir / f"member_{member}"
    resumed_from_step = _checkpoint_step(member_dir)
    on_gpu = device.type == "cuda"
    args = RewardConfig(
        output_dir=str(member_dir),
        seed=seed,
        data_seed=seed,
        per_device_train_batch_size=config.batch_size,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        learning_rate=config.resolved_learning_rate(),
        lr_scheduler_type=config.lr_scheduler,
        warmup_steps=config.warmup_ratio,  # a float below 1 is a share of the steps
        weight_decay=0.0,
        num_train_epochs=config.resolved_epochs(),
        max_steps=config.max_steps or -1,
        max_length=config.max_length,  # nothing is longer: pairs were truncated before
        center_rewards_coefficient=config.center_rewards_coefficient,
        bf16=on_gpu and dtype == torch.bfloat16,
        use_cpu=not on_gpu,
        # CPU ranks talk over gloo; on GPUs the launcher's default (NCCL) is right.
        ddp_backend="gloo" if config.distributed != "none" and not on_gpu else None,
        gradient_checkpointing=config.gradient_checkpointing,
        save_strategy="steps",
        save_steps=config.checkpoint_every,
        save_total_limit=1,  # the newest checkpoint is all a resume needs
        logging_steps=1,
        report_to=[],
        disable_tqdm=True,
        dataloader_num_workers=0,
    )
    bridge = JobBridge(
        _member_reporter(reporter, member, config.ensemble_size),
        label=f"reward member {member + 1} of {config.ensemble_size}",
    )
    trainer = RewardTrainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_dict(rows),
        processing_class=tokenizer,
        peft_config=_peft_config(config, _head_name(model)) if config.lora is not None else None,
        callbacks=[bridge],
    )
    # The job's log gets the bridge's reports; the trainer's own printing would only fill stdout.
    trainer.remove_callback(PrinterCallback)
    dropped = len(rows["chosen_ids"]) - len(trainer.train_dataset)  # type: ignore[arg-type]
    run_bridged(trainer, bridge, checkpoints=member_dir)
    losses = [float(entry["loss"]) for entry in trainer.state.log_history if "loss" in entry]
    summary = {
        "steps": int(trainer.state.global_step),
        "resumed_from_step": resumed_from_step,
        "first_loss": losses[0] if losses else math.nan,
        "last_loss": losses[-1] if losses else math.nan,
        "dropped": dropped,
    }

    accelerator = trainer.accelerator
    trained: Any = accelerator.unwrap_model(trainer.model)
    state_dict = None
    if config.distributed in SHARDED:  # every rank takes part in gathering the full weights
        engine = trainer.deepspeed if getattr(trainer, "is_deepspeed_enabled", False) else trainer.model
        state_dict = accelerator.get_state_dict(engine)

    def write(folder: Path) -> None:
        # A PeftModel writes the adapter only (with the trained head); the base is referenced by
        # path in adapter_config.json, never copied.
        trained.save_pretrained(folder, state_dict=state_dict)
        (folder / MEMBER_FILE).write_text(json.dumps(summary))

    if accelerator.is_main_process:
        write_directory_atomically(final_dir, write)
    # The other ranks go on to the next member only once this one is on disk: they all decide
    # which members are left from the same folder.
    accelerator.wait_for_everyone()
    return summary


def _load_sequence_members(
    folder: Path,
    *,
    members: int,
    spec: dict[str, Any],
    tokenizer: Any,
    device: torch.device,
    normalisation: Normalisation | None,
) -> SequenceClassificationEnsemble:
    """The members saved under ``folder`` (``member_k/``), for scoring in eval mode."""
    cuda_bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
    dtype = torch.bfloat16 if cuda_bf16 and spec["dtype"] == "bfloat16" else torch.float32
    quantization = None
    if spec.get("qlora_4bit"):
        quantization = _quantization(RewardModelConfig(**spec["config"]), device)
    if spec["lora"]:
        from peft import PeftModel

        base = _load_classifier(
            spec["backbone_path"],
            revision=spec.get("backbone_revision"),
            dtype=dtype,
            quantization=quantization,
            pad_token_id=tokenizer.pad_token_id,
        )
        names = [f"member_{member}" for member in range(members)]
        model = PeftModel.from_pretrained(base, str(folder / names[0]), adapter_name=names[0])
        for name in names[1:]:
            model.load_adapter(str(folder / name), adapter_name=name)
        if quantization is None:
            model.to(device)
        models, adapters = [model.eval()], names
    else:
        models = [
            _load_classifier(
                folder / f"member_{member}",
                revision=None,
                dtype=dtype,
                quantization=None,
                pad_token_id=tokenizer.pad_token_id,
            )
            .to(device)
            .eval()
            for member in range(members)
        ]
        adapters = None
    return SequenceClassificationEnsemble(
        tokenizer=tokenizer,
        models=models,
        adapters=adapters,
        chat=bool(spec["chat"]),
        bos=bool(spec.get("bos", False)),
        max_length=int(spec["max_length"]),
        normalisation=normalisation,
        device=device,
    )


def train_sequence_members(
    train_pairs: Sequence[PreferencePair],
    config: RewardModelConfig,
    checkpoint_dir: Path,
    reporter: ProgressReporter,
    device: torch.device,
) -> list[dict[str, Any]]:
    """Train the members that are not finished yet, one after the other, into
    ``checkpoint_dir / "final" / "member_k"``; the summaries of all K members.

    A finished member is kept, so a killed or cancelled run redoes only the member it was in, from
    that member's newest checkpoint. Every rank of a distributed run calls this (``rank_main``)
    with its own ``device``; the trainer spreads each member's batches over the ranks.
    """
    checkpoint_dir = Path(checkpoint_dir)
    tokenizer = _load_tokenizer(config.backbone_path, config.backbone_revision)
    chat = uses_chat_template(tokenizer)
    max_length = _capped_length(config)
    chosen_ids, rejected_ids = [], []
    for pair in train_pairs:
        chosen_ids.append(encode_conversation(tokenizer, pair.prompt, pair.chosen, max_length, chat=chat)[0])
        rejected_ids.append(
            encode_conversation(tokenizer, pair.prompt, pair.rejected, max_length, chat=chat)[0]
        )
    margins = [float(pair.margin) for pair in train_pairs]
    summaries = []
    for member in range(config.ensemble_size):
        member_final = checkpoint_dir / "final" / f"member_{member}"
        finished = finished_member(member_final)
        if finished is not None:
            summaries.append(finished)
            continue
        indices = _bootstrap_indices(config, member, len(train_pairs)).tolist()
        rows = {
            "chosen_ids": [chosen_ids[i] for i in indices],
            "rejected_ids": [rejected_ids[i] for i in indices],
            "margin": [margins[i] for i in indices],  # the column RewardTrainer reads, by this name
        }
        summaries.append(
            _train_member(member, rows, config, tokenizer, checkpoint_dir, member_final, reporter, device)
        )
        if device.type == "cuda":  # the member's model is gone; the next one loads its own
            torch.cuda.empty_cache()
    return summaries


def finished_member(member_final: Path) -> dict[str, Any] | None:
    """The summary of a member that finished in an earlier run (all its steps counted as resumed),
    or None when it has not."""
    try:
        summary = dict(json.loads((member_final / MEMBER_FILE).read_text()))
    except (OSError, ValueError):
        return None
    return {**summary, "resumed_from_step": summary["steps"]}


def _train_sequence_classification(
    train_pairs: Sequence[PreferencePair],
    config: RewardModelConfig,
    checkpoint_dir: Path,
    reporter: ProgressReporter,
    device: torch.device,
    supervision: Supervision,
) -> tuple[SequenceClassificationEnsemble, dict[str, Any]]:
    """K members trained here or, with ``config.distributed``, on supervised ranks; then loaded
    here onto ``device`` for normalisation and evaluation."""
    checkpoint_dir = Path(checkpoint_dir)
    _check_run(checkpoint_dir, config, fingerprint(list(train_pairs)))
    dtype = _resolve_dtype(config, device)
    _quantization(config, device)  # refuse QLoRA without CUDA or bitsandbytes before any work
    if config.distributed == "none":
        summaries = train_sequence_members(train_pairs, config, checkpoint_dir, reporter, device)
    else:
        from workers.ml.distributed import train_reward_members_supervised

        summaries = train_reward_members_supervised(
            train_pairs, config, checkpoint_dir, reporter, supervision=supervision
        )
    tokenizer = _load_tokenizer(config.backbone_path, config.backbone_revision)
    chat = uses_chat_template(tokenizer)
    spec = {
        "config": config_for_checkpoint(config),
        "lora": config.lora is not None,
        "qlora_4bit": config.qlora_4bit,
        "backbone_path": config.backbone_path,
        "backbone_revision": config.backbone_revision,
        "dtype": "bfloat16" if dtype == torch.bfloat16 else "float32",
        "chat": chat,
        "bos": True,
        "max_length": _capped_length(config),
    }
    final = checkpoint_dir / "final"
    ensemble = _load_sequence_members(
        final, members=config.ensemble_size, spec=spec, tokenizer=tokenizer, device=device, normalisation=None
    )
    first = [summary["first_loss"] for summary in summaries]
    last = [summary["last_loss"] for summary in summaries]
    steps = sum(int(summary["steps"]) for summary in summaries)
    return ensemble, {
        "steps": steps,
        "resumed_from_step": sum(int(summary["resumed_from_step"]) for summary in summaries),
        "first_loss": sum(first) / len(first),
        "last_loss": sum(last) / len(last),
        "dropped": sum(int(summary["dropped"]) for summary in summaries),
        "spec": spec,
        "members_dir": final,
        "total_steps": steps,
    }


# --- Training, saving, loading ---------------------------------------------------------------------


def train_reward_model(
    pairs_train: Sequence[PreferencePair],
    pairs_validation: Sequence[PreferencePair],
    reference_texts: Sequence[str],
    config: RewardModelConfig,
    output_dir: Path,
    checkpoint_dir: Path,
    reporter: ProgressReporter = null_reporter,
    *,
    reference_prompts: Sequence[str] | None = None,
    supervision: Supervision | None = None,
) -> RewardModelResult:
    """Train the K-member ensemble, normalise it on ``reference_texts``, save it to ``output_dir``.

    ``reference_texts`` are responses of the reference policy (its prompts in ``reference_prompts``,
    or none); at least two are needed for a standard deviation. Progress goes to ``reporter``;
    checkpoints go to ``checkpoint_dir`` every ``config.checkpoint_every`` steps and when the
    reporter raises ``Cancelled`` (then re-raised). A rerun with the same ``checkpoint_dir``,
    config and training pairs continues from the newest checkpoint; other settings are refused.

    With ``config.distributed`` other than "none" the members train on ``config.processes``
    ranks, launched and watched as ``supervision`` says (None: ``Supervision()``, see
    ``workers.ml.distributed``): rank 0's
    progress reaches ``reporter``, a cancel stops every rank at a saved step, a failed rank raises
    ``RankFailed``. Normalisation and evaluation run here, once the ranks are done.
    """
    if not pairs_train:
        raise ValueError("no training pairs")
    if len(reference_texts) < 2:
        raise ValueError("normalisation needs at least two reference texts")
    if reference_prompts is not None and len(reference_prompts) != len(reference_texts):
        raise ValueError("one reference prompt per reference text")
    device = resolve_device(config.device)
    ensemble: RewardEnsemble
    if config.kind == "embedding_heads":
        ensemble, run = _train_heads(pairs_train, config, Path(checkpoint_dir), reporter, device)
        losses = run["losses"]
        first_loss = losses[0] if losses else math.nan
        last_loss = losses[-1] if losses else math.nan
        dtype = "float32"
        truncated = _truncated_heads_pairs(ensemble, pairs_train) + _truncated_heads_pairs(
            ensemble, pairs_validation
        )
    else:
        ensemble, run = _train_sequence_classification(
            pairs_train, config, Path(checkpoint_dir), reporter, device, supervision or Supervision()
        )
        first_loss, last_loss = run["first_loss"], run["last_loss"]
        dtype = run["spec"]["dtype"]
        truncated = sum(
            any(
                encode_conversation(
                    ensemble.tokenizer,
                    pair.prompt,
                    side,
                    ensemble.max_length,
                    chat=run["spec"]["chat"],
                    bos=run["spec"]["bos"],
                )[1]
                for side in (pair.chosen, pair.rejected)
            )
            for pairs in (pairs_train, pairs_validation)
            for pair in pairs
        )
    total = run["total_steps"]
    reporter(step=run["steps"], total=total, message="normalising and evaluating")
    reference_raw = ensemble.raw_scores(reference_prompts or [""] * len(reference_texts), reference_texts)
    ensemble.normalisation = _normalisation(reference_raw)
    metrics = _evaluate(ensemble, pairs_validation, config.calibration_bins)
    provenance = backbone_provenance(
        config.backbone_path,
        config.backbone_revision,
        dtype,
        commit=getattr(
            AutoConfig.from_pretrained(config.backbone_path, revision=config.backbone_revision),
            "_commit_hash",
            None,
        ),
    )
    result = RewardModelResult(
        output_dir=str(output_dir),
        kind=config.kind,
        steps=run["steps"],
        resumed_from_step=run["resumed_from_step"],
        train_pairs=len(pairs_train),
        validation_pairs=len(pairs_validation),
        truncated_pairs=int(truncated),
        dropped_pairs=int(run["dropped"]),
        validation_accuracy=metrics["accuracy"],
        validation_accuracy_interval=metrics["interval"],
        member_validation_accuracy=metrics["member_accuracy"],
        validation_right=metrics["right"],
        expected_calibration_error=metrics["ece"],
        reliability_bins=metrics["reliability"],
        validation_loss=metrics["loss"],
        first_train_loss=first_loss,
        last_train_loss=last_loss,
        normalisation=ensemble.normalisation,
        provenance=provenance,
    )
    _save(ensemble, Path(output_dir), config=config, result=result, run=run)
    reporter(step=run["steps"], total=total, message="saved", metrics=_flat_metrics(result))
    return result


def _save(
    ensemble: RewardEnsemble,
    output_dir: Path,
    *,
    config: RewardModelConfig,
    result: RewardModelResult,
    run: dict[str, Any],
) -> None:
    """Write the ensemble in the layout of the module docstring, atomically."""
    assert ensemble.normalisation is not None
    manifest: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "kind": config.kind,
        "max_length": ensemble.max_length,
        "ensemble_size": ensemble.size,
        "normalisation": asdict(ensemble.normalisation),
        "config": config_for_checkpoint(config),
        "metrics": asdict(result),
        "provenance": result.provenance,
        "saved_at": time.time(),
    }
    if isinstance(ensemble, HeadsEnsemble):
        manifest["pooling"] = ensemble.pooling
    else:
        manifest["sequence_classification"] = run["spec"]

    def write(folder: Path) -> None:
        ensemble.tokenizer.save_pretrained(folder / "tokenizer")
        if isinstance(ensemble, HeadsEnsemble):
            torch.save([head.state_dict() for head in ensemble.heads], folder / "heads.pt")
        else:
            for member in range(ensemble.size):
                # Hard links: a full member is not written twice, and the checkpoint folder can go.
                shutil.copytree(
                    run["members_dir"] / f"member_{member}",
                    folder / f"member_{member}",
                    copy_function=os.link,
                )
        (folder / "provenance.json").write_text(json.dumps(result.provenance, indent=2))
        (folder / "reward_model.json").write_text(json.dumps(manifest, indent=2, default=str))

    write_directory_atomically(output_dir, write)


def load_reward_ensemble(path: Path, device: str | None = None) -> RewardEnsemble:
    """Load what ``train_reward_model`` saved, in eval mode, ready for ``score_texts``.

    A referenced backbone (the frozen encoder of heads, the base of LoRA members) must still have
    the weights it was trained on (content hash of the provenance), else ValueError.
    """
    path = Path(path)
    manifest = json.loads((path / "reward_model.json").read_text())
    target = resolve_device(device)
    if manifest["format_version"] == 1 and manifest.get("shared_backbone"):
        return _load_format_1(path, manifest, target)
    if manifest["format_version"] != FORMAT_VERSION:
        raise ValueError(f"unknown reward model format {manifest['format_version']}")
    normalisation = Normalisation(**manifest["normalisation"])
    config = manifest["config"]
    tokenizer = _load_tokenizer(path / "tokenizer")
    if manifest["kind"] == "sequence_classification":
        spec = manifest["sequence_classification"]
        if spec["lora"]:
            check_backbone_unchanged(manifest["provenance"])
        return _load_sequence_members(
            path,
            members=manifest["ensemble_size"],
            spec=spec,
            tokenizer=tokenizer,
            device=target,
            normalisation=normalisation,
        )
    check_backbone_unchanged(manifest["provenance"])
    backbone = AutoModel.from_pretrained(
        config["backbone_path"], revision=config.get("backbone_revision"), dtype=torch.float32
    )
    return HeadsEnsemble(
        tokenizer=tokenizer,
        backbone=backbone.to(target).eval(),
        heads=_load_heads(path / "heads.pt").to(target),
        pooling=manifest["pooling"],
        max_length=manifest["max_length"],
        normalisation=normalisation,
        device=target,
    )


def _load_heads(path: Path) -> nn.ModuleList:
    heads = nn.ModuleList()
    for state in torch.load(path, map_location="cpu", weights_only=True):
        head = nn.Linear(state["weight"].shape[1], 1)
        head.load_state_dict(state)
        heads.append(head)
    return heads


def _load_format_1(path: Path, manifest: dict[str, Any], target: torch.device) -> HeadsEnsemble:
    """A heads ensemble saved before format 2, with its frozen backbone copied into ``backbone/``
    (format 1 members with fine-tuned backbones are no longer loadable: retrain them)."""
    backbone = AutoModel.from_pretrained(path / "backbone", dtype=torch.float32)
    return HeadsEnsemble(
        tokenizer=_load_tokenizer(path / "tokenizer"),
        backbone=backbone.to(target).eval(),
        heads=_load_heads(path / "heads.pt").to(target),
        pooling=manifest["pooling"],
        max_length=manifest["max_length"],
        normalisation=Normalisation(**manifest["normalisation"]),
        device=target,
    )
