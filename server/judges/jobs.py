"""The ``machine_judge`` job (worker only: the reward-model path imports torch through workers.ml).

A run judges the study's regular comparisons that its judge has not judged yet, stores each
verdict as it comes (a re-run after a crash asks only for the rest), then fits the judge's own
leaderboard over all its verdicts.

- **Reward model**: each text scored by the ensemble with its prompt (normalised mean); the higher
  score wins, equal scores tie. A text is scored on its own, so there is no order to swap.
- **Endpoint**: the judging prompt asked twice per comparison, A as text 1 and then B as text 1,
  at temperature 0; each answer ("1", "2" or "tie", the first such word of the reply) mapped back
  to A / B; the verdict is the side both answers chose, else a tie (``combine_orders``), which
  cancels a judge that prefers a position. A reply without such a word is unusable: the
  comparison gets no verdict and is counted in the result. The texts are untrusted model output
  put into the judge's prompt: a text can try to talk the judge into a verdict, which is one
  reason to read agreement with people before trusting a judge.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import numpy as np
from django.db.models import Exists, OuterRef

from server.core.exceptions import ApplicationError
from server.evaluations.leaderboard import OUTCOME_CODES
from server.generators.endpoint_generation import endpoint_api_key
from server.jobs.models import Job
from server.judges.models import JudgeKind, MachineJudge, MachineJudgment, MachineVerdict
from server.ratings.models import Comparison, ComparisonKind, Outcome
from server.ratings.selectors import judgments_trusted
from workers.ml.endpoint_client import (
    EndpointConfig,
    EndpointDecoding,
    EndpointRequest,
    EndpointSample,
    endpoint_generate,
)
from workers.ml.progress import ProgressReporter

CHUNK = 64  # comparisons scored or stored at a time
LEADERBOARD_ROUNDS = 200
ANSWER = re.compile(r"\b(1|2|tie)\b", re.IGNORECASE)
KEPT_PROBLEMS = 50


def _comparisons_to_judge(judge: MachineJudge, scope: str) -> list[Comparison]:
    todo = (
        Comparison.objects.filter(study_id=judge.study_id, kind=ComparisonKind.REGULAR)
        .exclude(id__in=MachineJudgment.objects.filter(judge=judge).values("comparison_id"))
        .select_related("prompt", "sample_a", "sample_b")
        .order_by("id")
    )
    if scope == "judged_by_people":
        judged = judgments_trusted(study=judge.study).filter(assignment__comparison_id=OuterRef("id"))
        todo = todo.filter(Exists(judged))
    return list(todo)


def _chunks(items: list[Comparison]) -> Iterator[list[Comparison]]:
    for start in range(0, len(items), CHUNK):
        yield items[start : start + CHUNK]


def _judge_with_reward_model(
    judge: MachineJudge, todo: list[Comparison], report: ProgressReporter
) -> dict[str, Any]:
    from workers.ml.reward_model import load_reward_ensemble, score_texts

    assert judge.reward_model is not None
    ensemble = load_reward_ensemble(Path(judge.reward_model.path))
    done = 0
    for chunk in _chunks(todo):
        prompts = [comparison.prompt.text for comparison in chunk]
        scores = score_texts(
            ensemble,
            [c.sample_a.text for c in chunk] + [c.sample_b.text for c in chunk],
            prompts=prompts + prompts,
        ).mean
        verdicts = []
        for index, comparison in enumerate(chunk):
            score_a, score_b = float(scores[index]), float(scores[len(chunk) + index])
            outcome = (
                MachineVerdict.A
                if score_a > score_b
                else MachineVerdict.B
                if score_b > score_a
                else MachineVerdict.TIE
            )
            verdicts.append(
                MachineJudgment(
                    judge=judge, comparison=comparison, outcome=outcome, score_a=score_a, score_b=score_b
                )
            )
        MachineJudgment.objects.bulk_create(verdicts, ignore_conflicts=True)
        done += len(chunk)
        report(step=done, total=len(todo), message=f"{done} of {len(todo)} comparisons judged")
    return {"judged": done, "unusable": 0, "failed": 0, "problems": []}


def parse_answer(text: str) -> str | None:
    """ "1", "2" or "tie" from a judge's reply (the first such word), else None."""
    match = ANSWER.search(text or "")
    return match.group(1).lower() if match else None


def _mapped(answer: str | None, a_is_first: bool) -> str | None:
    if answer is None:
        return None
    if answer == "tie":
        return MachineVerdict.TIE
    first_won = answer == "1"
    return MachineVerdict.A if first_won == a_is_first else MachineVerdict.B


