"""Blindness: a gold check cannot be told from a regular pair by its form, and the token that
addresses a pair is random (it carries no id and no count)."""

from __future__ import annotations

import json
import random
import re
from collections import Counter

import pytest
from django.test import Client
from django.urls import reverse

from server.generators.models import Sample
from server.ratings.models import Assignment, ComparisonKind
from server.ratings.pair_selection import GOLD_GENERATOR, comparisons_select_random
from tests import factories
from tests.server.ratings.conftest import make_study

pytestmark = pytest.mark.django_db

# What a small generator writes: each text begins with the space that followed its prompt.
TOPICS = {
    "The sea at night": [
        " The sea at night keeps the moon in its pocket.",
        " At night the sea hums to the harbour lights.",
    ],
    "Bread and the baker's hands": [
        " The baker folds the bread like a letter.",
        " Warm bread rises under floury hands before dawn.",
    ],
    "A library after closing": [
        " After closing, the library books whisper their titles.",
        " The library keeps its silence for the dust and the moths.",
    ],
}


def topical_study(*, gold_rate: float):  # type: ignore[no-untyped-def]
    study = make_study(gold_rate=gold_rate, overlap=1)
    versions = [factories.version(enrol_in=study) for _ in range(2)]
    for prompt_text, texts in TOPICS.items():
        prompt = factories.prompt(study=study, text=prompt_text)
        for version, text in zip(versions, texts, strict=True):
            factories.sample(prompt=prompt, version=version, text=text)
    return study


def api(client: Client, study, name: str, payload: dict | None = None):  # type: ignore[no-untyped-def]
    return client.post(
        reverse(f"ratings:api-{name}", args=[study.slug]),
        json.dumps(payload or {}),
        content_type="application/json",
    )


def test_a_generated_gold_check_is_two_real_texts_and_the_on_topic_one_is_expected() -> None:
    study = topical_study(gold_rate=0.5)
    result = comparisons_select_random(study=study, pairs_per_prompt=1, seed=7)
    assert (result.regular_created, result.gold_created) == (3, 2)
    generated_texts = set(
        Sample.objects.exclude(version__generator__name=GOLD_GENERATOR).values_list("text", flat=True)
    )
    for check in study.comparisons.filter(kind=ComparisonKind.GOLD).select_related(
        "prompt", "sample_a", "sample_b"
    ):
        expected, other = (
            (check.sample_a, check.sample_b) if check.gold_answer == "A" else (check.sample_b, check.sample_a)
        )
        # Both sides are texts a generator wrote: no corrupted copy, no shared vocabulary between them.
        written = [text.strip() for text in TOPICS[check.prompt.text]]  # stored in normal form
        assert expected.text in written
        assert other.text in generated_texts and other.text not in written
        assert Counter(expected.text.split()) != Counter(other.text.split())
        assert other.prompt_id == check.prompt_id  # filed under the check's prompt
        donor = Sample.objects.get(id=other.metadata["off_topic_from"])
        assert (donor.text, donor.prompt_id != check.prompt_id) == (other.text, True)
        assert donor.version_id != expected.version_id  # as in a regular pair, two versions


def test_a_study_with_one_prompt_gets_no_generated_gold() -> None:
    study = make_study(gold_rate=0.5)
    prompt = factories.prompt(study=study)
    for _ in range(2):
        factories.sample(prompt=prompt, version=factories.version(enrol_in=study))
    result = comparisons_select_random(study=study, pairs_per_prompt=1, seed=1)
    assert (result.regular_created, result.gold_created) == (1, 0)
    assert not Sample.objects.filter(version__generator__name=GOLD_GENERATOR).exists()


def test_gold_and_regular_pairs_reach_the_page_in_the_same_shape_without_margins(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    # Which pairs are gold is drawn at random per request; a fixed draw shows both checks.
    monkeypatch.setattr("server.ratings.services._random", random.Random(1))
    study = topical_study(gold_rate=0.5)
    comparisons_select_random(study=study, pairs_per_prompt=1, seed=7)
    client = Client()
    client.get(reverse("ratings:join", args=[study.slug, study.invite_token]))
    shown = {}
    answer = api(client, study, "next", {"start": True}).json()
    while answer["status"] == "pair":
        pair = answer["pair"]
        kind = Assignment.objects.select_related("comparison").get(token=pair["token"]).comparison.kind
        shown[pair["token"]] = (kind, pair)
        vote = {"token": pair["token"], "choice": "left", "idempotency_key": f"key-{len(shown):05d}"}
        answer = api(client, study, "vote", {**vote, "next": True}).json()["next"]
    kinds = Counter(kind for kind, _ in shown.values())
    assert kinds == {ComparisonKind.REGULAR: 3, ComparisonKind.GOLD: 2}
    for _, pair in shown.values():
        assert set(pair) == {"token", "prompt", "left", "right"}
        for name in ("prompt", "left", "right"):
            assert pair[name] == pair[name].strip() and pair[name]


def test_tokens_are_random_carry_no_id_and_differ_between_assignments() -> None:
    study = make_study(overlap=2)
    for _ in range(3):
        factories.comparison(study=study)
    tokens = []
    for _ in range(2):
        client = Client()
        client.get(reverse("ratings:join", args=[study.slug, study.invite_token]))
        answer = api(client, study, "next", {"start": True}).json()
        while answer["status"] == "pair":
            token = answer["pair"]["token"]
            assert api(client, study, "next").json()["pair"]["token"] == token  # stable while open
            tokens.append(token)
            vote = {
                "token": token,
                "choice": "tie",
                "idempotency_key": f"key-{len(tokens):05d}",
                "next": True,
            }
            answer = api(client, study, "vote", vote).json()["next"]
    assignments = {assignment.token: assignment for assignment in Assignment.objects.all()}
    assert sorted(tokens) == sorted(assignments) and len(set(tokens)) == 6
    for token, assignment in assignments.items():
        assert re.fullmatch(r"[A-Za-z0-9_-]{22}", token)  # 128 random bits, nothing else
        assert not token.startswith((f"{assignment.id:x}:", f"{assignment.id}:"))
