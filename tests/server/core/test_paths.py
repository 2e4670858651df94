"""Paths that staff give (corpora, models, output folders) must lie under the configured roots;
a forbidden path and a missing one get the same answer; jobs check again before loading."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from server.core.exceptions import ApplicationError
from server.core.paths import (
    corpus_path_check,
    job_params_check_paths,
    model_path_check,
    output_dir_check,
    shipped_embedding_model,
)
from server.evaluations.models import Evaluation
from server.evaluations.services import evaluation_start
from server.generators.models import GeneratorVersion, VersionKind
from server.generators.services import generator_version_register
from server.jobs.models import Job, JobKind
from tests import factories
from tests.conftest import DEMO_CORPUS

pytestmark = pytest.mark.django_db

CORPUS_REFUSED = (
    "corpus_path must be the absolute path of a text file in the allowed data folders "
    "(the var folder, the project's corpus folder, LOVELACE_DATA_ROOTS)."
)
MODEL_REFUSED = (
    "model_path must be the absolute path of a model folder in the allowed model folders "
    "(the var folder, the shipped embedding model, LOVELACE_MODEL_ROOTS)."
)
OUTPUT_REFUSED = (
    "output_dir must be the absolute path of a new model folder (or of an existing model) inside "
    "the var folder or LOVELACE_MODEL_ROOTS."
)


@pytest.fixture
def var(settings, tmp_path: Path) -> Path:  # type: ignore[no-untyped-def]
    settings.VAR_DIR = tmp_path / "var"
    (tmp_path / "var" / "models").mkdir(parents=True)
    return tmp_path / "var"


def refusal(check, value: str) -> str:  # type: ignore[no-untyped-def]
    with pytest.raises(ApplicationError) as raised:
        check(value)
    return raised.value.message


def test_a_system_file_and_a_missing_file_get_the_same_answer(var: Path) -> None:
    answers = {
        value: refusal(corpus_path_check, value)
        for value in ["/etc/passwd", "/etc/no-such-file", str(var / "missing.txt"), str(var), ""]
    }
    assert set(answers.values()) == {CORPUS_REFUSED}
    assert "passwd" not in CORPUS_REFUSED


def test_a_file_under_a_root_is_accepted_resolved(var: Path) -> None:
    (var / "corpora").mkdir()
    (var / "corpora" / "verse.txt").write_text("The tide came in.\n", encoding="utf-8")
    assert corpus_path_check(str(var / "corpora" / ".." / "corpora" / "verse.txt")) == (
        var / "corpora" / "verse.txt"
    )
    assert corpus_path_check(str(DEMO_CORPUS)) == DEMO_CORPUS  # the project's own corpus


def test_dot_dot_out_of_a_root_is_refused(var: Path) -> None:
    escape = f"{var}/models/../../../../../../../../etc/passwd"
    assert refusal(corpus_path_check, escape) == CORPUS_REFUSED
    assert refusal(model_path_check, f"{var}/models/../../") == MODEL_REFUSED


def test_a_symlink_out_of_a_root_is_refused(var: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("not for staff", encoding="utf-8")
    (outside / "config.json").write_text("{}", encoding="utf-8")
    (var / "secret.txt").symlink_to(outside / "secret.txt")
    (var / "models" / "linked").symlink_to(outside, target_is_directory=True)
    assert refusal(corpus_path_check, str(var / "secret.txt")) == CORPUS_REFUSED
    assert refusal(corpus_path_check, str(var / "models" / "linked" / "secret.txt")) == CORPUS_REFUSED
    assert refusal(model_path_check, str(var / "models" / "linked")) == MODEL_REFUSED


def test_models_load_from_the_roots_only(var: Path, tmp_path: Path, settings) -> None:  # type: ignore[no-untyped-def]
    (var / "models" / "tiny").mkdir()
    assert model_path_check(str(var / "models" / "tiny")) == str(var / "models" / "tiny")
    shipped = shipped_embedding_model()
    assert shipped is not None and model_path_check(str(shipped)) == str(shipped.resolve())
    for value in ["/", "/etc", str(tmp_path), str(var / "models" / "missing"), "relative/model"]:
        assert refusal(model_path_check, value) == MODEL_REFUSED
    settings.LOVELACE_MODEL_ROOTS = [tmp_path / "weights"]
    (tmp_path / "weights" / "big").mkdir(parents=True)
    assert model_path_check(str(tmp_path / "weights" / "big")) == str(tmp_path / "weights" / "big")


def test_hub_ids_pass_only_where_the_hub_is_allowed(
    var: Path, tmp_path: Path, settings, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    assert refusal(model_path_check, "sentence-transformers/all-MiniLM-L6-v2") == MODEL_REFUSED
    settings.LOVELACE_ALLOW_HUB = True
    assert (
        model_path_check("sentence-transformers/all-MiniLM-L6-v2") == "sentence-transformers/all-MiniLM-L6-v2"
    )
    assert model_path_check("gpt2") == "gpt2"
    hub_refused = MODEL_REFUSED[:-1] + " or a Hugging Face hub id."
    for value in ["../etc", "owner/..", "a/b/c", "-flag", "/etc"]:
        assert refusal(model_path_check, value) == hub_refused
    # transformers would load an existing relative folder instead of the hub repository.
    monkeypatch.chdir(tmp_path)
    (tmp_path / "owner" / "model").mkdir(parents=True)
    assert refusal(model_path_check, "owner/model") == hub_refused


def test_outputs_go_inside_a_root_and_never_replace_a_folder_that_is_not_a_model(var: Path) -> None:
    assert output_dir_check(str(var / "models" / "new")) == var / "models" / "new"
    (var / "models" / "built").mkdir()
    (var / "models" / "built" / "config.json").write_text("{}", encoding="utf-8")
    assert output_dir_check(str(var / "models" / "built")) == var / "models" / "built"
    (var / "broker").mkdir()
    for value in [str(var), str(var / "broker"), str(var / "models"), "/tmp/model", str(var / ".." / "x")]:
        assert refusal(output_dir_check, value) == OUTPUT_REFUSED


def test_job_parameters_naming_files_are_checked_whatever_the_job(var: Path) -> None:
    for params, field in [
        ({"corpus_path": "/etc/passwd"}, "corpus_path"),
        ({"output_dir": "/etc"}, "output_dir"),
        ({"embedding_model_path": "/usr"}, "embedding_model_path"),
        ({"reference_model_path": "/usr"}, "reference_model_path"),
        ({"config": {"backbone_path": "/usr"}}, "config.backbone_path"),
    ]:
        with pytest.raises(ApplicationError) as raised:
            job_params_check_paths(params)
        assert raised.value.extra == {"field": field}
    job_params_check_paths({"corpus_path": str(DEMO_CORPUS), "config": {"epochs": 1}})


def test_job_start_from_the_shell_refuses_a_system_file_and_starts_nothing(var: Path) -> None:
    params = {"corpus_path": "/etc/passwd", "output_dir": str(var / "models" / "x"), "generator": "g"}
    with pytest.raises(CommandError, match="^" + CORPUS_REFUSED.replace("(", r"\(").replace(")", r"\)")):
        call_command("job", "start", JobKind.BUILD_BASE_MODEL, "--params", json.dumps(params))
    assert not Job.objects.exists()


def test_a_version_cannot_name_a_system_file_as_its_corpus_or_model(var: Path) -> None:
    for fields, message in [
        (
            {"reference_corpus_path": "/etc/passwd"},
            CORPUS_REFUSED.replace("corpus_path", "reference_corpus_path", 1),
        ),
        ({"kind": VersionKind.BASE, "model_path": "/etc"}, MODEL_REFUSED),
    ]:
        with pytest.raises(ApplicationError) as raised:
            generator_version_register(
                generator_name="g", label="v", **{"kind": VersionKind.EXTERNAL, **fields}
            )
        assert raised.value.message == message
    assert not GeneratorVersion.objects.exists()


def test_an_evaluation_never_reads_a_forbidden_corpus_at_start_or_in_the_job(var: Path) -> None:
    from server.evaluations.creativity import evaluation_run

    study = factories.study()
    factories.prompt(study=study, split="holdout")
    # A row the service would have refused (edited in the Django admin, or older than the check).
    version = factories.version(
        kind=VersionKind.EXTERNAL, reference_corpus_path="/etc/passwd", enrol_in=study
    )
    with pytest.raises(ApplicationError) as raised:
        evaluation_start(study=study, version_id=version.id)
    assert raised.value.message == f"{version}: " + CORPUS_REFUSED.replace(
        "corpus_path", "reference_corpus_path", 1
    )
    assert not Job.objects.exists()

    job = Job.objects.create(
        kind=JobKind.EVALUATE,
        study=study,
        queue="gpu",
        params={"version_id": version.id, "split": "holdout", "samples_per_prompt": 1},
    )
    with pytest.raises(ApplicationError) as raised:
        evaluation_run(job=job, report=lambda **_: None)
    assert raised.value.extra == {"field": "corpus"}
    assert not Evaluation.objects.exists()


def test_a_build_job_checks_its_files_again_before_reading(var: Path) -> None:
    from server.generators.jobs import base_model_build_run

    output = var / "models" / "stolen"
    job = Job.objects.create(  # as if the parameters had been changed after the start
        kind=JobKind.BUILD_BASE_MODEL,
        queue="gpu",
        params={"corpus_path": "/etc/passwd", "output_dir": str(output), "generator": "g", "label": "base"},
    )
    with pytest.raises(ApplicationError) as raised:
        base_model_build_run(job=job, report=lambda **_: None)
    assert raised.value.message == CORPUS_REFUSED
    assert not output.exists()
    assert not GeneratorVersion.objects.exists()


def test_the_shell_commands_copy_a_corpus_from_elsewhere_into_var(
    var: Path, tmp_path: Path, settings
) -> None:  # type: ignore[no-untyped-def]
    settings.DEBUG = True  # what DJANGO_DEBUG gives the demo (pytest-django turns it off for tests)
    elsewhere = tmp_path / "shared" / "verse.txt"
    elsewhere.parent.mkdir()
    elsewhere.write_text("The tide came in.\n\nThe lamp went out.\n", encoding="utf-8")
    digest = hashlib.sha256(elsewhere.read_bytes()).hexdigest()[:16]

    call_command("build_base_model", "--corpus", str(elsewhere), "--generator", "g")
    call_command("build_base_model", "--corpus", str(elsewhere), "--generator", "h")  # reuses the copy

    copy = var / "corpora" / digest / "verse.txt"
    assert copy.read_bytes() == elsewhere.read_bytes()
    assert sorted(p.name for p in (var / "corpora").iterdir()) == [digest]
    assert [job.params["corpus_path"] for job in Job.objects.order_by("id")] == [str(copy), str(copy)]

    call_command("demo", "--no-serve", "--corpus", str(elsewhere))
    demo_build = Job.objects.filter(params__then=["demo_versions"]).get()
    assert demo_build.params["corpus_path"] == str(copy)
    assert demo_build.params["generator"] == "lovelace-tiny-verse"  # named after the file, as before


def test_active_selection_loads_no_reward_model_from_outside_the_roots(var: Path) -> None:
    from server.training.active import comparisons_select_active
    from server.training.models import PreferenceSnapshot, RewardModel

    study = factories.study()
    prompt = factories.prompt(study=study)
    for _ in range(2):
        factories.sample(prompt=prompt, version=factories.version(enrol_in=study))
    snapshot = PreferenceSnapshot.objects.create(study=study, content_hash="0" * 64, rule="documented")
    # A row pointed elsewhere after training (the Django admin edits reward models).
    RewardModel.objects.create(study=study, snapshot=snapshot, backbone="b", ensemble_size=2, path="/etc")
    with pytest.raises(ApplicationError) as raised:
        comparisons_select_active(study=study, pairs_per_prompt=1, seed=0)
    assert raised.value.extra == {"field": "reward model path"}
    assert not study.comparisons.exists()


def test_an_adapter_version_is_refused_when_its_base_lies_outside_the_roots(
    var: Path, tmp_path: Path
) -> None:
    from server.generators.services import version_model_check

    # given a trained child saved as an adapter inside the roots, naming its base
    (var / "models" / "base").mkdir()
    adapter = var / "models" / "child"
    adapter.mkdir()
    config = adapter / "adapter_config.json"
    version = factories.version(kind=VersionKind.BASE, model_path=str(adapter))

    # then a base inside the roots passes, and one outside (or none) is refused, naming the version
    config.write_text(json.dumps({"base_model_name_or_path": str(var / "models" / "base")}))
    assert version_model_check(version=version, field="version_id") == str(adapter)
    (tmp_path / "elsewhere").mkdir()
    config.write_text(json.dumps({"base_model_name_or_path": str(tmp_path / "elsewhere")}))
    with pytest.raises(ApplicationError) as raised:
        version_model_check(version=version, field="version_id")
    assert raised.value.message == f"{version}: {MODEL_REFUSED}"
    config.write_text(json.dumps({"r": 8}))
    with pytest.raises(ApplicationError) as raised:
        version_model_check(version=version, field="version_id")
    assert raised.value.message == f"{version}: its adapter_config.json names no base model."
