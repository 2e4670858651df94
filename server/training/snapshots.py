"""Preference snapshots: freeze the eligible judgments of a study into content-hashed pairs.

Eligibility (rule ``ties-dropped-v1``):
- the judgment is live (not undone or corrected), not flagged (too fast, or made while the rater
  was paused), and its rater is not paused now;
- the comparison is regular: gold checks test raters, not generators, and swapped repeats would
  count one rater's opinion twice;
- the prompt is a train prompt: holdout prompts are never used for training anything.
Criterion: a snapshot carries the answers to one question of the study (its own by default, or one
of its further criteria); the same judgments are eligible for each, and the hash covers which.
Strength is asked for the study's own question only, so further criteria's pairs have margin 0.
Outcome mapping: A or B → chosen / rejected; a tie or "both bad" states no preference between the
two and is dropped (the leaderboard still counts ties as half wins). Strength becomes a margin:
none or 1 → 0, 2 → 0.5, 3 → 1.0 (in reward units, added inside the reward-model loss).
Split: by prompt, so no prompt is on both sides; a prompt is in validation when a hash of (study,
prompt) falls below the validation fraction, which keeps the split stable as judgments arrive (when
no prompt falls below it, the lowest-hashed one is validation, so small studies get one too).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from django.db import transaction
from django.db.models import QuerySet

from server.core.exceptions import ApplicationError
from server.ratings.models import Judgment, Outcome
from server.ratings.selectors import judgments_trusted, with_criterion_outcome
from server.studies.models import Criterion, PromptSplit, Study
from server.training.models import PreferenceSnapshot, SnapshotPair

RULE = "ties-dropped-v1"
MARGIN_OF_STRENGTH = {None: 0.0, 1: 0.0, 2: 0.5, 3: 1.0}


@dataclass(frozen=True)
class FrozenPair:
    judgment_id: int
    prompt_id: int
    chosen_id: int
    rejected_id: int
    margin: float
    split: str


def eligible_judgments(
    *, study: Study, after_id: int = 0, criterion_id: int | None = None
) -> QuerySet[Judgment]:
    """Trusted judgments on train prompts whose answer to the criterion (None: the study's own
    question) prefers one side, newer than ``after_id``; annotated with ``criterion_outcome``."""
    return with_criterion_outcome(
        judgments_trusted(study=study).filter(
            assignment__comparison__prompt__split=PromptSplit.TRAIN, id__gt=after_id
        ),
        criterion_id=criterion_id,
    ).filter(criterion_outcome__in=[Outcome.A, Outcome.B])


def prompt_position(*, study_id: int, prompt_id: int) -> float:
    """A prompt's fixed pseudo-random position in [0, 1): the split compares it to the fraction."""
    digest = hashlib.sha256(f"lovelace-split:{study_id}:{prompt_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def prompt_splits(*, study_id: int, prompt_ids: set[int], validation_fraction: float) -> dict[int, str]:
    """Validation prompts: those whose position falls below the fraction. When none does but the
    fraction is positive and there are two prompts or more, the lowest-positioned prompt is
    validation, so a small study still gets a validation set (reward-model accuracy needs one);
    when all do, the highest-positioned prompt trains, so a small study still has pairs to train
    on (four prompts at a fraction of 0.5 all fall below it once in sixteen studies)."""
    positions = {
        prompt_id: prompt_position(study_id=study_id, prompt_id=prompt_id) for prompt_id in prompt_ids
    }
    splits = {
        prompt_id: "validation" if p < validation_fraction else "train" for prompt_id, p in positions.items()
    }
    if validation_fraction > 0 and len(splits) >= 2 and "validation" not in splits.values():
        splits[min(positions, key=positions.__getitem__)] = "validation"
    if len(splits) >= 2 and "train" not in splits.values():
        splits[max(positions, key=positions.__getitem__)] = "train"
    return splits


def frozen_pairs(
    *, study: Study, validation_fraction: float, criterion_id: int | None = None
) -> list[FrozenPair]:
    rows = (
        eligible_judgments(study=study, criterion_id=criterion_id)
        .values_list(
            "id",
            "criterion_outcome",
            "strength",
            "assignment__comparison__prompt_id",
            "assignment__comparison__sample_a_id",
            "assignment__comparison__sample_b_id",
        )
        .order_by("id")
    )
    rows = list(rows)
    splits = prompt_splits(
        study_id=study.id, prompt_ids={row[3] for row in rows}, validation_fraction=validation_fraction
    )
    pairs = []
    for judgment_id, outcome, strength, prompt_id, sample_a, sample_b in rows:
        chosen, rejected = (sample_a, sample_b) if outcome == Outcome.A else (sample_b, sample_a)
        pairs.append(
            FrozenPair(
                judgment_id=judgment_id,
                prompt_id=prompt_id,
                chosen_id=chosen,
                rejected_id=rejected,
                margin=MARGIN_OF_STRENGTH[strength if criterion_id is None else None],
                split=splits[prompt_id],
            )
        )
    return pairs


def content_hash(*, pairs: list[FrozenPair], validation_fraction: float, criterion_key: str = "") -> str:
    # The study's own question hashes as before criteria existed; a further one adds its key.
    about = f"|criterion:{criterion_key}" if criterion_key else ""
    digest = hashlib.sha256(f"{RULE}|{validation_fraction:.6f}{about}\n".encode())
    for pair in sorted(pairs, key=lambda p: p.judgment_id):
        digest.update(
            f"{pair.judgment_id},{pair.chosen_id},{pair.rejected_id},{pair.margin},{pair.split}\n".encode()
        )
    return digest.hexdigest()


@transaction.atomic
def snapshot_create(
    *,
    study: Study,
    validation_fraction: float = 0.2,
    job_id: int | None = None,
    criterion_id: int | None = None,
) -> PreferenceSnapshot:
    """Freeze the study's eligible judgments, with their answers to the criterion (None: the
    study's own question). The same judgments give the same hash, and the existing snapshot is
    returned instead of a copy."""
    criterion = Criterion.objects.get(study=study, id=criterion_id) if criterion_id is not None else None
    if not 0 <= validation_fraction < 1:
        raise ApplicationError(
            "The validation fraction must be in [0, 1).", extra={"field": "validation_fraction"}
        )
    pairs = frozen_pairs(study=study, validation_fraction=validation_fraction, criterion_id=criterion_id)
    if not pairs:
        raise ApplicationError("The study has no eligible judgments to snapshot yet.")
    digest = content_hash(
        pairs=pairs, validation_fraction=validation_fraction, criterion_key=criterion.key if criterion else ""
    )
    existing = PreferenceSnapshot.objects.filter(study=study, content_hash=digest).first()
    if existing is not None:
        return existing
    snapshot = PreferenceSnapshot.objects.create(
        study=study,
        content_hash=digest,
        criterion=criterion,
        rule=RULE,
        validation_fraction=validation_fraction,
        train_count=sum(pair.split == "train" for pair in pairs),
        validation_count=sum(pair.split == "validation" for pair in pairs),
        last_judgment_id=max(pair.judgment_id for pair in pairs),
        job_id=job_id,
    )
    SnapshotPair.objects.bulk_create(
        SnapshotPair(
            snapshot=snapshot,
            judgment_id=pair.judgment_id,
            chosen_id=pair.chosen_id,
            rejected_id=pair.rejected_id,
            margin=pair.margin,
            split=pair.split,
        )
        for pair in pairs
    )
    return snapshot


def snapshot_rows(*, snapshot: PreferenceSnapshot) -> list[dict[str, object]]:
    """The snapshot as the RLHF ecosystem reads it: prompt / chosen / rejected / margin, with the
    rater and split, and ids for lineage."""
    rows = snapshot.pairs.select_related(
        "chosen__prompt", "rejected", "judgment__assignment__rater"
    ).order_by("id")
    return [
        {
            "prompt": pair.chosen.prompt.text,
            "chosen": pair.chosen.text,
            "rejected": pair.rejected.text,
            "margin": pair.margin,
            "rater_id": pair.judgment.assignment.rater_id,
            "split": pair.split,
            "judgment_id": pair.judgment_id,
            # Several raters' votes on one comparison share it: they are not independent pairs.
            "comparison_id": pair.judgment.assignment.comparison_id,
            "chosen_version_id": pair.chosen.version_id,
            "rejected_version_id": pair.rejected.version_id,
        }
        for pair in rows
    ]
