"""The typed settings of the dashboard's training forms, built from the declarations the training
service checks options with (``server.training.services``: ``REWARD_MODEL_OPTIONS``,
``DPO_OPTIONS``, ``ONLINE_RL_OPTIONS`` ...) and the defaults of the trainers' config dataclasses,
so that a range or a default lives in one place.

A field here only parses what the browser sends (text → number, "q_proj, v_proj" → a list); it
never judges a range. The service does, once, for the typed values and the advanced JSON merged,
and its error (which names the option) is shown next to the field of that option.
"""

from __future__ import annotations

import re
from dataclasses import MISSING, dataclass, fields
from typing import Any

from django import forms

from server.training.services import (
    DPO_OPTIONS,
    EMBEDDING_HEADS_ONLY,
    ONLINE_RL_OPTIONS,
    POLICY_METHODS,
    REWARD_LORA_OPTIONS,
    REWARD_MODEL_OPTIONS,
    SEQUENCE_CLASSIFICATION_ONLY,
    Adapters,
    Between,
    Flag,
    ModuleNames,
    OneOf,
    Option,
    Positive,
    Whole,
)
from workers.ml.policy_config import LORA_OPTIONS, config_from_options
from workers.ml.reward_model_config import RewardLora, RewardModelConfig

REWARD_KINDS = ("embedding_heads", "sequence_classification")


@dataclass(frozen=True)
class Setting:
    """One typed field of a training form."""

    name: str  # the form field's name, unique in its form
    option: str  # the option's key in the job's config; "lora.rank" inside the reward model's LoRA
    declaration: Option
    default: Any  # pre-filled; None leaves the field blank (the trainer's own choice, said in help)
    label: str
    help: str
    when: tuple[str, ...]  # the methods (policy) or kinds (reward model) it applies to

    def form_field(self) -> forms.Field:
        attributes = {"label": self.label, "help_text": self.help, "initial": self.default, "required": False}
        declaration = self.declaration
        if isinstance(declaration, Flag | Adapters):
            return forms.BooleanField(**attributes)
        if isinstance(declaration, OneOf):
            return OptionalTextField(
                widget=forms.Select(choices=[(choice, choice) for choice in declaration.choices]),
                **attributes,
            )
        if isinstance(declaration, Whole | Between | Positive):
            return NumberSettingField(declaration, **attributes)
        if isinstance(declaration, ModuleNames):
            return ModuleNamesField(**attributes)
        return OptionalTextField(**attributes)


@dataclass(frozen=True)
class Group:
    """Settings shown together under a title; hidden where none of them applies."""

    title: str
    settings: tuple[Setting, ...]

    @property
    def when(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(value for setting in self.settings for value in setting.when))


class OptionalTextField(forms.CharField):
    """Text (or a select's value) as typed; blank is None, i.e. the option is left out."""

    def to_python(self, value: Any) -> str | None:
        text = super().to_python(value)
        return text or None


class ModuleNamesField(forms.CharField):
    """LoRA target modules: "all-linear", or names separated by commas or spaces; blank is None."""

    def to_python(self, value: Any) -> str | list[str] | None:
        text = super().to_python(value) or None
        if text is None or text == "all-linear":
            return text
        return [name for name in re.split(r"[\s,]+", text) if name]


