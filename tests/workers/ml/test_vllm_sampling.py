"""Which engine generates, and what vLLM would be asked; the engine itself needs a GPU worker."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import SimpleNamespace

import pytest

from workers.ml.sampling import SamplingConfig, generation_defaults_of
from workers.ml.vllm_sampling import (
    EngineUnavailable,
    engine_choose,
    finish_reason,
    sampling_parameters,
    vllm_usable,
)


def test_auto_takes_vllm_only_where_it_is_usable_and_vllm_where_it_is_not_is_refused_in_words() -> None:
    assert engine_choose("auto", usable=True) == "vllm"
    assert engine_choose("auto", usable=False) == "local"
    assert engine_choose("local", usable=True) == "local"
    assert engine_choose("vllm", usable=True) == "vllm"
    with pytest.raises(EngineUnavailable, match="engine 'vllm' needs the vllm package and a CUDA GPU"):
        engine_choose("vllm", usable=False)
    with pytest.raises(ValueError, match="engine must be one of"):
        engine_choose("tgi")


def test_a_worker_without_vllm_runs_the_local_sampler() -> None:
    if importlib.util.find_spec("vllm") is not None:
        pytest.skip("vllm is installed here")
    assert not vllm_usable()
    assert engine_choose("auto") == "local"


def test_each_request_carries_its_own_seed_and_the_local_samplers_settings() -> None:
    config = SamplingConfig(temperature=0.7, top_p=0.9, top_k=0, max_new_tokens=12, stop=("\n\n",))
    assert sampling_parameters(config, seed=41) == {
        "n": 1,
        "temperature": 0.7,
        "top_p": 0.9,
        "top_k": -1,  # vLLM's "off"
        "max_tokens": 12,
        "stop": ["\n\n"],
        "seed": 41,
        "skip_special_tokens": True,
    }
    assert sampling_parameters(SamplingConfig(top_k=5), seed=0)["top_k"] == 5


@pytest.mark.parametrize(
    ("reason", "stop_reason", "expected"),
    [("length", None, "length"), ("stop", None, "eos"), ("stop", 50256, "eos"), ("stop", "\n\n", "stop")],
)
def test_finish_reasons_in_the_local_samplers_words(reason: str, stop_reason: object, expected: str) -> None:
    assert finish_reason(SimpleNamespace(finish_reason=reason, stop_reason=stop_reason)) == expected


def test_generation_defaults_are_read_from_the_folder_without_loading_the_model(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    import shutil

    from transformers import GenerationConfig

    assert generation_defaults_of(tiny_model_dir) == {}
    folder = tmp_path / "model"
    shutil.copytree(tiny_model_dir, folder)
    GenerationConfig(do_sample=True, temperature=0.6, top_p=0.9).save_pretrained(folder)
    assert generation_defaults_of(folder) == {"temperature": 0.6, "top_p": 0.9}
    assert generation_defaults_of(tmp_path / "nothing-here") == {}
