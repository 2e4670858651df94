from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from server.core.exceptions import ApplicationError
from server.generators.models import Sample
from server.jobs.models import Job, JobKind
from server.ratings.models import Comparison, ComparisonKind
from server.ratings.pair_selection import pair_selection_run, pair_selection_start
from server.studies.models import Prompt, Study
from server.training.active import comparisons_select_active
from server.training.jobs import reward_model_train_run
from server.training.models import RewardModel
from server.training.snapshots import snapshot_create
from tests import factories
from tests.server.training.test_training_chain import judged_study
from workers.ml.active_selection import pair_disagreement, preference_margin
from workers.ml.reward_model import load_reward_ensemble, score_texts
from workers.runner import run_job

pytestmark = pytest.mark.django_db


def train_reward_model(study: Study) -> None:
    """A 3-member reward model of the study's judgments so far, trained by its job."""
    snapshot = snapshot_create(study=study)
    job = Job.objects.create(
        kind=JobKind.TRAIN_REWARD_MODEL,
        queue="gpu",
        study=study,
        params={"snapshot_id": snapshot.id, "config": {"ensemble_size": 3}},
    )
    assert run_job(job.id, reward_model_train_run) == "succeeded"


def selected_by_the_studys_strategy(strategy: str) -> Prompt:
    """A study with a 3-member reward model and a fresh prompt of six samples (two versions), after
    a ``select_pairs`` job with ``strategy`` as the study's own chose 2 pairs; the fresh prompt."""
    study, good, bad = judged_study(prompts=8)
    study.gold_rate = 0
    study.pair_selection = strategy
    study.save()
    train_reward_model(study)
    fresh = factories.prompt(study=study, text="Fresh prompt")
    texts = ["lamp lamp", "The tide is kind", "the the the", "A letter to the moon", "clock", "Stars tonight"]
    for number, text in enumerate(texts):
        factories.sample(prompt=fresh, version=good if number % 2 else bad, text=text)

    selection = pair_selection_start(study=study, pairs_per_prompt=2, seed=5)  # the study's strategy
    assert selection.params["strategy"] == strategy
    assert run_job(selection.id, pair_selection_run) == "succeeded"
    return fresh


def test_without_a_reward_model_active_selection_falls_back_to_random() -> None:
    study, good, bad = judged_study(prompts=2)
    prompt = factories.prompt(study=study, text="A fresh prompt")
    factories.sample(prompt=prompt, version=good)
    factories.sample(prompt=prompt, version=bad)
    result = comparisons_select_active(study=study, pairs_per_prompt=1, seed=0)
    assert result.regular_created == 1
    assert Comparison.objects.filter(prompt=prompt, kind=ComparisonKind.REGULAR).count() == 1


def test_active_selection_takes_the_pairs_the_ensemble_disagrees_on_most(tmp_path: Path) -> None:
    study, good, bad = judged_study(prompts=8)
    study.gold_rate = 0
    study.save()
    train_reward_model(study)
    texts = [
        "lamp lamp",
        "The tide is kind",
        "window window window",
        "Bread and salt in the morning",
        "the the the",
        "A letter to the moon",
        "clock",
        "Stars over the harbour tonight",
    ]
    fresh = [factories.prompt(study=study, text=f"Fresh prompt {n}") for n in range(2)]
    for prompt in fresh:
        for number, text in enumerate(texts):
            factories.sample(prompt=prompt, version=good if number % 2 else bad, text=f"{text} {prompt.id}")

    result = comparisons_select_active(study=study, pairs_per_prompt=3, seed=0)

    assert result.regular_created == 6  # 3 per fresh prompt, the judged prompts have no new pair
    created = list(Comparison.objects.filter(study=study, prompt__in=fresh, kind=ComparisonKind.REGULAR))
    ensemble = load_reward_ensemble(Path(RewardModel.objects.get().path))
    for prompt in fresh:
        samples = list(Sample.objects.filter(prompt=prompt).order_by("id"))
        index = {sample.id: n for n, sample in enumerate(samples)}
        members = score_texts(ensemble, [s.text for s in samples], prompts=[prompt.text] * len(samples))
        member_scores = members.member_scores.detach().cpu().numpy()
        candidates = [
            (a.id, b.id) for a in samples for b in samples if a.id < b.id and a.version_id != b.version_id
        ]
        spread = pair_disagreement(member_scores, np.array([[index[a], index[b]] for a, b in candidates]))
        expected = {candidates[i] for i in np.argsort(-spread, kind="stable")[:3]}
        chosen = {(c.sample_a_id, c.sample_b_id) for c in created if c.prompt_id == prompt.id}
        assert chosen == expected


def test_thompson_selection_job_pairs_samples_the_ensemble_scores_best() -> None:
    fresh = selected_by_the_studys_strategy("thompson")

    chosen = list(Comparison.objects.filter(prompt=fresh, kind=ComparisonKind.REGULAR))
    assert len(chosen) == 2
    assert len({(c.sample_a_id, c.sample_b_id) for c in chosen}) == 2
    assert all(c.sample_a.version_id != c.sample_b.version_id for c in chosen)
    # Every pair holds the sample that one of the members scores best among the prompt's samples.
    samples = list(Sample.objects.filter(prompt=fresh).order_by("id"))
    ensemble = load_reward_ensemble(Path(RewardModel.objects.get().path))
    members = score_texts(ensemble, [s.text for s in samples], prompts=[fresh.text] * len(samples))
    favourites = {samples[int(i)].id for i in members.member_scores.detach().cpu().numpy().argmax(axis=1)}
    assert all({c.sample_a_id, c.sample_b_id} & favourites for c in chosen)


def test_margin_selection_job_asks_the_pairs_whose_winner_the_ensemble_is_surest_of() -> None:
    fresh = selected_by_the_studys_strategy("margin")

    chosen = {
        (c.sample_a_id, c.sample_b_id)
        for c in Comparison.objects.filter(prompt=fresh, kind=ComparisonKind.REGULAR)
    }
    samples = list(Sample.objects.filter(prompt=fresh).order_by("id"))
    ensemble = load_reward_ensemble(Path(RewardModel.objects.get().path))
    members = score_texts(ensemble, [s.text for s in samples], prompts=[fresh.text] * len(samples))
    candidates = [
        (a, b) for a in range(6) for b in range(6) if a < b and samples[a].version_id != samples[b].version_id
    ]
    margin = preference_margin(members.member_scores.detach().cpu().numpy(), np.array(candidates))
    # The two widest of the nine cross-version pairs (each sample in at most two pairs allows both).
    widest = [candidates[int(i)] for i in np.argsort(-margin, kind="stable")[:2]]
    assert chosen == {(samples[a].id, samples[b].id) for a, b in widest}
    assert margin.max() > np.median(margin)  # the ensemble tells the pairs apart: the test can fail


def test_an_unknown_acquisition_is_refused() -> None:
    study, _, _ = judged_study(prompts=2)
    with pytest.raises(ApplicationError, match="Unknown acquisition 'entropy'"):
        comparisons_select_active(study=study, pairs_per_prompt=1, seed=0, acquisition="entropy")