class NumberSettingField(forms.Field):
    """A number input whose min, max and step come from the option's declaration. Text that is no
    number is passed on as typed, so that the service refuses it in its own words."""

    widget = forms.NumberInput

    def __init__(self, declaration: Whole | Between | Positive, **kwargs: Any) -> None:
        self.declaration = declaration
        super().__init__(**kwargs)

    def widget_attrs(self, widget: forms.Widget) -> dict[str, Any]:
        attrs = super().widget_attrs(widget)
        declaration = self.declaration
        if isinstance(declaration, Whole):
            attrs.update(min=declaration.low, max=declaration.high, step=1)
        elif isinstance(declaration, Between):
            # A hundredth of the range: 0.01 for shares, 0.1 for penalties up to 10.
            attrs.update(
                min=f"{declaration.low:g}",
                max=f"{declaration.high:g}",
                step=f"{(declaration.high - declaration.low) / 100:g}",
            )
        else:  # Positive: learning rates span decades, so no step but "any"
            attrs.update(min=0, max=f"{declaration.high:g}", step="any")
        return attrs

    def to_python(self, value: Any) -> int | float | str | None:
        text = "" if value is None else str(value).strip()
        if not text:
            return None
        try:
            return int(text)
        except ValueError:
            pass
        try:
            number = float(text)
        except ValueError:
            return text
        # "1e3" steps is a whole number; the service refuses 2.5 steps with its own message.
        if isinstance(self.declaration, Whole) and number.is_integer():
            return int(number)
        return number


def _range_words(declaration: Option) -> str:
    """The service's own description of a valid value ("a whole number from 1 to 100"), read from
    the problem it reports for a missing value."""
    problem = declaration.problem(None) or ""
    return problem.removeprefix("must be ").rstrip(".") + "."


def _help(description: str, declaration: Option) -> str:
    if isinstance(declaration, Whole | Between | Positive):
        words = _range_words(declaration)
        return f"{description} {words[0].upper()}{words[1:]}"
    return description


# Labels and plain-words help; what the trainers' dataclasses document at length, in a line.
# The same words in both forms.
SHARED_TEXTS: dict[str, tuple[str, str]] = {
    "lr_scheduler": ("Schedule", "How the learning rate falls after warmup."),
    "warmup_ratio": ("Warmup share", "Share of the steps that raise the learning rate from 0."),
    "dtype": (
        "Precision",
        "auto: bfloat16 on a CUDA GPU that supports it, else float32. bfloat16 needs CUDA.",
    ),
    "gradient_checkpointing": (
        "Gradient checkpointing",
        "Recompute activations in the backward pass: about 30 % slower, far less memory.",
    ),
}

