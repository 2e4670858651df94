"""Writing generators, versions and samples; starting generation jobs."""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from server.core.exceptions import ApplicationError, NotFound
from server.core.paths import corpus_path_check, data_roots, model_path_check, output_dir_check
from server.core.untrusted_json import text_problem
from server.generators.image_importing import ImageImportRow, parse_image_archive
from server.generators.images import image_asset_for
from server.generators.importing import ImportRow, parse_import
from server.generators.models import (
    Generator,
    GeneratorVersion,
    ImageAsset,
    Sample,
    VersionKind,
    sample_text_hash,
    sample_text_normalised,
)
from server.jobs.models import Job, JobKind
from server.jobs.services import job_enqueue
from server.studies.models import Modality, Prompt, PromptSplit, Study, prompt_text_hash
from server.studies.services import study_enrol_version
from workers.ml.endpoint_client import EndpointConfig, EndpointDecoding
from workers.queues import Queue

DECODING_FIELDS = {
    "temperature",
    "top_p",
    "top_k",
    "max_new_tokens",
    "stop",
    "end_at_sentence",
    "batch_size",
    "dtype",
    "engine",
}
# Kept here, not imported from workers.ml (the web process never imports torch): what
# workers/ml/sampling.py and workers/ml/vllm_sampling.py accept.
DTYPES = ("auto", "float32", "bfloat16", "float16")
ENGINES = ("auto", "local", "vllm")


def validate_decoding(decoding: dict[str, Any]) -> dict[str, Any]:
    """Check decoding parameters by name and range, so a bad value fails at the form, not in a worker."""
    unknown = sorted(set(decoding) - DECODING_FIELDS)
    if unknown:
        raise ApplicationError(
            f"Unknown decoding parameter {unknown[0]!r}; known: {', '.join(sorted(DECODING_FIELDS))}.",
            extra={"field": "decoding"},
        )
    checks = {
        "temperature": lambda v: isinstance(v, int | float) and 0 <= v <= 5,
        "top_p": lambda v: isinstance(v, int | float) and 0 < v <= 1,
        "top_k": lambda v: isinstance(v, int) and 0 <= v <= 100_000,
        "max_new_tokens": lambda v: isinstance(v, int) and 1 <= v <= 4096,
        "batch_size": lambda v: isinstance(v, int) and 1 <= v <= 1024,
        "stop": lambda v: isinstance(v, list) and all(isinstance(s, str) and s for s in v),
        "end_at_sentence": lambda v: isinstance(v, bool),
        "dtype": lambda v: v in DTYPES,
        "engine": lambda v: v in ENGINES,
    }
    for name, value in decoding.items():
        if (isinstance(value, bool) and name != "end_at_sentence") or not checks[name](value):
            raise ApplicationError(
                f"Decoding parameter {name!r} has an invalid value {value!r}.",
                extra={"field": f"decoding.{name}"},
            )
    return decoding


ENDPOINT_FIELDS = {
    "base_url",
    "model",
    "mode",
    "api_key_env",
    "concurrency",
    "timeout_seconds",
    "max_retries",
    "backoff_seconds",
}
# What an endpoint takes of the decoding parameters: top_k is not part of the OpenAI protocol, and
# batch_size is the local sampler's (an endpoint's is ``concurrency``).
ENDPOINT_DECODING_FIELDS = {"temperature", "top_p", "max_new_tokens", "stop"}
MAX_ENDPOINT_STOPS = 4
_ENV_VAR_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")


def _endpoint_error(message: str, name: str) -> ApplicationError:
    return ApplicationError(message, extra={"field": f"endpoint.{name}"})


