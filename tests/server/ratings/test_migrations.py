"""Assignments made before random tokens existed get one each when the database is migrated."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from server.ratings.models import Assignment

BEFORE_TOKENS = [("ratings", "0002_comparison_prompt_trigger")]


@pytest.mark.django_db(transaction=True)
def test_existing_assignments_get_distinct_random_tokens() -> None:
    executor = MigrationExecutor(connection)
    latest = executor.loader.graph.leaf_nodes()
    try:
        executor.migrate(BEFORE_TOKENS)
        # The other apps stay at their latest state; only ratings goes back.
        old = executor.loader.project_state(
            [node for node in latest if node[0] != "ratings"] + BEFORE_TOKENS
        ).apps
        study = old.get_model("studies", "Study").objects.create(name="Old", slug="old", question="Which?")
        prompt = old.get_model("studies", "Prompt").objects.create(study=study, text="P", text_hash="p")
        generator = old.get_model("generators", "Generator").objects.create(name="g")
        version = old.get_model("generators", "GeneratorVersion").objects.create(
            generator=generator, label="v", kind="external"
        )
        sample = old.get_model("generators", "Sample")
        first, second = (
            sample.objects.create(prompt=prompt, version=version, text=text, text_hash=text) for text in "ab"
        )
        comparison = old.get_model("ratings", "Comparison").objects.create(
            study=study, prompt=prompt, sample_a=first, sample_b=second
        )
        now = timezone.now()
        rater = old.get_model("ratings", "Rater")
        for number in range(3):
            old.get_model("ratings", "Assignment").objects.create(
                comparison=comparison,
                rater=rater.objects.create(study=study, platform="invite", external_id=f"old-{number}"),
                left_is_a=True,
                reserved_at=now,
                expires_at=now + timedelta(minutes=10),
            )

        executor.loader.build_graph()
        executor.migrate(latest)

        tokens = list(Assignment.objects.values_list("token", flat=True))
        assert len(tokens) == len(set(tokens)) == 3
        assert all(re.fullmatch(r"[A-Za-z0-9_-]{22}", token) for token in tokens)
    finally:
        executor.loader.build_graph()
        executor.migrate(latest)
