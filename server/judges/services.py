"""Registering machine judges and starting their runs (web process: no torch here)."""

from __future__ import annotations

import string
from typing import Any

from django.db import IntegrityError, transaction

from server.core.exceptions import ApplicationError, NotFound
from server.generators.services import validate_endpoint
from server.jobs.models import Job, JobKind
from server.jobs.services import job_enqueue
from server.judges.models import JudgeKind, MachineJudge
from server.studies.models import Study
from server.training.models import RewardModel
from workers.queues import Queue

DEFAULT_JUDGING_PROMPT = """You compare two texts written for the same prompt.

The question people answer about such pairs: {question}

Prompt: {prompt}

Text 1:
{first}

Text 2:
{second}

Answer the question for these two texts. Reply with exactly one of: 1, 2, tie."""

PLACEHOLDERS = frozenset({"question", "prompt", "first", "second"})
REQUIRED_PLACEHOLDERS = frozenset({"prompt", "first", "second"})
MAX_PROMPT_CHARACTERS = 10_000
SCOPES = ("judged_by_people", "all")


def judging_prompt_check(template: str) -> str:
    """The judging prompt as a template: ``{prompt}``, ``{first}`` and ``{second}`` are required,
    ``{question}`` (the study's question) is optional, a literal brace is written ``{{`` or ``}}``."""
    if not isinstance(template, str) or not template.strip():
        raise ApplicationError("The judging prompt is empty.", extra={"field": "judging_prompt"})
    if len(template) > MAX_PROMPT_CHARACTERS:
        raise ApplicationError(
            f"The judging prompt is longer than {MAX_PROMPT_CHARACTERS:,} characters.",
            extra={"field": "judging_prompt"},
        )
    try:
        fields = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    except ValueError as error:
        raise ApplicationError(
            f"The judging prompt is not a valid template ({error}); write a literal brace as {{{{ or }}}}.",
            extra={"field": "judging_prompt"},
        ) from None
    unknown = sorted(fields - PLACEHOLDERS)
    if unknown:
        raise ApplicationError(
            f"The judging prompt has an unknown placeholder {{{unknown[0]}}}; it may use "
            + ", ".join(f"{{{name}}}" for name in sorted(PLACEHOLDERS))
            + ".",
            extra={"field": "judging_prompt"},
        )
    missing = sorted(REQUIRED_PLACEHOLDERS - fields)
    if missing:
        raise ApplicationError(
            f"The judging prompt must contain {{{missing[0]}}} (the texts are put where "
            "{prompt}, {first} and {second} stand).",
            extra={"field": "judging_prompt"},
        )
    return template


def machine_judge_create(
    *,
    study: Study,
    name: str,
    kind: str,
    reward_model_id: int | None = None,
    endpoint: dict[str, Any] | None = None,
    judging_prompt: str = "",
) -> MachineJudge:
    """Register a judge of ``study``: its reward model (kind ``reward_model``), or an endpoint and
    a judging prompt (kind ``endpoint``; the default prompt when none is given)."""
    name = (name or "").strip()
    if not name or len(name) > 120:
        raise ApplicationError("A judge needs a name of 1 to 120 characters.", extra={"field": "name"})
    if kind not in JudgeKind.values:
        raise ApplicationError(
            f"Unknown judge kind {kind!r}; choose one of {', '.join(JudgeKind.values)}.",
            extra={"field": "kind"},
        )
    judge = MachineJudge(study=study, name=name, kind=kind)
    if kind == JudgeKind.REWARD_MODEL:
        if endpoint or judging_prompt:
            raise ApplicationError(
                "A reward-model judge scores each text itself: it takes no endpoint and no judging prompt.",
                extra={"field": "kind"},
            )
        reward_model = (
            RewardModel.objects.filter(study=study, id=reward_model_id).first()
            if reward_model_id is not None
            else RewardModel.objects.filter(study=study, criterion__isnull=True)
            .order_by("-created_at", "-id")
            .first()
        )
        if reward_model is None:
            raise NotFound(
                "The study has no such reward model; train one first."
                if reward_model_id is not None
                else "The study has no reward model yet; train one first.",
                extra={"field": "reward_model_id"},
            )
        judge.reward_model = reward_model
    else:
        if reward_model_id is not None:
            raise ApplicationError(
                "An endpoint judge takes no reward model.", extra={"field": "reward_model_id"}
            )
        config = validate_endpoint(dict(endpoint or {}))
        judge.endpoint = {key: value for key, value in vars(config).items()}
        judge.judging_prompt = judging_prompt_check(judging_prompt or DEFAULT_JUDGING_PROMPT)
    try:
        with transaction.atomic():
            judge.save()
    except IntegrityError:
        raise ApplicationError(
            f"The study already has a judge named {name!r}.", extra={"field": "name"}
        ) from None
    return judge


def machine_judging_start(
    *, judge: MachineJudge, scope: str = "judged_by_people", created_by_id: int | None = None
) -> Job:
    """Queue a run of ``judge`` over the study's regular comparisons that it has not judged yet:
    those people judged (``judged_by_people``, what agreement needs) or ``all``."""
    if scope not in SCOPES:
        raise ApplicationError(
            f"Unknown scope {scope!r}; choose one of {', '.join(SCOPES)}.", extra={"field": "scope"}
        )
    return job_enqueue(
        kind=JobKind.MACHINE_JUDGE,
        study_id=judge.study_id,
        created_by_id=created_by_id,
        params={"judge_id": judge.id, "scope": scope},
        # An endpoint judge waits on HTTP answers: any CPU worker runs it; a reward model scores
        # on the GPU workers.
        queue=Queue.CPU if judge.kind == JudgeKind.ENDPOINT else None,
    )


def machine_judge_start(
    *,
    study: Study,
    judge_id: int | None = None,
    scope: str = "judged_by_people",
    created_by_id: int | None = None,
    **new_judge: Any,
) -> Job:
    """Start a judge of ``study`` (``judge_id``), or register one (``new_judge``: the arguments of
    ``machine_judge_create``) and start it: the dashboard's one action for both."""
    if judge_id is not None:
        judge = MachineJudge.objects.filter(study=study, id=judge_id).first()
        if judge is None:
            raise NotFound(f"The study has no machine judge {judge_id}.", extra={"field": "judge"})
    else:
        judge = machine_judge_create(study=study, **new_judge)
    return machine_judging_start(judge=judge, scope=scope, created_by_id=created_by_id)
