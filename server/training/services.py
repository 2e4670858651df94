"""Starting the training steps of the loop; light imports (the web process calls these).

The loop (Christiano et al. 2017, as a chain of jobs): snapshot → reward model → policy (DPO or
RLOO) → generate the child's samples → select new pairs → raters judge them → … Each step is a
Job whose parent is the previous step; a step that fails starts nothing after it, so the chain
stops where the failure is shown.
"""

from __future__ import annotations

import math
import re
import shutil
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from evaluation.loop_verdict import RatedInterval, beats_beyond_interval
from server.core.exceptions import ApplicationError, Conflict, NotFound
from server.core.paths import model_path_check
from server.generators.models import KINDS_WITHOUT_WEIGHTS, GeneratorVersion, VersionKind
from server.generators.services import version_is_image_generator, version_model_check
from server.jobs.models import Job, JobKind, JobStatus
from server.jobs.services import job_enqueue
from server.studies.models import Criterion, Modality, PromptSplit, Study
from server.training.models import PreferenceSnapshot, RewardModel
from workers.ml.policy_config import (
    combination_problem,
    config_from_options,
    length_cuts,
    local_position_limit,
    schedule_problem,
    spread_problem,
)
from workers.ml.reward_model_config import HEADS_IN_ONE_PROCESS

LOOP_KINDS = [
    JobKind.SNAPSHOT,
    JobKind.TRAIN_REWARD_MODEL,
    JobKind.TRAIN_POLICY,
    JobKind.GENERATE,
    JobKind.SELECT_PAIRS,
]


@dataclass(frozen=True)
class Whole:
    """An option that is a JSON integer in [low, high]."""

    low: int
    high: int

    def problem(self, value: Any) -> str | None:
        if isinstance(value, bool) or not isinstance(value, int) or not self.low <= value <= self.high:
            return f"must be a whole number from {self.low:,} to {self.high:,}"
        return None


@dataclass(frozen=True)
class Positive:
    """An option that is a finite JSON number in (0, high]."""

    high: float

    def problem(self, value: Any) -> str | None:
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
            or not 0 < value <= self.high
        ):
            return f"must be a number greater than 0 and at most {self.high:g}"
        return None


@dataclass(frozen=True)
class Flag:
    def problem(self, value: Any) -> str | None:
        return None if isinstance(value, bool) else "must be true or false"


@dataclass(frozen=True)
class PathOrHubId:
    def problem(self, value: Any) -> str | None:
        if not isinstance(value, str) or not value.strip() or len(value) > 500:
            return "must be a local path or hub id (1 to 500 characters)"
        return None


@dataclass(frozen=True)
class Between:
    """An option that is a finite JSON number in [low, high], or [low, high) when ``open_high``."""

    low: float
    high: float
    open_high: bool = False

    def problem(self, value: Any) -> str | None:
        number = not isinstance(value, bool) and isinstance(value, int | float) and math.isfinite(value)
        if not number or value < self.low or value > self.high or (self.open_high and value == self.high):
            upper = f"up to (not including) {self.high:g}" if self.open_high else f"to {self.high:g}"
            return f"must be a number from {self.low:g} {upper}"
        return None


@dataclass(frozen=True)
class OneOf:
    """An option that is one of a few strings."""

    choices: tuple[str, ...]

    def problem(self, value: Any) -> str | None:
        if not isinstance(value, str) or value not in self.choices:
            return "must be one of " + ", ".join(repr(choice) for choice in self.choices)
        return None


@dataclass(frozen=True)
class Revision:
    """A hub revision: a branch, tag or commit name."""

    def problem(self, value: Any) -> str | None:
        if not isinstance(value, str) or not REVISION.fullmatch(value):
            return "must be a branch, tag or commit name (letters, digits, '.', '_', '-', '/'; at most 200)"
        return None


@dataclass(frozen=True)
class ModuleNames:
    """LoRA target modules: "all-linear", or a list of 1 to 64 module names."""

    def problem(self, value: Any) -> str | None:
        if value == "all-linear":
            return None
        if (
            not isinstance(value, list)
            or not 1 <= len(value) <= 64
            or not all(isinstance(name, str) and MODULE_NAME.fullmatch(name) for name in value)
        ):
            return 'must be "all-linear" or a list of 1 to 64 module names (like ["q_proj", "v_proj"])'
        return None


@dataclass(frozen=True)
class Adapters:
    """LoRA: true (the defaults), false, or an object of LORA_OPTIONS (checked one by one after)."""

    def problem(self, value: Any) -> str | None:
        if isinstance(value, bool | dict):
            return None
        return 'must be true, false or an object like {"rank": 16, "alpha": 32}'


Option = Whole | Positive | Flag | PathOrHubId | Between | OneOf | Revision | ModuleNames | Adapters

