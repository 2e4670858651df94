from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer, GPT2Config, GPT2LMHeadModel

from tests.workers.ml.conftest import TINY_CORPUS
from workers.ml.base_model import (
    BUILD_INFO_FILE,
    CHECKPOINT_FILE,
    DEMO_CORPUS_PATH,
    END_OF_TEXT,
    MIN_PIECES_TO_HOLD_OUT,
    TINY_BUILD_CONFIG,
    BuildResult,
    MuonAndAdamW,
    base_model_optimizer,
    build_base_model,
    held_out_split,
    in_corpus_word_share,
    normalize_word,
    split_corpus,
    uses_bf16,
)
from workers.ml.checkpoint import load_if_exists
from workers.ml.progress import Cancelled


def test_build_saves_a_model_and_tokenizer_that_transformers_loads(tiny_build: BuildResult) -> None:
    # Given the tiny model built in the session fixture
    # When it is loaded with the Auto classes, as any hub model would be
    tokenizer = AutoTokenizer.from_pretrained(tiny_build.output_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_build.output_dir)

    # Then it is a GPT-2 of the configured shape, with END_OF_TEXT as BOS, EOS and padding
    assert model.config.model_type == "gpt2"
    assert (model.config.n_layer, model.config.n_embd, model.config.n_positions) == (2, 32, 64)
    assert model.config.vocab_size == len(tokenizer) == tiny_build.vocab_size
    assert tokenizer.eos_token == tokenizer.bos_token == tokenizer.pad_token == END_OF_TEXT
    assert model.config.eos_token_id == tokenizer.eos_token_id
    text = "The tide came in at dawn,\nand wrote its name."
    assert tokenizer.decode(tokenizer(text)["input_ids"]) == text
    info = json.loads((tiny_build.output_dir / BUILD_INFO_FILE).read_text())
    assert info["steps"] == TINY_BUILD_CONFIG.steps


def test_build_loss_falls(tiny_build: BuildResult) -> None:
    # Then the first loss is near chance (ln of the vocabulary) and the last steps are far below it
    losses = tiny_build.losses
    assert len(losses) == TINY_BUILD_CONFIG.steps
    assert losses[0] == pytest.approx(math.log(tiny_build.vocab_size), abs=0.5)
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5 - 1.5


def test_progress_reports_steps_and_loss(tmp_path: Path) -> None:
    # Given a recording reporter
    calls: list[tuple[int, int, dict[str, float] | None]] = []

    def record(*, step: int, total: int, message: str = "", metrics: dict[str, float] | None = None) -> None:
        calls.append((step, total, metrics))

    # When the tiny model is built
    build_base_model(
        corpus=TINY_CORPUS,
        output_dir=tmp_path / "model",
        checkpoint_dir=tmp_path / "checkpoints",
        config=TINY_BUILD_CONFIG,
        reporter=record,
    )

    # Then it reports the start and every 5 steps, with the loss
    assert [(step, total) for step, total, _ in calls] == [(step, 40) for step in range(0, 41, 5)]
    assert calls[0][2] is None
    assert all(metrics is not None and set(metrics) == {"loss"} for _, _, metrics in calls[1:])


def test_interrupted_build_resumes_from_its_checkpoint(tmp_path: Path, tiny_build: BuildResult) -> None:
    # Given a build cancelled at step 15 (checkpoints every 10 steps)
    def cancel_at_15(
        *, step: int, total: int, message: str = "", metrics: dict[str, float] | None = None
    ) -> None:
        if step == 15:
            raise Cancelled

    arguments = {
        "corpus": TINY_CORPUS,
        "output_dir": tmp_path / "model",
        "checkpoint_dir": tmp_path / "checkpoints",
        "config": TINY_BUILD_CONFIG,
    }
    with pytest.raises(Cancelled):
        build_base_model(**arguments, reporter=cancel_at_15)  # type: ignore[arg-type]
    checkpoint = load_if_exists(tmp_path / "checkpoints" / CHECKPOINT_FILE)
    assert checkpoint is not None
    assert checkpoint["step"] == 10
    assert not (tmp_path / "model").exists()

    # When the build is started again
    result = build_base_model(**arguments)  # type: ignore[arg-type]

    # Then it continues from step 10 to the end, with the loss history of an uninterrupted build
    # and bit-for-bit the same weights
    assert (result.resumed_from_step, result.steps) == (10, TINY_BUILD_CONFIG.steps)
    assert result.losses == tiny_build.losses
    resumed = load_file(result.output_dir / "model.safetensors")
    uninterrupted = load_file(tiny_build.output_dir / "model.safetensors")
    assert resumed.keys() == uninterrupted.keys()
    assert all(torch.equal(resumed[name], uninterrupted[name]) for name in resumed)


