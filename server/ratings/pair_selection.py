"""Building comparisons from samples: random pairs across versions, and gold checks.

Active selection (pairs the reward-model ensemble is least sure about) lives in
``server/training/active.py``; it produces candidate pairs and hands them to
``comparisons_create`` below, so both strategies write comparisons the same way.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from django.db import transaction

from server.core.exceptions import ApplicationError
from server.generators.models import Sample, VersionKind
from server.generators.services import generator_version_register
from server.jobs.models import Job, JobKind
from server.jobs.services import job_enqueue
from server.ratings.models import Comparison, ComparisonKind
from server.studies.models import PairSelection, Study
from workers.ml.progress import ProgressReporter

GOLD_GENERATOR = "lovelace-gold"
GOLD_LABEL = "broken"


@dataclass(frozen=True)
class SelectionResult:
    regular_created: int
    gold_created: int
    prompts_considered: int


def break_text(text: str, *, rng: random.Random) -> str:
    """A deliberately broken copy of a sample for a gold check: its words in reversed, then
    shuffled, order. It keeps the vocabulary and length (so neither gives it away) but not the sense."""
    words = text.split()
    if len(words) < 3:
        return " ".join(["the"] * 6 + words[::-1])
    broken = words[::-1]
    rng.shuffle(broken)
    if broken == words:
        broken = words[::-1]
    return " ".join(broken)


def candidate_pairs_by_prompt(*, study: Study) -> dict[int, list[tuple[int, int]]]:
    """All cross-version pairs of generated or imported samples per prompt, as (low id, high id)."""
    samples = (
        Sample.objects.filter(prompt__study=study, version__in=study.versions.all())
        .exclude(version__generator__name=GOLD_GENERATOR)
        .values_list("id", "prompt_id", "version_id")
    )
    by_prompt: dict[int, list[tuple[int, int]]] = defaultdict(list)
    for sample_id, prompt_id, version_id in samples:
        by_prompt[prompt_id].append((sample_id, version_id))
    pairs: dict[int, list[tuple[int, int]]] = {}
    for prompt_id, members in by_prompt.items():
        pairs[prompt_id] = [
            (min(first, second), max(first, second))
            for index, (first, first_version) in enumerate(members)
            for second, second_version in members[index + 1 :]
            if first_version != second_version
        ]
    return pairs


def existing_regular_pairs(*, study: Study) -> set[tuple[int, int]]:
    """The study's regular pairs as (lower sample id, higher sample id), whichever side is A."""
    return {
        (min(a, b), max(a, b))
        for a, b in Comparison.objects.filter(study=study, kind=ComparisonKind.REGULAR).values_list(
            "sample_a_id", "sample_b_id"
        )
    }


def comparisons_create(
    *, study: Study, pairs: Iterable[tuple[int, int, int]], job_id: int | None = None
) -> int:
    """Create regular comparisons for (prompt id, sample id, sample id) triples not already present."""
    wanted = {(prompt_id, min(a, b), max(a, b)) for prompt_id, a, b in pairs}
    existing = existing_regular_pairs(study=study)
    new = [
        Comparison(study=study, prompt_id=prompt_id, sample_a_id=a, sample_b_id=b, selected_by_job_id=job_id)
        for prompt_id, a, b in sorted(wanted)
        if (a, b) not in existing
    ]
    Comparison.objects.bulk_create(new)
    return len(new)


