"""The generate job's path for endpoint versions: ask an OpenAI-compatible server for the samples
that are missing, store them as they arrive, record the requests that failed and keep the rest."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass, field
from typing import Any

from server.core.exceptions import ApplicationError
from server.generators.models import GeneratorVersion, Sample, sample_text_hash, sample_text_normalised
from server.generators.services import ENDPOINT_DECODING_FIELDS, endpoint_decoding, version_endpoint_check
from server.jobs.models import Job
from server.jobs.services import job_log
from server.studies.models import Prompt
from workers.ml.endpoint_client import (
    EndpointConfig,
    EndpointFailure,
    EndpointRequest,
    EndpointSample,
    endpoint_generate,
    request_body,
)

CHUNK_SECONDS = 2.0  # a database write (and a progress report) at least this often while answers arrive
LOGGED_FAILURES = 50  # per version: one log line each; the rest are counted (all are in the result)
KEPT_FAILURES = 1000  # per version in the job's result; a dead endpoint must not bloat the row


@dataclass
class EndpointOutcome:
    created: int = 0
    failed: int = 0
    failures: list[dict[str, Any]] = field(default_factory=list)
    """{"version_id", "prompt_id", "seed", "reason", "attempts"}, the first KEPT_FAILURES."""


def endpoint_api_key(*, config: EndpointConfig, owner: object) -> str:
    """The API key from the worker's environment ("" when the endpoint needs none); ``owner`` (a
    version, a judge) names what asks in the error. The value goes to the HTTP client only: it is
    never stored, logged or put in an error."""
    if not config.api_key_env:
        return ""
    key = os.environ.get(config.api_key_env, "")
    if not key:
        raise ApplicationError(
            f"{owner}: the worker's environment has no {config.api_key_env} (the variable that "
            "should hold this endpoint's API key). Set it where the workers run, then start again."
        )
    return key


def stop_after_consecutive_failures(config: EndpointConfig) -> int:
    """Failures in a row after which the endpoint counts as down and the job stops: enough that
    a few bad prompts among the requests in flight do not trip it, few enough that a wrong URL or
    key fails the job in seconds instead of retrying every sample."""
    return max(8, 2 * config.concurrency)


def endpoint_samples_generate_missing(
    *,
    version: GeneratorVersion,
    prompts: list[Prompt],
    seeds: range,
    decoding_override: dict[str, Any],
    job: Job,
    on_chunk: Callable[[int, float], None],
) -> EndpointOutcome:
    """Ask the endpoint of ``version`` for each (prompt, seed) it has no sample of; store each
    chunk of answers. A failed request is recorded (job log and result) and the others are kept;
    a later job asks again only for what is still missing."""
    outcome = EndpointOutcome()
    existing = set(
        Sample.objects.filter(version=version, prompt__in=prompts, seed__isnull=False).values_list(
            "prompt_id", "seed"
        )
    )
    requests = [
        EndpointRequest(prompt=prompt.text, seed=seed, key=prompt)
        for prompt in prompts
        for seed in seeds
        if (prompt.id, seed) not in existing
    ]
    if not requests:
        return outcome
    config = version_endpoint_check(version=version, field="endpoint")
    merged = {**version.decoding, **decoding_override}
    decoding = endpoint_decoding(merged)
    api_key = endpoint_api_key(config=config, owner=version)
    recorded = {name: value for name, value in merged.items() if name in ENDPOINT_DECODING_FIELDS}
    recorded["max_new_tokens"] = decoding.max_tokens  # always sent, so always recorded
    sent = {
        name: value
        for name, value in request_body(config, decoding, requests[0]).items()
        if name not in ("model", "prompt", "messages", "seed")
    }
    job_log(
        job_id=job.id,
        line=f"{version}: {len(requests)} requests to {config.base_url} ({config.mode}, model "
        f"{config.model}, {config.concurrency} at a time)",
    )
    stop_after = stop_after_consecutive_failures(config)
    consecutive_failures = 0
    pending: list[Sample] = []
    tokens = 0
    chunk_began = time.perf_counter()

    def store() -> None:
        nonlocal pending, tokens, chunk_began
        if not pending:
            return
        Sample.objects.bulk_create(pending, ignore_conflicts=True)  # another attempt's rows stay
        count, rate = len(pending), tokens / max(time.perf_counter() - chunk_began, 1e-9)
        outcome.created += count
        pending, tokens, chunk_began = [], 0, time.perf_counter()
        on_chunk(count, rate)

    with closing(endpoint_generate(config, decoding, requests, api_key=api_key)) as results:
        for result in results:
            prompt: Prompt = result.request.key
            if isinstance(result, EndpointFailure):
                consecutive_failures += 1
                failure_record(outcome=outcome, version=version, job=job, prompt=prompt, failure=result)
            else:
                consecutive_failures = 0
                pending.append(
                    sample_from_answer(
                        result, version=version, job=job, config=config, recorded=recorded, sent=sent
                    )
                )
                tokens += result.token_count or 0
            if len(pending) >= config.concurrency * 4 or time.perf_counter() - chunk_began >= CHUNK_SECONDS:
                store()
            if consecutive_failures >= stop_after:
                store()
                raise ApplicationError(
                    f"{version}: the endpoint failed {consecutive_failures} requests in a row; the last: "
                    f"{result.reason}. {outcome.created} samples were stored; a new job asks only for the "
                    "missing ones."
                )
    store()
    if outcome.failed > LOGGED_FAILURES:
        job_log(job_id=job.id, line=f"{version}: {outcome.failed - LOGGED_FAILURES} more failed requests")
    return outcome


def failure_record(
    *, outcome: EndpointOutcome, version: GeneratorVersion, job: Job, prompt: Prompt, failure: EndpointFailure
) -> None:
    outcome.failed += 1
    if outcome.failed <= KEPT_FAILURES:
        outcome.failures.append(
            {
                "version_id": version.id,
                "prompt_id": prompt.id,
                "seed": failure.request.seed,
                "reason": failure.reason,
                "attempts": failure.attempts,
            }
        )
    if outcome.failed <= LOGGED_FAILURES:
        job_log(
            job_id=job.id,
            line=f"{version}: prompt {prompt.id}, seed {failure.request.seed} failed: {failure.reason}",
        )


def sample_from_answer(
    answer: EndpointSample,
    *,
    version: GeneratorVersion,
    job: Job,
    config: EndpointConfig,
    recorded: dict[str, Any],
    sent: dict[str, Any],
) -> Sample:
    """A Sample row with the answer's provenance: where it came from, what was asked, what the
    server said about it (its response id, token usage, finish reason) and how long it took."""
    text = sample_text_normalised(answer.text)
    return Sample(
        prompt=answer.request.key,
        version=version,
        text=text,
        text_hash=sample_text_hash(text),
        seed=answer.request.seed,
        decoding=recorded,
        token_count=answer.token_count,
        latency_seconds=round(answer.latency_s, 6),
        metadata={
            "endpoint": config.base_url,
            "model": config.model,
            "mode": config.mode,
            "parameters": {**sent, "seed": answer.request.seed},
            "response_id": answer.response_id,
            "usage": answer.usage,
            "finish_reason": answer.finish_reason,
            "attempts": answer.attempts,
        },
        job=job,
    )
