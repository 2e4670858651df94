"""Generation through an OpenAI-compatible endpoint, against a real server process (the tiny model
behind ``workers.ml.openai_server``) that can be told to fail the way real servers do."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from django.forms.models import model_to_dict

from server.generators.jobs import generate_run
from server.generators.models import GeneratorVersion, Sample, VersionKind, sample_text_hash
from server.generators.services import generate_start, generator_version_register
from server.jobs.models import Job, JobStatus
from server.studies.models import Study
from tests import factories
from tests.openai_server import MODEL_NAME, SERVER_KEY, SERVER_KEY_ENV, OpenAITestServer
from workers.runner import run_job

pytestmark = pytest.mark.django_db

PROMPTS = ("The sea", "A clock", "Bread")


@pytest.fixture
def api_key(monkeypatch: pytest.MonkeyPatch) -> str:
    """The key in the worker's environment (this process runs the job), under its own name."""
    monkeypatch.setenv("LOVELACE_WORKER_KEY", SERVER_KEY)
    return SERVER_KEY


def endpoint_version(
    study: Study, server: OpenAITestServer, label: str = "v1", **settings: Any
) -> GeneratorVersion:
    return generator_version_register(
        generator_name="served",
        label=label,
        kind=VersionKind.ENDPOINT,
        endpoint={
            "base_url": server.base_url,
            "model": MODEL_NAME,
            "api_key_env": "LOVELACE_WORKER_KEY",
            "concurrency": 3,
            "timeout_seconds": 5,
            "max_retries": 3,
            "backoff_seconds": 0.05,
            **settings,
        },
        decoding={"temperature": 1.0, "max_new_tokens": 6},
        study=study,
    )


def make_study() -> Study:
    study = factories.study()
    for text in PROMPTS:
        factories.prompt(study=study, text=text)
    return study


def run_generate(study: Study, versions: list[GeneratorVersion], samples_per_prompt: int = 2) -> Job:
    job = generate_start(
        study=study, version_ids=[v.id for v in versions], samples_per_prompt=samples_per_prompt
    )
    run_job(job.id, generate_run)
    job.refresh_from_db()
    return job


def requests_for(received: list[dict[str, Any]], prompt: str, seed: int) -> int:
    return sum(1 for request in received if request["prompt"] == prompt and request["seed"] == seed)


