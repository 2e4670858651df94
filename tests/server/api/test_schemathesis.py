"""Property-based conformance: schemathesis generates requests from the served OpenAPI schema and
checks that no response is a 5xx and every response conforms to the schema (status code, content
type, headers, body), and that schema-invalid input is refused with a 4xx.

Bounded: a few examples per operation and generation mode, no shrinking, no example database,
derandomised so a failure reproduces. Every operation runs once with its path parameters pinned
to real objects of the test world (so success paths are exercised) and once with generated ones.
Authenticated as staff with a token, so every operation is reachable.

``positive_data_acceptance`` is not run: the services legitimately refuse some schema-valid input
(an unknown decoding parameter, a version not enrolled in the study) with a 400 that names it.
"""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck, Phase, given, settings
from rest_framework.authtoken.models import Token
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi import checks

from server.api.throttling import ScopedThrottle
from tests.server.api.world import World

CHECKS = [
    not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_headers_conformance,
    checks.response_schema_conformance,
    checks.negative_data_rejection,
]
EXAMPLES = {GenerationMode.POSITIVE: 10, GenerationMode.NEGATIVE: 6}
FREE_PATH_EXAMPLES = 3


def pinned_path_parameters(world: World, path: str, name: str) -> dict[str, Any]:
    values = {
        "slug": world.study_a.slug,
        "job_id": world.export_job.id if path.startswith("/api/exports/") else world.running_job.id,
        "token": world.open_assignment.token,
        "rater_id": world.rater_a.id,
        "evaluation_id": world.evaluation.id,
        "name": "leaderboard.csv",
        "judge_id": world.machine_judge.id,
    }
    return {name: values[name]}


def run_operation(
    operation: Any, *, mode: GenerationMode, examples: int, headers: dict[str, str], path: dict
) -> None:
    strategy = operation.as_strategy(generation_mode=mode, headers=headers, path_parameters=path or None)

    @settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=strategy)
    def check(case: schemathesis.Case) -> None:
        case.call_and_validate(checks=CHECKS)

    check()


@pytest.fixture
def wsgi_application():  # type: ignore[no-untyped-def]
    """The real WSGI app, minus closing the database connection after each request: the test runs
    inside one transaction that the connection must keep (Django's test client does the same)."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield get_wsgi_application()
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


@pytest.mark.django_db
def test_every_operation_conforms_to_the_schema_and_never_fails_with_a_server_error(
    world: World, wsgi_application: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A few hundred requests in a minute: lift the rate limits for this test only.
    monkeypatch.setattr(
        ScopedThrottle, "THROTTLE_RATES", dict.fromkeys(ScopedThrottle.THROTTLE_RATES, "100000/minute")
    )
    token = Token.objects.create(user=world.staff)
    headers = {"Authorization": f"Token {token.key}"}
    schema = schemathesis.openapi.from_wsgi("/api/schema/", wsgi_application)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == 43
    for operation in operations:
        names = [parameter.name for parameter in operation.path_parameters]
        pinned = {
            key: value
            for name in names
            for key, value in pinned_path_parameters(world, operation.path, name).items()
        }
        for mode, examples in EXAMPLES.items():
            if mode == GenerationMode.NEGATIVE and not (len(operation.body) or len(operation.query)):
                continue  # the only parameters are the pinned path ones: nothing left to make invalid
            run_operation(operation, mode=mode, examples=examples, headers=headers, path=pinned)
        if names:
            run_operation(
                operation, mode=GenerationMode.POSITIVE, examples=FREE_PATH_EXAMPLES, headers=headers, path={}
            )
