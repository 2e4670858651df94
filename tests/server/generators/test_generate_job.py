from __future__ import annotations

from pathlib import Path

import pytest

from server.generators.jobs import generate_run
from server.generators.models import Sample, VersionKind, sample_text_hash
from server.generators.services import generate_start
from server.jobs.models import Job, JobStatus
from server.ratings.models import Comparison, ComparisonKind
from server.ratings.pair_selection import pair_selection_run
from server.studies.models import PromptSplit
from tests import factories
from workers.runner import run_job

pytestmark = pytest.mark.django_db


def make_study(model_dir: Path):  # type: ignore[no-untyped-def]
    study = factories.study(gold_rate=0.2)
    for text in ("The sea", "A clock", "Bread"):
        factories.prompt(study=study, text=text)
    factories.prompt(study=study, text="Snow", split=PromptSplit.HOLDOUT)
    decoding = {"temperature": 1.0, "max_new_tokens": 8, "batch_size": 4}
    first = factories.version(
        kind=VersionKind.BASE, model_path=str(model_dir), decoding=decoding, enrol_in=study
    )
    second = factories.version(
        kind=VersionKind.BASE,
        model_path=str(model_dir),
        enrol_in=study,
        decoding={**decoding, "temperature": 0.5},
    )
    return study, [first, second]


def test_generate_stores_every_sample_with_provenance(tiny_model_allowed: Path) -> None:
    study, versions = make_study(tiny_model_allowed)
    job = generate_start(study=study, version_ids=[v.id for v in versions], samples_per_prompt=2)
    assert run_job(job.id, generate_run) == "succeeded"
    job.refresh_from_db()
    assert job.result["created"] == job.result["total"] == 2 * 3 * 2
    assert (job.progress_step, job.progress_total) == (12, 12)
    samples = Sample.objects.filter(job=job)
    assert samples.count() == 12
    assert set(samples.values_list("seed", flat=True)) == {0, 1}
    assert not samples.filter(prompt__split=PromptSplit.HOLDOUT).exists()
    sample = samples.filter(version=versions[1]).first()
    assert sample.decoding == {"temperature": 0.5, "max_new_tokens": 8}
    assert 1 <= sample.token_count <= 8 and sample.logprob_sum < 0 and sample.latency_seconds > 0
    # Stored in normal form, with its hash, like an imported text (nothing tells sources apart).
    for text, text_hash in samples.values_list("text", "text_hash"):
        assert text == text.strip() and text_hash == sample_text_hash(text)


def test_rerun_after_a_crash_adds_no_duplicate(tiny_model_allowed: Path) -> None:
    study, versions = make_study(tiny_model_allowed)
    first = generate_start(study=study, version_ids=[v.id for v in versions], samples_per_prompt=2)
    run_job(first.id, generate_run)
    Sample.objects.filter(version=versions[0], seed=1).delete()  # as if the worker died half-way
    second = generate_start(study=study, version_ids=[v.id for v in versions], samples_per_prompt=2)
    assert run_job(second.id, generate_run) == "succeeded"
    second.refresh_from_db()
    assert second.result["created"] == 3
    assert Sample.objects.count() == 12


def test_same_seed_gives_the_same_text_across_jobs(tiny_model_allowed: Path) -> None:
    study, versions = make_study(tiny_model_allowed)
    job = generate_start(study=study, version_ids=[versions[0].id], samples_per_prompt=1)
    run_job(job.id, generate_run)
    before = dict(Sample.objects.values_list("prompt_id", "text"))
    Sample.objects.all().delete()
    again = generate_start(study=study, version_ids=[versions[0].id], samples_per_prompt=1)
    run_job(again.id, generate_run)
    assert dict(Sample.objects.values_list("prompt_id", "text")) == before