POLICY_TEXTS: dict[str, tuple[str, str]] = {
    **SHARED_TEXTS,
    "learning_rate": (
        "Learning rate",
        "AdamW step size. Blank: 5e-5 with LoRA, 1e-6 for full fine-tuning.",
    ),
    "epochs": ("Epochs", "Passes over the data; Max steps replaces it when set."),
    "max_steps": ("Max steps", "Optimizer steps. Blank: as many as the epochs take."),
    "per_device_batch_size": (
        "Batch per device",
        "Examples per forward pass on each device (DPO: pairs; RLOO / GRPO: completions).",
    ),
    "gradient_accumulation_steps": (
        "Gradient accumulation",
        "Forward passes per optimizer step: a step sees batch × accumulation × devices examples.",
    ),
    "seed": ("Seed", "Seeds the data order, the adapters' start and sampling."),
    "checkpoint_every": ("Checkpoint every", "Optimizer steps between checkpoints; a cancel saves one too."),
    "max_prompt_length": (
        "Max prompt tokens",
        "Longer prompts keep their end, next to the response. Blank: 256, less where the parent "
        "has fewer positions.",
    ),
    "max_length": (
        "Max prompt + response tokens",
        "DPO: a longer response loses its end. Must exceed the max prompt tokens. Blank: 512, or "
        "the parent's positions if fewer.",
    ),
    "max_completion_length": (
        "Max response tokens",
        "RLOO / GRPO: tokens sampled per completion. Blank: 64, less where the parent has fewer positions.",
    ),
    "lora": (
        "LoRA adapters",
        "Train small adapters on the frozen parent; the child is an adapter folder. Off: full fine-tuning.",
    ),
    "lora_rank": ("LoRA rank", "Size of the update; 16 suits 1–8 B models."),
    "lora_alpha": ("LoRA α", "Scale of the update (α / rank); usually twice the rank."),
    "lora_dropout": ("LoRA dropout", "On the adapters' input; about 0.05 regularises small data sets."),
    "lora_target_modules": (
        "Target modules",
        "Module names separated by commas (q_proj, v_proj), or all-linear. Blank: PEFT's default "
        "for the architecture.",
    ),
    "qlora_4bit": (
        "QLoRA: 4-bit parent",
        "Load the frozen parent in 4-bit NF4; needs LoRA, a CUDA GPU and bitsandbytes on the worker.",
    ),
    "merge_adapter": (
        "Merge the adapter",
        "Save the child as full weights (a whole model's disk space, loads without PEFT) instead of "
        "the adapter alone.",
    ),
    "DPO beta": ("β", "Pull toward the parent: 0.1 is the paper's; smaller lets the child drift further."),
    "loss_type": (
        "Loss",
        "sigmoid: DPO; ipo: does not overfit near-certain preferences; robust: noisy crowd labels.",
    ),
    "label_smoothing": ("Flipped-label share", "Assumed share of wrong votes; 0 trusts every vote."),
    "Online RL beta": ("β (KL penalty)", "The price of drifting from the parent; must stay above 0."),
    "num_generations": (
        "Completions per prompt",
        "The baselines compare them; batch × accumulation must be a multiple of this.",
    ),
    "temperature": ("Temperature", "Of the sampled completions; 1 samples the policy itself."),
    "reward_std_penalty": (
        "Ensemble caution k",
        "Reward = mean − k × spread over the reward model's members; 0: the mean.",
    ),
    "distributed": (
        "Spread over GPUs",
        "none: one process in the worker. ddp: a full copy per GPU (LoRA or full fine-tuning). fsdp / "
        "zero3: weights, gradients and optimizer state sharded, for full fine-tuning of a model one GPU "
        "cannot hold (zero3 needs deepspeed on the worker).",
    ),
    "processes": (
        "Processes (GPUs)",
        "One per GPU, at most the GPUs the worker sees; the global batch is per-device batch × "
        "accumulation × processes.",
    ),
}
REWARD_MODEL_TEXTS: dict[str, tuple[str, str]] = {
    **SHARED_TEXTS,
    "kind": (
        "Kind",
        "embedding_heads: linear heads on a frozen encoder, seconds on a CPU. "
        "sequence_classification: fine-tunes a model (use a GPU for real ones).",
    ),
    "backbone_path": (
        "Backbone",
        "A model folder under the allowed roots (or a hub id where allowed). Blank: the MiniLM "
        "encoder that ships with Lovelace.",
    ),
    "backbone_revision": ("Revision", "Hub branch, tag or commit; blank for a local folder."),
    "pooling": ("Pooling", "auto: the last token for causal LMs, the mean otherwise."),
    "ensemble_size": (
        "Members",
        "Their spread is the uncertainty active pair selection uses; Christiano et al. used 3.",
    ),
    "bootstrap": ("Bootstrap", "Each member trains on its own resample of the pairs."),
    "learning_rate": (
        "Learning rate",
        "Blank: 1e-3 for heads, 1e-4 with LoRA, 1e-5 for full fine-tuning.",
    ),
    "epochs": ("Epochs", "Blank: 20 for heads, 1 for sequence classification."),
    "max_steps": ("Max steps", "Optimizer steps per member; replaces the epochs."),
    "batch_size": ("Batch", "Pairs per step (heads), or per device and forward pass."),
    "gradient_accumulation_steps": (
        "Gradient accumulation",
        "Forward passes per optimizer step: a step sees batch × accumulation × devices pairs.",
    ),
    "center_rewards_coefficient": (
        "Centring penalty",
        "Keeps rewards near 0 (Eisenstein et al. 2023); 0.01 is the usual value.",
    ),
    "seed": ("Seed", "Seeds the heads, the resamples, the batch order and dropout."),
    "checkpoint_every": ("Checkpoint every", "Optimizer steps between checkpoints."),
    "max_length": ("Max tokens", "Per prompt + response; longer inputs are cut, never dropped."),
    "lora": (
        "LoRA adapters",
        "Adapters on the frozen backbone, the score head trained in full. Off: full fine-tuning.",
    ),
    "lora.rank": ("LoRA rank", "Size of the update; 16 suits 1–8 B models."),
    "lora.alpha": ("LoRA α", "Scale of the update (α / rank); usually twice the rank."),
    "lora.dropout": ("LoRA dropout", "On the adapters' input."),
    "lora.target_modules": (
        "Target modules",
        "Module names separated by commas (q_proj, v_proj), or all-linear. Blank: PEFT's default "
        "for the architecture.",
    ),
    "distributed": (
        "Spread over GPUs",
        "none: one process in the worker. ddp: a full copy per GPU (LoRA or full fine-tuning). fsdp / "
        "zero3: the members' weights, gradients and optimizer state sharded, for full fine-tuning of "
        "a backbone one GPU cannot hold (zero3 needs deepspeed on the worker). The members train one "
        "after another in one launch.",
    ),
    "processes": (
        "Processes (GPUs)",
        "One per GPU, at most the GPUs the worker sees; a step sees batch × accumulation × processes pairs.",
    ),
    "qlora_4bit": (
        "QLoRA: 4-bit base",
        "Load the frozen backbone in 4-bit NF4; needs LoRA, a CUDA GPU and bitsandbytes on the worker.",
    ),
}

