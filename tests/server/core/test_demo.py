from __future__ import annotations

import re

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command

from server.core.exceptions import ApplicationError
from server.generators.demo import DEMO_VERSIONS, demo_generation_start
from server.jobs.models import Job, JobKind
from server.ratings.models import Rater
from server.studies.models import Study

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def development_mode(settings):  # type: ignore[no-untyped-def]
    settings.DEBUG = True  # what DJANGO_DEBUG gives the demo (pytest-django turns it off for tests)


def test_the_demo_refuses_production_mode_and_changes_nothing(settings, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from django.core.management import CommandError

    from server.core.demo import demo_seed

    settings.DEBUG = False
    settings.VAR_DIR = tmp_path
    with pytest.raises(CommandError) as refused:
        call_command("demo", "--no-serve")

    database = settings.DATABASES["default"]
    assert str(refused.value) == (
        "The demo runs only in development mode (DJANGO_DEBUG on, the default of the embedded SQLite "
        "topology): it creates the accounts admin / lovelace-admin and rater / lovelace-rater, whose "
        "passwords are public. DJANGO_DEBUG is off here, so the database "
        f"({database['ENGINE'].rsplit('.', 1)[-1]} {database['NAME']}) is treated as a production one "
        "and nothing was changed. Create real accounts with `manage.py createsuperuser`."
    )
    with pytest.raises(ApplicationError, match="The demo runs only in development mode"):
        demo_seed()  # the service refuses too, whoever calls it
    assert (get_user_model().objects.count(), Study.objects.count(), Job.objects.count()) == (0, 0, 0)
    assert list(tmp_path.iterdir()) == []


def test_demo_seeds_accounts_study_and_starts_the_model_build_once(settings, tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    settings.VAR_DIR = tmp_path
    call_command("demo", "--no-serve")
    call_command("demo", "--no-serve")  # running it again is safe

    users = get_user_model().objects
    assert users.get(username="admin").is_superuser
    assert not users.get(username="rater").is_staff
    study = Study.objects.get(slug="short-pieces")
    assert study.prompts.filter(split="train").count() == 16
    assert study.prompts.filter(split="holdout").count() == 4
    assert Rater.objects.filter(study=study, user__username="rater").count() == 1
    build = Job.objects.filter(params__has_key="corpus_path").get(kind=JobKind.BUILD_BASE_MODEL)
    assert build.params["then"] == ["demo_versions"]
    assert build.params["output_dir"] == str(tmp_path / "models" / "lovelace-tiny")
    output = capsys.readouterr().out
    assert "rater / lovelace-rater" in output and "admin / lovelace-admin" in output


def test_a_cached_model_skips_the_build_and_enrols_two_decoding_versions(settings, tmp_path) -> None:  # type: ignore[no-untyped-def]
    settings.VAR_DIR = tmp_path
    (tmp_path / "models" / "lovelace-tiny").mkdir(parents=True)
    (tmp_path / "models" / "lovelace-tiny" / "config.json").write_text("{}")
    call_command("demo", "--no-serve")
    study = Study.objects.get(slug="short-pieces")
    assert sorted(study.versions.values_list("label", flat=True)) == sorted(DEMO_VERSIONS)
    generate = Job.objects.get(kind=JobKind.GENERATE, study=study)
    assert (generate.params["split"], generate.params["then"]) == ("all", ["select_pairs"])
    assert not Job.objects.filter(kind=JobKind.BUILD_BASE_MODEL, params__has_key="corpus_path").exists()
    assert demo_generation_start(study=study) == ""  # generation already queued


def test_another_corpus_builds_its_own_demo_generator(settings, tmp_path) -> None:  # type: ignore[no-untyped-def]
    settings.VAR_DIR = tmp_path
    corpus = tmp_path / "verse.txt"
    corpus.write_text("The tide came in.\n\nThe lamp went out.\n", encoding="utf-8")
    call_command("demo", "--no-serve", "--corpus", str(corpus))
    build = Job.objects.filter(params__has_key="corpus_path").get(kind=JobKind.BUILD_BASE_MODEL)
    assert build.params["corpus_path"] == str(corpus.resolve())
    assert build.params["output_dir"] == str(tmp_path / "models" / "lovelace-tiny-verse")
    assert build.params["generator"] == "lovelace-tiny-verse"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "There is no corpus file"),
        (b"caf\xe9\n", "not valid UTF-8 (line 1"),
        (b"  \n\n", "The corpus is empty"),
    ],
)
def test_a_bad_corpus_is_refused_before_any_job(settings, tmp_path, content, message) -> None:  # type: ignore[no-untyped-def]
    from django.core.management import CommandError

    settings.VAR_DIR = tmp_path
    corpus = tmp_path / "corpus.txt"
    if content is not None:
        corpus.write_bytes(content)
    with pytest.raises(CommandError, match=re.escape(message)):
        call_command("build_base_model", "--corpus", str(corpus), "--generator", "g")
    assert not Job.objects.exists()


