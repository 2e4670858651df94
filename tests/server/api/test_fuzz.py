"""Property-based fuzzing of the endpoints that take input: vote, skip and undo (the rating page's
JSON endpoints and the REST API), sample import (JSON rows and uploaded files) and job starts.

Bodies are written as JSON text, so they carry what a client can send and Python's ``json.dumps``
of a valid value cannot: escaped lone surrogates and NULs, NaN and Infinity, numbers past any
range, nesting thousands of levels deep, broken syntax. Two properties, for every body:

- no server error: every answer is below 500;
- a refused request (4xx) stores nothing: the content of every table of the project is the same
  before and after it.

Each example runs inside a savepoint that is rolled back, so examples do not see each other's
writes; hypothesis runs derandomized (the same examples every run, no example database), with a
bounded number of examples per endpoint so the module takes seconds.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from django.apps import apps
from django.core.cache import cache
from django.db import transaction
from django.test import Client
from django.urls import reverse
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rest_framework.test import APIClient

from server.ratings.services import CHOICES
from server.training.services import DPO_OPTIONS, ONLINE_RL_OPTIONS, REWARD_MODEL_OPTIONS
from tests.server.api.world import World

STUDY = "/api/studies/poems"

FUZZ = settings(
    max_examples=80,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)

# --- Strategies: JSON text as a hostile client writes it ----------------------------------------------

HOSTILE_TEXTS = [
    "\x00",
    "a\x00b",
    "\ud800",
    "x\udfff",
    "\u2028",
    "\r\n",
    "=HYPERLINK(1)",
    "",
    " ",
    "left",
    "x" * 5001,
]
texts = st.one_of(
    st.text(max_size=40),
    st.text(st.characters(categories=["Cs", "Cc", "Zl", "Zp"]), max_size=5),
    st.sampled_from(HOSTILE_TEXTS),
)
numbers = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, 1, -1, 2**31, 2**63, 1e9, 1e15, 1e300, 0.5, 2.5]),
)
scalars = st.one_of(st.none(), st.booleans(), numbers, texts)
values = st.recursive(
    scalars,
    lambda children: st.one_of(st.lists(children, max_size=3), st.dictionaries(texts, children, max_size=3)),
    max_leaves=8,
)


def dump(value: Any) -> str:
    """JSON text of ``value``: surrogates escaped as ``\\udXXX``, NaN and Infinity as bare words."""
    return json.dumps(value, ensure_ascii=True, allow_nan=True)


# Raw fragments that no Python value dumps to.
deep = st.integers(min_value=60, max_value=5000).flatmap(
    lambda depth: st.sampled_from(["[" * depth + "]" * depth, '{"a":' * depth + "1" + "}" * depth])
)
broken = st.sampled_from(["", "{", '"open', "[1,]", "nul", "1e", '{"a" 1}', "\\ud800", "-"])
fragments = st.one_of(values.map(dump), deep)


def _object(fields: dict[str, str]) -> str:
    return "{" + ",".join(f"{dump(name)}:{text}" for name, text in fields.items()) + "}"


def bodies(
    required: dict[str, st.SearchStrategy[Any]], optional: dict[str, st.SearchStrategy[Any]] | None = None
) -> st.SearchStrategy[str]:
    """Request bodies as JSON text. A quarter are plausible (the required fields and some optional
    ones, each with a plausible value); a quarter are plausible bodies with one or two fields
    replaced or added with anything at all; the rest are any JSON, or no JSON."""
    optional = optional or {}
    plausible = st.fixed_dictionaries(
        {name: value.map(dump) for name, value in required.items()},
        optional={name: value.map(dump) for name, value in optional.items()},
    )
    names = st.sampled_from(sorted({*required, *optional})) | texts if required or optional else texts
    hostile = st.dictionaries(names, fragments, min_size=1, max_size=2)
    mutated = st.tuples(plausible, hostile).map(lambda parts: {**parts[0], **parts[1]})
    return st.one_of(plausible.map(_object), mutated.map(_object), fragments, broken)


milliseconds = st.one_of(st.integers(min_value=0, max_value=2**53), st.sampled_from([1e15, 1e300, 2**64]))
keys = st.text("abcdefghijklmnopqrstuvwxyz0123456789-", min_size=8, max_size=64)


# --- Database state ------------------------------------------------------------------------------------


STORED_MODELS = [
    model
    for model in apps.get_models(include_auto_created=True)
    if model.__module__.startswith("server.") or model._meta.label in ("auth.User", "authtoken.Token")
]


def stored_state() -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table of the project (and the users and tokens), by model."""
    return {
        model._meta.label: list(model._base_manager.order_by("pk").values_list()) for model in STORED_MODELS
    }


class _RolledBack(Exception):
    pass


@contextmanager
def rolled_back() -> Iterator[None]:
    """Run the block in a savepoint and undo all of it; throttle counters start from zero."""
    cache.clear()
    try:
        with transaction.atomic():
            yield
            raise _RolledBack
    except _RolledBack:
        pass


