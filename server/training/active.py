"""Active pair selection: the study's reward-model ensemble chooses which pairs raters see.
Worker-only (scores samples with the ensemble, through torch).

Three acquisitions (``workers/ml/active_selection.py``):
- ``active``, uncertainty (Christiano et al. 2017): up to ``CANDIDATE_FACTOR`` × budget new
  cross-version pairs drawn at random, as in the paper, each scored by the variance across members
  of P(a preferred over b); the most uncertain are taken;
- ``thompson``, double Thompson sampling (Dwaracherla et al. 2024): per pair, one randomly drawn
  member picks the sample it scores best among the prompt's new cross-version pairs, another
  picks that sample's best partner;
- ``margin`` (after Muldrew et al. 2024): among the prompt's new cross-version pairs, those whose
  winner the members' mean is surest of, each sample in at most two: clear votes for a policy
  trained on the votes (DPO), where uncertainty asks about near-equal samples.

Budget: ``pairs_per_prompt`` × prompts with candidates, the same number of comparisons random
selection would create, so the strategies spend labels alike, and never more than
``pairs_per_prompt`` per prompt (coverage: one confusing prompt cannot absorb the whole budget).
Without a reward model of the study both fall back to random selection.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
from django.db import transaction

from server.core.exceptions import ApplicationError
from server.core.paths import model_path_check
from server.generators.models import Sample
from server.ratings.pair_selection import (
    ACQUISITION_OF,
    SelectionResult,
    comparisons_create,
    comparisons_select_random,
    gold_comparisons_create,
    new_candidate_pairs,
)
from server.studies.models import Modality, Study
from server.training.models import RewardModel
from workers.ml.active_selection import pair_disagreement, select_double_thompson, select_widest_margin
from workers.ml.reward_model import load_reward_ensemble, score_texts

CANDIDATE_FACTOR = 10
ACQUISITIONS = tuple(ACQUISITION_OF.values())


def comparisons_select_active(
    *,
    study: Study,
    pairs_per_prompt: int,
    seed: int,
    job_id: int | None = None,
    acquisition: str = "uncertainty",
) -> SelectionResult:
    """Create the study's next pairs chosen by its latest reward model: ``acquisition``
    ``"uncertainty"`` (strategy ``active``), ``"thompson"`` (double Thompson sampling) or
    ``"margin"`` (the pairs with the widest predicted margin)."""
    if acquisition not in ACQUISITIONS:
        raise ApplicationError(f"Unknown acquisition {acquisition!r}: {', '.join(ACQUISITIONS)}.")
    reward_model = _latest_reward_model(study)
    if reward_model is None:
        return comparisons_select_random(
            study=study, pairs_per_prompt=pairs_per_prompt, seed=seed, job_id=job_id
        )
    rng = random.Random(seed)
    candidates = new_candidate_pairs(study=study)
    prompts_with_candidates = len({prompt_id for prompt_id, _, _ in candidates})
    budget = pairs_per_prompt * prompts_with_candidates
    # Thompson sampling and margin look for the best (or clearest) of each prompt: all candidates.
    if acquisition == "uncertainty" and len(candidates) > CANDIDATE_FACTOR * budget:
        candidates = rng.sample(candidates, CANDIDATE_FACTOR * budget)
    if not candidates:
        return SelectionResult(regular_created=0, gold_created=0, prompts_considered=0)

    sample_ids = sorted({sample_id for _, a, b in candidates for sample_id in (a, b)})
    position = {sample_id: index for index, sample_id in enumerate(sample_ids)}
    member_scores = _member_scores(study, reward_model, sample_ids)
    index_pairs = np.array([[position[a], position[b]] for _, a, b in candidates], dtype=np.int64)
    prompt_of = np.array([prompt_id for prompt_id, _, _ in candidates], dtype=np.int64)
    if acquisition == "thompson":
        picked = select_double_thompson(member_scores, index_pairs, prompt_of, pairs_per_prompt, seed)
        chosen = [candidates[int(candidate)] for candidate in picked]
    elif acquisition == "margin":
        picked = select_widest_margin(member_scores, index_pairs, prompt_of, pairs_per_prompt)
        chosen = [candidates[int(candidate)] for candidate in picked]
    else:
        disagreement = pair_disagreement(member_scores, index_pairs)
        chosen = _most_uncertain(candidates, disagreement, pairs_per_prompt, budget)
    # Only the writes hold a transaction: scoring with torch takes seconds, and on SQLite an open
    # write transaction would lock out every vote meanwhile.
    with transaction.atomic():
        regular = comparisons_create(study=study, pairs=chosen, job_id=job_id)
        gold_wanted = max(1, round(regular * study.gold_rate)) if study.gold_rate > 0 and regular else 0
        gold = gold_comparisons_create(study=study, count=gold_wanted, seed=seed, job_id=job_id)
    return SelectionResult(
        regular_created=regular, gold_created=gold, prompts_considered=prompts_with_candidates
    )


def _latest_reward_model(study: Study) -> RewardModel | None:
    # The study's own question (its first criterion) decides; an image study's reward models are
    # image ones (a CNN ensemble on pixels), a text study's text ones.
    models = RewardModel.objects.filter(study=study, criterion__isnull=True)
    if study.modality == Modality.IMAGE:
        models = models.filter(metrics__modality="image")
    else:
        models = models.exclude(metrics__contains={"modality": "image"})  # (a missing key is not "image")
    return models.order_by("-created_at").first()


def _member_scores(study: Study, reward_model: RewardModel, sample_ids: list[int]) -> np.ndarray:
    """[K, N] each member's normalised score of the samples, in ``sample_ids`` order."""
    # The row may have been edited (Django admin): load only from the allowed model folders.
    model_dir = Path(model_path_check(reward_model.path, field="reward model path"))
    if study.modality == Modality.IMAGE:
        return _image_member_scores(model_dir, sample_ids)
    rows = {
        sample_id: (text, prompt)
        for sample_id, text, prompt in Sample.objects.filter(id__in=sample_ids).values_list(
            "id", "text", "prompt__text"
        )
    }
    ensemble = load_reward_ensemble(model_dir)
    scores = score_texts(ensemble, [rows[i][0] for i in sample_ids], prompts=[rows[i][1] for i in sample_ids])
    return scores.member_scores.detach().cpu().numpy()


