"""The demo's pipeline: build the base model once (cached under var/), enrol two versions of it
with different decoding settings, generate samples for the demo prompts, select pairs."""

from __future__ import annotations

import json
from pathlib import Path

from django.conf import settings
from django.db import transaction

from server.core.demo_texts import DEMO_VERSIONS
from server.generators.models import GeneratorVersion, VersionKind
from server.generators.services import (
    base_model_build_start,
    generate_start,
    generator_version_register,
    image_generator_build_start,
    version_is_image_generator,
)
from server.jobs.models import Job, JobKind, JobStatus
from server.ratings.models import Comparison
from server.studies.models import Modality, Study

IMAGE_MANIFEST_FILE = "image_generator.json"  # workers.ml.image_generators.MANIFEST_FILE (no torch here)

DEMO_GENERATOR = "lovelace-tiny"
DEMO_CORPUS = Path(__file__).resolve().parents[2] / "workers" / "ml" / "corpus" / "lovelace.txt"
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


# --- The image demo ----------------------------------------------------------------------------------

DEMO_IMAGE_GENERATOR = "lovelace-shapes"
# Built in this order, one after the other (the text pipeline keeps the worker's other slot).
DEMO_IMAGE_ARCHITECTURES = ("vae", "dcgan")
DEMO_IMAGE_SAMPLES_PER_PROMPT = 3


def demo_image_model_dir(architecture: str) -> Path:
    return Path(settings.VAR_DIR) / "models" / f"{DEMO_IMAGE_GENERATOR}-{architecture}"


def _demo_image_version_register(*, study: Study, architecture: str, model_dir: Path) -> GeneratorVersion:
    """The version of a generator folder built earlier (a demo whose database was reset keeps var/)."""
    manifest = json.loads((model_dir / IMAGE_MANIFEST_FILE).read_text())
    return generator_version_register(
        generator_name=DEMO_IMAGE_GENERATOR,
        label=architecture,
        kind=VersionKind.BASE,
        model_path=str(model_dir),
        study=study,
        metadata={
            "modality": Modality.IMAGE.value,
            "architecture": architecture,
            "generator_kind": manifest.get("kind"),
            "decoder_sha256": manifest.get("decoder_sha256"),
            "training_data": manifest.get("training_data"),
            "final_losses": manifest.get("final_losses"),
        },
    )


@transaction.atomic
def demo_image_generation_start(*, study: Study) -> str:
    """Start what the image demo still lacks: a build of each generator not yet in var/ (then, once
    both are built, generation and pair selection), or the generation right away."""
    if Comparison.objects.filter(study=study).exists():
        return ""
    busy = Job.objects.filter(
        study=study,
        kind__in=[JobKind.BUILD_BASE_MODEL, JobKind.GENERATE, JobKind.SELECT_PAIRS],
        status__in=[JobStatus.QUEUED, JobStatus.RUNNING],
    )
    if busy.exists():
        return ""
    missing: list[dict[str, str]] = []
    for architecture in DEMO_IMAGE_ARCHITECTURES:
        model_dir = demo_image_model_dir(architecture)
        if (model_dir / IMAGE_MANIFEST_FILE).exists():
            _demo_image_version_register(study=study, architecture=architecture, model_dir=model_dir)
            continue
        missing.append(
            {
                "architecture": architecture,
                "generator": DEMO_IMAGE_GENERATOR,
                "label": architecture,
                "output_dir": str(model_dir),
            }
        )
    if missing:
        # One build after the other: the worker's other slot stays free for the text pipeline.
        first = image_generator_build_start(
            architecture=missing[0]["architecture"],
            generator_name=missing[0]["generator"],
            label=missing[0]["label"],
            output_dir=missing[0]["output_dir"],
            study=study,
            enrol=True,
            then=["generate"],
            next_builds=missing[1:],
        )
        names = ", then ".join(build["architecture"] for build in missing)
        return f"image generator build job {first.id}: {names} (then generation and pair selection)"
    versions = [version.id for version in study.versions.all() if version_is_image_generator(version)]
    job = generate_start(
        study=study,
        version_ids=versions,
        split="all",
        samples_per_prompt=DEMO_IMAGE_SAMPLES_PER_PROMPT,
        then=["select_pairs"],
    )
    return f"image generate job {job.id} (then pair selection)"