def test_generation_then_pair_selection_creates_cross_version_pairs_and_gold(
    tiny_model_allowed: Path, django_capture_on_commit_callbacks
) -> None:  # type: ignore[no-untyped-def]
    study, versions = make_study(tiny_model_allowed)
    job = generate_start(
        study=study, version_ids=[v.id for v in versions], samples_per_prompt=2, then=["select_pairs"]
    )
    with django_capture_on_commit_callbacks(execute=False):
        run_job(job.id, generate_run)
    selection = Job.objects.get(kind="select_pairs", parent=job)
    assert selection.status == JobStatus.QUEUED
    assert run_job(selection.id, pair_selection_run) == "succeeded"
    regular = Comparison.objects.filter(study=study, kind=ComparisonKind.REGULAR)
    assert regular.count() == 3 * 2
    for comparison in regular:
        assert comparison.sample_a.version_id != comparison.sample_b.version_id
        assert comparison.sample_a.prompt_id == comparison.sample_b.prompt_id == comparison.prompt_id
    gold = Comparison.objects.filter(study=study, kind=ComparisonKind.GOLD)
    assert gold.count() == round(6 * 0.2)
    for comparison in gold:
        real = comparison.sample_a if comparison.gold_answer == "A" else comparison.sample_b
        off_topic = comparison.sample_b if comparison.gold_answer == "A" else comparison.sample_a
        assert real.version_id in {v.id for v in versions}
        donor = Sample.objects.get(id=off_topic.metadata["off_topic_from"])
        # A real sample of another prompt, filed under this one.
        assert donor.version_id in {v.id for v in versions}
        assert donor.prompt_id != comparison.prompt_id == off_topic.prompt_id
        assert donor.text == off_topic.text


def test_generate_refuses_external_and_unenrolled_versions() -> None:
    from server.core.exceptions import ApplicationError

    study = factories.study()
    factories.prompt(study=study)
    external = factories.version(enrol_in=study)
    with pytest.raises(ApplicationError, match="is external: import its samples instead"):
        generate_start(study=study, version_ids=[external.id])
    stranger = factories.version(kind=VersionKind.BASE, model_path="/m")
    with pytest.raises(ApplicationError, match="is not enrolled in the study"):
        generate_start(study=study, version_ids=[stranger.id])
    assert Job.objects.count() == 0


def test_unknown_decoding_parameter_is_refused() -> None:
    from server.core.exceptions import ApplicationError

    study = factories.study()
    factories.prompt(study=study)
    version = factories.version(kind=VersionKind.BASE, model_path="/m", enrol_in=study)
    with pytest.raises(ApplicationError, match="Unknown decoding parameter 'temprature'"):
        generate_start(study=study, version_ids=[version.id], decoding={"temprature": 1})


def nul_model(model_dir: Path) -> Path:
    """A copy of the tiny model that emits the token of byte 0 at every step: its final layer norm
    outputs one constant vector (weight 0, bias ``direction``), and the byte-0 token's embedding
    (tied to the output layer) is that direction made long, so its logit dwarfs every other."""
    import shutil

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target = model_dir.parent / "nul-model"
    if (target / "config.json").exists():
        return target
    shutil.copytree(model_dir, target)
    tokenizer = AutoTokenizer.from_pretrained(target)
    nul_id = tokenizer.convert_tokens_to_ids("Ā")  # byte-level BPE writes byte 0 as "Ā"
    assert tokenizer.decode([nul_id]) == "\x00"
    model = AutoModelForCausalLM.from_pretrained(target)
    with torch.no_grad():
        direction = torch.nn.functional.normalize(torch.ones(model.config.n_embd), dim=0)
        model.transformer.ln_f.weight.zero_()
        model.transformer.ln_f.bias.copy_(direction)
        model.transformer.wte.weight[nul_id] = 1000.0 * direction
    model.save_pretrained(target)
    return target


def test_a_nul_character_the_model_emits_is_stored_as_a_replacement_character(
    tiny_model_allowed: Path,
) -> None:
    # Given a model that writes byte 0 (PostgreSQL refuses NUL in text: the job used to fail)
    study = factories.study()
    factories.prompt(study=study, text="The sea")
    version = factories.version(
        kind=VersionKind.BASE,
        model_path=str(nul_model(tiny_model_allowed)),
        decoding={"temperature": 1.0, "max_new_tokens": 3},
        enrol_in=study,
    )
    # When it generates
    job = generate_start(study=study, version_ids=[version.id], samples_per_prompt=1)
    assert run_job(job.id, generate_run) == "succeeded"
    # Then its sample is stored with U+FFFD in place of each NUL, and the job says so nowhere else
    assert list(Sample.objects.values_list("text", "token_count")) == [("\ufffd\ufffd\ufffd", 3)]
    assert Job.objects.get(id=job.id).error == ""


