"""Per-token log-probabilities of given texts under a causal LM (surprisal, evaluation, checks).

A text is scored as the continuation of its prompt exactly as ``sampling.generate_samples`` would
have produced it: the prompt is encoded with ``encode_prompt`` (BOS first when the tokenizer has
one), the text is encoded on its own without special tokens, and the two id lists are concatenated.
So scoring a sample's prompt and token ids reproduces the sample's ``logprob``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from workers.ml.sampling import LoadedModel, context_length, encode_prompt, load_model


def token_logprobs(
    model: LoadedModel | str | Path,
    texts: Sequence[str],
    *,
    prompts: Sequence[str] | None = None,
    batch_size: int = 16,
) -> list[np.ndarray]:
    """Log p(token | prompt, earlier tokens) for every token of every text, in natural-log units.

    Returns one float64 array per text, with one entry per token of the text (the text's tokens, not
    the prompt's). Without a prompt the text is conditioned on the BOS token; a tokenizer without
    BOS leaves its first token without context, so that token gets no entry. An empty text gives
    an empty array. The mean of the negated entries is the text's surprisal in nats per token.
    """
    loaded = model if isinstance(model, LoadedModel) else load_model(model)
    tokenizer = loaded.tokenizer
    if prompts is not None and len(prompts) != len(texts):
        raise ValueError(f"{len(prompts)} prompts for {len(texts)} texts")
    sequences: list[tuple[list[int], list[int]]] = []
    for index, text in enumerate(texts):
        prompt = prompts[index] if prompts is not None else ""
        text_ids: list[int] = tokenizer(text, add_special_tokens=False)["input_ids"]
        context = encode_prompt(tokenizer, prompt)
        if not context:
            context, text_ids = text_ids[:1], text_ids[1:]
        sequences.append((context, text_ids))
    return token_logprobs_of_ids(loaded, sequences, batch_size=batch_size)


def token_logprobs_of_ids(
    loaded: LoadedModel,
    sequences: Sequence[tuple[Sequence[int], Sequence[int]]],
    *,
    batch_size: int = 16,
) -> list[np.ndarray]:
    """Like ``token_logprobs`` for (context ids, continuation ids) pairs; context must be non-empty.

    Use this to score exactly the tokens a sampler produced (``Sample.token_ids``): re-encoding
    decoded text can split words differently from how they were generated.
    """
    limit = context_length(loaded.model)
    for index, (context, continuation) in enumerate(sequences):
        if not context:
            raise ValueError(f"sequence {index} has an empty context")
        if limit is not None and len(context) + len(continuation) > limit:
            raise ValueError(
                f"sequence {index} has {len(context) + len(continuation)} tokens; the context is {limit}"
            )
    results: list[np.ndarray] = [np.zeros(0, dtype=np.float64)] * len(sequences)
    # Similar lengths together: less padding, fewer wasted positions.
    order = sorted(
        range(len(sequences)), key=lambda index: len(sequences[index][0]) + len(sequences[index][1])
    )
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        for index, values in zip(chunk, _score_batch(loaded, [sequences[i] for i in chunk]), strict=True):
            results[index] = values
    return results


@torch.inference_mode()
def _score_batch(
    loaded: LoadedModel, sequences: Sequence[tuple[Sequence[int], Sequence[int]]]
) -> list[np.ndarray]:
    tokenizer = loaded.tokenizer
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    full = [[*context, *continuation] for context, continuation in sequences]
    width = max(len(ids) for ids in full)
    # Right padding: positions start at 0 for every row without explicit position ids.
    input_ids = torch.full((len(full), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(full), width), dtype=torch.long)
    for row, ids in enumerate(full):
        input_ids[row, : len(ids)] = torch.tensor(ids)
        attention_mask[row, : len(ids)] = 1
    logits = loaded.model(
        input_ids=input_ids.to(loaded.device), attention_mask=attention_mask.to(loaded.device)
    ).logits
    results = []
    for row, (context, continuation) in enumerate(sequences):
        if not continuation:
            results.append(np.zeros(0, dtype=np.float64))
            continue
        # Logits at position t predict token t + 1; one row at a time keeps the float32
        # log-softmax at (tokens x vocabulary), not (batch x tokens x vocabulary).
        start = len(context) - 1
        predicting = logits[row, start : start + len(continuation)].float()
        targets = torch.tensor(list(continuation), device=predicting.device)[:, None]
        values = torch.log_softmax(predicting, dim=-1).gather(-1, targets)[:, 0]
        results.append(values.cpu().numpy().astype(np.float64))
    return results