# The options an operator may set per trainer (the rest of each config dataclass in workers/ml is
# fixed by the deployment), with ranges that keep a typo from occupying a GPU for a year: epochs
# 1e9 is refused here, not discovered in a worker. Seeds stay below 2**31 as everywhere else.
SEED = Whole(0, 2**31 - 1)
LEARNING_RATE = Positive(1.0)
BATCH_SIZE = Whole(1, 4096)
REVISION = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]{0,199}")
MODULE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.]{0,99}")
# The reward-model options (workers.ml.reward_model.RewardModelConfig documents each).
REWARD_MODEL_OPTIONS: dict[str, Option] = {
    "kind": OneOf(("embedding_heads", "sequence_classification")),
    "ensemble_size": Whole(1, 32),  # Christiano et al. used 3; each member is a head or a model
    "epochs": Whole(1, 1000),  # heads on frozen features default to 20 cheap passes
    "max_steps": Whole(1, 1_000_000),  # optimizer steps per member; replaces epochs
    "backbone_path": PathOrHubId(),
    "backbone_revision": Revision(),
    "pooling": OneOf(("auto", "mean", "cls", "last_token")),
    "bootstrap": Flag(),
    "learning_rate": LEARNING_RATE,
    "lr_scheduler": OneOf(("linear", "cosine", "constant", "constant_with_warmup")),
    "warmup_ratio": Between(0.0, 1.0, open_high=True),
    "batch_size": BATCH_SIZE,  # per device and forward pass for sequence classifiers
    "gradient_accumulation_steps": Whole(1, 1024),
    "max_length": Whole(8, 32_768),  # tokens; capped again at the backbone's position limit
    "dtype": OneOf(("auto", "float32", "bfloat16")),  # bfloat16 needs a CUDA GPU (checked there)
    "gradient_checkpointing": Flag(),
    "lora": Adapters(),
    "qlora_4bit": Flag(),  # needs lora, a CUDA GPU and bitsandbytes (the last two checked there)
    # 0.01 recommended (Eisenstein et al. 2023); 0 turns the centring penalty off.
    "center_rewards_coefficient": Between(0.0, 1.0),
    "checkpoint_every": Whole(1, 1_000_000),
    "seed": SEED,
    # Several GPUs, as for the policy (sequence_classification only; the worker checks its GPUs).
    "distributed": OneOf(("none", "ddp", "fsdp", "zero3")),
    "processes": Whole(1, 64),
}
REWARD_LORA_OPTIONS: dict[str, Option] = {
    "rank": Whole(1, 1024),
    "alpha": Whole(1, 4096),
    "dropout": Between(0.0, 1.0, open_high=True),
    "target_modules": ModuleNames(),
}
# Options that only a sequence classifier has, and the one only heads have.
SEQUENCE_CLASSIFICATION_ONLY = (
    "lora",
    "qlora_4bit",
    "dtype",
    "gradient_checkpointing",
    "gradient_accumulation_steps",
    "lr_scheduler",
    "warmup_ratio",
    "center_rewards_coefficient",
    "distributed",
    "processes",
)
# Options that would spread training over processes: the heads train in one.
SPREAD_OPTIONS = ("distributed", "processes")
EMBEDDING_HEADS_ONLY = ("pooling",)
# What DPO and online RL share (workers.ml.policy_config.PolicySettings documents each).
POLICY_OPTIONS: dict[str, Option] = {
    "learning_rate": LEARNING_RATE,
    "lr_scheduler": OneOf(("linear", "cosine", "constant", "constant_with_warmup")),
    "warmup_ratio": Between(0.0, 1.0, open_high=True),
    "epochs": Whole(1, 100),  # preference fine-tuning overfits after a few passes
    "max_steps": Whole(1, 1_000_000),
    "per_device_batch_size": BATCH_SIZE,
    "gradient_accumulation_steps": Whole(1, 1024),
    "max_prompt_length": Whole(1, 32_768),  # tokens
    "dtype": OneOf(("auto", "float32", "bfloat16")),
    "gradient_checkpointing": Flag(),
    "lora": Flag(),  # true by default: the child is an adapter on the referenced parent
    "lora_rank": Whole(1, 1024),
    "lora_alpha": Whole(1, 4096),
    "lora_dropout": Between(0.0, 1.0, open_high=True),
    "lora_target_modules": ModuleNames(),
    "qlora_4bit": Flag(),  # needs bitsandbytes and CUDA on the worker (checked when it runs)
    "merge_adapter": Flag(),
    "seed": SEED,
    "checkpoint_every": Whole(1, 1_000_000),  # optimizer steps
    # Several GPUs (or CPU processes): what the worker's machine has is checked when it runs.
    "distributed": OneOf(("none", "ddp", "fsdp", "zero3")),
    "processes": Whole(1, 64),  # one per GPU; 8 per machine is the common ceiling
}
DPO_OPTIONS: dict[str, Option] = {
    **POLICY_OPTIONS,
    "beta": Positive(10.0),  # 0.1 is the paper's default; beyond 10 the policy can hardly move
    "loss_type": OneOf(("sigmoid", "ipo", "robust")),
    "label_smoothing": Between(0.0, 0.5, open_high=True),  # share of flipped crowd labels
    "max_length": Whole(2, 32_768),  # tokens of prompt + response; above max_prompt_length
}
# The pessimistic reward's k, mean − k·std over the reward model's members (text and image policies).
REWARD_STD_PENALTY = Between(0.0, 10.0)
ONLINE_RL_OPTIONS: dict[str, Option] = {
    **POLICY_OPTIONS,
    "beta": Positive(10.0),  # the KL penalty must be positive (the trainer refuses 0)
    "num_generations": Whole(2, 64),  # the baselines compare at least 2 completions per prompt
    "max_completion_length": Whole(1, 4096),  # tokens, as a generate job's decoding allows
    "temperature": Positive(10.0),
    "reward_std_penalty": REWARD_STD_PENALTY,
}
POLICY_METHODS = ("dpo", "rloo", "grpo")
# The policy step of an image generator (workers.ml.image_policy): the child's images climb the
# reward model's gradient, held near the parent's by a squared-difference penalty.
IMAGE_POLICY_METHOD = "image_reward"
# Options of the image loop's jobs, by name, type and range (workers.ml.image_reward.
# ImageRewardConfig, workers.ml.image_policy.ImagePolicyConfig; listed here, the web process never
# imports torch). The dashboard's image forms take their ranges from here, so the API and the
# forms refuse the same values, before a job is queued.
IMAGE_REWARD_OPTIONS: dict[str, Option] = {
    "ensemble_size": Whole(1, 16),
    "bootstrap": Flag(),
    "width": Whole(1, 1024),  # channels of the CNN's first layer
    "epochs": Whole(1, 1000),
    "batch_size": BATCH_SIZE,
    "learning_rate": Between(1e-7, 1.0),
    "weight_decay": Between(0.0, 1.0),
    "seed": SEED,
}
IMAGE_POLICY_OPTIONS: dict[str, Option] = {
    "beta": Between(0.0, 100.0),  # weight of the squared distance to the parent's images
    "steps": Whole(1, 1_000_000),
    "batch_size": BATCH_SIZE,
    "learning_rate": Between(1e-7, 1.0),
    "evaluation_samples": Whole(1, 100_000),
    # The same mean − k·std over the ensemble's members as the text policy's caution.
    "reward_std_penalty": REWARD_STD_PENALTY,
    "seed": SEED,
    "report_every": Whole(1, 1_000_000),
}


