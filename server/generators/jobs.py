"""Job handlers of the generators app: build a base model, generate samples. Worker-only: these
import torch (through workers.ml), so the web process never imports this module."""

from __future__ import annotations

import math
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from django.conf import settings

from server.core.exceptions import ApplicationError
from server.core.paths import corpus_path_check, output_dir_check
from server.generators.demo import demo_versions_enrol_and_generate
from server.generators.endpoint_generation import endpoint_samples_generate_missing
from server.generators.image_jobs import image_generator_build_run, image_samples_generate_missing
from server.generators.models import (
    GeneratorVersion,
    Sample,
    VersionKind,
    sample_text_hash,
    sample_text_normalised,
)
from server.generators.services import (
    generator_version_register,
    version_is_image_generator,
    version_model_check,
)
from server.jobs.models import Job
from server.ratings.pair_selection import pair_selection_start
from server.studies.models import Modality, Prompt
from workers.ml.base_model import TINY_BUILD_CONFIG, BaseModelConfig, build_base_model
from workers.ml.progress import ProgressReporter
from workers.ml.sampling import (
    LoadedModel,
    SampleRequest,
    SamplingConfig,
    generate_samples,
    generation_defaults,
    generation_defaults_of,
    load_model,
)
from workers.ml.sampling import Sample as GeneratedSample
from workers.ml.vllm_sampling import engine_choose, generate_with_vllm


def checkpoint_dir_for(job: Job) -> Path:
    return Path(settings.VAR_DIR) / "checkpoints" / f"job-{job.id}"


def base_model_build_run(*, job: Job, report: ProgressReporter) -> dict[str, Any]:
    params = job.params
    if params.get("modality") == Modality.IMAGE:
        return image_generator_build_run(job=job, report=report, checkpoints=checkpoint_dir_for(job))
    # Checked at the start and again here, where the files are touched (see server.core.paths).
    corpus_path = corpus_path_check(params["corpus_path"], field="corpus_path")
    output_dir = output_dir_check(params["output_dir"], field="output_dir")
    base = TINY_BUILD_CONFIG if params.get("size") == "tiny" else BaseModelConfig()
    config = BaseModelConfig(**{**base.__dict__, **params.get("config", {})})
    checkpoints = checkpoint_dir_for(job)
    result = build_base_model(
        corpus=corpus_path.read_text(encoding="utf-8"),
        output_dir=output_dir,
        checkpoint_dir=checkpoints,
        config=config,
        reporter=report,
    )
    version = generator_version_register(
        generator_name=params["generator"],
        label=params["label"],
        kind=VersionKind.BASE,
        model_path=str(output_dir),
        decoding=params.get("decoding", {}),
        reference_corpus_path=str(corpus_path),
        study=job.study if params.get("enrol") else None,
        metadata={
            "built_by_job": job.id,
            "parameters": result.parameters,
            "steps": result.steps,
            "held_out_perplexity": result.held_out.as_dict() if result.held_out else None,
        },
    )
    shutil.rmtree(checkpoints, ignore_errors=True)
    if "demo_versions" in params.get("then", []) and job.study is not None:
        demo_versions_enrol_and_generate(
            study=job.study, model_path=str(output_dir), corpus_path=str(corpus_path), parent_id=job.id
        )
    return {
        "version_id": version.id,
        "output_dir": str(output_dir),
        "steps": result.steps,
        "resumed_from_step": result.resumed_from_step,
        "final_loss": result.losses[-1] if result.losses else None,
        "seconds": round(result.seconds, 2),
        "parameters": result.parameters,
        "held_out_perplexity": result.held_out.as_dict() if result.held_out else None,
    }