def validate_endpoint(settings_in: dict[str, Any]) -> EndpointConfig:
    """An endpoint version's settings, checked by name, type and range, with errors in plain words.

    The API key itself is never among them: ``api_key_env`` names the environment variable of the
    worker that holds it, read when a job runs.
    """
    if not isinstance(settings_in, dict):
        raise ApplicationError("The endpoint settings must be an object.", extra={"field": "endpoint"})
    unknown = sorted(set(settings_in) - ENDPOINT_FIELDS)
    if unknown:
        hint = (
            " Put the key in an environment variable and give its name as api_key_env."
            if any("key" in name and name != "api_key_env" for name in unknown)
            else ""
        )
        raise _endpoint_error(
            f"Unknown endpoint setting {unknown[0]!r}; known: {', '.join(sorted(ENDPOINT_FIELDS))}.{hint}",
            unknown[0],
        )
    base_url = settings_in.get("base_url")
    if not isinstance(base_url, str) or not base_url.strip():
        raise _endpoint_error("Give the endpoint's base URL, e.g. http://localhost:8000/v1.", "base_url")
    base_url = base_url.strip().rstrip("/")
    try:
        parts = urlsplit(base_url)
        port = parts.port  # reading it checks it
    except ValueError:
        raise _endpoint_error(f"The base URL {base_url!r} is not a valid URL.", "base_url") from None
    if parts.scheme not in ("http", "https") or not parts.hostname or len(base_url) > 500:
        raise _endpoint_error(
            "The base URL must start with http:// or https:// and name a host, e.g. http://localhost:8000/v1.",
            "base_url",
        )
    if parts.username is not None or parts.password is not None or parts.query or parts.fragment:
        raise _endpoint_error(
            "The base URL must not carry credentials, a query or a fragment: it is stored and shown. "
            "Put the API key in an environment variable and give its name as api_key_env.",
            "base_url",
        )
    del port
    model = settings_in.get("model")
    if not isinstance(model, str) or not model.strip() or len(model) > 200 or text_problem(model):
        raise _endpoint_error(
            "Give the model name the endpoint serves (at most 200 characters), e.g. "
            "meta-llama/Llama-3.1-8B-Instruct.",
            "model",
        )
    mode = settings_in.get("mode", "completions")
    if mode not in ("chat", "completions"):
        raise _endpoint_error("The mode must be 'chat' or 'completions'.", "mode")
    api_key_env = settings_in.get("api_key_env", "")
    if not isinstance(api_key_env, str) or (api_key_env and not _ENV_VAR_NAME.fullmatch(api_key_env)):
        # Said without repeating the value: it may be the key itself, pasted in the wrong field.
        raise _endpoint_error(
            "api_key_env must be the NAME of an environment variable (letters, digits and _, not "
            "starting with a digit), e.g. OPENAI_API_KEY — not the key itself.",
            "api_key_env",
        )
    ranges: dict[str, tuple[type, float, float, Any]] = {
        "concurrency": (int, 1, 256, 4),
        "timeout_seconds": (float, 0.1, 3600, 60.0),
        "max_retries": (int, 0, 20, 4),
        "backoff_seconds": (float, 0.0, 60, 1.0),
    }
    numbers: dict[str, Any] = {}
    for name, (kind, low, high, default) in ranges.items():
        value = settings_in.get(name, default)
        wanted = int if kind is int else int | float
        if isinstance(value, bool) or not isinstance(value, wanted) or not low <= value <= high:
            what = "a whole number" if kind is int else "a number of seconds"
            raise _endpoint_error(f"{name} must be {what} from {low:g} to {high:g}.", name)
        numbers[name] = kind(value)
    return EndpointConfig(
        base_url=base_url, model=model.strip(), mode=mode, api_key_env=api_key_env, **numbers
    )


def endpoint_decoding(decoding: dict[str, Any]) -> EndpointDecoding:
    """The decoding parameters an endpoint request carries; refuses those it cannot carry."""
    validate_decoding(decoding)
    unsupported = sorted(set(decoding) - ENDPOINT_DECODING_FIELDS - {"batch_size"})
    if unsupported:
        raise ApplicationError(
            f"An endpoint takes the decoding parameters {', '.join(sorted(ENDPOINT_DECODING_FIELDS))}; "
            f"not {unsupported[0]!r}.",
            extra={"field": f"decoding.{unsupported[0]}"},
        )
    stop = decoding.get("stop", [])
    if len(stop) > MAX_ENDPOINT_STOPS:
        # The OpenAI protocol takes at most four; vLLM accepts more, hosted APIs answer 400 to
        # every request, which would fail the whole job one sample at a time.
        raise ApplicationError(
            f"An endpoint takes at most {MAX_ENDPOINT_STOPS} stop sequences (the OpenAI protocol's "
            f"limit); {len(stop)} were given.",
            extra={"field": "decoding.stop"},
        )
    return EndpointDecoding(
        temperature=decoding.get("temperature"),
        top_p=decoding.get("top_p"),
        max_tokens=decoding.get("max_new_tokens", EndpointDecoding.max_tokens),
        stop=tuple(decoding.get("stop", ())),
    )


