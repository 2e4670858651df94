"""The creativity evaluation job of one version: novelty, diversity, surprise, value and their joint.

Worker-only (imports torch through workers.ml). Every number comes from the pure functions in
``evaluation/``; this module gathers the inputs from the database and models, and stores the
result with its protocol (prompts, k, corpus, embedding model, reference model, seeds), so that
an Evaluation can be reproduced and compared with another one made the same way.
"""

from __future__ import annotations

import hashlib
import random
from pathlib import Path
from typing import Any

import numpy as np
from django.conf import settings

from evaluation.bootstrap import MeanInterval, bootstrap_mean
from evaluation.diversity import distinct_n, expectation_adjusted_distinct_n, self_bleu, vendi_score
from evaluation.novelty import (
    DEFAULT_MAX_N,
    build_ngram_index,
    build_vocabulary,
    embedding_novelty,
    encode_tokens,
    longest_copied_spans,
    ngram_novelty_curves,
    tokenize_words,
)
from evaluation.pareto import novel_and_valuable_interval, pareto_front
from evaluation.surprise import compare_surprisal
from evaluation.value import win_rate_against
from server.core.exceptions import ApplicationError
from server.core.paths import model_path_check
from server.evaluations.leaderboard import OUTCOME_CODES, counted_judgments
from server.evaluations.models import Evaluation
from server.evaluations.selectors import leaderboard_latest
from server.generators.endpoint_generation import endpoint_samples_generate_missing
from server.generators.jobs import samples_generate_missing
from server.generators.models import KINDS_WITHOUT_WEIGHTS, GeneratorVersion, Sample, VersionKind
from server.generators.services import (
    version_corpus_check,
    version_is_image_generator,
    version_model_check,
)
from server.jobs.models import Job
from server.studies.models import Criterion, Prompt
from server.studies.services import VALUE_KEY
from server.training.models import RewardModel
from workers.ml.base_model import split_corpus
from workers.ml.embeddings import default_model_path, embed_texts, embed_texts_cached
from workers.ml.progress import ProgressReporter

BOOTSTRAP_ROUNDS = 1000
BASELINE_PIECES = 200  # human baseline texts for surprisal, drawn from the reference corpus
CORPUS_EMBEDDING_PIECES = 5000  # cap on corpus pieces embedded for embedding novelty
NOVELTY_N = 4  # the n-gram order of the per-sample novelty used in the joint analysis
STEPS = 6


def _interval(mean: MeanInterval) -> dict[str, float | int | None]:
    def clean(value: float) -> float | None:
        return None if not np.isfinite(value) else round(float(value), 5)

    return {
        "mean": clean(mean.mean),
        "lower": clean(mean.lower),
        "upper": clean(mean.upper),
        "count": mean.count,
    }


def lineage_root(version: GeneratorVersion) -> GeneratorVersion:
    while version.parent_id is not None:
        version = version.parent  # type: ignore[assignment]
    return version