def _most_uncertain(
    candidates: list[tuple[int, int, int]], disagreement: np.ndarray, pairs_per_prompt: int, budget: int
) -> list[tuple[int, int, int]]:
    """The most uncertain candidates, at most ``pairs_per_prompt`` per prompt, ``budget`` in all."""
    chosen: list[tuple[int, int, int]] = []
    per_prompt: dict[int, int] = {}
    for candidate in np.argsort(-disagreement, kind="stable"):
        prompt_id, a, b = candidates[int(candidate)]
        if per_prompt.get(prompt_id, 0) >= pairs_per_prompt:
            continue
        per_prompt[prompt_id] = per_prompt.get(prompt_id, 0) + 1
        chosen.append((prompt_id, a, b))
        if len(chosen) >= budget:
            break
    return chosen


def _image_member_scores(model_dir: Path, sample_ids: list[int]) -> np.ndarray:
    """[K, N] each member's normalised score of the image samples, in ``sample_ids`` order."""
    from server.evaluations.image_evaluation import decoded_image
    from server.generators.images import image_asset_read
    from workers.ml.image_reward import load_image_reward_model, score_images

    samples = Sample.objects.filter(id__in=sample_ids).select_related("image").in_bulk()
    missing = [sample_id for sample_id in sample_ids if samples[sample_id].image is None]
    if missing:
        raise ApplicationError(f"Sample {missing[0]} of this image study has no image to score.")
    images = np.stack([decoded_image(image_asset_read(samples[i].image)) for i in sample_ids])  # type: ignore[arg-type]
    return score_images(load_image_reward_model(model_dir), images).member_scores
