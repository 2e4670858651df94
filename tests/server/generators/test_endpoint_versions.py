"""Registering endpoint versions: settings checked in plain words, the key only by its name."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.db import IntegrityError, transaction

from server.core.exceptions import ApplicationError
from server.generators.models import Generator, GeneratorVersion, VersionKind
from server.generators.services import generate_start, generator_version_register
from server.training.services import policy_train_start
from tests import factories

pytestmark = pytest.mark.django_db

GOOD = {"base_url": "http://localhost:8000/v1/", "model": "Qwen/Qwen2.5-0.5B-Instruct", "mode": "chat"}


def register(endpoint: dict[str, Any], **fields: Any) -> GeneratorVersion:
    return generator_version_register(
        generator_name="served",
        label=fields.pop("label", "v1"),
        kind=VersionKind.ENDPOINT,
        endpoint=endpoint,
        **fields,
    )


def test_an_endpoint_version_stores_its_settings_with_defaults_and_no_model_path() -> None:
    version = register(
        {**GOOD, "api_key_env": "OPENAI_API_KEY"}, decoding={"temperature": 0.7, "stop": ["\n\n"]}
    )
    version.refresh_from_db()
    assert version.model_path == ""
    assert version.endpoint == {
        "base_url": "http://localhost:8000/v1",
        "model": "Qwen/Qwen2.5-0.5B-Instruct",
        "mode": "chat",
        "api_key_env": "OPENAI_API_KEY",
        "concurrency": 4,
        "timeout_seconds": 60.0,
        "max_retries": 4,
        "backoff_seconds": 1.0,
    }


@pytest.mark.parametrize(
    ("endpoint", "message"),
    [
        ({"model": "m"}, "Give the endpoint's base URL, e.g. http://localhost:8000/v1."),
        (
            {**GOOD, "base_url": "ftp://host/v1"},
            "The base URL must start with http:// or https:// and name a host",
        ),
        ({**GOOD, "base_url": "http://:8000/v1"}, "The base URL must start with http:// or https://"),
        (
            {**GOOD, "base_url": "http://host:99999/v1"},
            "The base URL 'http://host:99999/v1' is not a valid URL.",
        ),
        ({**GOOD, "base_url": "https://user:sk-abc@host/v1"}, "The base URL must not carry credentials"),
        ({**GOOD, "model": " "}, "Give the model name the endpoint serves"),
        ({**GOOD, "mode": "embeddings"}, "The mode must be 'chat' or 'completions'."),
        (
            {**GOOD, "api_key_env": "sk-proj-abc123"},
            "api_key_env must be the NAME of an environment variable",
        ),
        ({**GOOD, "api_key_env": "1KEY"}, "api_key_env must be the NAME of an environment variable"),
        ({**GOOD, "concurrency": 0}, "concurrency must be a whole number from 1 to 256."),
        ({**GOOD, "concurrency": 257}, "concurrency must be a whole number from 1 to 256."),
        ({**GOOD, "concurrency": 2.5}, "concurrency must be a whole number from 1 to 256."),
        ({**GOOD, "timeout_seconds": 0}, "timeout_seconds must be a number of seconds from 0.1 to 3600."),
        ({**GOOD, "max_retries": True}, "max_retries must be a whole number from 0 to 20."),
        (
            {**GOOD, "api_key": "sk-abc"},
            "Put the key in an environment variable and give its name as api_key_env.",
        ),
    ],
)
def test_endpoint_settings_are_refused_in_plain_words(endpoint: dict[str, Any], message: str) -> None:
    with pytest.raises(ApplicationError) as refused:
        register(endpoint)
    assert message in refused.value.message
    assert "sk-" not in refused.value.message  # a key pasted in the wrong field is not repeated
    assert not GeneratorVersion.objects.exists()


def test_an_endpoint_takes_only_the_decoding_parameters_the_protocol_has() -> None:
    with pytest.raises(
        ApplicationError,
        match=re.escape(
            "An endpoint takes the decoding parameters max_new_tokens, stop, temperature, top_p; not 'top_k'."
        ),
    ):
        register(GOOD, decoding={"top_k": 40})
    study = factories.study()
    factories.prompt(study=study)
    version = register(GOOD, study=study)
    with pytest.raises(ApplicationError, match="not 'top_k'"):
        generate_start(study=study, version_ids=[version.id], decoding={"top_k": 5})


def test_an_endpoint_takes_at_most_four_stop_sequences_like_the_protocol() -> None:
    four = ["\n\n", "###", "END", "</s>"]
    register(GOOD, decoding={"stop": four})
    with pytest.raises(
        ApplicationError,
        match=re.escape(
            "An endpoint takes at most 4 stop sequences (the OpenAI protocol's limit); 5 were given."
        ),
    ) as refused:
        register(GOOD, label="v2", decoding={"stop": [*four, "\n"]})
    assert refused.value.extra == {"field": "decoding.stop"}
    assert list(GeneratorVersion.objects.values_list("label", flat=True)) == ["v1"]


def test_other_kinds_take_no_endpoint_settings_and_the_database_agrees() -> None:
    with pytest.raises(ApplicationError, match=r"Only an endpoint version has endpoint settings\."):
        generator_version_register(generator_name="g", label="v", kind=VersionKind.EXTERNAL, endpoint=GOOD)
    generator = Generator.objects.create(name="raw")
    for number, fields in enumerate(
        [
            {"kind": VersionKind.ENDPOINT},
            {"kind": VersionKind.EXTERNAL, "endpoint": GOOD},
            {"kind": VersionKind.ENDPOINT, "endpoint": GOOD, "model_path": "/models/x"},
        ]
    ):
        with pytest.raises(IntegrityError), transaction.atomic():
            GeneratorVersion.objects.create(generator=generator, label=f"v{number}", **fields)


def test_a_version_the_admin_broke_is_refused_at_the_start_of_a_job() -> None:
    study = factories.study()
    factories.prompt(study=study)
    version = register(GOOD, study=study)
    GeneratorVersion.objects.filter(id=version.id).update(endpoint={**GOOD, "concurrency": 0})
    with pytest.raises(ApplicationError, match=f"{version}: concurrency must be a whole number"):
        generate_start(study=study, version_ids=[version.id])


def test_an_endpoint_version_cannot_be_fine_tuned() -> None:
    study = factories.study()
    version = register(GOOD, study=study)
    with pytest.raises(ApplicationError, match=r"is endpoint: it has no weights here to fine-tune\."):
        policy_train_start(study=study, parent_version_id=version.id, method="dpo")


def test_a_generate_job_of_endpoint_versions_only_goes_to_the_cpu_queue(tiny_model_allowed) -> None:  # type: ignore[no-untyped-def]
    """Waiting on HTTP answers needs no GPU; one local version sends the job to the GPU workers."""
    study = factories.study()
    factories.prompt(study=study, text="The sea")
    served = generator_version_register(
        generator_name="served", label="v1", kind=VersionKind.ENDPOINT, study=study,
        endpoint={"base_url": "http://127.0.0.1:9/v1", "model": "m"},
    )  # fmt: skip
    local = factories.version(kind=VersionKind.BASE, model_path=str(tiny_model_allowed), enrol_in=study)
    assert generate_start(study=study, version_ids=[served.id]).queue == "cpu"
    assert generate_start(study=study, version_ids=[served.id, local.id]).queue == "gpu"
    assert generate_start(study=study, version_ids=[local.id]).queue == "gpu"