def gold_comparisons_create(*, study: Study, count: int, seed: int, job_id: int | None = None) -> int:
    """Create ``count`` gold comparisons: a real sample against a broken copy of itself."""
    if count <= 0:
        return 0
    rng = random.Random(seed)
    gold_version = generator_version_register(
        generator_name=GOLD_GENERATOR,
        label=GOLD_LABEL,
        kind=VersionKind.EXTERNAL,
        metadata={"purpose": "deliberately broken samples for gold checks"},
    )
    used = set(
        Comparison.objects.filter(study=study, kind=ComparisonKind.GOLD).values_list(
            "sample_a_id", "sample_b_id"
        )
    )
    used_ids = {sample_id for pair in used for sample_id in pair}
    originals = list(
        Sample.objects.filter(prompt__study=study, version__in=study.versions.all())
        .exclude(version=gold_version)
        .exclude(id__in=used_ids)
        .order_by("id")
        .only("id", "prompt_id", "text")
    )
    rng.shuffle(originals)
    created = 0
    for original in originals[:count]:
        broken = Sample.objects.filter(
            version=gold_version, prompt_id=original.prompt_id, metadata__broken_from=original.id
        ).first()
        if broken is None:
            broken = Sample.objects.create(
                version=gold_version,
                prompt_id=original.prompt_id,
                text=break_text(original.text, rng=rng),
                metadata={"broken_from": original.id},
            )
        real_on_a = rng.random() < 0.5
        Comparison.objects.create(
            study=study,
            prompt_id=original.prompt_id,
            kind=ComparisonKind.GOLD,
            sample_a=original if real_on_a else broken,
            sample_b=broken if real_on_a else original,
            gold_answer="A" if real_on_a else "B",
            selected_by_job_id=job_id,
        )
        created += 1
    return created


@transaction.atomic
def comparisons_select_random(
    *, study: Study, pairs_per_prompt: int, seed: int, job_id: int | None = None
) -> SelectionResult:
    """Up to ``pairs_per_prompt`` new random cross-version pairs per prompt, and gold checks in
    proportion to the study's gold rate (at least one per ten regular comparisons when the rate is
    above zero, so the assignment service has gold to inject)."""
    rng = random.Random(seed)
    existing = existing_regular_pairs(study=study)
    chosen: list[tuple[int, int, int]] = []
    candidates = candidate_pairs_by_prompt(study=study)
    for prompt_id in sorted(candidates):
        fresh = [pair for pair in candidates[prompt_id] if pair not in existing]
        rng.shuffle(fresh)
        chosen.extend((prompt_id, a, b) for a, b in fresh[:pairs_per_prompt])
    regular = comparisons_create(study=study, pairs=chosen, job_id=job_id)
    gold_wanted = 0
    if study.gold_rate > 0 and regular:
        gold_wanted = max(1, round(regular * study.gold_rate))
    gold = gold_comparisons_create(study=study, count=gold_wanted, seed=seed, job_id=job_id)
    return SelectionResult(regular_created=regular, gold_created=gold, prompts_considered=len(candidates))


def pair_selection_start(
    *,
    study: Study,
    strategy: str | None = None,
    pairs_per_prompt: int = 2,
    seed: int = 0,
    parent_id: int | None = None,
    created_by_id: int | None = None,
) -> Job:
    """Start a ``select_pairs`` job with the study's strategy (or the one given)."""
    strategy = strategy or study.pair_selection
    if strategy not in PairSelection.values:
        raise ApplicationError(
            f"Strategy must be one of {', '.join(PairSelection.values)}.", extra={"field": "strategy"}
        )
    if not 1 <= pairs_per_prompt <= 100:
        raise ApplicationError(
            "Pairs per prompt must be between 1 and 100.", extra={"field": "pairs_per_prompt"}
        )
    return job_enqueue(
        kind=JobKind.SELECT_PAIRS,
        study_id=study.id,
        parent_id=parent_id,
        created_by_id=created_by_id,
        params={"strategy": strategy, "pairs_per_prompt": pairs_per_prompt, "seed": seed},
    )


def pair_selection_run(*, job: Job, report: ProgressReporter) -> dict[str, int]:
    """The ``select_pairs`` job."""
    study = job.study
    strategy = job.params.get("strategy", "random")
    report(step=0, total=1, message=f"selecting pairs ({strategy})")
    if strategy == "active":
        from server.training.active import comparisons_select_active

        result = comparisons_select_active(
            study=study,
            pairs_per_prompt=int(job.params["pairs_per_prompt"]),
            seed=int(job.params["seed"]),
            job_id=job.id,
        )
    else:
        result = comparisons_select_random(
            study=study,
            pairs_per_prompt=int(job.params["pairs_per_prompt"]),
            seed=int(job.params["seed"]),
            job_id=job.id,
        )
    report(step=1, total=1, message=f"{result.regular_created} pairs and {result.gold_created} gold checks")
    return {
        "regular_created": result.regular_created,
        "gold_created": result.gold_created,
        "prompts_considered": result.prompts_considered,
    }