def test_finished_build_started_again_only_rewrites_the_model(tmp_path: Path) -> None:
    # Given a finished build
    arguments = {
        "corpus": TINY_CORPUS,
        "output_dir": tmp_path / "model",
        "checkpoint_dir": tmp_path / "checkpoints",
        "config": TINY_BUILD_CONFIG,
    }
    first = build_base_model(**arguments)  # type: ignore[arg-type]

    # When it is started again (a redelivered task)
    again = build_base_model(**arguments)  # type: ignore[arg-type]

    # Then it trains no further and leaves one model directory and no temporary ones behind
    assert (again.resumed_from_step, again.steps, again.losses) == (40, 40, first.losses)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["checkpoints", "model"]
    assert (tmp_path / "model" / "model.safetensors").exists()


def test_checkpoint_of_another_config_is_refused(tmp_path: Path) -> None:
    # Given a checkpoint of the tiny config
    def cancel(*, step: int, total: int, message: str = "", metrics: dict[str, float] | None = None) -> None:
        if step == 10:
            raise Cancelled

    with pytest.raises(Cancelled):
        build_base_model(
            corpus=TINY_CORPUS,
            output_dir=tmp_path / "model",
            checkpoint_dir=tmp_path / "checkpoints",
            config=TINY_BUILD_CONFIG,
            reporter=cancel,
        )

    # When / then: resuming it with more steps, or on another corpus, fails
    with pytest.raises(ValueError, match="another config"):
        build_base_model(
            corpus=TINY_CORPUS,
            output_dir=tmp_path / "model",
            checkpoint_dir=tmp_path / "checkpoints",
            config=dataclasses.replace(TINY_BUILD_CONFIG, steps=80),
        )
    with pytest.raises(ValueError, match="another corpus"):
        build_base_model(
            corpus=TINY_CORPUS + "\n\nOne more piece.",
            output_dir=tmp_path / "model",
            checkpoint_dir=tmp_path / "checkpoints",
            config=TINY_BUILD_CONFIG,
        )


def test_split_corpus_splits_at_blank_lines() -> None:
    text = "\n\nRoses are red,\nviolets are blue.\n\n \t\nThe sea.\n\n\n\nLast one  \n"
    assert split_corpus(text) == ["Roses are red,\nviolets are blue.", "The sea.", "Last one"]
    assert split_corpus(" \n\n \n") == []


def test_in_corpus_word_share_counts_normalised_words() -> None:
    # Given a corpus and texts with case, punctuation and one invented word
    corpus = "The tide came in.\n\nIt's the moon's hour — \"quiet\" now."
    texts = ["THE tide, came...", "it's (quiet) zorblat", "— !"]

    # Then 5 of the 6 words occur in the corpus; pure punctuation is no word
    assert in_corpus_word_share(texts, corpus) == pytest.approx(5 / 6)
    assert normalize_word('"Moon\'s,"') == "moon's"
    assert math.isnan(in_corpus_word_share(["..."], corpus))


def test_held_out_split_holds_out_pieces_by_their_text() -> None:
    # Given 300 distinct pieces
    pieces = [f"Piece number {n} is about the sea." for n in range(300)]

    # When they are split one in ten, and again reversed with 50 more pieces
    train, held_out = held_out_split(pieces, 10)
    _, held_out_again = held_out_split([*reversed(pieces), *(f"Another piece {n}." for n in range(50))], 10)

    # Then every piece lands on exactly one side, about a tenth is held out, and a held-out piece
    # stays held out whatever else the corpus holds
    assert sorted(train + held_out) == sorted(pieces)
    assert 15 <= len(held_out) <= 45
    assert set(held_out) <= set(held_out_again)
    # and nothing is held out of a small corpus or when the config says 0
    small = pieces[: MIN_PIECES_TO_HOLD_OUT - 1]
    assert held_out_split(small, 10) == (small, [])
    assert held_out_split(pieces, 0) == (pieces, [])


