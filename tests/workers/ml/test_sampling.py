from __future__ import annotations

import dataclasses
from typing import Any

import pytest
import torch

from workers.ml.progress import Cancelled
from workers.ml.sampling import (
    LoadedModel,
    OutOfMemoryEvent,
    SampleRequest,
    SamplingConfig,
    _eos_ids,
    encode_prompt,
    generate_samples,
    generation_defaults,
    last_sentence_end,
    load_model,
)
from workers.ml.scoring import token_logprobs_of_ids

CONFIG = SamplingConfig(max_new_tokens=24, batch_size=4)


class OutOfMemoryAbove(torch.nn.Module):
    """Wraps a model and fails like CUDA does when a forward pass gets more than ``max_rows`` rows."""

    def __init__(self, model: Any, max_rows: int, error: RuntimeError) -> None:
        super().__init__()
        self.model = model
        self.config = model.config
        self.max_rows = max_rows
        self.error = error
        self.rows_seen: list[int] = []

    def forward(self, input_ids: torch.Tensor, **kwargs: Any) -> Any:
        self.rows_seen.append(input_ids.shape[0])
        if input_ids.shape[0] > self.max_rows:
            raise self.error
        return self.model(input_ids=input_ids, **kwargs)


def wrapped(loaded: LoadedModel, max_rows: int, error: RuntimeError) -> LoadedModel:
    fake = OutOfMemoryAbove(loaded.model, max_rows, error)
    return LoadedModel(model=fake, tokenizer=loaded.tokenizer, device=loaded.device, dtype=loaded.dtype)


def test_same_seed_gives_the_same_sample_whatever_the_batch(tiny_model: LoadedModel) -> None:
    # Given one request, alone and inside two different batches (other prompts, other positions)
    request = SampleRequest(prompt="The tide", seed=11)
    crowd = [
        SampleRequest(prompt="A much longer prompt about the lighthouse and the sea", seed=1),
        request,
        SampleRequest(prompt="", seed=2),
    ]
    others = [SampleRequest(prompt="Rain", seed=5), SampleRequest(prompt="Winter came", seed=6), request]

    # When each is generated
    alone = generate_samples(tiny_model, [request], config=CONFIG).samples[0]
    in_crowd = generate_samples(tiny_model, crowd, config=CONFIG).samples[1]
    in_pair = generate_samples(tiny_model, others, config=SamplingConfig(max_new_tokens=24, batch_size=2))
    last = in_pair.samples[2]

    # Then the sample is the same token for token
    assert alone.token_count > 0
    for sample in (in_crowd, last):
        assert sample.text == alone.text
        assert sample.token_ids == alone.token_ids
        assert sample.finish_reason == alone.finish_reason
        assert sample.logprob == pytest.approx(alone.logprob, abs=1e-4)


def test_refilled_batches_give_the_samples_of_one_at_a_time(tiny_model: LoadedModel) -> None:
    # Given requests whose texts end at different lengths (EOS, a stop string, max_new_tokens)
    prompts = ["", "The tide", "Rain on the window,", "A lighthouse is a patient friend", "Stars"]
    requests = [SampleRequest(prompt=prompts[seed % 5], seed=seed) for seed in range(12)]
    config = SamplingConfig(max_new_tokens=20, stop=("\n",), batch_size=3)

    # When decoded three at a time (finished rows replaced by waiting ones) and one at a time
    refilled = generate_samples(tiny_model, requests, config=config).samples
    alone = generate_samples(tiny_model, requests, config=dataclasses.replace(config, batch_size=1)).samples

    # Then every sample is the same
    assert [(sample.text, sample.token_ids, sample.finish_reason) for sample in refilled] == [
        (sample.text, sample.token_ids, sample.finish_reason) for sample in alone
    ]
    assert len({sample.token_count for sample in refilled}) > 3


def test_different_seeds_give_different_texts(tiny_model: LoadedModel) -> None:
    # Given eight requests that differ only in their seed
    requests = [SampleRequest(prompt="The sea", seed=seed) for seed in range(8)]

    # When they are sampled
    samples = generate_samples(tiny_model, requests, config=CONFIG).samples

    # Then all eight texts differ, and each sample carries its own seed
    assert len({sample.text for sample in samples}) == 8
    assert [sample.seed for sample in samples] == list(range(8))


