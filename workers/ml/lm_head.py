"""Per-token log-probabilities as plain logits + log-softmax where TRL's fused LM head has no kernel.

TRL 1.16's policy trainers (DPO, RLOO, GRPO) patch the policy's forward with a fused LM head
(``trl.trainer.utils.add_fused_lm_head``): called with ``fused_lm_head=True`` it returns per-token
log-probabilities without materialising the ``(tokens, vocabulary)`` logits. On CUDA that is a
Triton kernel. On a CPU the same online-softmax algorithm runs as torch operations on tiles of the
vocabulary, over every position (the prompt's and the padding's too, which the loss then masks),
and recomputes the tiles in the backward pass. Forward + backward of the head alone with DPO's
fields, CPU time on 2 cores (``python -m bench.training --lm-head``): 78 ms against 16 ms here at
the demo model's vocabulary (2,048) and 3.5 s against 1.8 s at GPT-2's (50,257); it was most of
what a DPO step cost beyond the raw loop.

``use_plain_lm_head`` wraps that patched forward once more: on a device without TRL's kernel a
``fused_lm_head=True`` call scores only the positions whose label is not -100, with the logits
materialised a bounded chunk of tokens at a time, and returns TRL's own output type with the same
fields; everything else (a CUDA or XPU device where Triton runs TRL's kernel, generation, plain
forwards) goes to TRL's forward unchanged. The fields match TRL's to float rounding
(tests/workers/ml/test_lm_head.py), so the trainers' losses and metrics are the same. Models with
logit scaling, soft-capping or a mixture of experts keep TRL's head: their extra terms (the
router's auxiliary loss among them) live only there.
"""

from __future__ import annotations

import functools
import inspect
import types
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as functional
from torch.utils.checkpoint import checkpoint
from transformers import PreTrainedModel
from trl.kernels.chunked_logprob import _use_triton
from trl.trainer.utils import FusedCausalLMOutput

# Logits materialised at once (tokens × vocabulary): 2**25 floats are 128 MiB, and the backward
# pass keeps a few tensors of that size (logits, log-softmax, and with the entropy its terms).
# Larger batches are scored in chunks whose tensors are recomputed in the backward pass instead.
MAX_LOGITS_AT_ONCE = 2**25
# Config attributes that change the logits after the head (TRL reads them in add_fused_lm_head).
_LOGIT_SCALES = (
    "logit_scale",
    "output_multiplier",
    "lm_head_multiplier",
    "logits_scaling",
)
ALL_OUTPUTS = ("log_probs", "entropy", "log_sum_sq_probs", "mean_logits", "is_top1")


def plain_head_applies(model: PreTrainedModel) -> bool:
    """Whether ``model``'s logits are the LM head's output as it is: a text model without logit
    scaling, soft-capping or a router (otherwise TRL's head stays)."""
    config = model.config
    if config.get_text_config() is not config:
        return False
    # TRL asks a model for router logits whenever its config knows the option (a mixture of
    # experts, even with it off by default) and adds the router's auxiliary loss in its head.
    if (
        hasattr(config, "output_router_logits")
        or getattr(config, "final_logit_softcapping", None) is not None
    ):
        return False
    return all(getattr(config, name, None) in (None, 1.0) for name in _LOGIT_SCALES)


def use_plain_lm_head(
    model: PreTrainedModel,
    *,
    temperature: float = 1.0,
    cast_lm_head_to_fp32: bool = False,
    outputs: tuple[str, ...] = ("log_probs",),
) -> bool:
    """Route ``model``'s ``fused_lm_head=True`` calls to the plain head on devices without TRL's
    kernel. ``model`` must already carry TRL's fused head (the trainers add it in their
    constructor); ``temperature``, ``cast_lm_head_to_fp32`` and ``outputs`` are the ones the trainer
    gave TRL's. Returns False, changing nothing, where the plain head does not apply."""
    unknown = set(outputs) - set(ALL_OUTPUTS)
    if unknown:
        raise ValueError(f"unknown LM head outputs {sorted(unknown)}; known: {', '.join(ALL_OUTPUTS)}")
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    fused_forward: Callable[..., Any] = model.forward
    function = getattr(fused_forward, "__func__", fused_forward)
    if "fused_lm_head" not in inspect.signature(function, follow_wrapped=False).parameters:
        raise ValueError("the model has no fused LM head: TRL's add_fused_lm_head must patch it first")
    if not plain_head_applies(model):
        return False

    # The model class's signature, as TRL keeps it: generate checks its keyword arguments against it.
    @functools.wraps(type(model).forward)
    def forward(
        self: PreTrainedModel,
        *args: Any,
        fused_lm_head: bool = False,
        labels: torch.Tensor | None = None,
        shift_labels: torch.Tensor | None = None,
        num_items_in_batch: torch.Tensor | int | None = None,
        **kwargs: Any,
    ) -> Any:
        lm_head = self.get_output_embeddings()
        unlabelled = labels is None and shift_labels is None
        if not fused_lm_head or unlabelled or _use_triton(lm_head.weight.device):
            return fused_forward(
                *args,
                fused_lm_head=fused_lm_head,
                labels=labels,
                shift_labels=shift_labels,
                num_items_in_batch=num_items_in_batch,
                **kwargs,
            )
        kwargs["use_cache"] = False
        hidden_states = self.base_model(*args, **kwargs).last_hidden_state
        if shift_labels is None:
            assert labels is not None
            hidden_states, targets = hidden_states[:, :-1], labels[:, 1:]
        else:
            targets = shift_labels
        hidden_states = hidden_states.to(lm_head.weight.device)
        targets = targets.to(lm_head.weight.device)
        mask = targets != -100
        fields = token_fields(
            hidden_states[mask],
            lm_head.weight,
            lm_head.bias,
            targets[mask],
            temperature=temperature,
            cast_to_fp32=cast_lm_head_to_fp32,
            outputs=outputs,
        )
        # masked_scatter keeps the result connected to the graph even when no label is valid.
        per_token = {
            name: None if value is None else value.new_zeros(mask.shape).masked_scatter(mask, value)
            for name, value in fields.items()
        }
        log_probs = per_token["log_probs"]
        assert log_probs is not None
        denominator = mask.sum().clamp(min=1) if num_items_in_batch is None else num_items_in_batch
        return FusedCausalLMOutput(loss=-log_probs.sum() / denominator, label_mask=mask, **per_token)

    model.forward = types.MethodType(forward, model)  # type: ignore[method-assign]
    return True


