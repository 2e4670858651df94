"""The demo's pipeline: build the base model once (cached under var/), enrol two versions of it
with different decoding settings, generate samples for the demo prompts, select pairs."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.db import transaction

from server.generators.models import VersionKind
from server.generators.services import base_model_build_start, generate_start, generator_version_register
from server.jobs.models import Job, JobKind, JobStatus
from server.ratings.models import Comparison
from server.studies.models import Study

DEMO_GENERATOR = "lovelace-tiny"
DEMO_CORPUS = Path(__file__).resolve().parents[2] / "workers" / "ml" / "corpus" / "lovelace.txt"
# Two decoding settings of the same weights: raters see whether bolder sampling reads as more
# creative or as more broken. "bold" samples the model's own distribution (temperature 1); above 1
# the demo model invents words (1.1 put 6 % non-corpus words in its samples, 1.0 about 3 %), which
# only measures breakage. "careful" is cooler (bench.demo_quality prints both).
DEMO_VERSIONS = {
    "careful": {"temperature": 0.6, "top_p": 0.9, "max_new_tokens": 48, "stop": ["\n\n"]},
    "bold": {"temperature": 1.0, "top_p": 1.0, "max_new_tokens": 48, "stop": ["\n\n"]},
}
DEMO_SAMPLES_PER_PROMPT = 3


def demo_model_dir(corpus: Path = DEMO_CORPUS) -> Path:
    """Where the demo model of ``corpus`` is cached; another corpus gets its own folder."""
    name = DEMO_GENERATOR if corpus.resolve() == DEMO_CORPUS.resolve() else f"{DEMO_GENERATOR}-{corpus.stem}"
    return Path(settings.VAR_DIR) / "models" / name


def demo_versions_enrol_and_generate(
    *, study: Study, model_path: str, corpus_path: str, parent_id: int | None = None
) -> Job:
    versions = [
        generator_version_register(
            # The model folder names the generator: a demo built on another corpus is another one.
            generator_name=Path(model_path).name,
            label=label,
            kind=VersionKind.BASE,
            model_path=model_path,
            decoding=decoding,
            reference_corpus_path=corpus_path,
            study=study,
        )
        for label, decoding in DEMO_VERSIONS.items()
    ]
    return generate_start(
        study=study,
        version_ids=[version.id for version in versions],
        split="all",
        samples_per_prompt=DEMO_SAMPLES_PER_PROMPT,
        then=["select_pairs"],
        parent_id=parent_id,
    )


@transaction.atomic
def demo_generation_start(*, study: Study, corpus: Path | None = None) -> str:
    """Start what the demo still lacks; say what was started ('' when nothing was needed)."""
    if Comparison.objects.filter(study=study).exists():
        return ""
    busy = Job.objects.filter(
        study=study,
        kind__in=[JobKind.BUILD_BASE_MODEL, JobKind.GENERATE, JobKind.SELECT_PAIRS],
        status__in=[JobStatus.QUEUED, JobStatus.RUNNING],
    )
    if busy.exists():
        return ""
    corpus = (corpus or DEMO_CORPUS).resolve()
    model_dir = demo_model_dir(corpus)
    if (model_dir / "config.json").exists():
        job = demo_versions_enrol_and_generate(
            study=study, model_path=str(model_dir), corpus_path=str(corpus)
        )
        return f"generate job {job.id} (then pair selection)"
    job = base_model_build_start(
        corpus_path=str(corpus),
        generator_name=model_dir.name,
        label="base",
        output_dir=str(model_dir),
        study=study,
        then=["demo_versions"],
    )
    return f"base-model build job {job.id} (then two versions, generation and pair selection)"
