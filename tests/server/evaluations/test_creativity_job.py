from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from server.core.exceptions import ApplicationError
from server.evaluations.creativity import evaluation_run
from server.evaluations.models import Evaluation
from server.evaluations.services import evaluation_start
from server.generators.models import Sample, VersionKind
from server.studies.models import PromptSplit
from tests import factories
from tests.conftest import DEMO_CORPUS
from workers.runner import run_job

pytestmark = pytest.mark.django_db


def test_evaluation_generates_holdout_samples_and_stores_metrics_with_protocol(
    tiny_model_allowed: Path, settings, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    # The start of the demo corpus (what the tiny model was built from): embedding all of it for
    # embedding novelty would take most of the test's time and prove nothing more.
    settings.VAR_DIR = tmp_path
    corpus = tmp_path / "corpora" / "lovelace-start.txt"
    corpus.parent.mkdir()
    corpus.write_text(DEMO_CORPUS.read_text(encoding="utf-8")[:20_000], encoding="utf-8")
    study = factories.study()
    for text in ("The sea at night", "A lamp", "Bread"):
        factories.prompt(study=study, text=text, split=PromptSplit.HOLDOUT)
    factories.prompt(study=study, text="Train only")
    version = factories.version(
        kind=VersionKind.BASE,
        model_path=str(tiny_model_allowed),
        enrol_in=study,
        reference_corpus_path=str(corpus),
        decoding={"max_new_tokens": 12, "batch_size": 8},
    )

    job = evaluation_start(study=study, version_id=version.id, samples_per_prompt=3)
    assert run_job(job.id, evaluation_run) == "succeeded", job.error

    evaluation = Evaluation.objects.get(job=job)
    assert Sample.objects.filter(version=version, prompt__split=PromptSplit.HOLDOUT).count() == 9
    assert not Sample.objects.filter(version=version, prompt__split=PromptSplit.TRAIN).exists()
    protocol = evaluation.protocol
    assert (protocol["split"], protocol["samples_per_prompt"], protocol["sample_count"]) == ("holdout", 3, 9)
    assert protocol["seeds"] == [0, 1, 2]
    assert protocol["corpus"] == str(corpus)
    assert protocol["reference_model"] == str(tiny_model_allowed)
    curve = evaluation.metrics["novelty_curve"]
    assert curve["n"] == [1, 2, 3, 4, 5, 6, 7, 8]
    # Novelty can only grow with n: an n-gram absent from the corpus stays absent when extended.
    # (n-grams longer than every sample are undefined: None at the end of the curve)
    defined = [value for value in curve["mean"] if value is not None]
    assert len(defined) >= 4
    assert all(a <= b + 1e-9 for a, b in itertools.pairwise(defined))
    for name in ("embedding_novelty", "self_bleu", "longest_copied_span", "novelty_4gram"):
        interval = evaluation.metrics[name]
        assert interval["lower"] <= interval["mean"] <= interval["upper"], name
    assert evaluation.metrics["surprisal"]["mean"] > 0
    assert "no reward model yet" in " ".join(protocol["notes"])
    # the corpus pieces' embeddings are kept for the next evaluation against this corpus
    assert len(list((tmp_path / "cache" / "embeddings").glob("*.npy"))) == 1


def test_evaluation_of_an_unenrolled_version_is_refused() -> None:
    study = factories.study()
    factories.prompt(study=study, split=PromptSplit.HOLDOUT)
    version = factories.version(kind=VersionKind.BASE, model_path="/m")
    with pytest.raises(ApplicationError, match="is not enrolled in the study"):
        evaluation_start(study=study, version_id=version.id)