def test_build_reports_held_out_perplexity(tmp_path: Path, tiny_build: BuildResult) -> None:
    # Given a corpus large enough to split (the demo corpus's first 150 pieces) and a recorder
    pieces = split_corpus(DEMO_CORPUS_PATH.read_text(encoding="utf-8"))[:150]
    _, held_out = held_out_split(pieces, TINY_BUILD_CONFIG.held_out_every)
    messages: list[str] = []

    def record(*, step: int, total: int, message: str = "", metrics: dict[str, float] | None = None) -> None:
        messages.append(message)

    # When the tiny model is built on it
    result = build_base_model(
        corpus="\n\n".join(pieces),
        output_dir=tmp_path / "model",
        checkpoint_dir=tmp_path / "checkpoints",
        config=TINY_BUILD_CONFIG,
        reporter=record,
    )

    # Then the held-out pieces are scored: every token of each plus its END_OF_TEXT, per word
    # with one word per piece for its end, and per word and per token are the same likelihood
    perplexity = result.held_out
    assert perplexity is not None
    assert perplexity.pieces == len(held_out) > 0
    assert perplexity.words == sum(len(piece.split()) + 1 for piece in held_out)
    assert perplexity.tokens > perplexity.pieces
    assert 1 < perplexity.per_token < result.vocab_size
    assert math.log(perplexity.per_word) * perplexity.words == pytest.approx(
        math.log(perplexity.per_token) * perplexity.tokens, rel=1e-9
    )
    # and the build says so, in its last message and in the model folder
    assert messages[-1].startswith(f"held-out perplexity {perplexity.per_word:.1f} per word")
    info = json.loads((result.output_dir / BUILD_INFO_FILE).read_text())
    assert info["held_out_perplexity"] == perplexity.as_dict()
    # while a corpus too small to split holds nothing out
    assert tiny_build.held_out is None


def test_muon_updates_the_block_matrices_and_adamw_the_rest() -> None:
    # Given the tiny model and its default optimizer (Muon with AdamW)
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=320, n_positions=64, n_embd=32, n_layer=2, n_head=2))
    optimizer = base_model_optimizer(model, TINY_BUILD_CONFIG)

    # Then Muon holds exactly the transformer blocks' weight matrices, and AdamW the embeddings
    # (the output layer is the token embedding), biases and layer norms, each parameter once
    names = {id(parameter): name for name, parameter in model.named_parameters()}
    assert isinstance(optimizer, MuonAndAdamW)
    muon = sorted(names[id(p)] for group in optimizer.muon.param_groups for p in group["params"])
    adamw = sorted(names[id(p)] for group in optimizer.adamw.param_groups for p in group["params"])
    assert muon == sorted(
        f"transformer.h.{block}.{matrix}.weight"
        for block in range(2)
        for matrix in ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")
    )
    assert {"transformer.wte.weight", "transformer.wpe.weight", "transformer.h.0.ln_1.weight"} <= set(adamw)
    assert sorted(muon + adamw) == sorted(names.values())
    # each at its own peak learning rate, which the schedule scales
    assert [group["peak_lr"] for group in optimizer.param_groups] == [
        TINY_BUILD_CONFIG.muon_learning_rate,
        TINY_BUILD_CONFIG.learning_rate,
    ]


@pytest.mark.parametrize("bf16", [False, True])
def test_adamw_builds_resume_bit_for_bit_in_either_precision(tmp_path: Path, bf16: bool) -> None:
    # Given the optimizer of the demo model until December 2026, with and without bfloat16
    # autocast (emulated where the CPU lacks it: slower, not wrong)
    config = dataclasses.replace(TINY_BUILD_CONFIG, optimizer="adamw", bf16=bf16)
    assert uses_bf16(config) is bf16
    uninterrupted = build_base_model(
        corpus=TINY_CORPUS, output_dir=tmp_path / "a", checkpoint_dir=tmp_path / "a-ck", config=config
    )

    def cancel_at_15(
        *, step: int, total: int, message: str = "", metrics: dict[str, float] | None = None
    ) -> None:
        if step == 15:
            raise Cancelled

    # When another build is cancelled after its checkpoint at step 10 and started again
    arguments = {"corpus": TINY_CORPUS, "output_dir": tmp_path / "b", "checkpoint_dir": tmp_path / "b-ck"}
    with pytest.raises(Cancelled):
        build_base_model(**arguments, config=config, reporter=cancel_at_15)  # type: ignore[arg-type]
    resumed = build_base_model(**arguments, config=config)  # type: ignore[arg-type]

    # Then it learns, and ends where the uninterrupted build did
    assert sum(uninterrupted.losses[-5:]) < sum(uninterrupted.losses[:5]) - 5 * 1.5
    assert (resumed.resumed_from_step, resumed.losses) == (10, uninterrupted.losses)
    weights = load_file(resumed.output_dir / "model.safetensors")
    reference = load_file(uninterrupted.output_dir / "model.safetensors")
    assert all(torch.equal(weights[name], reference[name]) for name in reference)


def test_an_unknown_optimizer_is_refused() -> None:
    with pytest.raises(ValueError, match="optimizer must be 'muon' or 'adamw', got 'sgd'"):
        dataclasses.replace(TINY_BUILD_CONFIG, optimizer="sgd")