def test_demo_seeds_the_image_study_and_starts_both_image_builds(settings, tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    from server.core.demo import DEMO_IMAGE_PROMPTS_HOLDOUT, DEMO_IMAGE_PROMPTS_TRAIN
    from workers.ml.image_dataset import class_names

    settings.VAR_DIR = tmp_path
    call_command("demo", "--no-serve")
    call_command("demo", "--no-serve")  # running it again is safe
    study = Study.objects.get(slug="shapes")
    assert study.modality == "image"
    # The prompts are the generators' conditions, every one of them.
    assert sorted(DEMO_IMAGE_PROMPTS_TRAIN + DEMO_IMAGE_PROMPTS_HOLDOUT) == sorted(class_names())
    assert study.prompts.filter(split="train").count() == 12
    assert study.prompts.filter(split="holdout").count() == 4
    assert "requested shape" in study.guidelines
    assert Rater.objects.filter(study=study, user__username="rater").count() == 1
    # One build at a time (the VAE, then the DCGAN it starts): the text pipeline keeps a slot.
    build = Job.objects.get(kind=JobKind.BUILD_BASE_MODEL, study=study)
    assert (build.params["architecture"], build.params["modality"], build.params["enrol"]) == (
        "vae",
        "image",
        True,
    )
    assert build.params["then"] == ["generate"]
    assert build.params["output_dir"] == str(tmp_path / "models" / "lovelace-shapes-vae")
    assert build.params["next_builds"] == [
        {
            "architecture": "dcgan",
            "generator": "lovelace-shapes",
            "label": "dcgan",
            "output_dir": str(tmp_path / "models" / "lovelace-shapes-dcgan"),
        }
    ]
    assert build.queue == "cpu"
    output = capsys.readouterr().out
    assert "/rate/shapes/" in output and "Started the image demo pipeline" in output


def test_cached_image_generators_are_enrolled_and_generation_starts(settings, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import json

    from server.generators.demo import demo_image_generation_start

    settings.VAR_DIR = tmp_path
    for architecture in ("vae", "dcgan"):
        folder = tmp_path / "models" / f"lovelace-shapes-{architecture}"
        folder.mkdir(parents=True)
        (folder / "image_generator.json").write_text(
            json.dumps({"kind": architecture, "decoder_sha256": "0" * 64})
        )
    call_command("demo", "--no-serve")
    study = Study.objects.get(slug="shapes")
    assert sorted(study.versions.values_list("label", flat=True)) == ["dcgan", "vae"]
    assert {v.metadata["modality"] for v in study.versions.all()} == {"image"}
    generate = Job.objects.get(kind=JobKind.GENERATE, study=study)
    assert (generate.params["split"], generate.params["then"]) == ("all", ["select_pairs"])
    assert generate.params["samples_per_prompt"] == 3
    assert not Job.objects.filter(kind=JobKind.BUILD_BASE_MODEL, study=study).exists()
    assert demo_image_generation_start(study=study) == ""  # generation already queued


def test_demo_prompts_are_story_openings_that_the_corpus_does_not_hold() -> None:
    from server.core.demo_texts import DEMO_PROMPTS_HOLDOUT, DEMO_PROMPTS_TRAIN
    from workers.ml.base_model import DEMO_CORPUS_PATH

    prompts = DEMO_PROMPTS_TRAIN + DEMO_PROMPTS_HOLDOUT
    corpus = " ".join(DEMO_CORPUS_PATH.read_text().split()).lower()
    # Whole sentences, so that a version continues a scene instead of a phrase.
    assert all(prompt[0].isupper() and prompt.endswith(".") for prompt in prompts)
    # None is in the corpus (nor without its full stop): the model continues what it has not read.
    assert [prompt for prompt in prompts if prompt[:-1].lower() in corpus] == []
