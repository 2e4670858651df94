"""Schema migrations that move data keep what operators set."""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

BEFORE = [("studies", "0001_initial")]
AFTER = [("studies", "0002_quality_tests")]


def _migrate(targets: list[tuple[str, str]]):  # type: ignore[no-untyped-def]
    executor = MigrationExecutor(connection)
    executor.migrate(targets)
    executor.loader.build_graph()
    return executor.loader.project_state(targets).apps


@pytest.mark.django_db(transaction=True)
def test_min_gold_checks_becomes_quality_min_checks_keeping_stricter_values() -> None:
    old = _migrate(BEFORE)
    Study = old.get_model("studies", "Study")
    for slug, checks in (("old-default", 2), ("strict", 9)):
        Study.objects.create(
            name=slug, slug=slug, question="Which?", invite_token=slug, min_gold_checks=checks
        )
    try:
        new = _migrate(AFTER)
        migrated = dict(new.get_model("studies", "Study").objects.values_list("slug", "quality_min_checks"))
        assert migrated == {"old-default": 6, "strict": 9}
        reverted = _migrate(BEFORE)
        restored = dict(reverted.get_model("studies", "Study").objects.values_list("slug", "min_gold_checks"))
        assert restored == {"old-default": 6, "strict": 9}
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())