def test_an_endpoint_job_stores_every_sample_with_its_provenance(
    openai_server: OpenAITestServer, api_key: str
) -> None:
    study = make_study()
    completions = endpoint_version(study, openai_server)
    chat = endpoint_version(study, openai_server, label="chat", mode="chat")
    job = run_generate(study, [completions, chat])
    assert job.status == JobStatus.SUCCEEDED, job.error
    assert job.result == {"created": 12, "total": 12, "out_of_memory_events": []}
    assert (job.progress_step, job.progress_total) == (12, 12)
    received = openai_server.received()
    assert len(received) == 12
    assert all(request["authorised"] for request in received)  # the Authorization header arrived
    assert sorted(r["path"] for r in received) == ["/v1/chat/completions"] * 6 + ["/v1/completions"] * 6
    sample = Sample.objects.get(version=completions, prompt__text="A clock", seed=1)
    assert sample.decoding == {"temperature": 1.0, "max_new_tokens": 6}
    metadata = sample.metadata
    assert metadata["endpoint"] == openai_server.base_url
    assert (metadata["model"], metadata["mode"], metadata["attempts"]) == (MODEL_NAME, "completions", 1)
    assert metadata["parameters"] == {"max_tokens": 6, "temperature": 1.0, "n": 1, "seed": 1}
    assert metadata["response_id"].startswith("cmpl-")
    assert metadata["finish_reason"] in ("stop", "length")
    usage = metadata["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert sample.token_count == usage["completion_tokens"] and 1 <= sample.token_count <= 6
    assert sample.latency_seconds > 0 and sample.job_id == job.id
    assert (
        Sample.objects.get(version=chat, prompt__text="A clock", seed=1)
        .metadata["response_id"]
        .startswith("chatcmpl-")
    )
    for text, text_hash in Sample.objects.values_list("text", "text_hash"):
        assert text == text.strip() and text_hash == sample_text_hash(text)
    # The seed goes with the request: the server's sampler gives the same text for the same seed.
    texts = dict(Sample.objects.filter(version=completions).values_list("prompt_id", "text").filter(seed=0))
    Sample.objects.filter(version=completions).delete()
    again = run_generate(study, [completions])
    assert again.result["created"] == 6
    assert dict(Sample.objects.filter(version=completions, seed=0).values_list("prompt_id", "text")) == texts


def test_429_500_and_a_dropped_answer_are_retried_until_they_succeed(
    openai_server: OpenAITestServer, api_key: str
) -> None:
    study = make_study()
    version = endpoint_version(study, openai_server)
    openai_server.faults(
        {"prompt": "A clock", "seed": 0, "answer": "429", "times": 2, "retry_after": "0.2"},
        {"prompt": "Bread", "seed": 1, "answer": "500", "times": 1},
        {"prompt": "The sea", "seed": 1, "answer": "truncated", "times": 1},
    )
    job = run_generate(study, [version])
    assert job.status == JobStatus.SUCCEEDED, job.error
    assert job.result.get("failures") is None, job.result
    assert job.result["created"] == 6
    received = openai_server.received()
    assert requests_for(received, "A clock", 0) == 3 and requests_for(received, "Bread", 1) == 2
    assert requests_for(received, "The sea", 1) == 2
    assert len(received) == 6 + 2 + 1 + 1
    attempts = dict(
        ((s.prompt.text, s.seed), s.metadata["attempts"]) for s in Sample.objects.select_related("prompt")
    )
    assert attempts == {
        **{(p, s): 1 for p in PROMPTS for s in (0, 1)},
        ("A clock", 0): 3,
        ("Bread", 1): 2,
        ("The sea", 1): 2,
    }


def test_failed_requests_are_recorded_the_rest_kept_and_a_new_job_asks_only_for_the_missing(
    openai_server: OpenAITestServer, api_key: str
) -> None:
    study = make_study()
    version = endpoint_version(study, openai_server, timeout_seconds=0.5, max_retries=1)
    openai_server.faults(
        {"prompt": "A clock", "seed": 1, "answer": "500"},
        {"prompt": "Bread", "seed": 0, "answer": "not_json"},
        {"prompt": "The sea", "seed": 1, "answer": "hang", "hang_seconds": 1.5},
    )
    job = run_generate(study, [version])
    assert job.status == JobStatus.SUCCEEDED, job.error
    assert (job.result["created"], job.result["failed"], job.result["total"]) == (3, 3, 6)
    prompt_id = {p.text: p.id for p in study.prompts.all()}
    failures = sorted(job.result["failures"], key=lambda f: f["prompt_id"])
    assert failures == sorted(
        [
            {
                "version_id": version.id,
                "prompt_id": prompt_id["A clock"],
                "seed": 1,
                "reason": "HTTP 500: The server had an error while processing your request. "
                "(after 2 attempts)",
                "attempts": 2,
            },
            {
                "version_id": version.id,
                "prompt_id": prompt_id["Bread"],
                "seed": 0,
                "reason": "malformed answer: the answer is not JSON "
                "(Expecting value: line 1 column 1 (char 0))",
                "attempts": 1,
            },
            {
                "version_id": version.id,
                "prompt_id": prompt_id["The sea"],
                "seed": 1,
                "reason": "no answer within 0.5 s (after 2 attempts)",
                "attempts": 2,
            },
        ],
        key=lambda f: f["prompt_id"],
    )
    assert f"prompt {prompt_id['Bread']}, seed 0 failed: malformed answer" in job.log_tail
    assert set(Sample.objects.values_list("prompt__text", "seed")) == {
        ("The sea", 0),
        ("A clock", 0),
        ("Bread", 1),
    }

    openai_server.faults()  # the server recovers; a new job asks for the three missing only
    again = run_generate(study, [version])
    assert again.status == JobStatus.SUCCEEDED and again.result == {
        "created": 3,
        "total": 6,
        "out_of_memory_events": [],
    }
    received = sorted((r["prompt"], r["seed"]) for r in openai_server.received())
    assert received == [("A clock", 1), ("Bread", 0), ("The sea", 1)]
    assert Sample.objects.count() == 6


def test_answers_of_the_wrong_shape_are_recorded_as_malformed(
    openai_server: OpenAITestServer, api_key: str
) -> None:
    study = make_study()
    version = endpoint_version(study, openai_server, mode="chat")
    openai_server.faults(
        {"prompt": "A clock", "answer": "no_choices"}, {"prompt": "Bread", "seed": 1, "answer": "wrong_type"}
    )
    job = run_generate(study, [version])
    reasons = sorted((f["seed"], f["reason"]) for f in job.result["failures"])
    assert reasons == [
        (0, "malformed answer: the answer has no choices"),
        (1, "malformed answer: choices[0].message.content is not text"),
        (1, "malformed answer: the answer has no choices"),
    ]
    assert job.result["created"] == 3 and len(openai_server.received()) == 6  # malformed: not asked again


def test_the_api_key_reaches_the_server_and_nowhere_else(
    openai_server: OpenAITestServer,
    api_key: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong_key = "sk-wrong-0a1b2c3d4e5f-also-secret"
    monkeypatch.setenv("LOVELACE_OTHER_KEY", wrong_key)
    study = make_study()
    right = endpoint_version(study, openai_server)
    wrong = endpoint_version(
        study, openai_server, label="wrong", api_key_env="LOVELACE_OTHER_KEY", max_retries=0
    )
    assert run_generate(study, [right]).status == JobStatus.SUCCEEDED
    # The server refuses the wrong key and echoes it back, as some hosted APIs do.
    failed = run_generate(study, [wrong])
    assert failed.status == JobStatus.FAILED
    assert (
        "No sample was generated: 6 requests failed; the first: HTTP 401: Incorrect API key provided: ***"
        in (failed.error)
    )
    rows = [
        *[model_to_dict(job) for job in Job.objects.all()],
        *[model_to_dict(version) for version in GeneratorVersion.objects.all()],
        *[model_to_dict(sample) for sample in Sample.objects.all()],
    ]
    stored = json.dumps(rows, default=str)
    logged = "\n".join(record.getMessage() for record in caplog.records) + caplog.text
    for secret in (SERVER_KEY, wrong_key):
        assert secret not in stored and secret not in logged
    assert GeneratorVersion.objects.get(id=right.id).endpoint["api_key_env"] == "LOVELACE_WORKER_KEY"
    assert SERVER_KEY_ENV != "LOVELACE_WORKER_KEY"  # the server's copy is not how the worker got it


def test_a_missing_key_variable_fails_the_job_in_plain_words(openai_server: OpenAITestServer) -> None:
    study = make_study()
    version = endpoint_version(study, openai_server, api_key_env="LOVELACE_NOT_SET_ANYWHERE")
    job = run_generate(study, [version])
    assert job.status == JobStatus.FAILED
    assert "the worker's environment has no LOVELACE_NOT_SET_ANYWHERE" in job.error
    assert openai_server.received() == []


def test_an_endpoint_that_is_down_stops_the_job_after_failures_in_a_row(api_key: str) -> None:
    import socket

    with socket.socket() as probe:  # a port where nothing listens
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    study = make_study()
    for text in ("Snow", "Rain"):
        factories.prompt(study=study, text=text)
    down = endpoint_version(
        study, OpenAITestServer(base_url=f"http://127.0.0.1:{port}/v1"), concurrency=2, max_retries=0
    )
    job = run_generate(study, [down])  # 10 requests; the 8th failure in a row stops it
    assert job.status == JobStatus.FAILED
    assert "the endpoint failed 8 requests in a row; the last: connection failed" in job.error