def version_endpoint_check(*, version: GeneratorVersion, field: str) -> EndpointConfig:
    """The endpoint settings of ``version`` as a job uses them (a row the Django admin edited is
    checked again), else an error naming the version and ``field``."""
    try:
        return validate_endpoint(version.endpoint)
    except ApplicationError as error:
        raise ApplicationError(f"{version}: {error.message}", extra={"field": field}) from None


def endpoint_settings_stored(config: EndpointConfig) -> dict[str, Any]:
    return dict(config.__dict__)


def version_model_check(*, version: GeneratorVersion, field: str) -> str:
    """The version's model as a job may load it (see ``server.core.paths``), else an error naming
    the version and ``field``."""
    try:
        path = model_path_check(version.model_path)
        # A trained child saved as an adapter loads the base its adapter_config.json names: that
        # base must pass the same check (an adapter folder could name any path).
        current, depth = path, 0
        while (Path(current) / "adapter_config.json").is_file() and depth < 16:
            try:
                base = json.loads((Path(current) / "adapter_config.json").read_text())[
                    "base_model_name_or_path"
                ]
            except (OSError, ValueError, KeyError, TypeError):
                raise ApplicationError("its adapter_config.json names no base model.") from None
            current, depth = model_path_check(base), depth + 1
        return path
    except ApplicationError as error:
        raise ApplicationError(f"{version}: {error.message}", extra={"field": field}) from None


def version_corpus_check(*, version: GeneratorVersion, field: str) -> Path | None:
    """The version's reference corpus as a job may read it (None when it has none)."""
    if not version.reference_corpus_path:
        return None
    try:
        return corpus_path_check(version.reference_corpus_path, field="reference_corpus_path")
    except ApplicationError as error:
        raise ApplicationError(f"{version}: {error.message}", extra={"field": field}) from None


def generator_version_register(
    *,
    generator_name: str,
    label: str,
    kind: str,
    model_path: str = "",
    model_revision: str = "",
    decoding: dict[str, Any] | None = None,
    reference_corpus_path: str = "",
    metadata: dict[str, Any] | None = None,
    endpoint: dict[str, Any] | None = None,
    study: Study | None = None,
) -> GeneratorVersion:
    """Register (or return the existing) version ``generator_name/label``; enrol it in ``study``.

    An endpoint version (kind "endpoint") has ``endpoint`` settings (see ``validate_endpoint``)
    and no model path."""
    if not generator_name.strip() or not label.strip():
        raise ApplicationError("A version needs a generator name and a label.")
    generator, _ = Generator.objects.get_or_create(name=generator_name.strip())
    version = GeneratorVersion.objects.filter(generator=generator, label=label.strip()).first()
    if version is None:
        # Stored resolved: the row names the folder that was checked, not a symlink to re-point.
        if model_path:
            model_path = model_path_check(model_path, field="model_path")
        if reference_corpus_path:
            reference_corpus_path = str(
                corpus_path_check(reference_corpus_path, field="reference_corpus_path")
            )
        stored_endpoint: dict[str, Any] = {}
        if kind == VersionKind.ENDPOINT:
            stored_endpoint = endpoint_settings_stored(validate_endpoint(endpoint or {}))
            endpoint_decoding(dict(decoding or {}))
        elif endpoint:
            raise ApplicationError(
                "Only an endpoint version has endpoint settings.", extra={"field": "endpoint"}
            )
        version = GeneratorVersion(
            generator=generator,
            label=label.strip(),
            kind=kind,
            model_path=model_path,
            model_revision=model_revision.strip(),
            endpoint=stored_endpoint,
            decoding=validate_decoding(dict(decoding or {})),
            reference_corpus_path=reference_corpus_path,
            metadata=metadata or {},
        )
        try:
            version.full_clean()
        except ValidationError as error:
            raise ApplicationError(
                "The version is not valid.", extra={"fields": error.message_dict}
            ) from None
        version.save()
    elif version.kind != kind:
        raise ApplicationError(
            f"{generator.name}/{version.label} is already registered as {version.kind}, not {kind}."
        )
    if study is not None:
        study_enrol_version(study=study, version=version)
    return version


