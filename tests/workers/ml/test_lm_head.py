"""The plain LM head gives what TRL's fused head gives, field for field and gradient for gradient."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import (
    AutoModelForCausalLM,
    GPT2Config,
    GPT2LMHeadModel,
    MixtralConfig,
    MixtralForCausalLM,
)
from trl.trainer.utils import add_fused_lm_head

from tests.workers.ml.tiny_models import build_tiny_gpt2
from workers.ml.lm_head import ALL_OUTPUTS, plain_head_applies, token_fields, use_plain_lm_head


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_gpt2(tmp_path_factory.mktemp("tiny-lm-head"), seed=3)


def _batch(vocab: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded rows whose first tokens (the prompt) and padding carry no label."""
    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(0, vocab, (4, 12), generator=generator)
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, 9:] = 0
    attention_mask[3, 6:] = 0
    labels = input_ids.masked_fill(attention_mask == 0, -100)
    labels[:, :4] = -100
    labels[2] = -100  # a row with no label at all
    return input_ids, attention_mask, labels


def _run(model: torch.nn.Module, batch: tuple[torch.Tensor, ...]) -> tuple[dict, dict]:
    input_ids, attention_mask, labels = batch
    model.zero_grad()
    out = model(input_ids=input_ids, attention_mask=attention_mask, labels=labels, fused_lm_head=True)
    (out.log_probs.sum() + (0.3 * out.entropy.sum() if out.entropy is not None else 0)).backward()
    fields = {name: getattr(out, name) for name in (*ALL_OUTPUTS, "loss", "label_mask")}
    grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    return fields, grads


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_plain_head_matches_trls_fused_head(tiny: Path, temperature: float) -> None:
    outputs = ALL_OUTPUTS
    fused = AutoModelForCausalLM.from_pretrained(tiny)
    plain = copy.deepcopy(fused)
    add_fused_lm_head(fused, temperature=temperature, outputs=outputs)
    add_fused_lm_head(plain, temperature=temperature, outputs=outputs)
    assert use_plain_lm_head(plain, temperature=temperature, outputs=outputs)
    batch = _batch(fused.config.vocab_size)
    want, want_grads = _run(fused, batch)
    got, got_grads = _run(plain, batch)
    mask = want["label_mask"]
    assert torch.equal(got["label_mask"], mask)
    assert not mask[2].any()
    torch.testing.assert_close(got["loss"], want["loss"], rtol=1e-5, atol=1e-5)
    for name in ("log_probs", "entropy", "log_sum_sq_probs", "mean_logits"):
        torch.testing.assert_close(got[name], want[name], rtol=1e-4, atol=1e-5, msg=name)
        assert not got[name][~mask].any(), f"{name} is not zero where the label is -100"
    assert torch.equal(got["is_top1"], want["is_top1"])
    assert want_grads.keys() == got_grads.keys() and got_grads
    for name, grad in want_grads.items():
        torch.testing.assert_close(got_grads[name], grad, rtol=1e-4, atol=1e-5, msg=name)


def test_plain_head_asks_only_for_the_requested_fields_and_leaves_other_calls_alone(tiny: Path) -> None:
    model = AutoModelForCausalLM.from_pretrained(tiny)
    add_fused_lm_head(model)
    assert use_plain_lm_head(model, outputs=("log_probs",))
    input_ids, attention_mask, labels = _batch(model.config.vocab_size)
    out = model(input_ids=input_ids, attention_mask=attention_mask, labels=labels, fused_lm_head=True)
    assert out.entropy is None and out.is_top1 is None and out.mean_logits is None
    # Without fused_lm_head the forward is the model's own: logits and its own loss.
    plain = model(input_ids=input_ids, attention_mask=attention_mask, labels=labels)
    assert plain.logits.shape == (*input_ids.shape, model.config.vocab_size)
    # generate validates its keyword arguments against the forward's signature, which is kept.
    generated = model.generate(input_ids=input_ids[:1, :3], max_new_tokens=2, do_sample=False, pad_token_id=1)
    assert generated.shape == (1, 5)


def test_plain_head_under_peft_adapters_trains_only_the_adapters(tiny: Path) -> None:
    fused = AutoModelForCausalLM.from_pretrained(tiny)
    plain = copy.deepcopy(fused)
    for model in (fused, plain):
        add_fused_lm_head(model)
    assert use_plain_lm_head(plain)
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["c_attn"], init_lora_weights=False)
    torch.manual_seed(0)
    fused_peft = get_peft_model(fused, lora)
    torch.manual_seed(0)
    plain_peft = get_peft_model(plain, copy.deepcopy(lora))
    batch = _batch(fused.config.vocab_size, seed=1)
    want, want_grads = _run(fused_peft, batch)
    got, got_grads = _run(plain_peft, batch)
    torch.testing.assert_close(got["log_probs"], want["log_probs"], rtol=1e-4, atol=1e-5)
    assert got_grads.keys() == want_grads.keys() and all("lora_" in name for name in got_grads)
    for name, grad in want_grads.items():
        torch.testing.assert_close(got_grads[name], grad, rtol=1e-4, atol=1e-5, msg=name)