def check(request: Callable[[], Any], statuses: list[int]) -> Any:
    """Send the request; no 5xx, and nothing stored when it is refused."""
    before = stored_state()
    response = request()
    statuses.append(response.status_code)
    assert response.status_code < 500, response.content[:500]
    if response.status_code >= 400:
        assert stored_state() == before, f"a refused request ({response.status_code}) stored something"
    return response


def assert_both_outcomes(statuses: list[int]) -> None:
    """The fuzzing reached the service: some requests were accepted and some refused."""
    assert any(200 <= status < 300 for status in statuses), sorted(set(statuses))
    assert any(400 <= status < 500 for status in statuses), sorted(set(statuses))


# --- The rating page's JSON endpoints (session) ---------------------------------------------------------


def _page_client(world: World) -> tuple[Client, str]:
    client = Client()
    client.force_login(world.rater_a_user)
    client.get(reverse("ratings:page", args=[world.study_a.slug]))
    answer = client.post(
        reverse("ratings:api-next", args=[world.study_a.slug]), "{}", content_type="application/json"
    )
    return client, answer.json()["pair"]["token"]


@pytest.mark.django_db
def test_fuzz_page_vote_skip_and_undo(world: World) -> None:
    client, token = _page_client(world)
    slug = world.study_a.slug
    statuses: list[int] = []

    def post(name: str, body: str) -> Any:
        return client.post(reverse(f"ratings:api-{name}", args=[slug]), body, content_type="application/json")

    vote = bodies(
        {"token": st.just(token), "choice": st.sampled_from(CHOICES), "idempotency_key": keys},
        {
            "strength": st.sampled_from([1, 2, 3, "2", None]),
            "rationale": texts,
            "shown_at": milliseconds,
            "first_input_at": milliseconds,
            "sent_at": milliseconds,
            "active_seconds": st.floats(min_value=0, max_value=86_400),
            "next": st.booleans(),
        },
    )
    skip = bodies({"token": st.just(token), "reason": texts})
    undo = bodies({"idempotency_key": st.sampled_from(["fuzz-key-0001", "fuzz-key-0002"])})

    @FUZZ
    @given(
        name_and_body=st.one_of(
            *(st.tuples(st.just(n), b) for n, b in [("vote", vote), ("skip", skip), ("undo", undo)])
        )
    )
    def fuzz(name_and_body: tuple[str, str]) -> None:
        name, body = name_and_body
        with rolled_back():
            if name == "undo":  # a vote a moment ago, so the undo window is open
                saved = post(
                    "vote", dump({"token": token, "choice": "left", "idempotency_key": "fuzz-key-0001"})
                )
                assert saved.status_code == 200, saved.content
            check(lambda: post(name, body), statuses)

    fuzz()
    assert_both_outcomes(statuses)


# --- The REST API: rating -------------------------------------------------------------------------------


@pytest.mark.django_db
def test_fuzz_api_vote_skip_and_undo(world: World, rater_client: APIClient) -> None:
    assignment = world.open_assignment.token
    statuses: list[int] = []
    ids = st.sampled_from(
        [
            assignment,
            assignment,
            assignment,
            world.recent_judgment.assignment.token,
            str(2**63),
            "x" * 300,
            "..%2F",
        ]
    )
    vote = bodies(
        {"choice": st.sampled_from(CHOICES), "idempotency_key": keys},
        {
            "strength": st.sampled_from([1, 2, 3, None]),
            "rationale": texts,
            "active_seconds": st.floats(min_value=0, max_value=86_400),
        },
    )
    skip = bodies({"reason": texts})
    undo = bodies({"idempotency_key": st.sampled_from(["fuzz-key-0001", "world-recent"])})

    @FUZZ
    @given(
        name_and_body=st.one_of(
            *(st.tuples(st.just(n), b) for n, b in [("judgment", vote), ("skip", skip), ("undo", undo)])
        ),
        token=ids,
    )
    def fuzz(name_and_body: tuple[str, str], token: str) -> None:
        name, body = name_and_body
        with rolled_back():
            if name == "undo":
                saved = rater_client.post(
                    f"{STUDY}/assignments/{assignment}/judgment/",
                    {"choice": "left", "idempotency_key": "fuzz-key-0001"},
                    format="json",
                )
                assert saved.status_code == 201, saved.content
                path = f"{STUDY}/judgments/undo/"
            else:
                path = f"{STUDY}/assignments/{token}/{name}/"
            check(lambda: rater_client.post(path, body, content_type="application/json"), statuses)

    fuzz()
    assert_both_outcomes(statuses)


# --- The REST API: sample import ----------------------------------------------------------------------

rows = bodies(
    {
        "prompt": st.sampled_from(["The sea", "Night", "  spaced  "]),
        "text": st.text(min_size=1, max_size=20),
        "generator": st.sampled_from(["fuzz-bot", "tiny", "=cmd"]),
    },
    {
        "version": st.sampled_from(["external", "tiny-base", "2"]),
        "split": st.sampled_from(["train", "holdout", "test"]),
        "prompt_id": texts,
        "metadata": st.dictionaries(texts, values, max_size=3),
    },
)
line_endings = st.sampled_from(["\n", "\r\n", "\u2028", "\r"])
csv_cells = st.one_of(st.text(max_size=20), texts, values.map(dump), deep)