def _surprisal_inputs(
    model_path: str, prompted_texts: list[tuple[str, str]], baseline: list[str]
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per-token log-probabilities of the samples (given their prompts) and of human baseline texts.

    Baseline texts are cut to the longest sample's token count: surprisal per token falls along a
    text (later tokens have more context), so comparing a 20-token sample with a 200-token poem
    would flatter the poem. Everything is cut to fit the model's context.
    """
    from workers.ml.sampling import context_length, encode_prompt, load_model
    from workers.ml.scoring import token_logprobs_of_ids

    loaded = load_model(model_path)
    tokenizer = loaded.tokenizer
    limit = context_length(loaded.model) or 1024
    sample_sequences = []
    for prompt, text in prompted_texts:
        context = encode_prompt(tokenizer, prompt)[-(limit // 2) :]
        continuation = tokenizer(text, add_special_tokens=False)["input_ids"]
        if not context:
            context, continuation = continuation[:1], continuation[1:]
        sample_sequences.append((context, continuation[: limit - len(context)]))
    longest = max((len(continuation) for _, continuation in sample_sequences), default=1)
    baseline_sequences = []
    for text in baseline:
        context = encode_prompt(tokenizer, "")
        continuation = tokenizer(text, add_special_tokens=False)["input_ids"]
        if not context:
            context, continuation = continuation[:1], continuation[1:]
        baseline_sequences.append((context, continuation[: min(longest, limit - len(context))]))
    return (
        token_logprobs_of_ids(loaded, [s for s in sample_sequences if s[0]]),
        token_logprobs_of_ids(loaded, [s for s in baseline_sequences if s[0]]),
    )


def evaluation_run(*, job: Job, report: ProgressReporter) -> dict[str, Any]:
    params = job.params
    study = job.study
    version = GeneratorVersion.objects.select_related("generator").get(id=params["version_id"])
    # Every file this job reads, checked before any work (see server.core.paths): the version rows
    # may have changed since the start, and the parameters may come from ``manage.py job start``.
    root = lineage_root(version)
    if version_is_image_generator(version):
        from server.evaluations.image_evaluation import image_evaluation_run

        return image_evaluation_run(job=job, report=report, version=version, root=root)
    corpus = version_corpus_check(version=version if version.reference_corpus_path else root, field="corpus")
    embedding_model = model_path_check(
        params.get("embedding_model_path") or str(default_model_path()), field="embedding_model_path"
    )
    reference_model = ""
    if params.get("reference_model_path"):
        reference_model = model_path_check(params["reference_model_path"], field="reference_model_path")
    elif root.kind not in KINDS_WITHOUT_WEIGHTS:
        reference_model = version_model_check(version=root, field="reference_model_path")
    # Value is what people call better: a study asking the creativity template's questions scores
    # it with a reward model of its value criterion; any other study with one of its own question.
    value_criterion = Criterion.objects.filter(study=study, key=VALUE_KEY).first()
    reward_models = RewardModel.objects.filter(study=study)
    reward_model = (
        (
            reward_models.filter(criterion=value_criterion)
            if value_criterion is not None
            else reward_models.filter(criterion__isnull=True)
        )
        .order_by("-created_at")
        .first()
    )
    reward_model_path = model_path_check(reward_model.path, field="reward model path") if reward_model else ""
    prompts = list(Prompt.objects.filter(study=study, split=params["split"]).order_by("id"))
    k = int(params["samples_per_prompt"])
    seed = int(params.get("seed", 0))
    metrics: dict[str, Any] = {}
    notes: list[str] = []

    report(step=0, total=STEPS, message="samples")
    if version.kind != VersionKind.EXTERNAL:
        # An endpoint's failed requests are in the job's log; the evaluation uses what came back.
        generate_missing = (
            endpoint_samples_generate_missing
            if version.kind == VersionKind.ENDPOINT
            else samples_generate_missing
        )
        generate_missing(
            version=version,
            prompts=prompts,
            seeds=range(k),
            decoding_override={},
            job=job,
            on_chunk=lambda count, speed: None,
        )
        samples = list(
            Sample.objects.filter(version=version, prompt__in=prompts, seed__in=list(range(k)))
            .select_related("prompt")
            .order_by("prompt_id", "seed")
        )
    else:
        samples = list(
            Sample.objects.filter(version=version, prompt__in=prompts)
            .select_related("prompt")
            .order_by("prompt_id", "id")
        )
    if not samples:
        raise ApplicationError(f"{version} has no samples on the {params['split']} prompts to evaluate.")
    texts = [sample.text for sample in samples]
    prompt_of = np.array([sample.prompt_id for sample in samples], dtype=np.int64)

    def mean_ci(values: np.ndarray) -> dict[str, float | int | None]:
        return _interval(bootstrap_mean(values, groups=prompt_of, rounds=BOOTSTRAP_ROUNDS, seed=seed))

    # --- novelty against the reference corpus
    report(step=1, total=STEPS, message="novelty")
    corpus_path = str(corpus) if corpus else ""
    corpus_text = corpus.read_text(encoding="utf-8") if corpus else ""
    sample_tokens = [tokenize_words(text) for text in texts]
    vocabulary = build_vocabulary(sample_tokens)
    novelty_4 = np.full(len(samples), np.nan)
    if corpus_text:
        corpus_tokens = tokenize_words(corpus_text)
        vocabulary = build_vocabulary([corpus_tokens, *sample_tokens])
        index = build_ngram_index(encode_tokens(corpus_tokens, vocabulary))
        encoded = [encode_tokens(tokens, vocabulary) for tokens in sample_tokens]
        curves = ngram_novelty_curves(index, encoded)  # [samples, max_n]
        spans = longest_copied_spans(index, encoded).astype(np.float64)
        curve_intervals = [mean_ci(curves[:, n]) for n in range(DEFAULT_MAX_N)]
        metrics["novelty_curve"] = {
            "n": list(range(1, DEFAULT_MAX_N + 1)),
            "mean": [c["mean"] for c in curve_intervals],
            "lower": [c["lower"] for c in curve_intervals],
            "upper": [c["upper"] for c in curve_intervals],
        }
        metrics[f"novelty_{NOVELTY_N}gram"] = curve_intervals[NOVELTY_N - 1]
        metrics["longest_copied_span"] = mean_ci(spans)
        novelty_4 = curves[:, NOVELTY_N - 1]
    else:
        notes.append("no reference corpus: n-gram and embedding novelty were not computed")

    # --- embeddings: embedding novelty and Vendi diversity
    report(step=2, total=STEPS, message="embeddings")
    sample_embeddings = embed_texts(texts, model_path=embedding_model)
    if corpus_text:
        pieces = split_corpus(corpus_text)
        random.Random(seed).shuffle(pieces)
        # The same pieces for every version evaluated against this corpus: embedded once.
        corpus_embeddings = embed_texts_cached(
            pieces[:CORPUS_EMBEDDING_PIECES],
            model_path=embedding_model,
            cache_dir=Path(settings.VAR_DIR) / "cache" / "embeddings",
        )
        metrics["embedding_novelty"] = mean_ci(embedding_novelty(sample_embeddings, corpus_embeddings))

    # --- diversity: over all samples, and per prompt (self-BLEU, Vendi need k >= 2)
    report(step=3, total=STEPS, message="diversity")
    encoded_samples = [encode_tokens(tokens, vocabulary) for tokens in sample_tokens]
    for n in (1, 2, 3, 4):
        metrics[f"distinct_{n}"] = {"mean": round(distinct_n(encoded_samples, n), 5)}
        metrics[f"ead_{n}"] = {
            "mean": round(
                expectation_adjusted_distinct_n(encoded_samples, n, vocabulary_size=len(vocabulary)), 5
            )
        }
    per_prompt_bleu, per_prompt_vendi, bleu_groups = [], [], []
    for prompt_id in np.unique(prompt_of):
        members = np.nonzero(prompt_of == prompt_id)[0]
        if members.size >= 2:
            per_prompt_bleu.append(self_bleu([encoded_samples[i] for i in members]))
            per_prompt_vendi.append(vendi_score(sample_embeddings[members]))
            bleu_groups.append(prompt_id)
    if bleu_groups:
        metrics["self_bleu"] = _interval(
            bootstrap_mean(np.array(per_prompt_bleu), rounds=BOOTSTRAP_ROUNDS, seed=seed)
        )
        metrics["vendi_per_prompt"] = _interval(
            bootstrap_mean(np.array(per_prompt_vendi), rounds=BOOTSTRAP_ROUNDS, seed=seed)
        )
    else:
        notes.append("one sample per prompt: self-BLEU and per-prompt Vendi need k >= 2")
    metrics["vendi_all"] = {"mean": round(vendi_score(sample_embeddings), 5)}

    # --- surprise under a reference model, relative to human text of the corpus
    report(step=4, total=STEPS, message="surprise")
    if reference_model and corpus_text:
        baseline = split_corpus(corpus_text)
        random.Random(seed).shuffle(baseline)
        sample_lp, baseline_lp = _surprisal_inputs(
            reference_model,
            [(sample.prompt.text, sample.text) for sample in samples],
            baseline[:BASELINE_PIECES],
        )
        surprise = compare_surprisal(sample_lp, baseline_lp, rounds=BOOTSTRAP_ROUNDS, seed=seed)
        metrics["surprisal"] = {"mean": round(surprise.sample_mean, 5)}
        metrics["surprisal_human_baseline"] = {"mean": round(surprise.baseline_mean, 5)}
        metrics["surprisal_minus_baseline"] = {
            "mean": round(surprise.difference, 5),
            "lower": round(surprise.lower, 5),
            "upper": round(surprise.upper, 5),
        }
    else:
        notes.append("no reference model or corpus: surprisal was not computed")

    # --- value: leaderboard rating, win rate against the parent, reward-model score
    report(step=5, total=STEPS, message="value")
    board = leaderboard_latest(study=study)
    row = next((entry for entry in (board.rows if board else []) if entry["version_id"] == version.id), None)
    if row is not None:
        metrics["bt_rating"] = {
            "mean": row["rating"],
            "lower": row["lower"],
            "upper": row["upper"],
            "leaderboard_id": board.id,
        }  # type: ignore[union-attr]
    if version.parent_id is not None:
        judgments = list(
            counted_judgments(study=study, split=params["split"])
            .filter(
                assignment__comparison__sample_a__version_id__in=[version.id, version.parent_id],
                assignment__comparison__sample_b__version_id__in=[version.id, version.parent_id],
            )
            .values_list(
                "outcome",
                "assignment__comparison__sample_a__version_id",
                "assignment__comparison__sample_b__version_id",
                "assignment__comparison__prompt_id",
            )
        )
        if judgments:
            rate = win_rate_against(
                [a for _, a, _, _ in judgments],
                [b for _, _, b, _ in judgments],
                [int(OUTCOME_CODES[o]) for o, _, _, _ in judgments],
                version=version.id,
                opponent=version.parent_id,
                prompt_ids=[p for *_, p in judgments],
                rounds=BOOTSTRAP_ROUNDS,
                seed=seed,
            )
            metrics["win_rate_vs_parent"] = {
                "mean": round(rate.win_rate, 5),
                "lower": round(rate.lower, 5),
                "upper": round(rate.upper, 5),
                "wins": rate.wins,
                "ties": rate.ties,
                "losses": rate.losses,
            }
    values = np.full(len(samples), np.nan)
    if reward_model is not None:
        from workers.ml.reward_model import load_reward_ensemble, score_texts

        ensemble = load_reward_ensemble(Path(reward_model_path))
        scores = score_texts(ensemble, texts, prompts=[sample.prompt.text for sample in samples])
        values = scores.mean.detach().cpu().numpy().astype(np.float64)
        metrics["reward_model_score"] = {**mean_ci(values), "reward_model_id": reward_model.id}
    else:
        notes.append("no reward model yet: per-sample value and the joint analysis were not computed")

    # --- joint: novelty-value Pareto front and the share of samples both novel and valuable
    if reward_model is not None and corpus_text:
        novelty_threshold = float(params.get("novelty_threshold", 0.5))
        value_threshold = float(params.get("value_threshold", 0.0))
        front = pareto_front(novelty_4, values)
        share = novel_and_valuable_interval(
            novelty_4,
            values,
            novelty_threshold=novelty_threshold,
            value_threshold=value_threshold,
            groups=prompt_of,
            rounds=BOOTSTRAP_ROUNDS,
            seed=seed,
        )
        metrics["novel_and_valuable_share"] = {
            **_interval(share),
            "novelty_threshold": novelty_threshold,
            "value_threshold": value_threshold,
        }
        metrics["points"] = [
            {"sample_id": sample.id, "novelty": round(float(n), 5), "value": round(float(v), 5)}
            for sample, n, v in zip(samples, novelty_4, values, strict=True)
        ]
        metrics["pareto_sample_ids"] = [samples[i].id for i in front.tolist()]

    protocol = {
        "split": params["split"],
        "prompt_ids": [prompt.id for prompt in prompts],
        "samples_per_prompt": k,
        "sample_count": len(samples),
        "seeds": list(range(k)) if version.kind != VersionKind.EXTERNAL else None,
        "corpus": corpus_path or None,
        "corpus_sha256": hashlib.sha256(corpus_text.encode()).hexdigest() if corpus_text else None,
        "embedding_model": embedding_model,
        "reference_model": reference_model or None,
        "reward_model_id": reward_model.id if reward_model else None,
        "bootstrap_rounds": BOOTSTRAP_ROUNDS,
        "bootstrap_seed": seed,
        "novelty_order_for_joint": NOVELTY_N,
        "notes": notes,
    }
    evaluation = Evaluation.objects.create(
        study=study, version=version, protocol=protocol, metrics=metrics, job=job
    )
    report(step=STEPS, total=STEPS, message="stored")
    return {"evaluation_id": evaluation.id, "samples": len(samples), "notes": notes}
