"""Simulated raters for dry runs and benchmarks: they rate over the REST API as a person would.

Each simulated person logs in with an API token, asks for the next pair, reads both texts, lets
an oracle score them, waits as long as reading takes (simulated: the active time is reported, not
slept), and votes. With probability ``noise`` the answer is random (Christiano et al. assumed
10 % random labels). The oracle is pluggable: any ``module:function`` taking (prompt, text) and
returning a score; the higher score wins, equal scores tie.
"""

from __future__ import annotations

import importlib
import json
import random
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib import error as urlerror
from urllib import request as urlrequest

Oracle = Callable[[str, str], float]
EMPTY_RETRIES = 3
EMPTY_RETRY_SECONDS = 0.3

THEME_WORDS = frozenset(
    [
        "sea",
        "tide",
        "tides",
        "wave",
        "waves",
        "salt",
        "shore",
        "harbour",
        "harbor",
        "ship",
        "ships",
        "boat",
        "boats",
        "sail",
        "sails",
        "water",
        "river",
        "rivers",
        "rain",
        "storm",
        "wind",
        "lighthouse",
        "light",
        "lamp",
        "moon",
        "stars",
        "star",
        "night",
    ]
)
_WORD = re.compile(r"[a-z']+")


def theme_oracle(prompt: str, text: str) -> float:
    """Share of the text's words that belong to a planted theme (the sea and the night sky).

    A preference no training step sees directly: only the raters' votes carry it, so a rising
    oracle score of new versions shows the loop learned from the votes.
    """
    words = _WORD.findall(text.lower())
    if not words:
        return 0.0
    return sum(word in THEME_WORDS for word in words) / len(words)


def length_oracle(prompt: str, text: str) -> float:
    """Longer is better: the bias raters are known to have, as a stress test for style control."""
    return float(len(text.split()))


def load_oracle(path: str) -> Oracle:
    """``module:function`` or one of the built-in names ``theme`` and ``length``."""
    builtin = {"theme": theme_oracle, "length": length_oracle}
    if path in builtin:
        return builtin[path]
    module_name, _, function_name = path.partition(":")
    if not function_name:
        raise ValueError(f"oracle {path!r}: use module:function, 'theme' or 'length'")
    oracle = getattr(importlib.import_module(module_name), function_name, None)
    if not callable(oracle):
        raise ValueError(f"oracle {path!r} is not a function")
    return oracle  # type: ignore[no-any-return]


@dataclass
class RaterStats:
    votes: int = 0
    random_votes: int = 0
    agreed_with_oracle: int = 0
    retried: int = 0
    no_work_reason: str = ""
    errors: list[str] = field(default_factory=list)


class ApiClient:
    def __init__(self, base_url: str, token: str, timeout: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.headers = {"Authorization": f"Token {token}", "Content-Type": "application/json"}
        self.timeout = timeout

    def post(self, path: str, body: dict[str, object] | None = None) -> tuple[int, dict[str, object]]:
        data = json.dumps(body or {}).encode()
        request = urlrequest.Request(f"{self.base_url}{path}", data=data, headers=self.headers, method="POST")
        try:
            with urlrequest.urlopen(request, timeout=self.timeout) as response:
                return response.status, json.loads(response.read() or b"{}")
        except urlerror.HTTPError as error:
            payload = error.read()
            try:
                return error.code, json.loads(payload or b"{}")
            except json.JSONDecodeError:
                return error.code, {"error": payload.decode(errors="replace")[:200]}


def rate(
    *, client: ApiClient, study_slug: str, oracle: Oracle, votes: int, noise: float, rng: random.Random
) -> RaterStats:
    """Vote up to ``votes`` times (fewer when the study runs out of pairs for this rater)."""
    stats = RaterStats()
    base = f"/api/studies/{study_slug}"
    empty_answers = 0
    while stats.votes < votes:
        status, body = client.post(f"{base}/assignments/next/")
        if status != 200:
            stats.errors.append(f"next: HTTP {status} {body.get('error', '')}")
            break
        assignment = body.get("assignment")
        if not isinstance(assignment, dict):
            # "empty" can be momentary: the last free pair was locked by another rater taking it
            # (assignment skips locked rows rather than wait). A person would look again.
            if body.get("no_work") == "empty" and empty_answers < EMPTY_RETRIES:
                empty_answers += 1
                time.sleep(EMPTY_RETRY_SECONDS)
                continue
            stats.no_work_reason = str(body.get("no_work") or "")
            break
        empty_answers = 0
        prompt, left, right = str(assignment["prompt"]), str(assignment["left"]), str(assignment["right"])
        left_score, right_score = oracle(prompt, left), oracle(prompt, right)
        preferred = "left" if left_score > right_score else "right" if right_score > left_score else "tie"
        if rng.random() < noise:
            choice = rng.choice(["left", "right"])
            stats.random_votes += 1
        else:
            choice = preferred
        stats.agreed_with_oracle += choice == preferred
        words = len(left.split()) + len(right.split())
        vote = {
            "choice": choice,
            # Unique per vote, never derived from the seed: keys are global, and two runs with the
            # same seed must not collide. A retry below reuses it, so a retried vote counts once.
            "idempotency_key": uuid.uuid4().hex,
            "active_seconds": round(3.0 + words / 4.0 + rng.random() * 4.0, 2),  # ~240 words a minute
        }
        status, body = client.post(f"{base}/assignments/{assignment['token']}/judgment/", vote)
        if status >= 500 or status == 0:  # a retried request with the same key stores one vote
            stats.retried += 1
            status, body = client.post(f"{base}/assignments/{assignment['token']}/judgment/", vote)
        if status not in (200, 201):
            stats.errors.append(f"vote: HTTP {status} {body.get('error', '')}")
            break
        stats.votes += 1
        if body.get("rater_status") == "paused":
            stats.no_work_reason = f"paused: {body.get('paused_reason', '')}"
            break
    return stats
