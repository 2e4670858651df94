"""Building comparisons from samples: random pairs across versions, and gold checks.

Active selection (pairs the reward-model ensemble is least sure about) lives in
``server/training/active.py``; it produces candidate pairs and hands them to
``comparisons_create`` below, so both strategies write comparisons the same way.
"""

from __future__ import annotations

import random
import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from django.db import transaction

from server.core.exceptions import ApplicationError
from server.generators.models import Sample, VersionKind
from server.generators.services import generator_version_register
from server.jobs.models import Job, JobKind
from server.jobs.services import job_enqueue
from server.ratings.models import Comparison, ComparisonKind, GoldAnswer
from server.studies.models import PairSelection, Study
from workers.ml.progress import ProgressReporter

GOLD_GENERATOR = "lovelace-gold"  # the external generator every gold-check sample is filed under
GOLD_LABEL = "off-topic"  # generated checks: real samples of other prompts
STAFF_GOLD_LABEL = "staff"  # checks that staff supplied with their expected answers
DONOR_DRAWS = 24  # samples of other prompts drawn per check; the least related one is used
# Strategies that ask the study's reward-model ensemble, and the acquisition each uses
# (server/training/active.py); the rest select at random.
ACQUISITION_OF = {
    PairSelection.ACTIVE: "uncertainty",
    PairSelection.THOMPSON: "thompson",
    PairSelection.MARGIN: "margin",
}
# Function words of four letters or more: they say nothing about what a text is about.
_FUNCTION_WORDS = frozenset(
    {
        "about", "also", "been", "could", "each", "from", "have", "into", "just", "more", "most",
        "must", "only", "over", "shall", "should", "some", "such", "than", "that", "their", "them",
        "then", "there", "they", "this", "very", "were", "what", "when", "which", "will", "with",
        "would", "your",
    }
)  # fmt: skip
_WORD = re.compile(r"[^\W\d_]{4,}")


@dataclass(frozen=True)
class SelectionResult:
    regular_created: int
    gold_created: int
    prompts_considered: int


def content_words(text: str) -> frozenset[str]:
    """The words (four letters or more, not function words) that say what ``text`` is about."""
    return frozenset(word for word in _WORD.findall(text.lower()) if word not in _FUNCTION_WORDS)


def candidate_pairs_by_prompt(*, study: Study) -> dict[int, list[tuple[int, int]]]:
    """All cross-version pairs of generated or imported samples per prompt, as (low id, high id)."""
    samples = (
        Sample.objects.filter(prompt__study=study, version__in=study.versions.all())
        .exclude(version__generator__name=GOLD_GENERATOR)
        .order_by("id")  # a seed then draws the same pairs whatever order the rows come in
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


def new_candidate_pairs(*, study: Study) -> list[tuple[int, int, int]]:
    """(prompt id, low sample id, high sample id) of every cross-version pair not asked yet, in
    prompt order: what a selection strategy chooses from."""
    existing = existing_regular_pairs(study=study)
    return [
        (prompt_id, a, b)
        for prompt_id, pairs in sorted(candidate_pairs_by_prompt(study=study).items())
        for a, b in pairs
        if (a, b) not in existing
    ]


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
    """Create up to ``count`` gold checks: a real sample of a prompt against a real sample of
    another prompt (the expected answer), filed under the first prompt.

    Why off-topic and not a corrupted copy: both sides are texts the generators wrote, so nothing
    in their form (spacing, length, punctuation, vocabulary shared between the two sides) tells a
    check from a regular pair; only reading the prompt and the texts does, which is what the check
    measures. To keep the expected answer clear, the real side is the sample that shares the most
    words with its prompt, and the other side the least related of a few samples of other prompts
    (preferably of another version, as in regular pairs). A study with one prompt gets no
    generated checks; staff can supply their own (``gold_pairs_import``).
    """
    if count <= 0:
        return 0
    rng = random.Random(seed)
    real = list(
        Sample.objects.filter(prompt__study=study, version__in=study.versions.all())
        .exclude(version__generator__name=GOLD_GENERATOR)
        .select_related("prompt")
        .only("id", "prompt_id", "version_id", "text", "text_hash", "image_id", "prompt__text")
        .order_by("id")
    )
    if len({sample.prompt_id for sample in real}) < 2:
        return 0
    gold_version = generator_version_register(
        generator_name=GOLD_GENERATOR,
        label=GOLD_LABEL,
        kind=VersionKind.EXTERNAL,
        metadata={"purpose": "real samples of other prompts: the expected loser of generated gold checks"},
    )
    used = set(
        Comparison.objects.filter(study=study, kind=ComparisonKind.GOLD).values_list(
            "sample_a_id", "sample_b_id"
        )
    )
    used_ids = {sample_id for pair in used for sample_id in pair}
    prompt_texts = {sample.prompt_id: sample.prompt.text for sample in real}
    prompt_words = {prompt_id: content_words(text) for prompt_id, text in prompt_texts.items()}
    originals = [sample for sample in real if sample.id not in used_ids]
    rng.shuffle(originals)  # then a stable sort: among equally on-topic samples the order is random
    originals.sort(key=lambda sample: -len(content_words(sample.text) & prompt_words[sample.prompt_id]))
    created = 0
    for original in originals:
        if created == count:
            break
        donor = _off_topic_donor(original, real, prompt_words[original.prompt_id], rng)
        if donor is None:
            continue
        off_topic = Sample.objects.filter(
            version=gold_version,
            prompt_id=original.prompt_id,
            # The content's hash: the text's, or an image sample's image's (see Sample.text_hash).
            text_hash=donor.text_hash,
            seed__isnull=True,
        ).first()
        if off_topic is None:
            off_topic = Sample.objects.create(
                version=gold_version,
                prompt_id=original.prompt_id,
                text=donor.text,
                image_id=donor.image_id,  # an image study's check: an image drawn for another prompt
                metadata={"off_topic_from": donor.id},
            )
        real_on_a = rng.random() < 0.5
        Comparison.objects.create(
            study=study,
            prompt_id=original.prompt_id,
            kind=ComparisonKind.GOLD,
            sample_a=original if real_on_a else off_topic,
            sample_b=off_topic if real_on_a else original,
            gold_answer=GoldAnswer.A if real_on_a else GoldAnswer.B,
            selected_by_job_id=job_id,
        )
        created += 1
    return created


def _off_topic_donor(
    original: Sample, real: list[Sample], words: frozenset[str], rng: random.Random
) -> Sample | None:
    """Of a few random samples of other prompts with another text, the one sharing the fewest
    words with the original's prompt; another version than the original's wins a tie. Contents
    are compared by hash: image samples all have an empty text, and differ by their images."""
    draws = [rng.choice(real) for _ in range(DONOR_DRAWS)]
    candidates = [
        sample
        for sample in draws
        if sample.prompt_id != original.prompt_id and sample.text_hash != original.text_hash
    ]
    if not candidates:
        candidates = [
            sample
            for sample in real
            if sample.prompt_id != original.prompt_id and sample.text_hash != original.text_hash
        ]
        if not candidates:
            return None
    return min(
        candidates,
        key=lambda sample: (
            len(content_words(sample.text) & words),
            sample.version_id == original.version_id,
        ),
    )


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
    if strategy in ACQUISITION_OF:
        from server.training.active import comparisons_select_active

        result = comparisons_select_active(
            study=study,
            pairs_per_prompt=int(job.params["pairs_per_prompt"]),
            seed=int(job.params["seed"]),
            job_id=job.id,
            acquisition=ACQUISITION_OF[strategy],
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
