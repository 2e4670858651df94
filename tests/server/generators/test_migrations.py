"""Samples stored before texts were normalised get their normal form and their hash."""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from server.generators.models import Sample, sample_text_hash

BEFORE = [("generators", "0002_initial")]


@pytest.mark.django_db(transaction=True)
def test_old_samples_are_normalised_and_hashed_without_merging_imported_ones() -> None:
    executor = MigrationExecutor(connection)
    latest = executor.loader.graph.leaf_nodes()
    try:
        executor.migrate(BEFORE)
        old = executor.loader.project_state(
            [node for node in latest if node[0] != "generators"] + BEFORE
        ).apps
        study = old.get_model("studies", "Study").objects.create(name="Old", slug="old", question="Which?")
        prompt = old.get_model("studies", "Prompt").objects.create(study=study, text="P", text_hash="p")
        generator = old.get_model("generators", "Generator").objects.create(name="g")
        version = old.get_model("generators", "GeneratorVersion").objects.create(
            generator=generator, label="v", kind="external"
        )
        sample = old.get_model("generators", "Sample")
        # Generated (a seed, no hash: bulk-created), and two imported texts whose normal forms meet.
        sample.objects.bulk_create(
            [
                sample(prompt=prompt, version=version, text=" leading space\r\n", seed=0, text_hash=""),
                sample(prompt=prompt, version=version, text="Waves", text_hash=sample_text_hash("Waves")),
                sample(prompt=prompt, version=version, text=" Waves ", text_hash=sample_text_hash(" Waves ")),
            ]
        )
        executor.loader.build_graph()
        executor.migrate(latest)

        stored = {text: text_hash for text, text_hash in Sample.objects.values_list("text", "text_hash")}
        assert set(stored) == {"leading space", "Waves", " Waves "}  # the second import keeps its text
        assert all(text_hash == sample_text_hash(text) for text, text_hash in stored.items())
    finally:
        executor.loader.build_graph()
        executor.migrate(latest)