def test_samples_record_precision_and_device_and_follow_the_models_generation_config(
    tiny_model_allowed: Path,
    tmp_path: Path,
    settings,  # type: ignore[no-untyped-def]
) -> None:
    # Given a copy of the model whose authors chose top_p 0.5 and at most 5 new tokens
    import shutil

    from transformers import GenerationConfig

    model_dir = tmp_path / "model"
    settings.LOVELACE_MODEL_ROOTS = [*settings.LOVELACE_MODEL_ROOTS, tmp_path]
    shutil.copytree(tiny_model_allowed, model_dir)
    generation = GenerationConfig.from_pretrained(model_dir)
    generation.do_sample, generation.top_p, generation.max_new_tokens = True, 0.5, 5
    generation.save_pretrained(model_dir)
    study = factories.study()
    factories.prompt(study=study, text="The sea")
    version = factories.version(
        kind=VersionKind.BASE, model_path=str(model_dir), decoding={"top_p": 0.9}, enrol_in=study
    )

    # When
    job = generate_start(study=study, version_ids=[version.id], samples_per_prompt=3)
    assert run_job(job.id, generate_run) == "succeeded"

    # Then the version's own setting wins over the model's; the model's fills what the version left
    for sample in Sample.objects.filter(job=job):
        assert sample.decoding == {"top_p": 0.9, "max_new_tokens": 5}
        assert sample.token_count <= 5
        assert sample.metadata["dtype"] == "float32" and sample.metadata["device"] == "cpu"
        assert sample.metadata["revision"] is None  # a local folder has no hub revision


def test_a_revision_is_refused_for_a_local_folder_and_kept_for_a_hub_id(
    tiny_model_allowed: Path,
    settings,  # type: ignore[no-untyped-def]
) -> None:
    from server.core.exceptions import ApplicationError
    from server.generators.services import generator_version_register

    with pytest.raises(ApplicationError) as refused:
        generator_version_register(
            generator_name="g", label="local", kind=VersionKind.BASE,
            model_path=str(tiny_model_allowed), model_revision="main",
        )  # fmt: skip
    assert "model_revision" in refused.value.extra["fields"]
    settings.LOVELACE_ALLOW_HUB = True
    with pytest.raises(ApplicationError) as bad:
        generator_version_register(
            generator_name="g", label="bad", kind=VersionKind.BASE, model_path="org/model",
            model_revision="not a revision!",
        )  # fmt: skip
    assert "model_revision" in bad.value.extra["fields"]
    pinned = generator_version_register(
        generator_name="g", label="hub", kind=VersionKind.BASE, model_path="org/model", model_revision="v1.0"
    )
    assert pinned.model_revision == "v1.0"


def test_a_version_that_asks_for_vllm_on_a_worker_without_it_fails_in_plain_words(
    tiny_model_allowed: Path,
) -> None:
    from workers.ml.vllm_sampling import vllm_usable

    if vllm_usable():
        pytest.skip("this worker has vLLM and a GPU")
    study = factories.study()
    factories.prompt(study=study, text="The sea")
    version = factories.version(
        kind=VersionKind.BASE, model_path=str(tiny_model_allowed), decoding={"engine": "vllm"}, enrol_in=study
    )
    job = generate_start(study=study, version_ids=[version.id], samples_per_prompt=1)
    assert run_job(job.id, generate_run) == "failed"
    job.refresh_from_db()
    assert "engine 'vllm' needs the vllm package and a CUDA GPU on the worker" in job.error
    assert not Sample.objects.filter(version=version).exists()


def test_decoding_engine_and_dtype_are_checked_when_the_version_is_registered() -> None:
    from server.core.exceptions import ApplicationError
    from server.generators.services import validate_decoding

    assert validate_decoding({"engine": "auto", "dtype": "bfloat16"}) == {
        "engine": "auto",
        "dtype": "bfloat16",
    }
    assert validate_decoding({"end_at_sentence": True}) == {"end_at_sentence": True}
    for bad in (
        {"engine": "tgi"},
        {"dtype": "int8"},
        {"engine": ["vllm"]},
        {"end_at_sentence": "yes"},
        {"end_at_sentence": 1},
        {"max_new_tokens": True},
    ):
        with pytest.raises(ApplicationError, match="invalid value"):
            validate_decoding(bad)
