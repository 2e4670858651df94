"""A real OpenAI-compatible server process for tests (``workers.ml.openai_server`` over the tiny
model), with fault injection and a record of the requests it received."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

SERVER_KEY_ENV = "LOVELACE_TEST_ENDPOINT_KEY"
SERVER_KEY = "sk-test-9f3c1e7a-the-secret-value"  # what the server requires; never to be stored
MODEL_NAME = "tiny-demo"


@dataclass
class OpenAITestServer:
    base_url: str  # .../v1

    def _call(self, path: str, body: Any = None) -> Any:
        root = self.base_url.removesuffix("/v1")
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            root + path,
            data=data,
            headers={"Content-Type": "application/json"},
            method="POST" if data else "GET",
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    def faults(self, *faults: dict[str, Any]) -> None:
        """Replace the faults and forget the requests received so far."""
        self._call("/control/faults", {"faults": list(faults)})

    def received(self) -> list[dict[str, Any]]:
        return self._call("/control/requests")["requests"]


@pytest.fixture(scope="session")
def openai_server_process(tiny_model_dir: Path) -> Iterator[OpenAITestServer]:
    root = Path(__file__).resolve().parents[1]
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "workers.ml.openai_server",
            "--model",
            str(tiny_model_dir),
            "--port",
            "0",
            "--served-model-name",
            MODEL_NAME,
            "--api-key-env",
            SERVER_KEY_ENV,
            "--faults",
        ],
        cwd=root,
        env={**os.environ, SERVER_KEY_ENV: SERVER_KEY},
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.append(process.stdout.readline()), daemon=True)  # type: ignore[union-attr]
    reader.start()
    reader.join(timeout=120)  # torch and transformers import in ~5-10 s on 2 cores
    if not lines or not lines[0].startswith("listening on "):
        process.kill()
        raise RuntimeError(f"the OpenAI test server did not start: {lines}")
    try:
        yield OpenAITestServer(base_url=lines[0].split()[-1])
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture
def openai_server(openai_server_process: OpenAITestServer) -> OpenAITestServer:
    openai_server_process.faults()  # no faults, no requests recorded
    return openai_server_process