def image_options(config: dict[str, Any] | None, known: dict[str, Option], what: str) -> dict[str, Any]:
    """The options of an image-loop job, each checked by name, type and range (errors name the
    option); numbers of a fractional option are stored as floats."""
    if config is None:
        return {}
    if not isinstance(config, dict):
        raise ApplicationError(f"The {what} options must be an object.", extra={"field": "config"})
    checked: dict[str, Any] = {}
    for name, value in config.items():
        option = known.get(name)
        if option is None:
            raise ApplicationError(
                f"{name!r} is not an option of the {what}; known: {', '.join(sorted(known))}.",
                extra={"field": f"config.{name}"},
            )
        problem = option.problem(value)
        if problem:
            raise ApplicationError(
                f"The {what} option {name!r} {problem}.", extra={"field": f"config.{name}"}
            )
        checked[name] = float(value) if isinstance(option, Between | Positive) else value
    return checked


def policy_options(method: str, config: dict[str, Any] | None) -> dict[str, Any]:
    """The options of a policy job, checked one by one (type and range) and together (e.g.
    max_prompt_length below max_length), each error naming the option."""
    what = "DPO" if method == "dpo" else method.upper()
    options = _check_options(config, DPO_OPTIONS if method == "dpo" else ONLINE_RL_OPTIONS, what)
    try:
        problem = combination_problem(config_from_options(method, options))
    except ValueError as refused:  # options the others would make the run ignore
        problem = str(refused)
    if problem:
        raise ApplicationError(
            f"The {what} options do not fit together: {problem}.", extra={"field": "config"}
        )
    return options


def _shown(value: Any) -> str:
    shown = repr(value)
    return shown if len(shown) <= 60 else shown[:57] + "..."