def samples_generate_missing(
    *,
    version: GeneratorVersion,
    prompts: list[Prompt],
    seeds: range,
    decoding_override: dict[str, Any],
    job: Job,
    on_chunk: Callable[[int, float], None],
) -> tuple[int, list[dict[str, int]]]:
    """Generate the samples of ``version`` that are missing for (prompt, seed); store each chunk.

    ``on_chunk(samples_done_in_chunk, tokens_per_second)`` is called after every stored chunk.
    Returns the number created and the out-of-memory events.
    """
    existing = set(
        Sample.objects.filter(version=version, prompt__in=prompts, seed__isnull=False).values_list(
            "prompt_id", "seed"
        )
    )
    todo = [(prompt, seed) for prompt in prompts for seed in seeds if (prompt.id, seed) not in existing]
    if not todo:
        return 0, []
    requested = {**version.decoding, **decoding_override}
    path = version_model_check(version=version, field="model_path")
    revision = version.model_revision or None
    engine = engine_choose(str(requested.pop("engine", "auto")))
    model: LoadedModel | None = None
    if engine == "local":
        model = load_model(
            path,
            device=requested.get("device", "auto"),
            dtype=requested.get("dtype", "auto"),
            revision=revision,
        )
        defaults = generation_defaults(model.model)
    else:
        defaults = generation_defaults_of(path, revision=revision)
    # The model's own generation_config defaults, under what the version and the job ask for.
    decoding = {**defaults, **requested}
    if "stop" in decoding:
        decoding["stop"] = tuple(decoding["stop"])
    config = SamplingConfig(**decoding)
    recorded = {key: value for key, value in decoding.items() if key not in ("device", "dtype", "batch_size")}
    if "stop" in recorded:
        recorded["stop"] = list(recorded["stop"])
    # What ran: the engine, the precision and device, and a hub model's resolved commit.
    provenance = (
        {
            "engine": "local",
            "dtype": str(model.dtype).removeprefix("torch."),
            "device": model.device.type,
            "revision": getattr(model.model.config, "_commit_hash", None) or revision,
        }
        if model is not None
        else {"engine": "vllm", "dtype": config.dtype, "device": "cuda", "revision": revision}
    )
    chunk_size = config.batch_size * 4  # a database write every few batches, progress as often
    pending: list[tuple[Prompt, int, GeneratedSample]] = []
    tokens = 0
    began = time.perf_counter()

    def store() -> None:
        nonlocal pending, tokens, began
        Sample.objects.bulk_create(
            [
                Sample(
                    prompt=prompt,
                    version=version,
                    text=sample_text_normalised(sample.text),
                    text_hash=sample_text_hash(sample_text_normalised(sample.text)),
                    seed=seed,
                    decoding=recorded,
                    token_count=sample.token_count,
                    logprob_sum=sample.logprob if math.isfinite(sample.logprob) else None,
                    latency_seconds=sample.latency_s,
                    metadata={"finish_reason": sample.finish_reason, **provenance},
                    job=job,
                )
                for prompt, seed, sample in pending
            ],
            ignore_conflicts=True,  # a sample another attempt already stored stays as it is
        )
        on_chunk(len(pending), tokens / max(time.perf_counter() - began, 1e-9))
        pending, tokens, began = [], 0, time.perf_counter()

    def collect(index: int, sample: GeneratedSample) -> None:
        nonlocal tokens
        prompt, seed = todo[index]
        pending.append((prompt, seed, sample))
        tokens += sample.token_count
        if len(pending) >= chunk_size:
            store()

    # One call over every missing sample: the batch stays full to the end, and finished samples
    # are stored a chunk at a time while the rest are decoded (a killed job keeps those).
    requests = [SampleRequest(prompt=prompt.text, seed=seed) for prompt, seed in todo]
    result = (
        generate_samples(model, requests, config=config, on_sample=collect)
        if model is not None
        else generate_with_vllm(path, requests, config=config, revision=revision, on_sample=collect)
    )
    if pending:
        store()
    out_of_memory = [
        {"batch_size": event.batch_size, "retried_with": event.retried_with}
        for event in result.out_of_memory_events
    ]
    return len(todo), out_of_memory


def generate_run(*, job: Job, report: ProgressReporter) -> dict[str, Any]:
    """Generate the missing samples of each (version, prompt, seed): a re-run adds no duplicate."""
    params = job.params
    prompts_of_study = Prompt.objects.filter(study=job.study).order_by("id")
    split = params["split"]
    prompts = list(prompts_of_study if split == "all" else prompts_of_study.filter(split=split))
    versions = list(GeneratorVersion.objects.filter(id__in=params["version_ids"]).order_by("id"))
    seeds = range(int(params["samples_per_prompt"]))
    total = len(versions) * len(prompts) * len(seeds)
    wanted = {(v.id, p.id, s) for v in versions for p in prompts for s in seeds}
    existing = set(
        Sample.objects.filter(version__in=versions, prompt__in=prompts, seed__isnull=False).values_list(
            "version_id", "prompt_id", "seed"
        )
    )
    done = len(existing & wanted)
    report(step=done, total=total, message=f"{done} of {total} samples already exist")
    created = 0
    out_of_memory: list[dict[str, int]] = []
    failed = 0
    failures: list[dict[str, Any]] = []
    for version in versions:

        def progress(count: int, tokens_per_second: float, version: GeneratorVersion = version) -> None:
            nonlocal done
            done += count
            report(
                step=done,
                total=total,
                message=f"{version}: {done} of {total} samples",
                metrics={
                    "images_per_second" if version_is_image_generator(version) else "tokens_per_second": (
                        tokens_per_second
                    )
                },
            )

        if version.kind == VersionKind.ENDPOINT:
            outcome = endpoint_samples_generate_missing(
                version=version,
                prompts=prompts,
                seeds=seeds,
                decoding_override=params.get("decoding", {}),
                job=job,
                on_chunk=progress,
            )
            created += outcome.created
            failed += outcome.failed
            failures += outcome.failures
            continue
        if version_is_image_generator(version):
            created += image_samples_generate_missing(
                version=version, prompts=prompts, seeds=seeds, job=job, on_chunk=progress
            )
            continue
        made, events = samples_generate_missing(
            version=version,
            prompts=prompts,
            seeds=seeds,
            decoding_override=params.get("decoding", {}),
            job=job,
            on_chunk=progress,
        )
        created += made
        out_of_memory += events
    if failed and not done:
        # Not one sample, now or before: a wrong URL, model name or key, not a few bad samples.
        raise ApplicationError(
            f"No sample was generated: {failed} requests failed; the first: {failures[0]['reason']}"
        )
    if failed:
        report(
            step=done,
            total=total,
            message=f"{done} of {total} samples; {failed} requests failed (see the result and log)",
        )
    if "select_pairs" in params.get("then", []) and job.study is not None:
        pair_selection_start(study=job.study, parent_id=job.id)
    result: dict[str, Any] = {"created": created, "total": total, "out_of_memory_events": out_of_memory}
    if failed:
        result |= {"failed": failed, "failures": failures}
    return result