@dataclass
class ImportResult:
    created: int = 0
    duplicates: list[int] = field(default_factory=list)  # line numbers of samples already present
    prompts_created: int = 0
    versions: list[str] = field(default_factory=list)
    # An image import's images by manifest line (duplicates too): the SHA-256 of the stored,
    # re-encoded bytes, by which gold checks name an image (``gold_import``). Empty for texts.
    images: list[dict[str, Any]] = field(default_factory=list)


def samples_import_file(
    *, study_slug: str, data: bytes, filename: str, declared_format: str | None = None
) -> ImportResult:
    """Parse and import a JSONL/CSV upload, or for an image study a zip archive of images with a
    manifest (``format`` "zip" or a name ending in .zip; see ``image_importing``). Any error
    imports nothing and names its line and field."""
    if declared_format == "zip" or (not declared_format and filename.lower().endswith(".zip")):
        return image_samples_import_file(study_slug=study_slug, data=data)
    study = Study.objects.filter(slug=study_slug).first()
    if study is None:
        raise NotFound(f"There is no study {study_slug!r}.", extra={"field": "study"})
    if study.modality == Modality.IMAGE:
        raise ApplicationError(
            f"The study {study.slug!r} is an image study: import a .zip of its images with a manifest "
            "(manifest.jsonl or manifest.csv).",
            extra={"field": "file"},
        )
    rows = parse_import(
        data, filename=filename, declared_format=declared_format, max_bytes=settings.LOVELACE_MAX_UPLOAD_BYTES
    )
    return samples_import(study=study, rows=rows)


class _ImportedRow(Protocol):
    """What the text and the image import share of a row."""

    @property
    def line(self) -> int: ...
    @property
    def prompt(self) -> str: ...
    @property
    def generator(self) -> str: ...
    @property
    def version(self) -> str: ...
    @property
    def split(self) -> str: ...
    @property
    def prompt_id(self) -> str: ...


def _import_prompts(*, study: Study, rows: Sequence[_ImportedRow]) -> tuple[dict[str, Prompt], int]:
    """The study's prompts by text hash, with the rows' new prompts created; a new prompt given two
    splits refuses the file. Answers the prompts and how many were created."""
    prompts = {prompt.text_hash: prompt for prompt in Prompt.objects.filter(study=study)}
    split_of_new_prompt: dict[str, str] = {}
    for row in rows:
        text_hash = prompt_text_hash(row.prompt)
        if text_hash in prompts:
            continue
        earlier = split_of_new_prompt.setdefault(text_hash, row.split)
        if earlier != row.split:
            raise ApplicationError(
                f"The file was not imported: line {row.line}, field 'split': the prompt appears earlier "
                f"with split {earlier!r}.",
                extra={"errors": [{"line": row.line, "field": "split", "message": "conflicting split"}]},
            )
    new_prompts = [
        Prompt(
            study=study,
            text=row.prompt.strip(),
            text_hash=prompt_text_hash(row.prompt),
            split=row.split,
            external_id=row.prompt_id,
        )
        for row in {
            prompt_text_hash(r.prompt): r for r in rows if prompt_text_hash(r.prompt) not in prompts
        }.values()
    ]
    for prompt in Prompt.objects.bulk_create(new_prompts):
        prompts[prompt.text_hash] = prompt
    return prompts, len(new_prompts)


def _import_versions(
    *, study: Study, rows: Sequence[_ImportedRow]
) -> dict[tuple[str, str], GeneratorVersion]:
    """Each (generator, version) of the rows, registered as external and enrolled in the study;
    a version of another kind refuses the file."""
    versions: dict[tuple[str, str], GeneratorVersion] = {}
    for row in rows:
        key = (row.generator.strip(), row.version)
        if key not in versions:
            existing = GeneratorVersion.objects.filter(generator__name=key[0], label=key[1]).first()
            if existing is not None and existing.kind != VersionKind.EXTERNAL:
                raise ApplicationError(
                    f"The file was not imported: line {row.line}, field 'generator': {key[0]}/{key[1]} is a "
                    f"{existing.kind} version, not an external one.",
                    extra={"errors": [{"line": row.line, "field": "generator", "message": "not external"}]},
                )
            versions[key] = generator_version_register(
                generator_name=key[0], label=key[1], kind=VersionKind.EXTERNAL, study=study
            )
    return versions