def _check_options(
    config: dict[str, Any] | None, allowed: dict[str, Option], what: str, *, field: str = "config"
) -> dict[str, Any]:
    """The options, checked by name, type and range; the first bad one is named in the error."""
    config = dict(config or {})
    unknown = sorted(set(config) - set(allowed))
    if unknown:
        raise ApplicationError(
            f"Unknown {what} option {unknown[0]!r}; known: {', '.join(sorted(allowed))}.",
            extra={"field": field},
        )
    for key, value in config.items():
        problem = allowed[key].problem(value)
        if problem:
            raise ApplicationError(
                f"The {what} option {key!r} {problem} (got {_shown(value)}).",
                extra={"field": f"{field}.{key}"},
            )
    return config


def reward_model_options(config: dict[str, Any] | None) -> dict[str, Any]:
    """The options of a reward-model job: REWARD_MODEL_OPTIONS one by one, then the LoRA object,
    then the options' combinations, each error naming the option."""
    config = _check_options(config, REWARD_MODEL_OPTIONS, "reward-model")
    if isinstance(config.get("lora"), dict):
        config["lora"] = _check_options(
            config["lora"], REWARD_LORA_OPTIONS, "reward-model LoRA", field="config.lora"
        )
    kind = config.get("kind", "embedding_heads")
    wrong_kind = SEQUENCE_CLASSIFICATION_ONLY if kind == "embedding_heads" else EMBEDDING_HEADS_ONLY
    for key in wrong_kind:
        if key in config:
            if key in SPREAD_OPTIONS:
                raise ApplicationError(
                    f"The reward-model option {key!r} does not apply to this run: {HEADS_IN_ONE_PROCESS}.",
                    extra={"field": f"config.{key}"},
                )
            other = "sequence_classification" if kind == "embedding_heads" else "embedding_heads"
            raise ApplicationError(
                f"The reward-model option {key!r} applies to kind {other!r} only (this run is {kind!r}).",
                extra={"field": f"config.{key}"},
            )
    adapters = config.get("lora") not in (None, False)  # true, or an object of LoRA settings ({} too)
    if config.get("qlora_4bit") and not adapters:
        raise ApplicationError(
            "The reward-model option 'qlora_4bit' needs the option 'lora': a 4-bit base trains "
            "adapters only.",
            extra={"field": "config.qlora_4bit"},
        )
    problem = spread_problem(
        distributed=config.get("distributed", "none"),
        processes=config.get("processes", 1),
        lora=adapters,
        qlora_4bit=bool(config.get("qlora_4bit")),
    ) or schedule_problem(config.get("lr_scheduler", "linear"), config.get("warmup_ratio", 0.0))
    if not problem and config.get("qlora_4bit") and config.get("dtype") == "float32":
        problem = (
            "qlora_4bit computes in bfloat16 on its 4-bit base: dtype must be 'auto' or "
            "'bfloat16', not 'float32'"
        )
    if problem:
        raise ApplicationError(
            f"The reward-model options do not fit together: {problem}.", extra={"field": "config"}
        )
    return config


def _of_study(model, *, study: Study, object_id: int | None, criterion_id: int | None = None):  # type: ignore[no-untyped-def]
    """The study's row of ``model`` with ``object_id``, or when no id is given its newest for the
    criterion (None: the study's own question: the loop and policies follow it)."""
    rows = model.objects.filter(study=study)
    if object_id:
        return rows.filter(id=object_id).first()
    rows = rows.filter(criterion_id=criterion_id) if criterion_id else rows.filter(criterion__isnull=True)
    return rows.order_by("-created_at", "-id").first()


def criterion_id_of(*, study: Study, key: str | None) -> int | None:
    """The id of the study's criterion ``key`` (None for its own question, or when no key)."""
    if not key or key == study.criterion_key:
        return None
    criterion = Criterion.objects.filter(study=study, key=key).first()
    if criterion is None:
        keys = [study.criterion_key, *Criterion.objects.filter(study=study).values_list("key", flat=True)]
        raise ApplicationError(
            f"This study has no criterion {key!r}; it has {', '.join(keys)}.", extra={"field": "criterion"}
        )
    return criterion.id


def snapshot_start(
    *,
    study: Study,
    then: list[str] | None = None,
    validation_fraction: float = 0.2,
    created_by_id: int | None = None,
    parent_id: int | None = None,
    criterion: str | None = None,
) -> Job:
    """Queue a preference snapshot of the answers to ``criterion`` (a key; None: the study's own
    question)."""
    criterion_id = criterion_id_of(study=study, key=criterion)
    if not 0 <= validation_fraction < 1:
        raise ApplicationError(
            "The validation fraction must be in [0, 1).", extra={"field": "validation_fraction"}
        )
    return job_enqueue(
        kind=JobKind.SNAPSHOT,
        study_id=study.id,
        created_by_id=created_by_id,
        parent_id=parent_id,
        params={
            "validation_fraction": validation_fraction,
            "then": then or [],
            **({"criterion_id": criterion_id} if criterion_id else {}),
        },
    )


