"""Helpers of the policy-trainer tests: a reporter that stops a TRL run at one step, and the
log-probability of a response under a saved model (however it was saved)."""

from __future__ import annotations

from pathlib import Path

import torch

from workers.ml.chat_format import prompt_ids
from workers.ml.progress import Cancelled
from workers.ml.sampling import clear_model_cache, load_model

CHAT_TEMPLATE = (
    "{% for message in messages %}<|{{ message['role'] }}|>{{ message['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


class StepReporter:
    """A ProgressReporter for the bridged trainers: records the steps whose training metrics it
    received, and raises ``Cancelled`` (``cancel_at``) or RuntimeError (``crash_at``, a worker that
    dies without saving) at the report of that step's training log."""

    def __init__(self, *, cancel_at: int | None = None, crash_at: int | None = None) -> None:
        self.cancel_at = cancel_at
        self.crash_at = crash_at
        self.training_steps: list[int] = []
        self.messages: list[str] = []

    def __call__(
        self, *, step: int, total: int, message: str = "", metrics: dict[str, float] | None = None
    ) -> None:
        self.messages.append(message)
        if metrics is None or "loss" not in metrics:  # heartbeats, evaluation and summary logs
            return
        self.training_steps.append(step)
        if step == self.cancel_at:
            raise Cancelled
        if step == self.crash_at:
            raise RuntimeError("worker lost")


def response_log_prob(model_path: Path, prompt: str, response: str) -> float:
    """log π(response + EOS | prompt) under the model saved at ``model_path`` (plain or adapter),
    with the prompt encoded as generation encodes it."""
    clear_model_cache()
    loaded = load_model(model_path, device="cpu")
    tokenizer = loaded.tokenizer
    context = prompt_ids(tokenizer, prompt)
    answer = [*tokenizer(response, add_special_tokens=False)["input_ids"], tokenizer.eos_token_id]
    ids = torch.tensor([context + answer])
    with torch.no_grad():
        logits = loaded.model(input_ids=ids).logits[0, :-1].float()
    log_probs = logits.log_softmax(dim=-1)[torch.arange(ids.shape[1] - 1), ids[0, 1:]]
    return float(log_probs[len(context) - 1 :].sum())