def _import_targets(
    *, study: Study, rows: Sequence[_ImportedRow]
) -> tuple[
    ImportResult, dict[str, Prompt], dict[tuple[str, str], GeneratorVersion], set[tuple[int, int, str]]
]:
    """What an import of ``rows`` (texts or images) writes into: its result so far, the prompts by
    text hash (created when new), the external versions by (generator, label) (registered and
    enrolled when new), and the (version, prompt, text hash) keys of the imported samples that
    these versions already have (an image sample's text hash is its image's)."""
    result = ImportResult()
    prompts, result.prompts_created = _import_prompts(study=study, rows=rows)
    versions = _import_versions(study=study, rows=rows)
    result.versions = sorted(f"{name}/{label}" for name, label in versions)
    existing = set(
        Sample.objects.filter(
            version__in=list(versions.values()), prompt__study=study, seed__isnull=True
        ).values_list("version_id", "prompt_id", "text_hash")
    )
    return result, prompts, versions, existing


def _imported_samples_create(samples: list[Sample]) -> int:
    try:
        with transaction.atomic():
            Sample.objects.bulk_create(samples)
    except IntegrityError:  # a concurrent import of the same samples: refuse whole, keep nothing
        raise ApplicationError(
            "Another import of the same samples ran at the same time; try again."
        ) from None
    return len(samples)


@transaction.atomic
def samples_import(*, study: Study, rows: list[ImportRow]) -> ImportResult:
    """Import rows in one transaction: prompts are matched by normalised text (created when new),
    each (generator, version) is registered as external and enrolled; a sample whose text the
    version already has for that prompt (in the database or earlier in the file) is a duplicate,
    reported by line and skipped."""
    result, prompts, versions, existing_texts = _import_targets(study=study, rows=rows)
    to_create: list[Sample] = []
    for row in rows:
        version = versions[(row.generator.strip(), row.version)]
        prompt = prompts[prompt_text_hash(row.prompt)]
        text = sample_text_normalised(row.text)
        key = (version.id, prompt.id, sample_text_hash(text))
        if key in existing_texts:
            result.duplicates.append(row.line)
            continue
        existing_texts.add(key)
        to_create.append(
            Sample(prompt=prompt, version=version, text=text, text_hash=key[2], metadata=row.metadata)
        )
    result.created = _imported_samples_create(to_create)
    return result


def image_samples_import_file(*, study_slug: str, data: bytes) -> ImportResult:
    """Import image samples from a zip archive with a manifest (see ``image_importing``). Any
    error imports nothing and names its manifest line, field and image file."""
    study = Study.objects.filter(slug=study_slug).first()
    if study is None:
        raise NotFound(f"There is no study {study_slug!r}.", extra={"field": "study"})
    if study.modality != Modality.IMAGE:
        raise ApplicationError(
            f"The study {study.slug!r} is a {study.modality} study: image samples go to an image study.",
            extra={"field": "study"},
        )
    return image_samples_import(study=study, rows=parse_image_archive(data))


@transaction.atomic
def image_samples_import(*, study: Study, rows: list[ImageImportRow]) -> ImportResult:
    """Import parsed image rows in one transaction, as ``samples_import`` does texts: an image the
    version already has for that prompt (in the database or earlier in the file) is a duplicate,
    reported by line and skipped. The images are written to storage only after every row passed;
    a rolled-back import leaves files that nothing names, harmless since they are named by content
    (the next import of the same pixels reuses them)."""
    result, prompts, versions, existing = _import_targets(study=study, rows=rows)
    assets: dict[str, ImageAsset] = {}
    to_create: list[Sample] = []
    for row in rows:
        assert row.image is not None  # parse_image_archive sets it on every row it returns
        version = versions[(row.generator.strip(), row.version)]
        prompt = prompts[prompt_text_hash(row.prompt)]
        key = (version.id, prompt.id, row.image.sha256)
        result.images.append({"line": row.line, "sha256": row.image.sha256})
        if key in existing:
            result.duplicates.append(row.line)
            continue
        existing.add(key)
        if row.image.sha256 not in assets:
            assets[row.image.sha256] = image_asset_for(row.image)
        to_create.append(
            Sample(
                prompt=prompt,
                version=version,
                text="",
                image=assets[row.image.sha256],
                text_hash=row.image.sha256,
                metadata=row.metadata,
            )
        )
    result.created = _imported_samples_create(to_create)
    return result