# Which options each group shows, in order. An option that a declaration adds later and no group
# names appears under "Other settings", so every declared option has a field.
POLICY_LAYOUT: list[tuple[str, tuple[str, ...] | None, list[str]]] = [
    (
        "Optimisation",
        None,
        [
            "learning_rate",
            "lr_scheduler",
            "warmup_ratio",
            "epochs",
            "max_steps",
            "per_device_batch_size",
            "gradient_accumulation_steps",
            "seed",
            "checkpoint_every",
        ],
    ),
    ("Precision and memory", None, ["dtype", "gradient_checkpointing"]),
    ("Several GPUs", None, ["distributed", "processes"]),
    ("Lengths", None, ["max_prompt_length", "max_length", "max_completion_length"]),
    (
        "LoRA",
        None,
        [
            "lora",
            "lora_rank",
            "lora_alpha",
            "lora_dropout",
            "lora_target_modules",
            "qlora_4bit",
            "merge_adapter",
        ],
    ),
    ("DPO", ("dpo",), ["beta", "loss_type", "label_smoothing"]),
    ("Online RL", ("rloo", "grpo"), ["beta", "num_generations", "temperature", "reward_std_penalty"]),
]
REWARD_MODEL_LAYOUT: list[tuple[str, tuple[str, ...] | None, list[str]]] = [
    ("Model", None, ["kind", "backbone_path", "backbone_revision", "pooling", "ensemble_size", "bootstrap"]),
    (
        "Optimisation",
        None,
        [
            "learning_rate",
            "lr_scheduler",
            "warmup_ratio",
            "epochs",
            "max_steps",
            "batch_size",
            "gradient_accumulation_steps",
            "center_rewards_coefficient",
            "seed",
            "checkpoint_every",
        ],
    ),
    ("Length, precision and memory", None, ["max_length", "dtype", "gradient_checkpointing"]),
    ("Several GPUs", None, ["distributed", "processes"]),
    ("LoRA", None, ["lora", "lora.rank", "lora.alpha", "lora.dropout", "lora.target_modules", "qlora_4bit"]),
]


