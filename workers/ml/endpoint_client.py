"""Sampling through an OpenAI-compatible HTTP endpoint (vLLM, SGLang, TGI, llama.cpp server,
Ollama, hosted APIs): the other generator kind next to the local sampler (``sampling.py``).

One request per (prompt, seed), ``concurrency`` of them in flight, each answered by a
``EndpointSample`` or an ``EndpointFailure`` as soon as it is done, so that the caller stores in
chunks and a crash loses at most the requests in flight. The seed of each request is the sample's
seed: servers that honour ``seed`` (vLLM, SGLang, llama.cpp, Ollama, TGI) then answer the same
(prompt, seed, settings) with the same text, as the local sampler does.

Only the standard library: httpx is not in the worker image, and threads are enough for I/O-bound
requests (each waits on a socket, not on the interpreter).

The API key is read by the caller from the worker's environment and passed in; it goes into the
Authorization header and nowhere else: failure reasons are scrubbed of it (some servers echo the
key they refused), and it is not part of any value this module returns.
"""

from __future__ import annotations

import email.utils
import http.client
import json
import random
import re
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any, Literal

EndpointMode = Literal["chat", "completions"]

MAX_RESPONSE_BYTES = 16 * 1024 * 1024  # one completion; a larger answer is refused, not buffered
MAX_BACKOFF_SECONDS = 60.0  # the longest wait between two attempts, Retry-After included
REASON_CHARACTERS = 300  # of a server's error body kept in a failure reason

_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


@dataclass(frozen=True)
class EndpointConfig:
    """Where and how to ask; stored with the generator version (the key's *name* only)."""

    base_url: str
    """Up to and including the API version, e.g. ``http://localhost:8000/v1``; the client appends
    ``/completions`` or ``/chat/completions``."""

    model: str
    """The ``model`` field of each request: the name the server serves the model under."""

    mode: EndpointMode = "completions"
    """"completions" sends the prompt as text to continue (base models); "chat" sends it as one
    user message (instruction-tuned models, hosted APIs that have no completions route)."""

    api_key_env: str = ""
    """Name of the worker's environment variable that holds the API key; empty for servers
    without authentication (a local vLLM or Ollama)."""

    concurrency: int = 4
    """Requests in flight at once. Inference servers batch concurrent requests, so more is
    faster up to the server's batch size; hosted APIs limit requests per minute (429s)."""

    timeout_seconds: float = 60.0
    """Per attempt: connecting plus the wait for each read of the answer."""

    max_retries: int = 4
    """Attempts after the first on 429, 5xx, timeouts and connection errors (other answers are
    not retried: a 400 or 401 says the same thing again)."""

    backoff_seconds: float = 1.0
    """Wait before the first retry; doubles with each further one (with jitter), capped at
    ``MAX_BACKOFF_SECONDS``. A Retry-After header from the server takes precedence."""


@dataclass(frozen=True)
class EndpointDecoding:
    """Sampling parameters sent with every request (None: not sent, the server's default)."""

    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int = 64  # the local sampler's default; servers' own defaults range from 16 to unlimited
    stop: tuple[str, ...] = ()

    def parameters(self) -> dict[str, Any]:
        """The parameters as sent (and as recorded with each sample)."""
        sent: dict[str, Any] = {"max_tokens": self.max_tokens}
        if self.temperature is not None:
            sent["temperature"] = self.temperature
        if self.top_p is not None:
            sent["top_p"] = self.top_p
        if self.stop:
            sent["stop"] = list(self.stop)
        return sent


@dataclass(frozen=True)
class EndpointRequest:
    prompt: str
    seed: int
    key: Any = None
    """The caller's handle for this request (e.g. the prompt row), returned with its answer."""


@dataclass(frozen=True)
class EndpointSample:
    request: EndpointRequest
    text: str
    """The completion as the server sent it (the caller normalises it for storage)."""
    finish_reason: str | None
    response_id: str | None
    usage: dict[str, int]
    """prompt_tokens / completion_tokens / total_tokens, those the server reported."""
    latency_s: float
    """Seconds of the attempt that succeeded (earlier attempts and waits not included)."""
    attempts: int

    @property
    def token_count(self) -> int | None:
        return self.usage.get("completion_tokens")


@dataclass(frozen=True)
class EndpointFailure:
    request: EndpointRequest
    reason: str
    """In plain words, e.g. "HTTP 500 after 5 attempts: ..." or "malformed answer: no choices"."""
    attempts: int


EndpointResult = EndpointSample | EndpointFailure


class MalformedAnswer(ValueError):
    """A 200 answer that is not an OpenAI completion."""


@dataclass
class _Attempt:
    """What one HTTP exchange gave: a parsed body, or why to retry / give up."""

    raw: bytes | None = None
    retryable: bool = False
    reason: str = ""
    retry_after: float | None = None
    latency_s: float = 0.0