def _judge_with_endpoint(
    judge: MachineJudge, todo: list[Comparison], report: ProgressReporter
) -> dict[str, Any]:
    from evaluation.judge_agreement import combine_orders

    config = EndpointConfig(**judge.endpoint)
    api_key = endpoint_api_key(config=config, owner=f"Judge {judge.name}")
    question = judge.study.question
    requests = []
    by_id = {comparison.id: comparison for comparison in todo}
    for comparison in todo:
        for a_is_first in (True, False):
            first, second = (
                (comparison.sample_a.text, comparison.sample_b.text)
                if a_is_first
                else (comparison.sample_b.text, comparison.sample_a.text)
            )
            prompt = judge.judging_prompt.format(
                question=question, prompt=comparison.prompt.text, first=first, second=second
            )
            requests.append(EndpointRequest(prompt=prompt, seed=0, key=(comparison.id, a_is_first)))
    decoding = EndpointDecoding(temperature=0.0, max_tokens=16)
    answers: dict[int, dict[bool, tuple[str | None, dict[str, Any]]]] = {}
    pending: list[MachineJudgment] = []
    judged = unusable = failed = 0
    problems: list[dict[str, Any]] = []

    def flush() -> None:
        nonlocal pending
        MachineJudgment.objects.bulk_create(pending, ignore_conflicts=True)
        pending = []
        report(
            step=judged + unusable + failed,
            total=len(todo),
            message=f"{judged} of {len(todo)} comparisons judged ({unusable} unusable, {failed} failed)",
        )

    with closing(endpoint_generate(config, decoding, requests, api_key=api_key)) as results:
        for result in results:
            comparison_id, a_is_first = result.request.key
            if isinstance(result, EndpointSample):
                reply = result.text.strip()
                verdict = _mapped(parse_answer(reply), a_is_first)
                detail: dict[str, Any] = {
                    "reply": reply[:200], "response_id": result.response_id, "usage": result.usage
                }  # fmt: skip
            else:
                verdict, detail = None, {"failure": result.reason[:300]}
            both = answers.setdefault(comparison_id, {})
            both[a_is_first] = (verdict, detail)
            if len(both) < 2:
                continue
            (a_first, a_detail), (b_first, b_detail) = both[True], both[False]
            del answers[comparison_id]
            outcome = combine_orders(a_first, b_first)  # type: ignore[arg-type]
            if outcome is None:
                gone = "failure" in a_detail or "failure" in b_detail
                failed += gone
                unusable += not gone
                if len(problems) < KEPT_PROBLEMS:
                    problems.append(
                        {"comparison_id": comparison_id, "a_first": a_detail, "b_first": b_detail}
                    )
            else:
                judged += 1
                pending.append(
                    MachineJudgment(
                        judge=judge,
                        comparison=by_id[comparison_id],
                        outcome=outcome,
                        a_first=a_first or "",
                        b_first=b_first or "",
                        detail={"a_first": a_detail, "b_first": b_detail},
                    )
                )
            if len(pending) >= CHUNK // 4 or (not answers and len(pending)):
                flush()
    flush()
    return {"judged": judged, "unusable": unusable, "failed": failed, "problems": problems}


def judge_leaderboard(judge: MachineJudge, *, seed: int = 0) -> dict[str, Any]:
    """Bradley–Terry ratings with bootstrap intervals from the judge's verdicts alone (a tie counts
    half a win, as on the human leaderboard), resampling whole prompts as the human one does by
    default: the pairs of one prompt share its samples."""
    from evaluation.bradley_terry import bootstrap_bradley_terry, count_pair_outcomes_clustered

    versions = list(judge.study.versions.order_by("id"))
    index_of = {version.id: index for index, version in enumerate(versions)}
    rows = [
        row
        for row in MachineJudgment.objects.filter(judge=judge).values_list(
            "outcome",
            "comparison__sample_a__version_id",
            "comparison__sample_b__version_id",
            "comparison__prompt_id",
        )
        if row[1] in index_of and row[2] in index_of
    ]
    codes = {MachineVerdict.A: Outcome.A, MachineVerdict.B: Outcome.B, MachineVerdict.TIE: Outcome.TIE}
    clustered = count_pair_outcomes_clustered(
        np.array([index_of[row[1]] for row in rows], dtype=np.int64),
        np.array([index_of[row[2]] for row in rows], dtype=np.int64),
        np.array([int(OUTCOME_CODES[codes[MachineVerdict(row[0])]]) for row in rows], dtype=np.int64),
        np.array([row[3] for row in rows], dtype=np.int64),
        n_versions=len(versions),
    )
    board = bootstrap_bradley_terry(
        clustered.counts, rounds=LEADERBOARD_ROUNDS, seed=seed, clusters=clustered.clusters
    )

    def rounded(value: float) -> float | None:
        return None if not np.isfinite(value) else round(float(value), 1)

    entries = [
        {
            "version_id": version.id,
            "label": str(version),
            "rating": rounded(board.ratings[index]),
            "lower": rounded(board.lower[index]),
            "upper": rounded(board.upper[index]),
            "rank": int(board.rank[index]),
            "battles": int(board.battles[index]),
        }
        for index, version in enumerate(versions)
        if board.battles[index] > 0
    ]
    entries.sort(key=lambda entry: (entry["rank"], -(entry["rating"] or 0)))
    return {
        "rows": entries,
        "judgments": len(rows),
        "rounds": LEADERBOARD_ROUNDS,
        "bootstrap_clusters": "prompt",
    }


def machine_judging_run(*, job: Job, report: ProgressReporter) -> dict[str, Any]:
    params = job.params
    judge = (
        MachineJudge.objects.select_related("study", "reward_model").filter(id=params.get("judge_id")).first()
    )
    if judge is None:
        raise ApplicationError(f"Job {job.id}: judge {params.get('judge_id')!r} no longer exists.")
    todo = _comparisons_to_judge(judge, params.get("scope", "judged_by_people"))
    report(step=0, total=max(len(todo), 1), message=f"{len(todo)} comparisons to judge")
    outcome = (
        _judge_with_reward_model(judge, todo, report)
        if judge.kind == JudgeKind.REWARD_MODEL
        else _judge_with_endpoint(judge, todo, report)
    )
    if todo and outcome["judged"] == 0:
        raise ApplicationError(
            f"Judge {judge.name} gave no usable verdict on {len(todo)} comparisons "
            f"({outcome['failed']} failed requests, {outcome['unusable']} replies without 1, 2 or tie): "
            + (str(outcome["problems"][0])[:400] if outcome["problems"] else "")
        )
    judge.leaderboard = judge_leaderboard(judge)
    judge.save(update_fields=["leaderboard"])
    return {"judge_id": judge.id, "to_judge": len(todo), **outcome}