def test_chunked_fields_equal_the_fields_at_once() -> None:
    generator = torch.Generator().manual_seed(5)
    hidden = torch.randn(37, 16, generator=generator, requires_grad=True)
    weight = torch.randn(50, 16, generator=generator, requires_grad=True)
    bias = torch.randn(50, generator=generator, requires_grad=True)
    targets = torch.randint(0, 50, (37,), generator=generator)
    results = []
    for max_logits in (10_000, 50 * 8):  # everything at once; chunks of 8 tokens, recomputed
        fields = token_fields(
            hidden, weight, bias, targets, outputs=ALL_OUTPUTS, temperature=0.9, max_logits=max_logits
        )
        (fields["log_probs"].sum() - fields["entropy"].sum()).backward()
        results.append((fields, [t.grad.clone() for t in (hidden, weight, bias)]))
        for tensor in (hidden, weight, bias):
            tensor.grad = None
    (whole, whole_grads), (chunked, chunked_grads) = results
    for name in ALL_OUTPUTS:
        torch.testing.assert_close(chunked[name], whole[name], msg=name)
    for got, want in zip(chunked_grads, whole_grads, strict=True):
        torch.testing.assert_close(got, want)


def test_models_that_transform_their_logits_keep_trls_head() -> None:
    config = GPT2Config(vocab_size=64, n_positions=16, n_embd=16, n_layer=1, n_head=2)
    assert plain_head_applies(GPT2LMHeadModel(config))
    config.final_logit_softcapping = 30.0
    model = GPT2LMHeadModel(config)
    add_fused_lm_head(model)
    trls_forward = model.forward
    assert not use_plain_lm_head(model)
    assert model.forward == trls_forward


def test_bad_arguments_are_refused(tiny: Path) -> None:
    model = AutoModelForCausalLM.from_pretrained(tiny)
    add_fused_lm_head(model)
    with pytest.raises(ValueError, match="unknown LM head outputs \\['logits'\\]"):
        use_plain_lm_head(model, outputs=("log_probs", "logits"))
    with pytest.raises(ValueError, match="temperature must be positive"):
        use_plain_lm_head(model, temperature=0.0)


def test_is_top1_counts_only_the_first_of_tied_maxima() -> None:
    logits = torch.tensor(
        [[1.0, 3.0, 3.0, 0.0], [1.0, 3.0, 3.0, 0.0], [5.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 2.0]]
    )
    targets = torch.tensor([1, 2, 1, 3])
    hidden = torch.eye(4)  # hidden @ weight.T = weight: each row's logits are the weight's columns
    fields = token_fields(hidden, logits.T.contiguous(), None, targets, outputs=("is_top1",))
    assert fields["is_top1"].tolist() == [True, False, False, True]
    assert fields["is_top1"].tolist() == (logits.argmax(-1) == targets).tolist()


def test_a_mixture_of_experts_keeps_trls_head_and_its_router_loss() -> None:
    # Mixtral's config knows output_router_logits (off by default): TRL then asks for router
    # logits and adds their auxiliary loss in its own head.
    config = MixtralConfig(
        vocab_size=64,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        num_local_experts=2,
        num_experts_per_tok=1,
    )
    model = MixtralForCausalLM(config)
    assert not plain_head_applies(model)
    add_fused_lm_head(model)
    assert not use_plain_lm_head(model)


def test_the_plain_head_needs_trls_head_underneath(tiny: Path) -> None:
    model = AutoModelForCausalLM.from_pretrained(tiny)
    with pytest.raises(ValueError, match="no fused LM head: TRL's add_fused_lm_head must patch it first"):
        use_plain_lm_head(model)


def test_shift_labels_and_item_counts_match_trls_head(tiny: Path) -> None:
    fused = AutoModelForCausalLM.from_pretrained(tiny)
    plain = copy.deepcopy(fused)
    add_fused_lm_head(fused)
    add_fused_lm_head(plain)
    use_plain_lm_head(plain)
    input_ids, attention_mask, labels = _batch(fused.config.vocab_size, seed=2)
    shifted = torch.cat([labels[:, 1:], torch.full_like(labels[:, :1], -100)], dim=1)
    for kwargs in ({"shift_labels": shifted}, {"labels": labels, "num_items_in_batch": 7}):
        want = fused(input_ids=input_ids, attention_mask=attention_mask, fused_lm_head=True, **kwargs)
        got = plain(input_ids=input_ids, attention_mask=attention_mask, fused_lm_head=True, **kwargs)
        assert got.log_probs.shape == want.log_probs.shape
        torch.testing.assert_close(got.log_probs, want.log_probs, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(got.loss, want.loss, rtol=1e-5, atol=1e-5)
