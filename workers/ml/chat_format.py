"""How a prompt reaches a model: through its chat template when it has one, as plain text otherwise.

One rule, used by generation (``sampling.encode_prompt``), scoring, DPO and online RL, so that a
model is trained on exactly the context it later generates from:

- a **chat model** (its tokenizer carries a ``chat_template``) sees the prompt as one user turn,
  rendered by ``apply_chat_template(add_generation_prompt=True)``; a response is the assistant
  turn that follows. Training rows use TRL's conversational format (lists of ``{"role",
  "content"}`` messages), which TRL renders with the same template;
- a **plain-text model** sees the prompt text, preceded by the BOS token when the tokenizer has one
  and does not add it itself (GPT-2-style models saw ``<|endoftext|>`` before every document, so
  an empty prompt means "the beginning of a piece"); a response is the text that follows.

The reward model's code may call ``is_chat_model`` and ``prompt_messages`` too: a chat reward
model should score the same rendered conversation.
"""

from __future__ import annotations

from typing import Any

Messages = list[dict[str, str]]


def is_chat_model(tokenizer: Any) -> bool:
    """True when the tokenizer carries a chat template (an instruction-tuned chat model)."""
    return bool(getattr(tokenizer, "chat_template", None))


def prompt_messages(prompt: str) -> Messages:
    """The prompt as the one user turn of a conversation."""
    return [{"role": "user", "content": prompt}]


def response_messages(response: str) -> Messages:
    """A response as the assistant turn that answers the prompt."""
    return [{"role": "assistant", "content": response}]


def _bos_prefix(tokenizer: Any) -> str:
    """The BOS token's text when the tokenizer has one and does not add it by itself, else ''."""
    bos = tokenizer.bos_token_id
    if bos is None or tokenizer.bos_token is None:
        return ""
    probe: list[int] = tokenizer("a", add_special_tokens=True)["input_ids"]
    return "" if probe and probe[0] == bos else str(tokenizer.bos_token)


def prompt_ids(tokenizer: Any, prompt: str) -> list[int]:
    """Token ids of the prompt as the model is to continue it (see the module docstring).

    An empty plain-text prompt without a BOS token gives an empty list.
    """
    if is_chat_model(tokenizer):
        rendered = tokenizer.apply_chat_template(
            prompt_messages(prompt), add_generation_prompt=True, tokenize=True, return_dict=True
        )
        return list(rendered["input_ids"])
    ids: list[int] = tokenizer(prompt, add_special_tokens=True)["input_ids"]
    bos = tokenizer.bos_token_id
    if bos is not None and (not ids or ids[0] != bos):
        ids = [bos, *ids]
    return ids


def truncate_prompt(tokenizer: Any, prompt: str, max_tokens: int) -> str:
    """The prompt's last ``max_tokens`` tokens as text (the end borders the response); unchanged
    when it fits. Counted on the prompt text alone: the template's or BOS tokens come on top."""
    ids: list[int] = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    if len(ids) <= max_tokens:
        return prompt
    return str(tokenizer.decode(ids[len(ids) - max_tokens :]))


def training_prompt(tokenizer: Any, prompt: str) -> str | Messages:
    """The prompt of a TRL training row: messages for a chat model, BOS-prefixed text otherwise.

    TRL tokenizes a text prompt with the tokenizer's defaults, so the BOS is written into the text;
    the tokenizer reads it back as the special token, which gives ``prompt_ids(tokenizer, prompt)``.
    """
    if is_chat_model(tokenizer):
        return prompt_messages(prompt)
    return _bos_prefix(tokenizer) + prompt


def preference_row(tokenizer: Any, *, prompt: str, chosen: str, rejected: str) -> dict[str, Any]:
    """One DPO row in TRL's format: conversational for a chat model, plain text otherwise."""
    if is_chat_model(tokenizer):
        return {
            "prompt": prompt_messages(prompt),
            "chosen": response_messages(chosen),
            "rejected": response_messages(rejected),
        }
    return {"prompt": training_prompt(tokenizer, prompt), "chosen": chosen, "rejected": rejected}


def completion_text(completion: str | Messages) -> str:
    """The text of a generated completion, whichever format TRL returned it in."""
    if isinstance(completion, str):
        return completion
    return "".join(str(message.get("content", "")) for message in completion)