def reward_model_train_start(
    *,
    study: Study,
    snapshot_id: int | None = None,
    config: dict[str, Any] | None = None,
    created_by_id: int | None = None,
    parent_id: int | None = None,
    then: list[str] | None = None,
    criterion: str | None = None,
) -> Job:
    """Train a reward-model ensemble on a snapshot (when none is given, the study's latest of the
    ``criterion``, a key; None: its own question). The model is of its snapshot's criterion.

    A snapshot with fewer training pairs than the study's ``min_training_pairs`` still trains, with
    a warning in the job's ``params["warnings"]`` (shown by the API and the dashboard, and written
    to the job's log when it runs): a young study may want a first model anyway.
    """
    config = (
        image_options(config, IMAGE_REWARD_OPTIONS, "image reward model")
        if study.modality == Modality.IMAGE
        else reward_model_options(config)
    )
    snapshot = _of_study(
        PreferenceSnapshot,
        study=study,
        object_id=snapshot_id,
        criterion_id=criterion_id_of(study=study, key=criterion),
    )
    if snapshot is None:
        raise ApplicationError(
            "Take a preference snapshot of the study first."
            if not snapshot_id
            else f"The study has no snapshot {snapshot_id}.",
            extra={"field": "snapshot_id"},
        )
    if snapshot.train_count == 0:
        raise ApplicationError("The snapshot has no training pairs.", extra={"field": "snapshot_id"})
    params: dict[str, Any] = {"snapshot_id": snapshot.id, "config": config, "then": then or []}
    warning = too_few_pairs_warning(study=study, train_pairs=snapshot.train_count)
    if warning:
        params["warnings"] = [warning]
    return job_enqueue(
        kind=JobKind.TRAIN_REWARD_MODEL,
        study_id=study.id,
        created_by_id=created_by_id,
        parent_id=parent_id,
        params=params,
    )


def too_few_pairs_warning(
    *,
    study: Study,
    train_pairs: int,
    consequence: str = "the reward model's accuracy will rest on little data",
) -> str | None:
    """The warning for a model trained on fewer pairs than the study asks for, or None."""
    if train_pairs >= study.min_training_pairs:
        return None
    return (
        f"The snapshot has {train_pairs} training pairs, fewer than the study's minimum of "
        f"{study.min_training_pairs}: {consequence}."
    )


@dataclass(frozen=True)
class ParentChoice:
    """The version the loop trains from next, and why (shown on the dashboard, kept on the job)."""

    version: GeneratorVersion | None
    reason: str


def _board_prompts(board: Any) -> str:
    """Which prompts the leaderboard behind a promotion counted, for the reason's text ("" for a
    board that did not record it)."""
    split = (board.params or {}).get("split") if board is not None else None
    if split == PromptSplit.HOLDOUT:
        return "; on holdout prompts"
    if split == "all":
        return (
            "; on all prompts: the study has no rated holdout prompts yet, so the child's training "
            "prompts count too"
        )
    return ""


def _interval(row: dict[str, Any] | None) -> str:
    if row is None or not row.get("battles"):
        return "not on the leaderboard yet"
    return f"{row['rating']:.0f} [{row['lower']:.0f}, {row['upper']:.0f}] over {row['battles']} battles"


def _rated(row: dict[str, Any] | None) -> RatedInterval | None:
    """A leaderboard row as the keep-the-parent rule reads it (bounds stored as None: NaN)."""
    if row is None:
        return None
    lower, upper = row.get("lower"), row.get("upper")
    return RatedInterval(
        lower=math.nan if lower is None else float(lower),
        upper=math.nan if upper is None else float(upper),
        battles=float(row.get("battles") or 0),
    )