def generate_start(
    *,
    study: Study,
    version_ids: list[int],
    split: str = PromptSplit.TRAIN,
    samples_per_prompt: int = 2,
    decoding: dict[str, Any] | None = None,
    then: list[str] | None = None,
    created_by_id: int | None = None,
    parent_id: int | None = None,
) -> Job:
    """Start a ``generate`` job: ``samples_per_prompt`` samples per prompt of ``split`` per version."""
    if split not in [*PromptSplit.values, "all"]:
        raise ApplicationError(
            f"Split must be one of {', '.join(PromptSplit.values)} or all.", extra={"field": "split"}
        )
    if not 1 <= samples_per_prompt <= 64:
        raise ApplicationError(
            "Samples per prompt must be between 1 and 64.", extra={"field": "samples_per_prompt"}
        )
    if not version_ids:
        raise ApplicationError("Choose at least one version.", extra={"field": "version_ids"})
    versions = list(GeneratorVersion.objects.filter(id__in=version_ids))
    missing = sorted(set(version_ids) - {version.id for version in versions})
    if missing:
        raise NotFound(f"There is no version {missing[0]}.", extra={"field": "version_ids"})
    external = [str(version) for version in versions if version.kind == VersionKind.EXTERNAL]
    if external:
        raise ApplicationError(
            f"{external[0]} is external: import its samples instead.", extra={"field": "version_ids"}
        )
    enrolled = set(study.versions.values_list("id", flat=True))
    not_enrolled = [str(version) for version in versions if version.id not in enrolled]
    if not_enrolled:
        raise ApplicationError(
            f"{not_enrolled[0]} is not enrolled in the study.", extra={"field": "version_ids"}
        )
    validate_decoding(dict(decoding or {}))
    prompts = Prompt.objects.filter(study=study)
    if not (prompts if split == "all" else prompts.filter(split=split)).exists():
        raise ApplicationError(f"The study has no {split} prompts.", extra={"field": "split"})
    for version in versions:  # a row the Django admin edited is refused here, not only in the worker
        # An image study's prompts are conditions for image generators; a text study's are not.
        if version_is_image_generator(version) != (study.modality == Modality.IMAGE):
            raise ApplicationError(
                f"{version} generates {'images' if version_is_image_generator(version) else 'text'}; "
                f"the study {study.slug!r} is a {study.modality} study.",
                extra={"field": "version_ids"},
            )
        if version.kind == VersionKind.ENDPOINT:
            version_endpoint_check(version=version, field="version_ids")
            try:
                endpoint_decoding({**version.decoding, **(decoding or {})})
            except ApplicationError as error:
                raise ApplicationError(f"{version}: {error.message}", extra={"field": "decoding"}) from None
        else:
            version_model_check(version=version, field="version_ids")
    # Endpoint versions only: the work is waiting on HTTP answers, not a GPU.
    endpoint_only = all(version.kind == VersionKind.ENDPOINT for version in versions)
    return job_enqueue(
        kind=JobKind.GENERATE,
        study_id=study.id,
        created_by_id=created_by_id,
        parent_id=parent_id,
        queue=Queue.CPU if endpoint_only else None,
        params={
            "version_ids": sorted(version_ids),
            "split": split,
            "samples_per_prompt": samples_per_prompt,
            "decoding": decoding or {},
            "then": then or [],
        },
    )


def samples_per_version(*, study: Study) -> dict[int, int]:
    return dict(Counter(Sample.objects.filter(prompt__study=study).values_list("version_id", flat=True)))


MAX_CORPUS_BYTES = 500 * 1024 * 1024  # a larger corpus belongs on a bigger machine than the builder's


def corpus_import_local(*, source: Path) -> Path:
    """A corpus file named on the command line (``manage.py demo --corpus``, ``build_base_model``),
    as a path that jobs may read: the file itself when it lies in the allowed data folders, else a
    copy at ``var/corpora/<sha256 prefix>/<name>``. The shell user may read any file the server can;
    staff through the API may not, so jobs only ever read from the data folders. The copy is named
    by its content, so importing the same file again reuses it and a version's corpus cannot change
    under its evaluations."""
    path = source.expanduser().resolve()
    if not path.is_file():
        raise ApplicationError(f"There is no corpus file {source}.", extra={"field": "corpus"})
    if any(path.is_relative_to(root) for root in data_roots()):
        return path
    if path.stat().st_size > MAX_CORPUS_BYTES:
        raise ApplicationError(
            f"The corpus is larger than {MAX_CORPUS_BYTES:,} bytes.", extra={"field": "corpus"}
        )
    data = path.read_bytes()
    target = Path(settings.VAR_DIR) / "corpora" / hashlib.sha256(data).hexdigest()[:16] / path.name
    if not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        temporary.write_bytes(data)
        os.replace(temporary, target)  # atomic: a reader sees no half-written corpus
    return target