def endpoint_url(config: EndpointConfig) -> str:
    route = "/chat/completions" if config.mode == "chat" else "/completions"
    return config.base_url.rstrip("/") + route


def request_body(
    config: EndpointConfig, decoding: EndpointDecoding, request: EndpointRequest
) -> dict[str, Any]:
    body: dict[str, Any] = {"model": config.model, **decoding.parameters(), "seed": request.seed, "n": 1}
    if config.mode == "chat":
        body["messages"] = [{"role": "user", "content": request.prompt}]
    else:
        body["prompt"] = request.prompt
    return body


def retry_after_seconds(headers: Any) -> float | None:
    """The server's requested wait: ``retry-after-ms`` (OpenAI, vLLM behind some gateways), else
    ``Retry-After`` as seconds or an HTTP date; None when absent or unreadable."""
    if headers is None:
        return None
    milliseconds = headers.get("retry-after-ms")
    if milliseconds:
        try:
            return max(0.0, float(milliseconds) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def backoff_delay(config: EndpointConfig, retry: int, retry_after: float | None) -> float:
    """Seconds to wait before retry number ``retry`` (1-based): the server's Retry-After when it
    gave one, else exponential with jitter (half to all of the step), so that many clients that
    failed together do not come back together."""
    if retry_after is not None:
        return min(retry_after, MAX_BACKOFF_SECONDS)
    step = min(config.backoff_seconds * 2 ** (retry - 1), MAX_BACKOFF_SECONDS)
    return step * random.uniform(0.5, 1.0)


def _scrub(text: str, secret: str) -> str:
    return text.replace(secret, "***") if secret else text


def _error_excerpt(raw: bytes) -> str:
    """The server's own words about an error: ``error.message`` of a JSON body, else the text."""
    text = raw[:4096].decode("utf-8", errors="replace")
    try:
        parsed = json.loads(text)
    except ValueError:
        parsed = None
    if isinstance(parsed, dict):
        error = parsed.get("error", parsed.get("message", parsed.get("detail")))
        if isinstance(error, dict):
            error = error.get("message", error)
        if isinstance(error, str):
            text = error
    text = " ".join(text.split())
    return text[:REASON_CHARACTERS] + ("…" if len(text) > REASON_CHARACTERS else "")


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number")


def parse_answer(raw: bytes, mode: EndpointMode) -> tuple[str, str | None, str | None, dict[str, int]]:
    """(text, finish_reason, response id, usage) of an answer, or ``MalformedAnswer`` saying what
    is wrong. Only these checked values leave here: nothing else of the answer is stored."""
    try:
        body = json.loads(raw.decode("utf-8"), parse_constant=_refuse_constant)
    except UnicodeDecodeError:
        raise MalformedAnswer("the answer is not UTF-8") from None
    except RecursionError:
        raise MalformedAnswer("the answer is not JSON (nested too deeply)") from None
    except ValueError as error:
        raise MalformedAnswer(f"the answer is not JSON ({str(error)[:120]})") from None
    if not isinstance(body, dict):
        raise MalformedAnswer("the answer is not a JSON object")
    choices = body.get("choices")
    if not isinstance(choices, list) or not choices:
        raise MalformedAnswer("the answer has no choices")
    choice = choices[0]
    if not isinstance(choice, dict):
        raise MalformedAnswer("choices[0] is not an object")
    if mode == "chat":
        message = choice.get("message")
        text = message.get("content") if isinstance(message, dict) else None
        where = "choices[0].message.content"
    else:
        text = choice.get("text")
        where = "choices[0].text"
    if not isinstance(text, str):
        raise MalformedAnswer(f"{where} is not text")
    if _LONE_SURROGATE.search(text):
        raise MalformedAnswer(f"{where} contains a lone surrogate, which is not a character")
    finish_reason = choice.get("finish_reason")
    if not isinstance(finish_reason, str) or _LONE_SURROGATE.search(finish_reason):
        finish_reason = None
    response_id = body.get("id")
    if not isinstance(response_id, str) or _LONE_SURROGATE.search(response_id) or "\x00" in response_id:
        response_id = None
    else:
        response_id = response_id[:200]
    usage_in = body.get("usage")
    usage: dict[str, int] = {}
    if isinstance(usage_in, dict):
        for name in ("prompt_tokens", "completion_tokens", "total_tokens"):
            value = usage_in.get(name)
            if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**31:
                usage[name] = value
    return text, finish_reason, response_id, usage


def _attempt(url: str, payload: bytes, headers: dict[str, str], timeout: float, api_key: str) -> _Attempt:
    began = time.perf_counter()
    request = urllib.request.Request(url, data=payload, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            raw = response.read(MAX_RESPONSE_BYTES + 1)
            declared = response.headers.get("Content-Length")
    except urllib.error.HTTPError as error:
        status = error.code
        try:
            body = error.read(64 * 1024) if error.fp else b""
        except (OSError, http.client.HTTPException):
            body = b""
        excerpt = _scrub(_error_excerpt(body), api_key)
        retryable = status == 429 or status >= 500
        return _Attempt(
            retryable=retryable,
            reason=f"HTTP {status}" + (f": {excerpt}" if excerpt else ""),
            retry_after=retry_after_seconds(error.headers) if retryable else None,
        )
    except TimeoutError:
        return _Attempt(retryable=True, reason=f"no answer within {timeout:g} s")
    except urllib.error.URLError as error:
        if isinstance(error.reason, TimeoutError | socket.timeout):
            return _Attempt(retryable=True, reason=f"no answer within {timeout:g} s")
        return _Attempt(retryable=True, reason=_scrub(f"connection failed ({error.reason})", api_key))
    except (ConnectionError, OSError) as error:  # reset mid-answer, a half-closed socket
        return _Attempt(retryable=True, reason=_scrub(f"connection failed ({error})", api_key))
    except http.client.HTTPException as error:  # an answer cut short, a garbled status line
        return _Attempt(retryable=True, reason=f"incomplete answer ({type(error).__name__})")
    except ValueError as error:  # a garbled header
        return _Attempt(retryable=False, reason=f"malformed answer: {error}"[:REASON_CHARACTERS])
    # read(n) returns what arrived when the connection drops early; the declared length tells.
    if declared and declared.isdigit() and len(raw) < int(declared) <= MAX_RESPONSE_BYTES:
        return _Attempt(retryable=True, reason=f"incomplete answer ({len(raw)} of {declared} bytes)")
    latency = time.perf_counter() - began
    if len(raw) > MAX_RESPONSE_BYTES:
        return _Attempt(reason=f"malformed answer: larger than {MAX_RESPONSE_BYTES:,} bytes")
    return _Attempt(raw=raw, latency_s=latency)


def _ask(
    config: EndpointConfig,
    decoding: EndpointDecoding,
    request: EndpointRequest,
    *,
    api_key: str,
    stopped: threading.Event,
    sleep: Callable[[float], bool],
) -> EndpointResult:
    url = endpoint_url(config)
    payload = json.dumps(request_body(config, decoding, request)).encode("utf-8")
    headers = {"Content-Type": "application/json", "Accept": "application/json", "User-Agent": "lovelace"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    attempts = 0
    while True:
        attempts += 1
        outcome = _attempt(url, payload, headers, config.timeout_seconds, api_key)
        if outcome.raw is not None:
            try:
                text, finish_reason, response_id, usage = parse_answer(outcome.raw, config.mode)
            except MalformedAnswer as error:
                return EndpointFailure(
                    request=request, reason=f"malformed answer: {error}", attempts=attempts
                )
            return EndpointSample(
                request=request,
                text=text,
                finish_reason=finish_reason,
                response_id=response_id,
                usage=usage,
                latency_s=outcome.latency_s,
                attempts=attempts,
            )
        if not outcome.retryable or attempts > config.max_retries or stopped.is_set():
            plural = "attempt" if attempts == 1 else "attempts"
            return EndpointFailure(
                request=request, reason=f"{outcome.reason} (after {attempts} {plural})", attempts=attempts
            )
        if not sleep(backoff_delay(config, attempts, outcome.retry_after)):
            return EndpointFailure(request=request, reason="stopped before a retry", attempts=attempts)


def endpoint_generate(
    config: EndpointConfig,
    decoding: EndpointDecoding,
    requests: Sequence[EndpointRequest],
    *,
    api_key: str = "",
) -> Iterator[EndpointResult]:
    """Ask for every request, ``config.concurrency`` at a time; yield each result as it completes
    (not in request order). Closing the iterator early (a cancelled job) stops queued requests and
    retries; requests in flight end at their timeout."""
    stopped = threading.Event()

    def sleep(seconds: float) -> bool:
        return not stopped.wait(seconds)  # woken early when the caller stops

    executor = ThreadPoolExecutor(max_workers=config.concurrency, thread_name_prefix="endpoint")
    try:
        pending: set[Future[EndpointResult]] = set()
        queue = iter(requests)
        for request in queue:  # fill the pool, then one new request per completed one
            pending.add(
                executor.submit(
                    _ask, config, decoding, request, api_key=api_key, stopped=stopped, sleep=sleep
                )
            )
            if len(pending) >= config.concurrency:
                break
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                for request in queue:
                    pending.add(
                        executor.submit(
                            _ask, config, decoding, request, api_key=api_key, stopped=stopped, sleep=sleep
                        )
                    )
                    break
                yield future.result()
    finally:
        stopped.set()
        executor.shutdown(wait=False, cancel_futures=True)
