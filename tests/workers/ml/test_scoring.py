from __future__ import annotations

import numpy as np
import pytest

from workers.ml.sampling import LoadedModel, encode_prompt
from workers.ml.scoring import token_logprobs, token_logprobs_of_ids


def test_text_scores_equal_the_scores_of_its_tokens(tiny_model: LoadedModel) -> None:
    # Given texts with and without a prompt, and their token ids encoded by hand
    tokenizer = tiny_model.tokenizer
    texts = [" and wrote its name", "Rain on the window"]
    prompts = ["The tide came in at dawn", ""]
    by_hand = [
        (encode_prompt(tokenizer, prompt), tokenizer(text, add_special_tokens=False)["input_ids"])
        for prompt, text in zip(prompts, texts, strict=True)
    ]

    # When both are scored
    from_text = token_logprobs(tiny_model, texts, prompts=prompts)
    from_ids = token_logprobs_of_ids(tiny_model, by_hand)

    # Then there is one float64 log-probability per text token, the same either way
    assert [len(values) for values in from_text] == [len(ids) for _, ids in by_hand]
    for text_values, id_values in zip(from_text, from_ids, strict=True):
        assert text_values.dtype == np.float64
        np.testing.assert_allclose(text_values, id_values, atol=1e-6)
        assert (text_values < 0).all()


def test_unprompted_text_is_conditioned_on_bos(tiny_model: LoadedModel) -> None:
    # Given a text, scored without a prompt and with the empty prompt
    text = "The sea keeps no calendar"

    # When
    unprompted = token_logprobs(tiny_model, [text])[0]
    empty_prompt = token_logprobs(tiny_model, [text], prompts=[""])[0]

    # Then both score every token after the BOS token
    assert len(unprompted) == len(tiny_model.tokenizer(text, add_special_tokens=False)["input_ids"])
    np.testing.assert_array_equal(unprompted, empty_prompt)


def test_scores_do_not_depend_on_the_batch(tiny_model: LoadedModel) -> None:
    # Given texts of different lengths
    texts = [
        "Stars are the old lamps of the night",
        "A",
        "and slowly, row by row, a pattern learns to speak.",
    ]

    # When scored together (padded) and one at a time
    together = token_logprobs(tiny_model, texts, batch_size=3)
    alone = token_logprobs(tiny_model, texts, batch_size=1)

    # Then the values agree (up to float32 rounding)
    for batched, single in zip(together, alone, strict=True):
        np.testing.assert_allclose(batched, single, atol=1e-5)


def test_empty_text_gives_an_empty_array(tiny_model: LoadedModel) -> None:
    values = token_logprobs(tiny_model, [""], prompts=["The tide"])[0]
    assert values.shape == (0,)


def test_prompt_count_must_match_text_count(tiny_model: LoadedModel) -> None:
    with pytest.raises(ValueError, match="2 prompts for 1 texts"):
        token_logprobs(tiny_model, ["a"], prompts=["b", "c"])
