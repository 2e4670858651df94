"""Simulated raters for dry runs and benchmarks: they rate over the REST API as a person would.

Each simulated person logs in with an API token, asks for the next pair, reads both texts, lets
an oracle score them, waits as long as reading takes (simulated: the active time is reported, not
slept), and votes. With probability ``noise`` the answer is random (Christiano et al. assumed
10 % random labels). The oracle is a pure, deterministic function (prompt, text) -> score; the
higher score wins, equal scores tie. ``load_oracle`` resolves a built-in name (``ORACLES``: a
planted theme, length, a garden lexicon, short clauses, distinct-n diversity and a composite of
the last three) or any ``module:function``; ``manage.py simulate_raters`` and ``bench.loop`` both
go through it.
"""

from __future__ import annotations

import itertools
import json
import random
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib import error as urlerror
from urllib import request as urlrequest

from evaluation.named_functions import function_by_name

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
    oracle score of new versions shows the loop learned from the votes. 0.0 for a text with no word.
    """
    words = _WORD.findall(text.lower())
    if not words:
        return 0.0
    return sum(word in THEME_WORDS for word in words) / len(words)


def length_oracle(prompt: str, text: str) -> float:
    """Longer is better (words): the bias raters are known to have, as a stress test for style control."""
    return float(len(text.split()))


def garden_oracle(prompt: str, text: str) -> float:
    """Share of the text's words about gardens and growing things (``GARDEN_WORDS``).

    A topical preference with a lexicon that no other part of the project uses (the ``theme``
    oracle's sea and night sky are the demo's), so the loop cannot have been tuned to it.
    Range [0, 1]; 0.0 for a text with no word.
    """
    words = _WORD.findall(text.lower())
    if not words:
        return 0.0
    return sum(word in GARDEN_WORDS for word in words) / len(words)


def short_clauses_oracle(prompt: str, text: str) -> float:
    """Clause-ending punctuation marks (``, . ; : ! ?``) per word: a style feature that prefers
    short clauses, a clipped rhythm, whatever the text is about.

    Equal to 1 / (mean words per clause) when every clause ends in a mark. Range [0, ∞), in
    practice below 1; 0.0 for a text with no word.
    """
    words = _WORD.findall(text.lower())
    if not words:
        return 0.0
    return len(_CLAUSE_MARK.findall(text)) / len(words)


def diversity_oracle(prompt: str, text: str) -> float:
    """Mean of distinct-1 and distinct-2 over the text's words: prefers texts that do not repeat
    words or word pairs ("the sea, the sea, the sea" scores low).

    Both shares fall with repetition and with nothing else. A text of fewer than
    ``DIVERSITY_MIN_WORDS`` words scores 0.0: the shares of a two-word text are 1 by construction,
    and without the floor the oracle would simply prefer the shortest text. Range [0, 1].
    """
    words = _WORD.findall(text.lower())
    if len(words) < DIVERSITY_MIN_WORDS:
        return 0.0
    bigrams = list(itertools.pairwise(words))
    return (len(set(words)) / len(words) + len(set(bigrams)) / len(bigrams)) / 2


def composite_oracle(prompt: str, text: str) -> float:
    """A weighted sum of the garden, short-clauses and diversity oracles, each mapped from its
    typical range onto [0, 1] and clipped (``COMPOSITE_PARTS``: weight, oracle, low, high), so
    that the parts count as their weights say and none wins alone by an extreme value. Prefers
    texts about gardens, in short clauses, without repetition. Range [0, 1]; 0.0 for no word.
    """
    return sum(
        weight * min(max((oracle(prompt, text) - low) / (high - low), 0.0), 1.0)
        for weight, oracle, low, high in COMPOSITE_PARTS
    )


GARDEN_WORDS = frozenset(
    [
        "garden",
        "gardens",
        "gardener",
        "gardeners",
        "tree",
        "trees",
        "leaf",
        "leaves",
        "flower",
        "flowers",
        "seed",
        "seeds",
        "root",
        "roots",
        "grass",
        "field",
        "fields",
        "bee",
        "bees",
        "apple",
        "apples",
        "orchard",
        "weeds",
        "bloom",
        "blossom",
        "green",
        "spring",
        "summer",
        "autumn",
        "hill",
        "hills",
        "soil",
        "branch",
        "branches",
        "rose",
        "roses",
        "fruit",
        "grow",
        "grew",
        "bird",
        "birds",
        "sun",
    ]
)
_CLAUSE_MARK = re.compile(r"[,.;:!?]")
DIVERSITY_MIN_WORDS = 4
# (weight, oracle, low, high): low and high are about the 10th and 90th percentiles of the oracle
# over the first 356 paragraphs of the demo corpus (workers/ml/corpus/lovelace.txt; garden 0 / 0.083,
# short clauses 0.083 / 0.214, diversity 0.81 / 0.98), rounded outward, so each part spans [0, 1] on
# ordinary text instead of one part (diversity, mostly 0.8-1) adding a near-constant.
COMPOSITE_PARTS: tuple[tuple[float, Oracle, float, float], ...] = (
    (0.4, garden_oracle, 0.0, 0.1),
    (0.3, short_clauses_oracle, 0.05, 0.25),
    (0.3, diversity_oracle, 0.8, 1.0),
)

ORACLES: dict[str, Oracle] = {
    "theme": theme_oracle,
    "length": length_oracle,
    "garden": garden_oracle,
    "short_clauses": short_clauses_oracle,
    "diversity": diversity_oracle,
    "composite": composite_oracle,
}


def load_oracle(name_or_path: str) -> Oracle:
    """The oracle called ``name_or_path``: a built-in name (``ORACLES``) or ``module:function``.

    Raises ``ValueError`` naming what was wrong (and the built-in names) for an unknown name, a
    module that does not import, or an attribute that is missing or not callable.
    """
    return function_by_name(name_or_path, ORACLES, "oracle")


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


def answer(
    *,
    prompt: str,
    left: str,
    right: str,
    oracle: Oracle,
    noise: float,
    rng: random.Random,
    noise_key: int | None = None,
) -> tuple[str, str, bool]:
    """(choice, the oracle's own choice, whether the choice was random) for one pair.

    The higher score wins, equal scores tie; with probability ``noise`` the choice is random. With a
    ``noise_key`` that coin and that choice depend on the key and the two texts alone, not on the
    order the pairs come in or the side each text is shown on (both drawn at random by the server):
    two runs that judge the same pairs cast the same votes, so the chains of a benchmark that
    differ only in what happens later stay paired (``bench.loop``). Raters sharing a key then give a
    pair the same random answer.
    """
    left_score, right_score = oracle(prompt, left), oracle(prompt, right)
    preferred = "left" if left_score > right_score else "right" if right_score > left_score else "tie"
    coin = rng
    if noise_key is not None:
        coin = random.Random(f"{noise_key}\x00{prompt}\x00{min(left, right)}\x00{max(left, right)}")
    if coin.random() < noise:
        # The random winner is drawn as a text (the smaller or larger), then found on its side.
        smaller_wins = coin.random() < 0.5
        choice = "left" if (left <= right) == smaller_wins else "right"
        return choice, preferred, True
    return preferred, preferred, False


def rate(
    *,
    client: ApiClient,
    study_slug: str,
    oracle: Oracle,
    votes: int,
    noise: float,
    rng: random.Random,
    noise_key: int | None = None,
) -> RaterStats:
    """Vote up to ``votes`` times (fewer when the study runs out of pairs for this rater); each
    vote is ``answer``'s (``noise_key`` as there)."""
    stats = RaterStats()
    base = f"/api/studies/{study_slug}"
    empty_answers = 0
    while stats.votes < votes:
        status, body = client.post(f"{base}/assignments/next/")
        if status == 200 and body.get("no_work") == "guidelines":
            # A new rater says it has read the guidelines, as a person presses the page's button.
            status, body = client.post(f"{base}/guidelines/acknowledge/")
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
        choice, preferred, random_vote = answer(
            prompt=prompt, left=left, right=right, oracle=oracle, noise=noise, rng=rng, noise_key=noise_key
        )
        stats.random_votes += random_vote
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