def _slug(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", title.lower()).strip("_")


def _groups(
    layout: list[tuple[str, tuple[str, ...] | None, list[str]]],
    declared: dict[str, dict[str, Option]],
    default_of: dict[tuple[str, str], Any],
    texts: dict[str, tuple[str, str]],
) -> tuple[Group, ...]:
    """The groups of a form. ``declared`` maps each method or kind to the options it accepts;
    ``default_of`` maps (value of the switch, option) to the default."""
    listed = [option for _, _, options in layout for option in options]
    every = list(dict.fromkeys(option for options in declared.values() for option in options))
    others = [option for option in every if option not in listed]
    full_layout = [*layout, ("Other settings", None, others)] if others else layout
    shared_names = {option for option in listed if listed.count(option) > 1}
    groups = []
    for title, only, options in full_layout:
        settings = []
        for option in options:
            when = tuple(
                which
                for which, accepted in declared.items()
                if option in accepted and (only is None or which in only)
            )
            if not when:
                continue
            name = f"{_slug(title)}_{option}" if option in shared_names else option.replace(".", "_")
            label, description = texts.get(f"{title} {option}") or texts.get(option) or (option, "")
            declaration = declared[when[0]][option]
            settings.append(
                Setting(
                    name=name,
                    option=option,
                    declaration=declaration,
                    default=default_of.get((when[0], option)),
                    label=label,
                    help=_help(description, declaration),
                    when=when,
                )
            )
        if settings:
            groups.append(Group(title, tuple(settings)))
    return tuple(groups)


# Left blank: the trainer fits a length it is not given to the parent's positions, while a typed
# one is the operator's and is only cut with a warning (``policy_config.fitted_lengths``).
FITTED_BY_THE_TRAINER = frozenset({"max_prompt_length", "max_length", "max_completion_length"})


def _policy_defaults() -> dict[tuple[str, str], Any]:
    defaults: dict[tuple[str, str], Any] = {}
    for method in POLICY_METHODS:
        config = config_from_options(method, {})
        for option in DPO_OPTIONS if method == "dpo" else ONLINE_RL_OPTIONS:
            if option in FITTED_BY_THE_TRAINER:
                value: Any = None
            elif option == "lora":
                value = config.lora is not None
            elif option in LORA_OPTIONS:
                value = getattr(config.lora, LORA_OPTIONS[option])
            else:
                value = getattr(config, option)
            defaults[method, option] = value
    return defaults


def _reward_model_defaults() -> dict[tuple[str, str], Any]:
    # From the dataclass fields: the backbone's default (a path found at run time) stays blank.
    plain = {field.name: field.default for field in fields(RewardModelConfig) if field.default is not MISSING}
    plain["lora"] = plain["lora"] is not None
    lora = RewardLora()
    plain.update({f"lora.{name}": getattr(lora, name) for name in REWARD_LORA_OPTIONS})
    return {(kind, option): value for kind in REWARD_KINDS for option, value in plain.items()}


def _reward_model_declared() -> dict[str, dict[str, Option]]:
    every: dict[str, Option] = {
        **REWARD_MODEL_OPTIONS,
        **{f"lora.{name}": declaration for name, declaration in REWARD_LORA_OPTIONS.items()},
    }
    only_sequence = {*SEQUENCE_CLASSIFICATION_ONLY, *(f"lora.{name}" for name in REWARD_LORA_OPTIONS)}
    return {
        "embedding_heads": {key: value for key, value in every.items() if key not in only_sequence},
        "sequence_classification": {
            key: value for key, value in every.items() if key not in EMBEDDING_HEADS_ONLY
        },
    }


POLICY_GROUPS = _groups(
    POLICY_LAYOUT,
    {method: DPO_OPTIONS if method == "dpo" else ONLINE_RL_OPTIONS for method in POLICY_METHODS},
    _policy_defaults(),
    POLICY_TEXTS,
)
REWARD_MODEL_GROUPS = _groups(
    REWARD_MODEL_LAYOUT, _reward_model_declared(), _reward_model_defaults(), REWARD_MODEL_TEXTS
)
