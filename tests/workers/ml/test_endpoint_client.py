"""The endpoint client's pure parts: request bodies, Retry-After, backoff, answer checks. Its
HTTP behaviour is tested against a real server process in tests/server/generators."""

from __future__ import annotations

import email.utils
import time

import pytest

from workers.ml.endpoint_client import (
    MAX_BACKOFF_SECONDS,
    EndpointConfig,
    EndpointDecoding,
    EndpointRequest,
    MalformedAnswer,
    backoff_delay,
    endpoint_url,
    parse_answer,
    request_body,
    retry_after_seconds,
)


def test_request_bodies_of_both_modes_carry_the_seed_and_only_the_parameters_set() -> None:
    decoding = EndpointDecoding(temperature=0.7, max_tokens=32, stop=("\n\n",))
    request = EndpointRequest(prompt="The sea", seed=3)
    completions = EndpointConfig(base_url="http://h:8000/v1/", model="m")
    chat = EndpointConfig(base_url="http://h:8000/v1", model="m", mode="chat")
    assert endpoint_url(completions) == "http://h:8000/v1/completions"
    assert endpoint_url(chat) == "http://h:8000/v1/chat/completions"
    assert request_body(completions, decoding, request) == {
        "model": "m",
        "max_tokens": 32,
        "temperature": 0.7,
        "stop": ["\n\n"],
        "seed": 3,
        "n": 1,
        "prompt": "The sea",
    }
    assert request_body(chat, decoding, request)["messages"] == [{"role": "user", "content": "The sea"}]
    assert "prompt" not in request_body(chat, decoding, request)


def test_retry_after_is_read_in_milliseconds_seconds_or_as_a_date() -> None:
    assert retry_after_seconds({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    assert retry_after_seconds({"retry-after": "2"}) == 2.0
    assert retry_after_seconds({"retry-after": "-5"}) == 0.0
    later = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 28 <= retry_after_seconds({"retry-after": later}) <= 30  # type: ignore[operator]
    assert retry_after_seconds({"retry-after": "soon"}) is None
    assert retry_after_seconds({}) is None


def test_backoff_doubles_with_jitter_and_the_server_s_wait_comes_first() -> None:
    config = EndpointConfig(base_url="http://h/v1", model="m", backoff_seconds=1.0)
    for retry, step in ((1, 1.0), (2, 2.0), (3, 4.0)):
        delays = [backoff_delay(config, retry, None) for _ in range(200)]
        assert step / 2 <= min(delays) and max(delays) <= step and len(set(delays)) > 1
    assert backoff_delay(config, 1, 7.5) == 7.5
    assert backoff_delay(config, 1, 10_000) == MAX_BACKOFF_SECONDS
    assert backoff_delay(config, 30, None) <= MAX_BACKOFF_SECONDS


def test_a_good_answer_gives_its_text_and_only_checked_provenance() -> None:
    raw = (
        b'{"id": "cmpl-1", "choices": [{"text": " waves", "finish_reason": "length"}], '
        b'"usage": {"prompt_tokens": 2, "completion_tokens": 5, "total_tokens": 7, "extra": {"x": 1}}}'
    )
    assert parse_answer(raw, "completions") == (
        " waves",
        "length",
        "cmpl-1",
        {"prompt_tokens": 2, "completion_tokens": 5, "total_tokens": 7},
    )
    chat = (
        b'{"choices": [{"message": {"role": "assistant", "content": "Hi"}}], '
        b'"usage": {"completion_tokens": true}}'
    )
    assert parse_answer(chat, "chat") == ("Hi", None, None, {})


@pytest.mark.parametrize(
    ("raw", "mode", "reason"),
    [
        (b"<html>502</html>", "completions", "the answer is not JSON"),
        (b'{"choices": [{"text": NaN}]}', "completions", "the answer is not JSON (NaN is not a number)"),
        (b"\xff\xfe", "completions", "the answer is not UTF-8"),
        (b"[1, 2]", "completions", "the answer is not a JSON object"),
        (b'{"choices": []}', "completions", "the answer has no choices"),
        (b'{"object": "error"}', "completions", "the answer has no choices"),
        (b'{"choices": ["x"]}', "completions", "choices[0] is not an object"),
        (b'{"choices": [{"text": null}]}', "completions", "choices[0].text is not text"),
        (b'{"choices": [{"text": "ok"}]}', "chat", "choices[0].message.content is not text"),
        (b'{"choices": [{"text": "\\ud800"}]}', "completions", "choices[0].text contains a lone surrogate"),
    ],
)
def test_malformed_answers_say_what_is_wrong(raw: bytes, mode: str, reason: str) -> None:
    with pytest.raises(MalformedAnswer) as refused:
        parse_answer(raw, mode)  # type: ignore[arg-type]
    assert str(refused.value).startswith(reason)