def policy_parent_choose(*, study: Study) -> ParentChoice:
    """The parent of the loop's next policy, with the reason.

    The loop starts from the best-rated version that no training produced (the newest enrolled
    one before any leaderboard). A trained child takes over from its parent only when it beats it
    on the latest leaderboard beyond the interval: the child's lower bound above the parent's upper
    bound. The leaderboard counts holdout prompts, which training never sees, once any holdout
    judgment exists; before that it counts all prompts, the child's training prompts among them,
    and the reason says so (``_board_prompts``): a study without rated holdout prompts can still
    move its loop, knowingly. Otherwise
    the parent stays, and the reason names both intervals: a child that is merely not worse, or
    better within the noise, does not move the loop. The rule is ``beats_beyond_interval``
    (evaluation/loop_verdict.py), the one ``bench.image_loop``'s holdout A/B applies too; image
    studies reach it by the same path (the loop's policy step starts with no parent named).
    """
    from server.evaluations.selectors import leaderboard_latest

    model_versions = study.versions.exclude(kind__in=KINDS_WITHOUT_WEIGHTS)
    board = leaderboard_latest(study=study)
    rows = {row["version_id"]: row for row in board.rows} if board is not None else {}
    rated = [row["version_id"] for row in (board.rows if board is not None else []) if row["battles"] > 0]
    bases = model_versions.exclude(kind=VersionKind.TRAINED)
    incumbent = next((bases.get(id=i) for i in rated if bases.filter(id=i).exists()), None)
    if incumbent is not None:
        reason = f"{incumbent} is the best-rated version that no training produced"
    else:
        incumbent = (
            bases.order_by("-studyversion__enrolled_at", "-id").first()
            or model_versions.order_by("-studyversion__enrolled_at", "-id").first()
        )
        if incumbent is None:
            return ParentChoice(None, "The study has no model version to train.")
        reason = f"{incumbent} is the newest enrolled version (no leaderboard ranks a base version yet)"
    seen = {incumbent.id}
    while True:
        children = list(
            model_versions.filter(parent=incumbent, kind=VersionKind.TRAINED).order_by("-created_at", "-id")
        )
        if not children:
            return ParentChoice(incumbent, reason)
        parent_row = rows.get(incumbent.id)
        winner = next(
            (
                child
                for child in children
                if beats_beyond_interval(_rated(rows.get(child.id)), _rated(parent_row))
            ),
            None,
        )
        if winner is None or winner.id in seen:
            newest = children[0]
            return ParentChoice(
                incumbent,
                f"{incumbent} stays the parent: its child {newest} does not beat it beyond the interval "
                f"(child {_interval(rows.get(newest.id))}; parent {_interval(parent_row)}"
                f"{_board_prompts(board)}).",
            )
        reason = (
            f"{winner} beat its parent {incumbent} beyond the interval "
            f"(child {_interval(rows.get(winner.id))}; parent {_interval(parent_row)}"
            f"{_board_prompts(board)})"
        )
        seen.add(winner.id)
        incumbent = winner


def policy_train_start(
    *,
    study: Study,
    parent_version_id: int | None,
    method: str,
    snapshot_id: int | None = None,
    reward_model_id: int | None = None,
    config: dict[str, Any] | None = None,
    created_by_id: int | None = None,
    parent_id: int | None = None,
    then: list[str] | None = None,
) -> Job:
    """Fine-tune a child of ``parent_version_id``: DPO on a snapshot, or RLOO / GRPO against a
    reward model."""
    image_study = study.modality == Modality.IMAGE
    if image_study and method != IMAGE_POLICY_METHOD:
        raise ApplicationError(
            f"An image study trains its generators with the method {IMAGE_POLICY_METHOD!r}.",
            extra={"field": "method"},
        )
    if not image_study and method not in POLICY_METHODS:
        raise ApplicationError(
            f"{method!r} is the method of an image study; a text study trains with 'dpo', 'rloo' or 'grpo'."
            if method == IMAGE_POLICY_METHOD
            else "Method must be 'dpo', 'rloo' or 'grpo'.",
            extra={"field": "method"},
        )
    choice = None if parent_version_id else policy_parent_choose(study=study)
    parent = (
        GeneratorVersion.objects.filter(id=parent_version_id).first() if choice is None else choice.version
    )
    if parent is None:
        raise NotFound("There is no parent version to train from.", extra={"field": "parent_version_id"})
    if parent.kind in KINDS_WITHOUT_WEIGHTS:
        raise ApplicationError(
            f"{parent} is {parent.kind}: it has no weights here to fine-tune.",
            extra={"field": "parent_version_id"},
        )
    if not study.versions.filter(id=parent.id).exists():
        raise ApplicationError(
            f"{parent} is not enrolled in the study.", extra={"field": "parent_version_id"}
        )
    version_model_check(version=parent, field="parent_version_id")
    params: dict[str, Any] = {"parent_version_id": parent.id, "method": method, "then": then or []}
    if choice is not None:
        params["parent_reason"] = choice.reason
    if image_study:
        if not version_is_image_generator(parent):
            raise ApplicationError(
                f"{parent} is not an image generator.", extra={"field": "parent_version_id"}
            )
        params["config"] = image_options(config, IMAGE_POLICY_OPTIONS, "image policy")
        reward_model = _of_study(RewardModel, study=study, object_id=reward_model_id)
        if reward_model is None or reward_model.metrics.get("modality") != Modality.IMAGE:
            raise ApplicationError(
                "The image policy needs an image reward model of the study.",
                extra={"field": "reward_model_id"},
            )
        model_path_check(reward_model.path, field="reward_model_id")
        params["reward_model_id"] = reward_model.id
        params["snapshot_id"] = reward_model.snapshot_id
    elif version_is_image_generator(parent):
        raise ApplicationError(
            f"{parent} is an image generator; it is trained in an image study.",
            extra={"field": "parent_version_id"},
        )
    elif method == "dpo":
        params["config"] = policy_options(method, config)
        params["warnings"] = _length_warnings(method, params["config"], parent)
        snapshot = _of_study(PreferenceSnapshot, study=study, object_id=snapshot_id)
        if snapshot is None:
            raise ApplicationError(
                "DPO needs a preference snapshot of the study.", extra={"field": "snapshot_id"}
            )
        params["snapshot_id"] = snapshot.id
        warning = too_few_pairs_warning(
            study=study,
            train_pairs=snapshot.train_count,
            consequence="DPO will fit a handful of preferences, and its child may overfit them",
        )
        if warning:
            params["warnings"].append(warning)
    else:
        params["config"] = policy_options(method, config)
        params["warnings"] = _length_warnings(method, params["config"], parent)
        reward_model = _of_study(RewardModel, study=study, object_id=reward_model_id)
        if reward_model is None:
            raise ApplicationError(
                f"{method.upper()} needs a reward model of the study.", extra={"field": "reward_model_id"}
            )
        model_path_check(reward_model.path, field="reward_model_id")
        params["reward_model_id"] = reward_model.id
        params["snapshot_id"] = reward_model.snapshot_id
    if not params.get("warnings"):
        params.pop("warnings", None)  # (the image policy has none; a job without any holds none)
    return job_enqueue(
        kind=JobKind.TRAIN_POLICY,
        study_id=study.id,
        created_by_id=created_by_id,
        parent_id=parent_id,
        params=params,
    )


