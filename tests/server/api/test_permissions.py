"""The permission matrix: every endpoint × (anonymous, rater of study A, rater of study B, staff),
with the exact status each must answer. Study A is the one every URL names.

Rules: anonymous → 401 (except the schema and its docs); a study the user does not rate in → 404
(its existence is not revealed); a staff-only operation on a study the rater rates in → 403;
global staff-only endpoints → 403 for raters. Staff are enrolled as raters on their first rating
request, but cannot vote on or skip another rater's pair (403) or undo another rater's vote (404).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from tests.server.api.conftest import token_client
from tests.server.api.world import World

ANONYMOUS, RATER_A, RATER_B, STAFF = "anonymous", "rater of A", "rater of B", "staff"
ROLES = (ANONYMOUS, RATER_A, RATER_B, STAFF)


@dataclass(frozen=True)
class Endpoint:
    name: str
    method: str
    url: Callable[[World], str]
    expected: tuple[int, int, int, int]  # anonymous, rater of A, rater of B, staff
    body: Callable[[World], dict[str, Any]] | None = None
    format: str = "json"


STUDY = "/api/studies/poems"

ENDPOINTS = [
    Endpoint("list studies", "get", lambda w: "/api/studies/", (401, 200, 200, 200)),
    Endpoint(
        "create study",
        "post",
        lambda w: "/api/studies/",
        (401, 403, 403, 201),
        lambda w: {"name": "New", "slug": "new-study", "question": "Which is better?"},
    ),
    Endpoint("study detail", "get", lambda w: f"{STUDY}/", (401, 200, 404, 200)),
    Endpoint("list prompts", "get", lambda w: f"{STUDY}/prompts/", (401, 403, 404, 200)),
    Endpoint(
        "create prompts",
        "post",
        lambda w: f"{STUDY}/prompts/",
        (401, 403, 404, 201),
        lambda w: {"prompts": [{"text": "A brand new prompt"}]},
    ),
    Endpoint("list versions", "get", lambda w: f"{STUDY}/versions/", (401, 403, 404, 200)),
    Endpoint(
        "register version",
        "post",
        lambda w: f"{STUDY}/versions/",
        (401, 403, 404, 201),
        lambda w: {"generator": "outside", "label": "v1", "kind": "external"},
    ),
    Endpoint("list samples", "get", lambda w: f"{STUDY}/samples/", (401, 403, 404, 200)),
    Endpoint(
        "import samples",
        "post",
        lambda w: f"{STUDY}/samples/import/",
        (401, 403, 404, 201),
        lambda w: {"rows": [{"prompt": "New prompt", "text": "New text", "generator": "outside"}]},
    ),
    Endpoint("own assignments", "get", lambda w: f"{STUDY}/assignments/", (401, 200, 404, 200)),
    Endpoint("next assignment", "post", lambda w: f"{STUDY}/assignments/next/", (401, 200, 404, 200)),
    Endpoint(
        "submit judgment",
        "post",
        lambda w: f"{STUDY}/assignments/{w.open_assignment.token}/judgment/",
        (401, 201, 404, 403),
        lambda w: {"choice": "left", "idempotency_key": "matrix-vote-1"},
    ),
    Endpoint(
        "skip assignment",
        "post",
        lambda w: f"{STUDY}/assignments/{w.open_assignment.token}/skip/",
        (401, 200, 404, 403),
        lambda w: {"reason": "I cannot read this language."},
    ),
    Endpoint(
        "undo judgment",
        "post",
        lambda w: f"{STUDY}/judgments/undo/",
        (401, 200, 404, 404),
        lambda w: {"idempotency_key": w.recent_judgment.idempotency_key},
    ),
    Endpoint("rater table", "get", lambda w: f"{STUDY}/raters/", (401, 403, 404, 200)),
    Endpoint(
        "pause rater",
        "post",
        lambda w: f"{STUDY}/raters/{w.rater_a.id}/pause/",
        (401, 403, 404, 200),
        lambda w: {"reason": "Too fast."},
    ),
    Endpoint(
        "resume rater", "post", lambda w: f"{STUDY}/raters/{w.paused_rater.id}/resume/", (401, 403, 404, 200)
    ),
    Endpoint("leaderboard", "get", lambda w: f"{STUDY}/leaderboard/", (401, 403, 404, 200)),
    Endpoint("agreement", "get", lambda w: f"{STUDY}/agreement/", (401, 403, 404, 200)),
    Endpoint("list evaluations", "get", lambda w: f"{STUDY}/evaluations/", (401, 403, 404, 200)),
    Endpoint(
        "evaluation detail", "get", lambda w: f"{STUDY}/evaluations/{w.evaluation.id}/", (401, 403, 404, 200)
    ),
    Endpoint("list snapshots", "get", lambda w: f"{STUDY}/snapshots/", (401, 403, 404, 200)),
    Endpoint("create snapshot", "post", lambda w: f"{STUDY}/snapshots/", (401, 403, 404, 201), lambda w: {}),
    Endpoint("list reward models", "get", lambda w: f"{STUDY}/reward-models/", (401, 403, 404, 200)),
    Endpoint(
        "start generation",
        "post",
        lambda w: f"{STUDY}/jobs/generate/",
        (401, 403, 404, 202),
        lambda w: {"version_ids": [w.base_version.id], "split": "train", "samples_per_prompt": 1},
    ),
    Endpoint(
        "start pair selection",
        "post",
        lambda w: f"{STUDY}/jobs/select-pairs/",
        (401, 403, 404, 202),
        lambda w: {},
    ),
    Endpoint(
        "start reward model",
        "post",
        lambda w: f"{STUDY}/jobs/train-reward-model/",
        (401, 403, 404, 202),
        lambda w: {},
    ),
    Endpoint(
        "start policy",
        "post",
        lambda w: f"{STUDY}/jobs/train-policy/",
        (401, 403, 404, 202),
        lambda w: {"method": "dpo", "parent_version_id": w.base_version.id},
    ),
    Endpoint(
        "start evaluation",
        "post",
        lambda w: f"{STUDY}/jobs/evaluate/",
        (401, 403, 404, 202),
        lambda w: {"version_id": w.versions[0].id},
    ),
    Endpoint(
        "start leaderboard",
        "post",
        lambda w: f"{STUDY}/jobs/recompute-leaderboard/",
        (401, 403, 404, 202),
        lambda w: {},
    ),
    Endpoint(
        "start export",
        "post",
        lambda w: f"{STUDY}/exports/",
        (401, 403, 404, 202),
        lambda w: {"kind": "leaderboard"},
    ),
    Endpoint("list jobs", "get", lambda w: "/api/jobs/", (401, 403, 403, 200)),
    Endpoint("job detail", "get", lambda w: f"/api/jobs/{w.running_job.id}/", (401, 403, 403, 200)),
    Endpoint("cancel job", "post", lambda w: f"/api/jobs/{w.running_job.id}/cancel/", (401, 403, 403, 200)),
    Endpoint("export detail", "get", lambda w: f"/api/exports/{w.export_job.id}/", (401, 403, 403, 200)),
    Endpoint(
        "export download",
        "get",
        lambda w: f"/api/exports/{w.export_job.id}/files/leaderboard.csv",
        (401, 403, 403, 200),
    ),
    Endpoint("schema", "get", lambda w: "/api/schema/", (200, 200, 200, 200)),
    Endpoint("docs", "get", lambda w: "/api/docs/", (200, 200, 200, 200)),
]


def user_for(role: str, world: World):  # type: ignore[no-untyped-def]
    return {ANONYMOUS: None, RATER_A: world.rater_a_user, RATER_B: world.rater_b_user, STAFF: world.staff}[
        role
    ]


@pytest.mark.parametrize("role_index", range(len(ROLES)), ids=ROLES)
@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=[endpoint.name for endpoint in ENDPOINTS])
def test_permission_matrix(world: World, endpoint: Endpoint, role_index: int) -> None:
    client = token_client(user_for(ROLES[role_index], world))
    call = getattr(client, endpoint.method)
    body = endpoint.body(world) if endpoint.body else None
    response = (
        call(endpoint.url(world), body, format=endpoint.format)
        if endpoint.method == "post"
        else call(endpoint.url(world))
    )
    expected = endpoint.expected[role_index]
    assert response.status_code == expected, getattr(response, "data", response.content[:300])
    if expected >= 400:
        assert set(response.json()) == {"error", "details"}


def test_a_second_rater_of_the_same_study_cannot_touch_another_raters_pair(world: World) -> None:
    from tests import factories

    intruder = factories.rater(study=world.study_a, user=factories.user(username="intruder"))
    client = token_client(intruder.user)
    vote = client.post(
        f"{STUDY}/assignments/{world.open_assignment.token}/judgment/",
        {"choice": "left", "idempotency_key": "intruder-1"},
        format="json",
    )
    skip = client.post(
        f"{STUDY}/assignments/{world.open_assignment.token}/skip/", {"reason": "no"}, format="json"
    )
    undo = client.post(f"{STUDY}/judgments/undo/", {"idempotency_key": world.recent_judgment.idempotency_key})
    listed = client.get(f"{STUDY}/assignments/")
    assert (vote.status_code, skip.status_code, undo.status_code) == (403, 403, 404)
    assert vote.json() == {"error": "This pair was given to someone else.", "details": {}}
    assert listed.status_code == 200 and listed.json()["results"] == []


def test_a_rater_lists_only_the_studies_it_rates_in(world: World) -> None:
    for user, slugs in [
        (world.rater_a_user, ["poems"]),
        (world.rater_b_user, ["stories"]),
        (world.staff, ["stories", "poems"]),
    ]:
        response = token_client(user).get("/api/studies/")
        assert [study["slug"] for study in response.json()["results"]] == slugs


def test_session_authentication_works_for_pages_and_enforces_csrf(world: World) -> None:
    from rest_framework.test import APIClient

    client = APIClient(enforce_csrf_checks=True)
    assert client.login(username="operator", password="operator-password-1")
    assert client.get(f"{STUDY}/leaderboard/").status_code == 200
    refused = client.post(f"{STUDY}/jobs/recompute-leaderboard/", {}, format="json")
    assert refused.status_code == 403
    assert "CSRF" in refused.json()["error"]
