"""A small OpenAI-compatible server over a local model: ``/v1/completions``,
``/v1/chat/completions`` and ``/v1/models``, answered by the local sampler (seeded, so the same
prompt, seed and settings give the same text).

It is what the endpoint generator kind is tested against, and a way to try that kind in the demo
without an inference server::

    python -m workers.ml.openai_server --model var/models/demo --port 8011
    # then register an endpoint version with base URL http://127.0.0.1:8011/v1

One request is sampled at a time (a lock): it is a test and demo server, not an inference server.
With ``--simulated-latency SECONDS`` and no model it answers every request after that delay, all
requests in parallel, with words drawn from a hash of (prompt, seed): a stand-in for an inference
server that batches concurrent requests, for measuring the client's concurrency
(``bench/generation.py``), never for judging texts.
With ``--faults`` it also obeys ``POST /control/faults``, which makes chosen requests fail the way
real servers do (429 with Retry-After, 500, no answer, malformed answers), and it reports every
request it received at ``GET /control/requests``; see ``Fault``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import threading
import time
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from workers.ml.sampling import (
    LoadedModel,
    SampleRequest,
    SamplingConfig,
    encode_prompt,
    generate_samples,
    load_model,
)

FINISH_REASONS = {"eos": "stop", "stop": "stop", "length": "length"}


@dataclass
class Fault:
    """Answer requests whose prompt contains ``prompt`` (and whose seed is ``seed``, when given)
    with ``answer`` instead of a completion, ``times`` times (None: always).

    answer: "429" (with ``retry_after`` seconds in Retry-After when given), "500", "hang" (sleep
    ``hang_seconds`` before answering normally), "truncated" (the connection drops mid-answer),
    "not_json", "no_choices", "wrong_type" (the text is a number), "text" (a normal answer whose
    completion is ``text``: a scripted model, e.g. a judge that replies "1")."""

    prompt: str
    answer: str
    seed: int | None = None
    times: int | None = None
    retry_after: str | None = None
    hang_seconds: float = 5.0
    text: str = ""

    def matches(self, prompt: str, seed: Any) -> bool:
        return self.prompt in prompt and (self.seed is None or self.seed == seed) and self.times != 0


class OpenAIServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self,
        address: tuple[str, int],
        *,
        model: LoadedModel | None,
        model_name: str,
        api_key: str,
        faults: bool,
        simulated_latency: float | None = None,
    ) -> None:
        super().__init__(address, Handler)
        if model is None and simulated_latency is None:
            raise ValueError("a model, or a simulated latency")
        self.model = model
        self.simulated_latency = simulated_latency
        self.model_name = model_name
        self.api_key = api_key
        self.faults_enabled = faults
        self.faults: list[Fault] = []
        self.received: list[dict[str, Any]] = []
        self.lock = threading.Lock()  # one generation at a time; also guards faults and received

    def fault_for(self, prompt: str, seed: Any) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                if fault.matches(prompt, seed):
                    if fault.times is not None:
                        fault.times -= 1
                    return fault
        return None


class Handler(BaseHTTPRequestHandler):
    server: OpenAIServer

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet: tests read what they need from /control/requests

    def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (its timeout): nothing to answer

    def _json(self, status: int, value: Any, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(value).encode("utf-8"), headers)

    def _error(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        self._json(status, {"error": {"message": message, "code": status}}, headers)

    def _body(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        return json.loads(self.rfile.read(length) or b"null")

    def do_GET(self) -> None:
        if self.path == "/v1/models":
            self._json(200, {"object": "list", "data": [{"id": self.server.model_name, "object": "model"}]})
        elif self.path == "/control/requests" and self.server.faults_enabled:
            with self.server.lock:
                self._json(200, {"requests": list(self.server.received)})
        else:
            self._error(404, f"no route {self.path}")

    def do_POST(self) -> None:
        if self.server.faults_enabled and self.path == "/control/faults":
            faults = [Fault(**fault) for fault in self._body()["faults"]]
            with self.server.lock:
                self.server.faults = faults
                self.server.received.clear()
            self._json(200, {"faults": len(faults)})
        elif self.path in ("/v1/completions", "/v1/chat/completions"):
            self._complete(chat=self.path.endswith("/chat/completions"))
        else:
            self._error(404, f"no route {self.path}")

    def _complete(self, *, chat: bool) -> None:
        try:
            body = self._body()
        except ValueError:
            self._error(400, "the request body is not JSON")
            return
        if chat:
            messages = body.get("messages") or []
            prompt = "\n".join(str(message.get("content", "")) for message in messages)
        else:
            prompt = body.get("prompt", "")
        seed = body.get("seed")
        authorised = not self.server.api_key or (
            self.headers.get("Authorization") == f"Bearer {self.server.api_key}"
        )
        with self.server.lock:
            self.server.received.append(
                {"path": self.path, "prompt": prompt, "seed": seed, "authorised": authorised}
            )
        if not authorised:
            # Echoes what it was given, as some hosted APIs do: clients must not log it.
            given = self.headers.get("Authorization", "").removeprefix("Bearer ")
            self._error(401, f"Incorrect API key provided: {given}")
            return
        if body.get("model") != self.server.model_name:
            self._error(404, f"The model {body.get('model')!r} does not exist.")
            return
        fault = self.server.fault_for(prompt, seed) if self.server.faults_enabled else None
        if fault is not None:
            if fault.answer == "429":
                headers = {"Retry-After": fault.retry_after} if fault.retry_after else {}
                self._error(429, "Rate limit reached; slow down.", headers)
                return
            if fault.answer == "500":
                self._error(500, "The server had an error while processing your request.")
                return
            if fault.answer == "hang":
                time.sleep(fault.hang_seconds)
            elif fault.answer == "not_json":
                self._send(200, b"<html>Bad gateway</html>")
                return
            elif fault.answer == "truncated":  # the connection drops mid-answer
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", "1000")
                self.end_headers()
                self.wfile.write(b'{"id": "cmpl-cut", "choi')
                return
            elif fault.answer == "no_choices":
                self._json(200, {"id": "cmpl-empty", "object": "text_completion", "choices": []})
                return
            elif fault.answer == "text":
                scripted: dict[str, Any] = (
                    {"message": {"role": "assistant", "content": fault.text}}
                    if chat
                    else {"text": fault.text}
                )
                self._json(
                    200,
                    {
                        "id": f"scripted-{uuid.uuid4().hex}",
                        "choices": [{"index": 0, "finish_reason": "stop", **scripted}],
                        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
                    },
                )
                return
            elif fault.answer == "wrong_type":
                field = {"message": {"role": "assistant", "content": 42}} if chat else {"text": 42}
                self._json(200, {"id": "cmpl-odd", "choices": [{"index": 0, **field}]})
                return
        if self.server.model is None:
            self._simulated(prompt=prompt, seed=seed, body=body, chat=chat)
            return
        try:
            config = SamplingConfig(
                temperature=float(body.get("temperature", 1.0)),
                top_p=float(body.get("top_p", 1.0)),
                max_new_tokens=int(body.get("max_tokens") or 16),
                stop=tuple([body["stop"]] if isinstance(body.get("stop"), str) else body.get("stop") or ()),
                batch_size=1,
            )
        except (TypeError, ValueError) as error:
            self._error(400, f"invalid sampling parameters: {error}")
            return
        model = self.server.model
        with self.server.lock:
            sample = generate_samples(
                model,
                [SampleRequest(prompt=prompt, seed=int(seed or 0))],
                config=config,
            ).samples[0]
            prompt_tokens = len(encode_prompt(model.tokenizer, prompt))
        finish_reason = FINISH_REASONS[sample.finish_reason]
        choice: dict[str, Any] = {"index": 0, "finish_reason": finish_reason, "logprobs": None}
        if chat:
            choice["message"] = {"role": "assistant", "content": sample.text}
        else:
            choice["text"] = sample.text
        self._json(
            200,
            {
                "id": f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex}",
                "object": "chat.completion" if chat else "text_completion",
                "created": int(time.time()),
                "model": self.server.model_name,
                "choices": [choice],
                "usage": {
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": sample.token_count,
                    "total_tokens": prompt_tokens + sample.token_count,
                },
            },
        )

    def _simulated(self, *, prompt: str, seed: Any, body: dict[str, Any], chat: bool) -> None:
        """A stand-in answer after ``simulated_latency`` seconds, concurrent with the others."""
        time.sleep(self.server.simulated_latency or 0.0)
        words = max(1, min(int(body.get("max_tokens") or 16), 256))
        digest = hashlib.sha256(f"{prompt}\x00{seed}".encode()).hexdigest()
        text = " ".join(
            SIMULATED_WORDS[int(digest[i % 60 : i % 60 + 4], 16) % len(SIMULATED_WORDS)] for i in range(words)
        )
        field: dict[str, Any] = (
            {"message": {"role": "assistant", "content": text}} if chat else {"text": text}
        )
        self._json(
            200,
            {
                "id": f"sim-{uuid.uuid4().hex}",
                "object": "chat.completion" if chat else "text_completion",
                "created": int(time.time()),
                "model": self.server.model_name,
                "choices": [{"index": 0, "finish_reason": "length", "logprobs": None, **field}],
                "usage": {"prompt_tokens": len(prompt.split()), "completion_tokens": words,
                          "total_tokens": len(prompt.split()) + words},
            },
        )  # fmt: skip


SIMULATED_WORDS = (
    "the",
    "sea",
    "night",
    "lamp",
    "bread",
    "stone",
    "wind",
    "river",
    "clock",
    "salt",
    "green",
    "slow",
)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="local model directory (required unless --simulated-latency)")
    parser.add_argument(
        "--simulated-latency", type=float, help="no model: answer each request after this many seconds"
    )
    parser.add_argument("--served-model-name", default="demo", help="the name requests must give")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8011, help="0: any free port (printed)")
    parser.add_argument("--api-key-env", default="", help="environment variable holding the key to require")
    parser.add_argument("--faults", action="store_true", help="obey /control/faults (tests)")
    parser.add_argument("--device", default="cpu")
    arguments = parser.parse_args(argv)
    api_key = os.environ[arguments.api_key_env] if arguments.api_key_env else ""
    if not arguments.model and arguments.simulated_latency is None:
        parser.error("give --model, or --simulated-latency for a server without a model")
    model = load_model(arguments.model, device=arguments.device) if arguments.model else None
    server = OpenAIServer(
        (arguments.host, arguments.port),
        model=model,
        model_name=arguments.served_model_name,
        api_key=api_key,
        faults=arguments.faults,
        simulated_latency=arguments.simulated_latency,
    )
    print(f"listening on http://{arguments.host}:{server.server_address[1]}/v1", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