def base_model_build_start(
    *,
    corpus_path: str,
    generator_name: str,
    label: str,
    output_dir: str,
    size: str = "demo",
    study: Study | None = None,
    enrol: bool = False,
    then: list[str] | None = None,
    created_by_id: int | None = None,
) -> Job:
    """Start building a small GPT-2 and its tokenizer from a UTF-8 text corpus (pieces separated
    by blank lines). The file is checked here, so a bad path fails now and not in a worker."""
    if size not in ("demo", "tiny"):
        raise ApplicationError("Size must be 'demo' or 'tiny'.", extra={"field": "size"})
    path = corpus_path_check(corpus_path, field="corpus")
    output_dir_check(output_dir, field="output_dir")
    if path.stat().st_size > MAX_CORPUS_BYTES:
        raise ApplicationError(
            f"The corpus is larger than {MAX_CORPUS_BYTES:,} bytes.", extra={"field": "corpus"}
        )
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise ApplicationError(
            f"The corpus is not valid UTF-8 (line {line}, byte {error.start}).", extra={"field": "corpus"}
        ) from None
    if not text.strip():
        raise ApplicationError("The corpus is empty.", extra={"field": "corpus"})
    if not generator_name.strip() or not label.strip():
        raise ApplicationError("A build needs a generator name and a label.")
    return job_enqueue(
        kind=JobKind.BUILD_BASE_MODEL,
        study_id=study.id if study else None,
        created_by_id=created_by_id,
        params={
            "corpus_path": str(path),
            "output_dir": output_dir,
            "generator": generator_name.strip(),
            "label": label.strip(),
            "size": size,
            "enrol": enrol,
            "then": then or [],
        },
    )


# --- Image generators ----------------------------------------------------------------------------

IMAGE_ARCHITECTURES = ("vae", "dcgan")
# What a build may override, per architecture (the fields of workers.ml.image_generators'
# ConditionalVaeConfig / ConditionalGanConfig, listed here: the web process never imports torch),
# plus "images_per_class", the size of the rendered training set.
_IMAGE_COMMON_FIELDS = {
    "latent_dim": int,
    "width": int,
    "label_dim": int,
    "steps": int,
    "batch_size": int,
    "learning_rate": float,
    "seed": int,
    "checkpoint_every": int,
    "report_every": int,
    "images_per_class": int,
}
IMAGE_CONFIG_FIELDS: dict[str, dict[str, type]] = {
    "vae": {**_IMAGE_COMMON_FIELDS, "kl_weight": float, "pixel_precision": float},
    "dcgan": dict(_IMAGE_COMMON_FIELDS),
}


def version_is_image_generator(version: GeneratorVersion) -> bool:
    """Whether ``version`` draws images (registered by an image build or an image policy job)."""
    return (version.metadata or {}).get("modality") == Modality.IMAGE


def image_build_config_check(*, architecture: str, config: dict[str, Any] | None) -> dict[str, Any]:
    """The overrides of an image build, checked by name and type (a clear error naming the field);
    the worker checks the values again when it builds the config."""
    if architecture not in IMAGE_ARCHITECTURES:
        raise ApplicationError(
            f"Architecture must be one of {', '.join(IMAGE_ARCHITECTURES)}, not {architecture!r}.",
            extra={"field": "architecture"},
        )
    if config is None:
        return {}
    if not isinstance(config, dict):
        raise ApplicationError("The config must be an object of settings.", extra={"field": "config"})
    known = IMAGE_CONFIG_FIELDS[architecture]
    checked: dict[str, Any] = {}
    for name, value in config.items():
        if name not in known:
            raise ApplicationError(
                f"config.{name} is not a setting of a {architecture} build; "
                f"known: {', '.join(sorted(known))}.",
                extra={"field": f"config.{name}"},
            )
        wanted = known[name]
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or (wanted is int and not isinstance(value, int))
        ):
            raise ApplicationError(
                f"config.{name} must be {'an integer' if wanted is int else 'a number'}.",
                extra={"field": f"config.{name}"},
            )
        if value < 0 or (value == 0 and name != "seed"):
            raise ApplicationError(
                f"config.{name} must be {'zero or more' if name == 'seed' else 'positive'}.",
                extra={"field": f"config.{name}"},
            )
        checked[name] = wanted(value)
    return checked