def test_results_come_back_in_request_order(tiny_model: LoadedModel) -> None:
    # Given prompts of very different lengths (generation groups them by length)
    prompts = ["A lighthouse is a patient friend who stays", "", "The tide came in", "Rain"]
    requests = [SampleRequest(prompt=prompt, seed=3) for prompt in prompts]

    # When
    samples = generate_samples(
        tiny_model, requests, config=SamplingConfig(max_new_tokens=4, batch_size=2)
    ).samples

    # Then
    assert [sample.prompt for sample in samples] == prompts


def test_greedy_and_top_k_1_ignore_the_seed(tiny_model: LoadedModel) -> None:
    # Given two seeds
    requests = [SampleRequest(prompt="The tide", seed=seed) for seed in (1, 2)]

    # When decoded greedily, by top-k 1 and by a vanishing nucleus
    greedy = generate_samples(
        tiny_model, requests, config=SamplingConfig(max_new_tokens=12, temperature=0)
    ).samples
    top_k = generate_samples(tiny_model, requests, config=SamplingConfig(max_new_tokens=12, top_k=1)).samples
    top_p = generate_samples(
        tiny_model, requests, config=SamplingConfig(max_new_tokens=12, top_p=1e-6)
    ).samples

    # Then all six are the same argmax continuation, certain under the sampling distribution
    texts = {sample.text for sample in greedy + top_k + top_p}
    assert len(texts) == 1
    assert [sample.sampling_logprob for sample in greedy + top_k + top_p] == [0.0] * 6
    assert top_k[0].logprob == pytest.approx(greedy[0].logprob, abs=1e-5)


def test_logprobs_are_those_of_the_raw_and_of_the_sampled_distribution(tiny_model: LoadedModel) -> None:
    # Given one token sampled at temperature 0.5 with top-k 5
    request = SampleRequest(prompt="The tide", seed=4)
    config = SamplingConfig(max_new_tokens=1, temperature=0.5, top_k=5)
    sample = generate_samples(tiny_model, [request], config=config).samples[0]
    assert sample.token_count == 1

    # When the next-token distribution is computed by hand
    prompt_ids = torch.tensor([encode_prompt(tiny_model.tokenizer, request.prompt)])
    with torch.no_grad():
        logits = tiny_model.model(input_ids=prompt_ids).logits[0, -1]
    token = sample.token_ids[0]
    top5 = torch.topk(logits, 5).indices

    # Then logprob is the raw model's and sampling_logprob the tempered top-5 distribution's
    assert token in top5.tolist()
    assert sample.logprob == pytest.approx(float(torch.log_softmax(logits, -1)[token]), abs=1e-5)
    tempered = torch.log_softmax(logits[top5] / 0.5, -1)
    assert sample.sampling_logprob == pytest.approx(float(tempered[top5.tolist().index(token)]), abs=1e-5)