def jsonl_file(lines: list[str], endings: list[str]) -> bytes:
    text = "".join(line + ending for line, ending in zip(lines, endings, strict=False))
    return text.encode("utf-8", "surrogatepass")  # a lone surrogate becomes bytes that are not UTF-8


def csv_file(header: list[str], records: list[list[str]]) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    writer.writerows(records)
    return buffer.getvalue().encode("utf-8", "surrogatepass")


@pytest.mark.django_db
def test_fuzz_api_import(world: World, staff_client: APIClient) -> None:
    statuses: list[int] = []

    @FUZZ
    @given(
        kind=st.sampled_from(["rows", "jsonl", "csv"]),
        lines=st.lists(rows, min_size=1, max_size=4),
        endings=st.lists(line_endings, min_size=4, max_size=4),
        header=st.permutations(["prompt", "text", "generator", "metadata"]).flatmap(
            lambda columns: st.sampled_from([columns, columns, columns[:2], [*columns, "colour"]])
        ),
        records=st.lists(st.lists(csv_cells, min_size=4, max_size=5), min_size=1, max_size=3),
    )
    def fuzz(
        kind: str, lines: list[str], endings: list[str], header: list[str], records: list[list[str]]
    ) -> None:
        url = f"{STUDY}/samples/import/"
        with rolled_back():
            if kind == "rows":
                body = '{"rows": [' + ",".join(lines) + "]}"
                check(lambda: staff_client.post(url, body, content_type="application/json"), statuses)
                return
            content = jsonl_file(lines, endings) if kind == "jsonl" else csv_file(header, records)
            upload = io.BytesIO(content)
            upload.name = f"samples.{kind}"
            check(lambda: staff_client.post(url, {"file": upload}, format="multipart"), statuses)

    fuzz()
    assert_both_outcomes(statuses)


# --- The REST API: job starts -------------------------------------------------------------------------


def options(names: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    plausible = st.one_of(
        st.integers(min_value=-2, max_value=2000), st.sampled_from([0.1, 1e-5, 1e9, 2.5, True, "2", None])
    )
    return st.dictionaries(st.sampled_from(sorted(names)), plausible, max_size=2)


@pytest.mark.django_db
def test_fuzz_api_job_starts(world: World, staff_client: APIClient) -> None:
    statuses: list[int] = []
    versions = st.sampled_from([world.base_version.id, world.base_version.id, world.versions[0].id, 2**63])
    snapshots = st.sampled_from([world.snapshot.id, world.snapshot.id, 0, 2**63])
    reward_models = st.sampled_from([world.reward_model.id, world.reward_model.id, 0, 2**63])
    starts = {
        "jobs/generate": bodies(
            {"version_ids": st.lists(versions, min_size=1, max_size=2)},
            {
                "split": st.sampled_from(["train", "holdout", "all", "x"]),
                "samples_per_prompt": st.integers(min_value=0, max_value=65),
                "decoding": st.dictionaries(
                    st.sampled_from(["temperature", "top_p", "top_k", "max_new_tokens", "stop", "x"]),
                    scalars,
                    max_size=2,
                ),
            },
        ),
        "jobs/select-pairs": bodies(
            {},
            {
                "strategy": st.sampled_from(["random", "active", "x", None]),
                "pairs_per_prompt": st.integers(min_value=0, max_value=101),
                "seed": st.integers(min_value=-1, max_value=2**31),
            },
        ),
        "jobs/train-reward-model": bodies(
            {}, {"snapshot_id": snapshots, "config": options(REWARD_MODEL_OPTIONS)}
        ),
        "jobs/train-policy": bodies(
            {"method": st.sampled_from(["dpo", "rloo", "grpo", "ppo"])},
            {
                "parent_version_id": versions,
                "snapshot_id": snapshots,
                "reward_model_id": reward_models,
                "config": options({**DPO_OPTIONS, **ONLINE_RL_OPTIONS}),
            },
        ),
        "jobs/evaluate": bodies({"version_id": versions}),
        "jobs/recompute-leaderboard": bodies({}),
        "exports": bodies(
            {"kind": st.sampled_from(["preferences", "leaderboard", "evaluation_report", "x"])},
            {"snapshot_id": snapshots},
        ),
    }

    @FUZZ
    @given(
        path_and_body=st.sampled_from(sorted(starts)).flatmap(
            lambda path: st.tuples(st.just(path), starts[path])
        )
    )
    def fuzz(path_and_body: tuple[str, str]) -> None:
        path, body = path_and_body
        with rolled_back():
            check(
                lambda: staff_client.post(f"{STUDY}/{path}/", body, content_type="application/json"), statuses
            )

    fuzz()
    assert_both_outcomes(statuses)