def image_generator_build_start(
    *,
    architecture: str,
    generator_name: str,
    label: str,
    output_dir: str,
    size: str = "demo",
    config: dict[str, Any] | None = None,
    study: Study | None = None,
    enrol: bool = False,
    then: list[str] | None = None,
    next_builds: list[dict[str, str]] | None = None,
    created_by_id: int | None = None,
    parent_id: int | None = None,
) -> Job:
    """Start building a class-conditional image generator (a VAE or a DCGAN) on the project's
    procedural shapes (``workers.ml.image_dataset``): a ``build_base_model`` job with
    ``modality: "image"`` that registers a BASE version whose model path is the generator folder.
    ``size`` "demo" trains the demo model, "tiny" a model of seconds (tests).

    ``next_builds`` ({"architecture", "generator", "label", "output_dir"} each, same size, study
    and follow-ups): built one after another, each started by the previous one's job, so a chain
    of builds holds one worker slot and leaves the other to the rest of the product (the demo's
    text pipeline); ``then: ["generate"]`` runs after the last."""
    if size not in ("demo", "tiny"):
        raise ApplicationError("Size must be 'demo' or 'tiny'.", extra={"field": "size"})
    checked = image_build_config_check(architecture=architecture, config=config)
    output_dir_check(output_dir, field="output_dir")
    if not generator_name.strip() or not label.strip():
        raise ApplicationError("A build needs a generator name and a label.")
    if study is not None and enrol and study.modality != Modality.IMAGE:
        raise ApplicationError(
            f"The study {study.slug!r} is a {study.modality} study; an image generator is enrolled "
            "in an image study.",
            extra={"field": "study"},
        )
    unknown = sorted(set(then or []) - {"generate"})
    if unknown:
        raise ApplicationError(f"Unknown follow-up {unknown[0]!r}.", extra={"field": "then"})
    for index, build in enumerate(next_builds or []):
        if not isinstance(build, dict) or set(build) != {"architecture", "generator", "label", "output_dir"}:
            raise ApplicationError(
                f"next_builds[{index}] needs exactly architecture, generator, label and output_dir.",
                extra={"field": f"next_builds[{index}]"},
            )
        image_build_config_check(architecture=build["architecture"], config=None)
        output_dir_check(build["output_dir"], field=f"next_builds[{index}].output_dir")
    return job_enqueue(
        kind=JobKind.BUILD_BASE_MODEL,
        study_id=study.id if study else None,
        created_by_id=created_by_id,
        parent_id=parent_id,
        queue=Queue.CPU,  # the image generators train and sample on the CPU (workers.ml.image_generators)
        params={
            "modality": Modality.IMAGE.value,
            "architecture": architecture,
            "output_dir": output_dir,
            "generator": generator_name.strip(),
            "label": label.strip(),
            "size": size,
            "config": checked,
            "enrol": enrol,
            "then": then or [],
            "next_builds": next_builds or [],
        },
    )


def image_generator_build_for_study(
    *,
    study: Study,
    architecture: str,
    generator_name: str,
    label: str = "base",
    size: str = "demo",
    config: dict[str, Any] | None = None,
    created_by_id: int | None = None,
) -> Job:
    """An image generator build started by staff for a study (the dashboard and the API): the
    version is enrolled in the study, and its folder is a new one under the var folder chosen
    here (a name from a form never picks, or replaces, a folder on the server)."""
    if study.modality != Modality.IMAGE:
        raise ApplicationError(
            f"The study {study.slug!r} is a {study.modality} study: image generators are built for image "
            "studies only (a text study registers or builds text models).",
            extra={"field": "architecture"},
        )
    stem = re.sub(r"[^a-z0-9]+", "-", f"{generator_name}-{label}".lower()).strip("-")[:60] or "generator"
    output_dir = Path(settings.VAR_DIR) / "models" / f"image-{study.slug}-{stem}-{os.urandom(4).hex()}"
    return image_generator_build_start(
        architecture=architecture,
        generator_name=generator_name,
        label=label,
        output_dir=str(output_dir),
        size=size,
        config=config,
        study=study,
        enrol=True,
        created_by_id=created_by_id,
    )