def token_fields(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    targets: torch.Tensor,
    *,
    temperature: float = 1.0,
    cast_to_fp32: bool = False,
    outputs: tuple[str, ...] = ("log_probs",),
    max_logits: int = MAX_LOGITS_AT_ONCE,
) -> dict[str, torch.Tensor | None]:
    """Per-token fields of ``hidden @ weight.T (+ bias)`` over ``targets`` (one row each), with
    TRL's meanings: log-probability of the target, entropy (with gradient: GRPO's entropy bonus
    uses it), log Σ p², mean logit and whether the target is the first most likely token (the
    last three without gradient). Fields not in ``outputs`` are None."""
    rows = max(1, max_logits // max(1, weight.shape[0]))
    if hidden.shape[0] <= rows:
        chunks = [_fields(hidden, weight, bias, targets, temperature, cast_to_fp32, outputs)]
    else:
        # Each chunk's logits are recomputed in the backward pass rather than kept, which bounds
        # the memory to one chunk's logits (what TRL's head bounds too).
        chunks = [
            checkpoint(
                _fields,
                hidden[start : start + rows],
                weight,
                bias,
                targets[start : start + rows],
                temperature,
                cast_to_fp32,
                outputs,
                use_reentrant=False,
            )
            for start in range(0, hidden.shape[0], rows)
        ]
    return {
        name: torch.cat([chunk[name] for chunk in chunks]) if name in outputs or name == "log_probs" else None
        for name in ALL_OUTPUTS
    }


def _fields(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    targets: torch.Tensor,
    temperature: float,
    cast_to_fp32: bool,
    outputs: tuple[str, ...],
) -> dict[str, torch.Tensor]:
    if cast_to_fp32:
        with torch.autocast(hidden.device.type, enabled=False):
            logits = functional.linear(hidden.float(), weight.float(), None if bias is None else bias.float())
    else:
        logits = functional.linear(hidden, weight, bias).float()
    if temperature != 1.0:
        logits = logits / temperature
    log_softmax = logits.log_softmax(-1)
    fields = {"log_probs": log_softmax.gather(-1, targets.unsqueeze(-1)).squeeze(-1)}
    if "entropy" in outputs:
        fields["entropy"] = -(log_softmax.exp() * log_softmax).sum(-1)
    with torch.no_grad():
        if "log_sum_sq_probs" in outputs:
            fields["log_sum_sq_probs"] = torch.logsumexp(2 * log_softmax, -1)
        if "mean_logits" in outputs:
            fields["mean_logits"] = logits.mean(-1)
        if "is_top1" in outputs:
            fields["is_top1"] = _is_first_maximum(logits, targets)
    return fields


def _is_first_maximum(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Whether each target is its row's most likely token, the first one on a tie (``argmax``'s
    and TRL's rule). ``amax`` is cheaper than ``argmax`` on a CPU; only rows where the target
    reaches the maximum (rarely more than a few) are searched for an earlier tie."""
    target_logits = logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    maxima = logits.amax(-1)
    top = target_logits >= maxima
    rows = top.nonzero().squeeze(-1)
    if rows.numel():
        top[rows] = (logits[rows] == maxima[rows, None]).int().argmax(-1) == targets[rows]
    return top


def use_plain_lm_heads(trainer: Any, *, outputs: tuple[str, ...], temperature: float = 1.0) -> bool:
    """Give a TRL trainer's policy (the model under its adapters) and its reference model, if it
    has one, the plain head (``use_plain_lm_head``). Returns whether the policy got it."""
    model = trainer.model
    policy = model.get_base_model() if hasattr(model, "get_base_model") else model
    cast = bool(getattr(trainer.args, "cast_lm_head_to_fp32", False))
    installed = use_plain_lm_head(policy, temperature=temperature, cast_lm_head_to_fp32=cast, outputs=outputs)
    reference = getattr(trainer, "ref_model", None)
    if reference is not None:
        use_plain_lm_head(reference, temperature=temperature, cast_lm_head_to_fp32=cast)
    return installed