def _length_warnings(method: str, options: dict[str, Any], parent: GeneratorVersion) -> list[str]:
    """The token lengths the operator gave that the run will cut to the positions of a local
    parent (a hub parent's are known when the worker loads it, which cuts them the same way; the
    defaults, made for real models, are cut without a word)."""
    limit = local_position_limit(parent.model_path) if parent.model_path else None
    cuts = length_cuts(config_from_options(method, options), limit)
    return [f"{text}." for name, text in cuts if name in options]


# The kinds whose runs keep trainer checkpoints in the job's folder (server/training/jobs.py).
RESUMABLE_KINDS = (JobKind.TRAIN_POLICY, JobKind.TRAIN_REWARD_MODEL)


def job_checkpoint_folder(job_id: int) -> Path:
    """Where a training job's trainers keep their checkpoints (one subfolder per trainer)."""
    return Path(settings.VAR_DIR) / "checkpoints" / f"job-{job_id}"


def training_job_checkpointed(job: Job) -> bool:
    """Whether the job's folder holds a checkpoint to resume from: the trainer's checkpoint-N
    folders (a policy, reward-model members), or the heads' heads.pt."""
    folder = job_checkpoint_folder(job.id)
    return folder.is_dir() and any(
        path.name.startswith("checkpoint-") or path.name == "heads.pt" for path in folder.rglob("*")
    )


def training_job_resumable(job: Job) -> bool:
    """What ``training_job_resume`` accepts: a failed or cancelled training job with a checkpoint."""
    return (
        job.kind in RESUMABLE_KINDS
        and job.status in (JobStatus.FAILED, JobStatus.CANCELLED)
        and training_job_checkpointed(job)
    )


@transaction.atomic
def training_job_resume(*, job_id: int, created_by_id: int | None = None) -> Job:
    """A new job that trains on from the newest checkpoint of a failed or cancelled training job:
    the same options, parent, snapshot and next steps, recorded as its next step (``parent``) with
    ``params["resumes_job"]``. A finished job stays finished (the state machine's rule); asking
    twice returns the first resume.

    Refused: another kind of job, a job that did not fail or was not cancelled, and a job that left
    no checkpoint (a new job from the start is then the same thing, said plainly)."""
    job = Job.objects.select_for_update().filter(id=job_id).first()  # see training_checkpoints_prune
    if job is None:
        raise NotFound(f"There is no job {job_id}.")
    if job.kind not in RESUMABLE_KINDS:
        raise ApplicationError(
            f"Job {job_id} is a {job.kind} job; only training jobs (reward model, policy) resume "
            "from checkpoints."
        )
    if job.status not in (JobStatus.FAILED, JobStatus.CANCELLED):
        raise Conflict(f"Job {job_id} is {job.status}: only a failed or cancelled job can be resumed.")
    if not training_job_checkpointed(job):
        raise ApplicationError(
            f"Job {job_id} left no checkpoint to resume from: start a new training job instead."
        )
    params = {**job.params, "resumes_job": job.id}
    return job_enqueue(
        kind=job.kind,
        study_id=job.study_id,
        created_by_id=created_by_id,
        parent_id=job.id,
        params=params,
        queue=job.queue,
    )