def test_stop_string_cuts_the_text_and_stops_the_row(tiny_model: LoadedModel) -> None:
    # Given a sample without stop strings, and a stop string taken from its middle
    request = SampleRequest(prompt="The tide", seed=7)
    full = generate_samples(tiny_model, [request], config=SamplingConfig(max_new_tokens=32)).samples[0]
    assert len(full.text) >= 8
    stop = full.text[len(full.text) // 2 : len(full.text) // 2 + 2]
    expected_text = full.text[: full.text.find(stop)]

    # When the same request is generated with that stop string (and one that never occurs)
    stopped = generate_samples(
        tiny_model, [request], config=SamplingConfig(max_new_tokens=32, stop=("@@never@@", stop))
    ).samples[0]

    # Then the text ends right before the first occurrence, the row stopped there, and the kept
    # tokens are a prefix of the unstopped ones that decodes to (at least) the text
    assert stopped.text == expected_text
    assert stopped.finish_reason == "stop"
    assert stopped.token_count < full.token_count
    assert stopped.token_ids == full.token_ids[: stopped.token_count]
    decoded = tiny_model.tokenizer.decode(list(stopped.token_ids), skip_special_tokens=True)
    assert decoded.startswith(stopped.text)
    assert stop not in decoded[: len(stopped.text) + len(stop) - 1]


@pytest.mark.parametrize(
    ("text", "end"),
    [
        ("The boat came in. The gulls", len("The boat came in.")),
        ('She said, "Come home!" and then "Why?" He', len('She said, "Come home!" and then "Why?"')),
        ("It rained (all night.) Then", len("It rained (all night.)")),
        ("Done.", len("Done.")),
        ("Two ends. Here.\n", len("Two ends. Here.")),
        ("3.5 miles and more", 0),
        ("No end at all", 0),
        ("", 0),
    ],
)
def test_last_sentence_end_is_after_the_last_full_stop_mark_before_a_space(text: str, end: int) -> None:
    assert last_sentence_end(text) == end


def test_end_at_sentence_cuts_a_text_that_ran_out_of_tokens_back_to_its_last_sentence(
    tiny_model: LoadedModel,
) -> None:
    # Given samples drawn without and with end_at_sentence (same seeds, so the same tokens)
    requests = [
        SampleRequest(prompt=prompt, seed=seed) for seed in range(8) for prompt in ("The sea", "Rain")
    ]
    # (hot: the tiny model writes verse, whose lines rarely end a sentence mid-text)
    plain = SamplingConfig(max_new_tokens=40, temperature=1.5)
    whole = generate_samples(tiny_model, requests, config=plain).samples
    cut = generate_samples(
        tiny_model, requests, config=dataclasses.replace(plain, end_at_sentence=True)
    ).samples

    # Then a text that ran out of tokens with a complete sentence before its end ends with that
    # sentence, its tokens are the shortest prefix that covers it and its log-probability is theirs;
    # every other text is left as it was
    cut_count = 0
    for before, after in zip(whole, cut, strict=True):
        end = last_sentence_end(before.text)
        if before.finish_reason == "length" and 0 < end < len(before.text):
            cut_count += 1
            assert after.text == before.text[:end]
            assert after.finish_reason == "length"
            assert after.token_ids == before.token_ids[: after.token_count]
            decoded = tiny_model.tokenizer.decode(list(after.token_ids), skip_special_tokens=True)
            shorter = tiny_model.tokenizer.decode(list(after.token_ids[:-1]), skip_special_tokens=True)
            assert decoded.startswith(after.text) and not shorter.startswith(after.text)
        else:
            assert (after.text, after.token_ids) == (before.text, before.token_ids)
    assert cut_count > 0
    scored = token_logprobs_of_ids(
        tiny_model,
        [(encode_prompt(tiny_model.tokenizer, sample.prompt), sample.token_ids) for sample in cut],
        batch_size=4,
    )
    for values, sample in zip(scored, cut, strict=True):
        assert float(values.sum()) == pytest.approx(sample.logprob, abs=1e-3)


def test_max_new_tokens_bounds_every_sample(tiny_model: LoadedModel) -> None:
    # Given
    requests = [SampleRequest(prompt="The", seed=seed) for seed in range(6)]

    # When
    samples = generate_samples(tiny_model, requests, config=SamplingConfig(max_new_tokens=3)).samples

    # Then a row ends by length after exactly 3 tokens, or earlier by EOS
    for sample in samples:
        assert (sample.finish_reason, sample.token_count) == ("length", 3) or (
            sample.finish_reason == "eos" and sample.token_count < 3
        )


def test_token_counts_and_logprobs_match_scoring(tiny_model: LoadedModel) -> None:
    # Given samples with and without a prompt, at temperature 1 and with filtering
    requests = [
        SampleRequest(prompt=prompt, seed=seed) for seed, prompt in enumerate(["", "The sea", "Rain on"])
    ]
    samples = [
        *generate_samples(tiny_model, requests, config=CONFIG).samples,
        *generate_samples(
            tiny_model,
            requests,
            config=SamplingConfig(max_new_tokens=24, temperature=0.8, top_p=0.9, top_k=40),
        ).samples,
    ]

    # When their tokens are scored again, one sequence at a time, by scoring.py
    scored = token_logprobs_of_ids(
        tiny_model,
        [(encode_prompt(tiny_model.tokenizer, sample.prompt), sample.token_ids) for sample in samples],
        batch_size=1,
    )

    # Then the token counts are equal and the sums agree with the raw-model log-probability
    assert [len(values) for values in scored] == [sample.token_count for sample in samples]
    for values, sample in zip(scored, samples, strict=True):
        assert float(values.sum()) == pytest.approx(sample.logprob, abs=1e-3)


def test_out_of_memory_batch_is_halved_and_retried(tiny_model: LoadedModel) -> None:
    # Given a model that runs out of memory above 2 rows, and the results of the real model at 2 rows
    fake = wrapped(
        tiny_model, 2, torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
    )
    requests = [SampleRequest(prompt="The tide", seed=seed) for seed in range(5)]
    expected = generate_samples(tiny_model, requests, config=SamplingConfig(max_new_tokens=8, batch_size=2))

    # When 5 requests are generated at batch size 8
    result = generate_samples(fake, requests, config=SamplingConfig(max_new_tokens=8, batch_size=8))

    # Then the first attempt (5 rows) failed, the rest ran at 2 rows, and the samples are unchanged
    assert result.out_of_memory_events == [OutOfMemoryEvent(batch_size=5, retried_with=2)]
    assert result.final_batch_size == 2
    assert fake.model.rows_seen[0] == 5
    assert max(fake.model.rows_seen[1:]) == 2
    assert [sample.text for sample in result.samples] == [sample.text for sample in expected.samples]


def test_out_of_memory_in_the_middle_of_decoding_restarts_the_unfinished_rows(
    tiny_model: LoadedModel,
) -> None:
    # Given a model whose prompts fit but whose decoding steps run out of memory above 2 rows
    class OutOfMemoryWhileDecoding(OutOfMemoryAbove):
        def forward(self, input_ids: torch.Tensor, **kwargs: Any) -> Any:
            if input_ids.shape[1] > 1:  # prefill: always fits
                return self.model(input_ids=input_ids, **kwargs)
            return super().forward(input_ids, **kwargs)

    fake_model = OutOfMemoryWhileDecoding(
        tiny_model.model, 2, torch.cuda.OutOfMemoryError("CUDA out of memory")
    )
    fake = LoadedModel(
        model=fake_model, tokenizer=tiny_model.tokenizer, device=tiny_model.device, dtype=tiny_model.dtype
    )
    requests = [SampleRequest(prompt="The tide", seed=seed) for seed in range(5)]
    config = SamplingConfig(max_new_tokens=8, batch_size=4)
    expected = generate_samples(tiny_model, requests, config=config).samples

    # When the rows already have a first token each as memory runs out
    result = generate_samples(fake, requests, config=config)

    # Then the unfinished rows start over at 2 rows and come out as without the failure
    assert result.out_of_memory_events == [OutOfMemoryEvent(batch_size=4, retried_with=2)]
    assert [(sample.text, sample.token_ids) for sample in result.samples] == [
        (sample.text, sample.token_ids) for sample in expected
    ]


def test_runtime_error_saying_out_of_memory_is_halved_twice(tiny_model: LoadedModel) -> None:
    # Given a model that fails above 1 row with the CPU allocator's wording
    fake = wrapped(
        tiny_model, 1, RuntimeError("DefaultCPUAllocator: not enough memory: you tried... out of memory")
    )
    requests = [SampleRequest(prompt="The", seed=seed) for seed in range(4)]

    # When
    result = generate_samples(fake, requests, config=SamplingConfig(max_new_tokens=2, batch_size=4))

    # Then
    assert result.out_of_memory_events == [
        OutOfMemoryEvent(batch_size=4, retried_with=2),
        OutOfMemoryEvent(batch_size=2, retried_with=1),
    ]
    assert result.final_batch_size == 1
    assert len(result.samples) == 4


def test_out_of_memory_at_one_row_and_other_errors_propagate(tiny_model: LoadedModel) -> None:
    # Given a model that cannot even run one row, and one that fails for another reason
    no_memory = wrapped(tiny_model, 0, torch.cuda.OutOfMemoryError("CUDA out of memory"))
    broken = wrapped(tiny_model, 0, RuntimeError("shape mismatch"))
    requests = [SampleRequest(prompt="The", seed=1), SampleRequest(prompt="The", seed=2)]

    # When / then: halving stops at one row; other errors are not retried
    with pytest.raises(torch.cuda.OutOfMemoryError):
        generate_samples(no_memory, requests, config=SamplingConfig(max_new_tokens=2, batch_size=2))
    with pytest.raises(RuntimeError, match="shape mismatch"):
        generate_samples(broken, requests, config=SamplingConfig(max_new_tokens=2, batch_size=2))
    assert broken.model.rows_seen == [2]


def test_reporter_is_called_after_every_batch_and_can_cancel(tiny_model: LoadedModel) -> None:
    # Given a recording reporter and one that cancels after the first batch
    calls: list[tuple[int, int]] = []

    def record(*, step: int, total: int, message: str = "", metrics: dict[str, float] | None = None) -> None:
        calls.append((step, total))

    def cancel(*, step: int, total: int, message: str = "", metrics: dict[str, float] | None = None) -> None:
        raise Cancelled

    requests = [SampleRequest(prompt="The", seed=seed) for seed in range(5)]
    config = SamplingConfig(max_new_tokens=1, batch_size=2)  # rows finish in pairs

    # When
    generate_samples(tiny_model, requests, config=config, reporter=record)

    # Then
    assert calls == [(2, 5), (4, 5), (5, 5)]
    with pytest.raises(Cancelled):
        generate_samples(tiny_model, requests, config=config, reporter=cancel)


def test_prompt_that_fills_the_context_is_refused(tiny_model: LoadedModel) -> None:
    # Given a prompt longer than the tiny model's 64-token context
    prompt = "The tide came in at dawn and wrote its name along the sand, " * 4

    # When / then
    with pytest.raises(ValueError, match="context is 64"):
        generate_samples(tiny_model, [SampleRequest(prompt=prompt, seed=0)], config=CONFIG)


def test_rows_stop_at_the_context_length(tiny_model: LoadedModel) -> None:
    # Given a prompt that leaves little room in the tiny model's 64-token context
    prompt = "The tide came in at dawn and wrote its name along the sand. The tide went out at noon and"
    room = 64 - len(encode_prompt(tiny_model.tokenizer, prompt))
    assert 0 < room < 20

    # When more new tokens are asked for than fit
    samples = generate_samples(
        tiny_model,
        [SampleRequest(prompt=prompt, seed=seed) for seed in range(4)],
        config=SamplingConfig(max_new_tokens=64),
    ).samples

    # Then each row stops when the context is full (or earlier, by EOS)
    for sample in samples:
        assert (sample.finish_reason, sample.token_count) == ("length", room) or (
            sample.finish_reason == "eos" and sample.token_count < room
        )


def test_load_model_is_cached(tiny_model_dir: object) -> None:
    # When the same directory is loaded twice
    first = load_model(str(tiny_model_dir), device="cpu")
    second = load_model(str(tiny_model_dir), device="cpu", dtype="float32")

    # Then the second call returns the loaded model, in eval mode on the CPU in float32
    assert second is first
    assert first.model.training is False
    assert (first.device, first.dtype) == (torch.device("cpu"), torch.float32)


def test_config_rejects_invalid_values() -> None:
    with pytest.raises(ValueError, match="top_p"):
        SamplingConfig(top_p=0)
    with pytest.raises(ValueError, match="stop"):
        SamplingConfig(stop=("",))
    with pytest.raises(ValueError, match="temperature"):
        SamplingConfig(temperature=-1)


def test_on_sample_hears_each_sample_once_as_soon_as_it_is_finished(tiny_model: LoadedModel) -> None:
    # Given more requests than rows in flight, of very different lengths
    requests = [
        SampleRequest(prompt=p, seed=s) for p in ("The tide", "Rain on a roof at night") for s in range(5)
    ]
    heard: list[tuple[int, Any]] = []

    # When
    result = generate_samples(
        tiny_model,
        requests,
        config=SamplingConfig(max_new_tokens=12, batch_size=3),
        on_sample=lambda index, sample: heard.append((index, sample)),
    )

    # Then every request is heard once, with the sample the result holds for it
    assert sorted(index for index, _ in heard) == list(range(len(requests)))
    assert all(result.samples[index] == sample for index, sample in heard)


def test_generation_config_supplies_end_tokens_and_the_authors_defaults(tiny_model: LoadedModel) -> None:
    model = tiny_model.model
    saved = model.generation_config
    try:
        model.generation_config = saved.__class__(
            **{
                **saved.to_diff_dict(),
                "top_p": 0.5,
                "max_new_tokens": 7,
                "eos_token_id": [saved.eos_token_id, 17],
            }
        )
        assert generation_defaults(model) == {"top_p": 0.5, "max_new_tokens": 7}
        assert 17 in _eos_ids(model, tiny_model.tokenizer)
    finally:
        model.generation_config = saved
    # transformers' own defaults (top_k=50, temperature=1) are not mistaken for the authors' choice
    assert generation_defaults(model) == {}
