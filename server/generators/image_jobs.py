"""Image generators in the job system: the build (a ``build_base_model`` job with ``modality:
"image"``) and the generation of image samples (the image path of ``generate_run``).

Worker-only: imports torch through ``workers.ml.image_generators``; the web process never imports
this module (``server.generators.jobs`` imports it, and only workers import that one).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from django.db import transaction

from server.core.exceptions import ApplicationError
from server.core.paths import output_dir_check
from server.generators.images import image_asset_store_array, image_sample_create
from server.generators.models import GeneratorVersion, Sample, VersionKind
from server.generators.services import (
    generate_start,
    generator_version_register,
    image_build_config_check,
    image_generator_build_start,
    version_is_image_generator,
    version_model_check,
)
from server.jobs.models import Job
from server.studies.models import Modality, Prompt, Study
from workers.ml.image_dataset import ShapesConfig
from workers.ml.image_generators import (
    MANIFEST_FILE,
    ConditionalGanConfig,
    ConditionalVaeConfig,
    LoadedGenerator,
    build_conditional_gan,
    build_conditional_vae,
    generate_with,
    load_generator,
)
from workers.ml.progress import ProgressReporter

ARCHITECTURE_KIND = {"vae": "conditional_vae", "dcgan": "conditional_gan"}
# A build of seconds for tests: few images, a narrow network, a few dozen steps.
TINY_IMAGE_OVERRIDES: dict[str, Any] = {
    "images_per_class": 4,
    "latent_dim": 8,
    "width": 8,
    "label_dim": 4,
    "steps": 24,
    "batch_size": 16,
    "checkpoint_every": 8,
    "report_every": 4,
}
STORE_CHUNK = 16  # image samples per progress report (each is stored as it is drawn)


def image_build_config(
    architecture: str, size: str, overrides: dict[str, Any]
) -> ConditionalVaeConfig | ConditionalGanConfig:
    """The build config of ``architecture`` at ``size`` with ``overrides`` (checked again here: the
    parameters may come from ``manage.py job start``)."""
    checked = image_build_config_check(architecture=architecture, config=overrides)
    values = {**(TINY_IMAGE_OVERRIDES if size == "tiny" else {}), **checked}
    images_per_class = values.pop("images_per_class", None)
    config_class = ConditionalVaeConfig if architecture == "vae" else ConditionalGanConfig
    try:
        config = config_class(**values)
        if images_per_class is not None:
            config = replace(config, data=ShapesConfig(images_per_class=images_per_class))
    except ValueError as error:
        raise ApplicationError(
            f"The {architecture} config is not valid: {error}.", extra={"field": "config"}
        ) from None
    return config


def image_generator_build_run(*, job: Job, report: ProgressReporter, checkpoints: Path) -> dict[str, Any]:
    """Train the generator, register its BASE version, then start what ``then`` asks for.

    Resumable: a retried job continues from the last checkpoint in ``checkpoints`` (removed once
    the version is registered)."""
    params = job.params
    architecture = params.get("architecture", "")
    output_dir = output_dir_check(params["output_dir"], field="output_dir")
    config = image_build_config(architecture, params.get("size", "demo"), params.get("config") or {})
    build = build_conditional_vae if architecture == "vae" else build_conditional_gan
    result = build(output_dir=output_dir, checkpoint_dir=checkpoints, config=config, reporter=report)  # type: ignore[arg-type]
    manifest = json.loads((output_dir / MANIFEST_FILE).read_text())
    study = job.study if params.get("enrol") else None
    version = generator_version_register(
        generator_name=params["generator"],
        label=params["label"],
        kind=VersionKind.BASE,
        model_path=str(output_dir),
        study=study,
        metadata={
            "modality": Modality.IMAGE.value,
            "architecture": architecture,
            "generator_kind": result.kind,
            "decoder_sha256": manifest.get("decoder_sha256"),
            "training_data": manifest.get("training_data"),
            "built_by_job": job.id,
            "parameters": result.parameters,
            "steps": result.steps,
            "final_losses": manifest.get("final_losses"),
        },
    )
    shutil.rmtree(checkpoints, ignore_errors=True)
    follow_up = None
    next_builds = params.get("next_builds") or []
    if next_builds:
        follow_up = image_generator_build_start(
            architecture=next_builds[0]["architecture"],
            generator_name=next_builds[0]["generator"],
            label=next_builds[0]["label"],
            output_dir=next_builds[0]["output_dir"],
            size=params.get("size", "demo"),
            study=job.study,
            enrol=bool(params.get("enrol")),
            then=params.get("then", []),
            next_builds=next_builds[1:],
            parent_id=job.id,
        )
    elif "generate" in params.get("then", []) and job.study is not None:
        follow_up = image_generation_start_when_built(study=job.study, parent_id=job.id)
    return {
        "version_id": version.id,
        "output_dir": str(output_dir),
        "architecture": architecture,
        "steps": result.steps,
        "resumed_from_step": result.resumed_from_step,
        "final_losses": manifest.get("final_losses"),
        "seconds": round(result.seconds, 2),
        "parameters": result.parameters,
        "next_job_id": follow_up.id if follow_up else None,
    }


@transaction.atomic
def image_generation_start_when_built(*, study: Study, parent_id: int) -> Job | None:
    """After an image build with ``then: ["generate"]``: once no other such build of the study is
    still queued or running, generate every enrolled image version's samples, then select pairs.

    Two builds finishing together are serialised on the study's row, so exactly one of them
    starts the generation."""
    from server.generators.demo import DEMO_IMAGE_SAMPLES_PER_PROMPT
    from server.jobs.models import JobKind, JobStatus

    Study.objects.select_for_update().filter(id=study.id).first()
    # Filtered here, not in SQL: JSON containment is not available on SQLite (the demo's database).
    others = Job.objects.filter(
        study=study, kind=JobKind.BUILD_BASE_MODEL, status__in=[JobStatus.QUEUED, JobStatus.RUNNING]
    ).exclude(id=parent_id)
    if any(
        job.params.get("modality") == Modality.IMAGE and "generate" in job.params.get("then", [])
        for job in others
    ):
        return None
    versions = [v for v in study.versions.order_by("id") if version_is_image_generator(v)]
    if not versions:
        return None
    return generate_start(
        study=study,
        version_ids=[v.id for v in versions],
        split="all",
        samples_per_prompt=DEMO_IMAGE_SAMPLES_PER_PROMPT,
        then=["select_pairs"],
        parent_id=parent_id,
    )


def latent_seed(prompt: Prompt, seed: int) -> int:
    """The sampling seed of (prompt, seed): derived from both, so that samples of different
    prompts at one seed do not share a latent vector, and a resumed job draws what a fresh one
    would (the image depends on nothing else)."""
    digest = hashlib.sha256(f"{prompt.text_hash}:{seed}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % (2**63)


def generator_conditions_check(
    version: GeneratorVersion, loaded: LoadedGenerator, prompts: list[Prompt]
) -> None:
    """Every prompt must name a condition of the generator: an error naming the first that does not."""
    names = set(loaded.class_names)
    for prompt in prompts:
        if " ".join(prompt.text.strip().lower().split()) not in names:
            raise ApplicationError(
                f"{version} cannot draw the prompt {prompt.text!r}: an image generator draws one of its "
                f"conditions ({', '.join(loaded.class_names)}).",
                extra={"field": "prompts"},
            )


def image_samples_generate_missing(
    *,
    version: GeneratorVersion,
    prompts: list[Prompt],
    seeds: range,
    job: Job,
    on_chunk: Callable[[int, float], None],
) -> int:
    """Draw the images of ``version`` that are missing for (prompt, seed), each stored as a
    content-addressed asset and an image sample with its provenance. Returns the number created.

    Same contract as text generation: a re-run (after a crash or a cancel) draws only what is
    missing, and the same (prompt, seed) always gives the same image."""
    if not version_is_image_generator(version):
        raise ApplicationError(f"{version} is not an image generator.")
    existing = set(
        Sample.objects.filter(version=version, prompt__in=prompts, seed__isnull=False).values_list(
            "prompt_id", "seed"
        )
    )
    todo = [(prompt, seed) for prompt in prompts for seed in seeds if (prompt.id, seed) not in existing]
    if not todo:
        return 0
    path = Path(version_model_check(version=version, field="model_path"))
    try:
        loaded = load_generator(path)
    except ValueError as error:
        raise ApplicationError(f"{version}: {error}") from None
    generator_conditions_check(version, loaded, [prompt for prompt, _ in todo])
    provenance = {
        "architecture": version.metadata.get("architecture"),
        "generator_kind": loaded.manifest.get("kind"),
        "decoder_sha256": loaded.manifest.get("decoder_sha256"),
        "device": "cpu",
    }
    created, in_chunk = 0, 0
    began = time.perf_counter()
    for prompt, seed in todo:
        started = time.perf_counter()
        drawn = latent_seed(prompt, seed)
        image = generate_with(loaded, [prompt.text], drawn)[0]
        latency = time.perf_counter() - started
        asset = image_asset_store_array(array=image)
        image_sample_create(
            prompt=prompt,
            version=version,
            asset=asset,
            seed=seed,
            decoding={},
            metadata={**provenance, "latent_seed": drawn},
            latency_seconds=latency,
            job_id=job.id,
        )
        created += 1
        in_chunk += 1
        if in_chunk == STORE_CHUNK:
            on_chunk(in_chunk, in_chunk / max(time.perf_counter() - began, 1e-9))
            in_chunk, began = 0, time.perf_counter()
    if in_chunk:
        on_chunk(in_chunk, in_chunk / max(time.perf_counter() - began, 1e-9))
    return created