def training_checkpoints_prune(*, now: datetime | None = None) -> list[int]:
    """Delete the checkpoint folders nothing can resume from any more; the ids of their jobs.

    A training job's folder (``job_checkpoint_folder``) holds optimizer state and weights, gigabytes
    for a real model. It goes when its job succeeded (the run normally removes it itself), when
    the job no longer exists, and when a failed or cancelled job finished more than
    ``LOVELACE_CHECKPOINT_RETENTION_DAYS`` ago and no resume of it is queued or running (until then
    the dashboard offers to resume it). A queued or running job's folder is never touched. Folders
    are found on this machine's ``VAR_DIR``: the beat task runs on a worker of the default queue,
    which shares that folder with the training workers in the embedded setup and in docker-compose.
    """
    root = Path(settings.VAR_DIR) / "checkpoints"
    if not root.is_dir():
        return []
    for leftover in root.glob(".job-*.pruned-*"):  # a deletion an earlier run did not finish
        shutil.rmtree(leftover, ignore_errors=True)
    folders: dict[int, Path] = {}
    for folder in root.iterdir():
        match = re.fullmatch(r"job-(\d+)", folder.name)
        if match and folder.is_dir():
            folders[int(match.group(1))] = folder
    cutoff = (now or timezone.now()) - timedelta(days=settings.LOVELACE_CHECKPOINT_RETENTION_DAYS)
    pruned = []
    for job_id, folder in sorted(folders.items()):
        # Under the job's row lock, which ``training_job_resume`` takes too: a resume is either
        # queued before this look (and the folder kept) or refused after it (no checkpoint left).
        with transaction.atomic():
            job = Job.objects.select_for_update().filter(id=job_id).first()
            if job is not None and _checkpoint_kept(job, resuming=_resume_in_flight(job_id), cutoff=cutoff):
                continue
            tombstone = folder.with_name(f".{folder.name}.pruned-{uuid.uuid4().hex}")
            try:
                folder.rename(tombstone)  # gone at once for everyone; deleted at leisure below
            except FileNotFoundError:
                continue
        shutil.rmtree(tombstone, ignore_errors=True)
        pruned.append(job_id)
    return pruned


def _resume_in_flight(job_id: int) -> bool:
    return Job.objects.filter(
        kind__in=RESUMABLE_KINDS,
        status__in=[JobStatus.QUEUED, JobStatus.RUNNING],
        params__resumes_job=job_id,
    ).exists()


def checkpoint_kept_until(job: Job) -> datetime | None:
    """When the scheduler may delete a failed or cancelled job's checkpoints (None: not such a job)."""
    if job.status not in (JobStatus.FAILED, JobStatus.CANCELLED) or job.finished_at is None:
        return None
    return job.finished_at + timedelta(days=settings.LOVELACE_CHECKPOINT_RETENTION_DAYS)


def _checkpoint_kept(job: Job, *, resuming: bool, cutoff: datetime) -> bool:
    if job.status in (JobStatus.QUEUED, JobStatus.RUNNING):
        return True  # its run writes there
    if job.status == JobStatus.SUCCEEDED:
        return False
    return resuming or job.finished_at is None or job.finished_at > cutoff


def loop_active(*, study: Study) -> bool:
    return Job.objects.filter(
        study=study, kind__in=LOOP_KINDS, status__in=[JobStatus.QUEUED, JobStatus.RUNNING]
    ).exists()


@transaction.atomic
def training_loops_start_due(*, limit: int = 10) -> list[int]:
    """Start the loop for studies with at least ``auto_train_min_judgments`` new eligible
    judgments since their last snapshot and no loop step in flight. Bounded per call."""
    from server.training.snapshots import eligible_judgments

    started: list[int] = []
    studies = Study.objects.filter(is_active=True, auto_train_min_judgments__isnull=False).order_by("id")
    for study in studies:
        if len(started) >= limit:
            break
        # The study's row lock makes a second scheduler (two beats, a beat and staff) wait here
        # until this transaction commits, and then see the loop in flight.
        list(Study.objects.select_for_update().filter(id=study.id).values_list("id"))
        if loop_active(study=study):
            continue
        last = (
            PreferenceSnapshot.objects.filter(study=study, criterion__isnull=True)
            .order_by("-created_at")
            .first()
        )
        new = eligible_judgments(study=study, after_id=last.last_judgment_id if last else 0).count()
        if new >= (study.auto_train_min_judgments or 0):
            started.append(snapshot_start(study=study, then=["reward_model", "policy"]).id)
    return started
