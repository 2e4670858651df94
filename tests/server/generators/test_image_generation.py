"""Image generators in the job system: the build job (VAE and DCGAN), generation of image samples
(resumable, without duplicates), and pair selection on image samples."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from server.core.exceptions import ApplicationError
from server.generators.jobs import base_model_build_run, generate_run
from server.generators.models import GeneratorVersion, ImageAsset, Sample, VersionKind
from server.generators.services import generate_start, image_generator_build_start
from server.jobs.models import Job, JobKind
from server.ratings.models import Comparison, ComparisonKind
from server.ratings.pair_selection import pair_selection_run, pair_selection_start
from server.studies.models import Modality, PromptSplit
from tests import factories
from workers.ml.image_generators import MANIFEST_FILE
from workers.runner import run_job

pytestmark = pytest.mark.django_db

PROMPTS = ["a red circle", "a blue square", "a green cross"]


@pytest.fixture(scope="module")
def built_generators(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny VAE and DCGAN, built once for the module (the jobs' code path is tested below)."""
    from server.generators.image_jobs import image_build_config
    from workers.ml.image_generators import build_conditional_gan, build_conditional_vae

    root = tmp_path_factory.mktemp("image-generators")
    build_conditional_vae(
        output_dir=root / "vae", checkpoint_dir=root / "c-vae", config=image_build_config("vae", "tiny", {})
    )
    build_conditional_gan(
        output_dir=root / "dcgan",
        checkpoint_dir=root / "c-dcgan",
        config=image_build_config("dcgan", "tiny", {}),  # type: ignore[arg-type]
    )
    return {"vae": root / "vae", "dcgan": root / "dcgan"}


@pytest.fixture
def image_study(settings, built_generators: dict[str, Path], image_storage: Path):  # type: ignore[no-untyped-def]
    settings.LOVELACE_MODEL_ROOTS = [
        *settings.LOVELACE_MODEL_ROOTS,
        next(iter(built_generators.values())).parent,
    ]
    study = factories.study(modality=Modality.IMAGE, gold_rate=0.2)
    for text in PROMPTS:
        factories.prompt(study=study, text=text)
    factories.prompt(study=study, text="a yellow triangle", split=PromptSplit.HOLDOUT)
    versions = [
        factories.version(
            kind=VersionKind.BASE,
            model_path=str(built_generators[architecture]),
            metadata={"modality": "image", "architecture": architecture},
            enrol_in=study,
        )
        for architecture in ("vae", "dcgan")
    ]
    return study, versions


@pytest.mark.parametrize("architecture", ["vae", "dcgan"])
def test_an_image_build_job_registers_a_base_image_version(
    settings, tmp_path: Path, architecture: str
) -> None:
    settings.VAR_DIR = tmp_path
    study = factories.study(modality=Modality.IMAGE)
    job = image_generator_build_start(
        architecture=architecture,
        generator_name="shapes",
        label=architecture,
        output_dir=str(tmp_path / "models" / architecture),
        size="tiny",
        config={"steps": 12},
        study=study,
        enrol=True,
    )
    assert job.kind == JobKind.BUILD_BASE_MODEL
    assert run_job(job.id, base_model_build_run) == "succeeded"
    job.refresh_from_db()
    version = GeneratorVersion.objects.get(id=job.result["version_id"])
    assert (version.kind, version.label, version.generator.name) == (VersionKind.BASE, architecture, "shapes")
    assert version.model_path == str((tmp_path / "models" / architecture).resolve())
    assert (Path(version.model_path) / MANIFEST_FILE).is_file()
    kind = {"vae": "conditional_vae", "dcgan": "conditional_gan"}[architecture]
    assert version.metadata["modality"] == "image"
    assert (version.metadata["architecture"], version.metadata["generator_kind"]) == (architecture, kind)
    assert len(version.metadata["decoder_sha256"]) == 64
    assert version.metadata["steps"] == job.result["steps"] == 12
    assert study.versions.filter(id=version.id).exists()
    assert (job.progress_step, job.progress_total) == (12, 12)
    assert not (tmp_path / "checkpoints" / f"job-{job.id}").exists()


def test_an_image_build_refuses_unknown_architectures_and_settings(settings, tmp_path: Path) -> None:
    settings.VAR_DIR = tmp_path
    output = str(tmp_path / "models" / "x")
    with pytest.raises(ApplicationError, match="Architecture must be one of vae, dcgan, not 'gpt'"):
        image_generator_build_start(architecture="gpt", generator_name="g", label="l", output_dir=output)
    with pytest.raises(ApplicationError, match=r"config\.pixel_precision is not a setting of a dcgan build"):
        image_generator_build_start(
            architecture="dcgan",
            generator_name="g",
            label="l",
            output_dir=output,
            config={"pixel_precision": 2},
        )
    with pytest.raises(ApplicationError, match=r"config\.steps must be an integer"):
        image_generator_build_start(
            architecture="vae", generator_name="g", label="l", output_dir=output, config={"steps": 1.5}
        )
    with pytest.raises(ApplicationError, match="is a text study; an image generator is enrolled in an image"):
        image_generator_build_start(
            architecture="vae",
            generator_name="g",
            label="l",
            output_dir=output,
            study=factories.study(),
            enrol=True,
        )
    assert not Job.objects.exists()


def test_generate_draws_image_samples_with_provenance_and_resumes_without_duplicates(image_study) -> None:  # type: ignore[no-untyped-def]
    study, versions = image_study
    job = generate_start(study=study, version_ids=[v.id for v in versions], samples_per_prompt=2)
    assert run_job(job.id, generate_run) == "succeeded"
    job.refresh_from_db()
    assert job.result["created"] == job.result["total"] == 2 * 3 * 2
    samples = Sample.objects.filter(job=job)
    assert samples.count() == 12 and not samples.filter(image__isnull=True).exists()
    assert set(samples.values_list("text", flat=True)) == {""}
    sample = samples.filter(version=versions[1]).select_related("image").first()
    assert sample.text_hash == sample.image.sha256
    assert (sample.image.width, sample.image.height, sample.image.format) == (32, 32, "png")
    assert sample.metadata["architecture"] == "dcgan"
    manifest = json.loads((Path(versions[1].model_path) / MANIFEST_FILE).read_text())
    assert sample.metadata["decoder_sha256"] == manifest["decoder_sha256"]
    assert sample.latency_seconds > 0 and isinstance(sample.metadata["latent_seed"], int)
    before = {(s.version_id, s.prompt_id, s.seed): s.text_hash for s in Sample.objects.all()}
    # As if the worker died half-way: a re-run draws only what is missing, and the same images.
    Sample.objects.filter(version=versions[0], seed=1).delete()
    again = generate_start(study=study, version_ids=[v.id for v in versions], samples_per_prompt=2)
    assert run_job(again.id, generate_run) == "succeeded"
    again.refresh_from_db()
    assert again.result["created"] == 3
    assert {(s.version_id, s.prompt_id, s.seed): s.text_hash for s in Sample.objects.all()} == before
    assert ImageAsset.objects.count() == len(set(before.values()))


def test_a_prompt_that_is_no_condition_fails_the_job_naming_it(image_study) -> None:  # type: ignore[no-untyped-def]
    study, versions = image_study
    factories.prompt(study=study, text="a purple hexagon")
    job = generate_start(study=study, version_ids=[versions[0].id], samples_per_prompt=1)
    assert run_job(job.id, generate_run) == "failed"
    job.refresh_from_db()
    assert "cannot draw the prompt 'a purple hexagon'" in job.error
    assert not Sample.objects.exists()


def test_an_image_version_is_refused_in_a_text_study(image_study) -> None:  # type: ignore[no-untyped-def]
    _, versions = image_study
    text_study = factories.study()
    factories.prompt(study=text_study)
    from server.studies.services import study_enrol_version

    study_enrol_version(study=text_study, version=versions[0])
    with pytest.raises(ApplicationError, match=r"generates images; the study .* is a text study"):
        generate_start(study=text_study, version_ids=[versions[0].id])


def test_pair_selection_pairs_image_samples_and_makes_image_gold_checks(image_study) -> None:  # type: ignore[no-untyped-def]
    study, versions = image_study
    generate = generate_start(study=study, version_ids=[v.id for v in versions], samples_per_prompt=2)
    run_job(generate.id, generate_run)
    job = pair_selection_start(study=study, pairs_per_prompt=2)
    assert run_job(job.id, pair_selection_run) == "succeeded"
    regular = Comparison.objects.filter(study=study, kind=ComparisonKind.REGULAR).select_related(
        "sample_a", "sample_b"
    )
    assert regular.count() == 3 * 2
    for comparison in regular:
        assert comparison.sample_a.version_id != comparison.sample_b.version_id
        assert comparison.sample_a.image_id and comparison.sample_b.image_id
    gold = Comparison.objects.filter(study=study, kind=ComparisonKind.GOLD).select_related(
        "sample_a", "sample_b"
    )
    assert gold.count() == 1
    check = gold.get()
    # Both sides are images: the expected winner drawn for this prompt, the other for another one.
    off_topic = check.sample_b if check.gold_answer == "A" else check.sample_a
    real = check.sample_a if check.gold_answer == "A" else check.sample_b
    assert off_topic.image_id and real.image_id and off_topic.image_id != real.image_id
    assert (
        off_topic.text == ""
        and Sample.objects.get(id=off_topic.metadata["off_topic_from"]).prompt_id != check.prompt_id
    )


def test_the_evaluate_job_of_an_image_version_stores_image_metrics_and_the_grid(  # type: ignore[no-untyped-def]
    image_study, settings, tmp_path: Path, client
) -> None:
    from django.contrib.auth import get_user_model

    from server.evaluations.creativity import evaluation_run
    from server.evaluations.models import Evaluation
    from server.evaluations.reports import evaluation_report_html
    from server.evaluations.services import evaluation_start

    settings.VAR_DIR = tmp_path  # the feature network is cached here
    study, versions = image_study
    job = evaluation_start(study=study, version_id=versions[0].id, split="train", samples_per_prompt=2)
    job.params = {**job.params, "feature_size": "tiny"}
    job.save(update_fields=["params"])
    assert run_job(job.id, evaluation_run) == "succeeded", Job.objects.get(id=job.id).error
    evaluation = Evaluation.objects.get()
    metrics = evaluation.metrics
    for name in (
        "memorisation_pixel_share",
        "memorisation_feature_share",
        "frechet_distance_corrected",
        "feature_mean_distance_per_prompt",
        "condition_accuracy",
        "nearest_training_pixel_distance",
    ):
        value = metrics[name]
        assert value["lower"] <= value["mean"] <= value["upper"], name
    assert 0.0 <= metrics["memorisation_pixel_share"]["mean"] <= 1.0
    assert metrics["memorisation_pixel_share"]["count"] == 3  # prompts resampled, not samples
    # frechet_distance is the plug-in value only (what evaluations stored under that name before
    # the correction, so versions' newest evaluations compare like with like); the corrected
    # distance and its interval have their own name.
    assert metrics["frechet_distance"] == {
        "mean": metrics["frechet_distance_corrected"]["plug_in"],
        "lower": None,
        "upper": None,
        "count": 6,
    }
    assert metrics["frechet_distance"]["mean"] > 0
    assert metrics["frechet_distance_corrected"]["count"] == 6
    assert metrics["feature_vendi_per_prompt"]["mean"] >= 1.0
    grid = metrics["memorisation_grid"]
    assert len(grid) == 6
    distances = [cell["pixel_distance"] for cell in grid]
    assert distances == sorted(distances)
    assert (
        evaluation.protocol["modality"] == "image"
        and evaluation.protocol["training_data"]["images"] == 16 * 4
    )
    assert len(evaluation.protocol["feature_network_sha256"]) == 64
    # The report and the staff dashboard show the figures and the grid; nothing unescaped.
    html = evaluation_report_html(study=study)
    assert "frechet_distance_corrected" in html and html.count('alt="nearest training image"') == 6
    assert f'src="data:image/png;base64,{grid[0]["sample_png"]}"' in html
    staff = get_user_model().objects.create_user("staff", password="x", is_staff=True)
    client.force_login(staff)
    page = client.get(f"/dashboard/studies/{study.slug}/")
    assert page.status_code == 200
    assert page.content.decode().count('alt="nearest training image"') == 6
    # A tampered grid (not base64) never reaches the page.
    evaluation.metrics["memorisation_grid"][0]["sample_png"] = '"><script>alert(1)</script>'
    evaluation.save()
    assert "<script>alert(1)" not in evaluation_report_html(study=study)
    assert evaluation_report_html(study=study).count('alt="nearest training image"') == 5


def test_the_image_loop_trains_a_reward_model_and_a_child_with_full_lineage(
    image_study, settings, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    from server.training.jobs import policy_train_run, reward_model_train_run
    from server.training.models import RewardModel
    from server.training.services import IMAGE_POLICY_METHOD, policy_train_start, reward_model_train_start
    from server.training.snapshots import snapshot_create

    settings.VAR_DIR = tmp_path
    study, versions = image_study
    generate = generate_start(study=study, version_ids=[v.id for v in versions], samples_per_prompt=2)
    run_job(generate.id, generate_run)
    # Judgments: the DCGAN's image wins every pair (as a rater who prefers sharper shapes might).
    rater = factories.rater(study=study)
    for prompt in study.prompts.filter(split=PromptSplit.TRAIN):
        for seed in (0, 1):
            a = Sample.objects.get(version=versions[0], prompt=prompt, seed=seed)
            b = Sample.objects.get(version=versions[1], prompt=prompt, seed=seed)
            comparison = factories.comparison(study=study, prompt=prompt, sample_a=a, sample_b=b)
            factories.judgment(comparison=comparison, rater=rater, outcome="B")
    snapshot = snapshot_create(study=study, validation_fraction=0.2)
    with pytest.raises(ApplicationError, match="'lora' is not an option of the image reward model"):
        reward_model_train_start(study=study, config={"lora": True})
    job = reward_model_train_start(
        study=study, snapshot_id=snapshot.id, config={"ensemble_size": 2, "epochs": 3}, then=["policy"]
    )
    assert run_job(job.id, reward_model_train_run) == "succeeded", Job.objects.get(id=job.id).error
    reward_model = RewardModel.objects.get(job=job)
    assert (reward_model.backbone, reward_model.ensemble_size, reward_model.metrics["modality"]) == (
        "image-cnn",
        2,
        "image",
    )
    assert reward_model.metrics["train_pairs"] + reward_model.metrics["validation_pairs"] == 6
    policy = Job.objects.get(kind=JobKind.TRAIN_POLICY)
    assert (policy.params["method"], policy.parent_id) == (IMAGE_POLICY_METHOD, job.id)
    with pytest.raises(ApplicationError, match="An image study trains its generators with the method"):
        policy_train_start(study=study, parent_version_id=versions[0].id, method="dpo")
    policy.params = {**policy.params, "config": {"steps": 3, "batch_size": 8, "evaluation_samples": 8}}
    policy.save(update_fields=["params"])
    assert run_job(policy.id, policy_train_run) == "succeeded", Job.objects.get(id=policy.id).error
    child = GeneratorVersion.objects.get(kind=VersionKind.TRAINED)
    assert child.parent_id in {v.id for v in versions}
    assert (child.training_job_id, child.snapshot_id, child.reward_model_id) == (
        policy.id,
        snapshot.id,
        reward_model.id,
    )
    assert child.metadata["modality"] == "image" and len(child.metadata["decoder_sha256"]) == 64
    assert child.metadata["provenance"]["parent_decoder_sha256"] == child.parent.metadata.get(
        "decoder_sha256", child.metadata["provenance"]["parent_decoder_sha256"]
    )
    assert study.versions.filter(id=child.id).exists()
    # Then it is generated like a text child: its images, then pairs.
    follow_up = Job.objects.get(kind=JobKind.GENERATE, parent=policy)
    assert run_job(follow_up.id, generate_run) == "succeeded"
    follow_up.refresh_from_db()
    assert follow_up.result["total"] == 4 * 3  # every prompt, holdout included, three seeds
    assert Sample.objects.filter(version=child, image__isnull=False).count() == follow_up.result["total"]


def test_the_build_command_starts_an_image_build(settings, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    from django.core.management import CommandError, call_command

    settings.VAR_DIR = tmp_path
    call_command("build_base_model", "--image", "dcgan", "--generator", "shapes", "--size", "tiny")
    job = Job.objects.get()
    assert (job.params["modality"], job.params["architecture"], job.params["size"]) == (
        "image",
        "dcgan",
        "tiny",
    )
    assert job.params["output_dir"] == str(tmp_path / "models" / "shapes")
    assert json.loads(capsys.readouterr().out)["job_id"] == job.id
    with pytest.raises(CommandError, match="Give --corpus FILE"):
        call_command("build_base_model", "--generator", "g")


def test_chained_builds_run_one_after_another_then_generation_and_pairs(settings, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    settings.VAR_DIR = tmp_path
    study = factories.study(modality=Modality.IMAGE)
    for text in PROMPTS:
        factories.prompt(study=study, text=text)
    second = {
        "architecture": "dcgan",
        "generator": "g",
        "label": "dcgan",
        "output_dir": str(tmp_path / "models" / "b"),
    }
    first = image_generator_build_start(
        architecture="vae",
        generator_name="g",
        label="vae",
        output_dir=str(tmp_path / "models" / "a"),
        size="tiny",
        study=study,
        enrol=True,
        then=["generate"],
        next_builds=[second],
    )
    assert run_job(first.id, base_model_build_run) == "succeeded"
    follow = Job.objects.get(parent=first)
    assert (follow.kind, follow.params["architecture"], follow.params["next_builds"]) == (
        JobKind.BUILD_BASE_MODEL,
        "dcgan",
        [],
    )
    assert (follow.params["size"], follow.params["then"], follow.params["enrol"]) == (
        "tiny",
        ["generate"],
        True,
    )
    assert not Job.objects.filter(kind=JobKind.GENERATE).exists()
    assert run_job(follow.id, base_model_build_run) == "succeeded"
    generate = Job.objects.get(kind=JobKind.GENERATE, parent=follow)
    assert generate.params["version_ids"] == sorted(study.versions.values_list("id", flat=True))
    assert len(generate.params["version_ids"]) == 2 and generate.params["then"] == ["select_pairs"]
    with pytest.raises(ApplicationError, match=r"next_builds\[0\] needs exactly"):
        image_generator_build_start(
            architecture="vae",
            generator_name="g",
            label="l",
            output_dir=str(tmp_path / "models" / "c"),
            next_builds=[{}],
        )


def _judged_image_study_with_reward_model(study, versions):  # type: ignore[no-untyped-def]
    """Samples of both versions, the DCGAN preferred in every pair, and a tiny image reward model."""
    from server.training.jobs import reward_model_train_run
    from server.training.models import RewardModel
    from server.training.services import reward_model_train_start
    from server.training.snapshots import snapshot_create

    generate = generate_start(study=study, version_ids=[v.id for v in versions], samples_per_prompt=2)
    assert run_job(generate.id, generate_run) == "succeeded"
    rater = factories.rater(study=study)
    for prompt in study.prompts.filter(split=PromptSplit.TRAIN):
        a = Sample.objects.get(version=versions[0], prompt=prompt, seed=0)
        b = Sample.objects.get(version=versions[1], prompt=prompt, seed=0)
        comparison = factories.comparison(study=study, prompt=prompt, sample_a=a, sample_b=b)
        factories.judgment(comparison=comparison, rater=rater, outcome="B")
    snapshot = snapshot_create(study=study, validation_fraction=0.0)
    job = reward_model_train_start(
        study=study, snapshot_id=snapshot.id, config={"ensemble_size": 2, "epochs": 2}
    )
    assert run_job(job.id, reward_model_train_run) == "succeeded", Job.objects.get(id=job.id).error
    return RewardModel.objects.get(job=job)


def test_the_image_evaluation_scores_value_with_the_image_reward_model(  # type: ignore[no-untyped-def]
    image_study, settings, tmp_path: Path
) -> None:
    from server.dashboard.selectors import evaluations_payload
    from server.evaluations.creativity import evaluation_run
    from server.evaluations.models import Evaluation
    from server.evaluations.reports import evaluation_report_html, novelty_value_series
    from server.evaluations.services import evaluation_start
    from server.training.models import RewardModel

    settings.VAR_DIR = tmp_path
    study, versions = image_study
    reward_model = _judged_image_study_with_reward_model(study, versions)
    # A newer text reward model's row in the study (an admin's mistake) is never used on images.
    RewardModel.objects.create(
        study=study, snapshot=reward_model.snapshot, backbone="gpt2", ensemble_size=1, path=str(tmp_path)
    )
    job = evaluation_start(study=study, version_id=versions[1].id, split="train", samples_per_prompt=2)
    job.params = {**job.params, "feature_size": "tiny"}
    job.save(update_fields=["params"])
    assert run_job(job.id, evaluation_run) == "succeeded", Job.objects.get(id=job.id).error
    evaluation = Evaluation.objects.get()
    score = evaluation.metrics["reward_model_score"]
    assert score["reward_model_id"] == reward_model.id and score["count"] == 3  # prompts resampled
    assert score["lower"] <= score["mean"] <= score["upper"]
    assert evaluation.protocol["reward_model_id"] == reward_model.id
    points = evaluation.metrics["points"]
    assert len(points) == 6 and {p["sample_id"] for p in points} == set(
        Sample.objects.filter(version=versions[1], prompt__split=PromptSplit.TRAIN).values_list(
            "id", flat=True
        )
    )
    front = evaluation.metrics["pareto_sample_ids"]
    assert 1 <= len(front) <= 6 and set(front) <= {p["sample_id"] for p in points}
    everything, on_front = novelty_value_series(evaluation)
    assert len(everything) == 6 and len(on_front) == len(front)
    # Novel and valuable as for text: novel = at least the memorisation threshold (in features)
    # from every training image, valuable = a reward score of at least 0; prompts resampled.
    share = evaluation.metrics["novel_and_valuable_share"]
    threshold = evaluation.metrics["memorisation_feature_share"]["threshold"]
    assert (share["novelty_threshold"], share["value_threshold"], share["count"]) == (threshold, 0.0, 3)
    by_hand = sum(p["novelty"] >= threshold and p["value"] >= 0.0 for p in points) / len(points)
    assert share["mean"] == pytest.approx(by_hand, abs=1e-5)
    assert share["lower"] <= share["mean"] <= share["upper"]
    frechet = evaluation.metrics["frechet_distance_corrected"]
    assert evaluation.metrics["frechet_distance"]["mean"] == frechet["plug_in"]
    assert frechet["lower"] <= frechet["mean"] <= frechet["upper"]
    assert frechet["mean"] == pytest.approx(max(frechet["plug_in"] - frechet["bias"], 0.0), abs=2e-5)
    # The report and the dashboard: the share in their tables, the image novelty on the axis,
    # and the front's samples as images (inline in the self-contained report).
    html = evaluation_report_html(study=study)
    assert "novel_and_valuable_share" in html
    assert "novelty (feature distance to the nearest training image)" in html
    assert html.count('alt="image sample"') == min(len(front), 5)
    payload = evaluations_payload(study=study)
    assert "novel_and_valuable_share" in payload["metric_names"]
    assert payload["versions"][0]["metrics"]["novel_and_valuable_share"] == share
    assert payload["novelty_axis"] == "novelty (feature distance to the nearest training image)"


def test_an_image_evaluation_without_an_image_reward_model_says_so(  # type: ignore[no-untyped-def]
    image_study, settings, tmp_path: Path
) -> None:
    from server.evaluations.creativity import evaluation_run
    from server.evaluations.models import Evaluation
    from server.evaluations.services import evaluation_start
    from server.training.models import PreferenceSnapshot, RewardModel

    settings.VAR_DIR = tmp_path
    study, versions = image_study
    # A text reward model's row in an image study (an admin's mistake) is not an image model.
    snapshot = PreferenceSnapshot.objects.create(study=study, content_hash="x", rule="r")
    RewardModel.objects.create(
        study=study, snapshot=snapshot, backbone="gpt2", ensemble_size=1, path=str(tmp_path)
    )
    job = evaluation_start(study=study, version_id=versions[0].id, split="train", samples_per_prompt=1)
    job.params = {**job.params, "feature_size": "tiny"}
    job.save(update_fields=["params"])
    assert run_job(job.id, evaluation_run) == "succeeded", Job.objects.get(id=job.id).error
    evaluation = Evaluation.objects.get()
    assert "reward_model_score" not in evaluation.metrics and "points" not in evaluation.metrics
    assert evaluation.protocol["reward_model_id"] is None
    assert "no image reward model yet" in " ".join(evaluation.protocol["notes"])


def test_active_pair_selection_on_an_image_study_uses_the_image_reward_model(  # type: ignore[no-untyped-def]
    image_study, settings, tmp_path: Path
) -> None:
    settings.VAR_DIR = tmp_path
    study, versions = image_study
    _judged_image_study_with_reward_model(study, versions)
    before = Comparison.objects.filter(study=study, kind=ComparisonKind.REGULAR).count()
    job = pair_selection_start(study=study, strategy="active", pairs_per_prompt=1)
    assert run_job(job.id, pair_selection_run) == "succeeded", Job.objects.get(id=job.id).error
    job.refresh_from_db()
    assert job.result["regular_created"] == 3  # one per train prompt, among the untried pairs
    new = Comparison.objects.filter(study=study, kind=ComparisonKind.REGULAR).order_by("id")[before:]
    for comparison in new:
        assert comparison.sample_a.image_id and comparison.sample_b.image_id


def test_the_automatic_loop_of_an_image_study_trains_image_models(  # type: ignore[no-untyped-def]
    image_study, settings, tmp_path: Path
) -> None:
    from server.training.jobs import reward_model_train_run, snapshot_run
    from server.training.services import IMAGE_POLICY_METHOD, training_loops_start_due

    settings.VAR_DIR = tmp_path
    study, versions = image_study
    study.auto_train_min_judgments = 2
    study.save(update_fields=["auto_train_min_judgments"])
    generate = generate_start(study=study, version_ids=[v.id for v in versions], samples_per_prompt=2)
    assert run_job(generate.id, generate_run) == "succeeded"
    rater = factories.rater(study=study)
    for prompt in study.prompts.filter(split=PromptSplit.TRAIN):
        a = Sample.objects.get(version=versions[0], prompt=prompt, seed=0)
        b = Sample.objects.get(version=versions[1], prompt=prompt, seed=0)
        factories.judgment(
            comparison=factories.comparison(study=study, prompt=prompt, sample_a=a, sample_b=b),
            rater=rater,
            outcome="B",
        )
    (snapshot_job_id,) = training_loops_start_due()
    assert run_job(snapshot_job_id, snapshot_run) == "succeeded", Job.objects.get(id=snapshot_job_id).error
    reward_job = Job.objects.get(kind=JobKind.TRAIN_REWARD_MODEL, parent_id=snapshot_job_id)
    assert reward_job.params["config"] == {}  # the image options' defaults, no text option
    reward_job.params = {**reward_job.params, "config": {"ensemble_size": 2, "epochs": 2}}
    reward_job.save(update_fields=["params"])
    assert run_job(reward_job.id, reward_model_train_run) == "succeeded", Job.objects.get(
        id=reward_job.id
    ).error
    policy = Job.objects.get(kind=JobKind.TRAIN_POLICY, parent=reward_job)
    assert policy.params["method"] == IMAGE_POLICY_METHOD


# --- Starting the image loop from the API and the dashboard --------------------------------------


@pytest.fixture
def staff_api(settings):  # type: ignore[no-untyped-def]
    from rest_framework.authtoken.models import Token
    from rest_framework.test import APIClient

    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    token, _ = Token.objects.get_or_create(user=factories.user(is_staff=True))
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return client


@pytest.fixture
def staff_page(settings, client):  # type: ignore[no-untyped-def]
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    client.force_login(factories.user(is_staff=True))
    return client


def test_the_api_builds_an_image_generator_for_an_image_study_only(  # type: ignore[no-untyped-def]
    image_study, staff_api, settings, tmp_path: Path
) -> None:
    settings.VAR_DIR = tmp_path
    study, versions = image_study
    url = f"/api/studies/{study.slug}/jobs/build-image-generator/"
    body = {"architecture": "dcgan", "generator": "Shapes GAN", "label": "v2", "size": "tiny"}

    response = staff_api.post(url, {**body, "config": {"steps": 3, "images_per_class": 4}}, format="json")

    assert response.status_code == 202, response.json()
    job = Job.objects.get(id=response.json()["id"])
    assert (job.kind, job.study_id, job.params["modality"], job.params["enrol"]) == (
        JobKind.BUILD_BASE_MODEL,
        study.id,
        "image",
        True,
    )
    assert job.params["config"] == {"steps": 3, "images_per_class": 4}
    output = Path(job.params["output_dir"])
    assert output.parent == tmp_path / "models" and output.name.startswith(
        f"image-{study.slug}-shapes-gan-v2-"
    )
    assert run_job(job.id, base_model_build_run) == "succeeded", Job.objects.get(id=job.id).error
    built = study.versions.exclude(id__in=[v.id for v in versions]).get()
    assert (built.label, built.metadata["modality"]) == ("v2", "image")

    refused = staff_api.post(url, {**body, "config": {"steps": -1}}, format="json")
    assert refused.status_code == 400
    assert refused.json() == {"error": "config.steps must be positive.", "details": {"field": "config.steps"}}
    refused = staff_api.post(url, {**body, "config": {"lora": True}}, format="json")
    assert refused.status_code == 400 and refused.json()["error"].startswith(
        "config.lora is not a setting of a dcgan build; known: batch_size"
    )
    refused = staff_api.post(url, {**body, "architecture": "diffusion"}, format="json")
    assert refused.status_code == 400 and "architecture" in refused.json()["details"]["fields"]

    text_study = factories.study()
    refused = staff_api.post(
        f"/api/studies/{text_study.slug}/jobs/build-image-generator/", body, format="json"
    )
    assert refused.status_code == 400
    assert refused.json()["error"] == (
        f"The study {text_study.slug!r} is a text study: image generators are built for image studies "
        "only (a text study registers or builds text models)."
    )
    assert Job.objects.filter(study=text_study).count() == 0


def test_the_api_starts_the_image_policy_and_refuses_text_methods(  # type: ignore[no-untyped-def]
    image_study, staff_api, settings, tmp_path: Path
) -> None:
    settings.VAR_DIR = tmp_path
    study, versions = image_study
    url = f"/api/studies/{study.slug}/jobs/train-policy/"
    parent = {"parent_version_id": versions[0].id}

    missing = staff_api.post(url, {**parent, "method": "image_reward"}, format="json")
    assert missing.status_code == 400
    assert missing.json()["error"] == "The image policy needs an image reward model of the study."
    reward_model = _judged_image_study_with_reward_model(study, versions)
    response = staff_api.post(
        url, {**parent, "method": "image_reward", "config": {"steps": 3, "beta": 0.5}}, format="json"
    )
    assert response.status_code == 202, response.json()
    job = Job.objects.get(id=response.json()["id"])
    assert (job.params["method"], job.params["reward_model_id"], job.params["config"]) == (
        "image_reward",
        reward_model.id,
        {"steps": 3, "beta": 0.5},
    )
    dpo = staff_api.post(url, {**parent, "method": "dpo"}, format="json")
    assert dpo.status_code == 400
    assert dpo.json()["error"] == "An image study trains its generators with the method 'image_reward'."
    bad = staff_api.post(url, {**parent, "method": "image_reward", "config": {"lora_rank": 8}}, format="json")
    assert bad.status_code == 400 and bad.json()["details"] == {"field": "config.lora_rank"}
    cautious = staff_api.post(
        url, {**parent, "method": "image_reward", "config": {"reward_std_penalty": 10.5}}, format="json"
    )
    assert (cautious.status_code, cautious.json()["details"]) == (400, {"field": "config.reward_std_penalty"})
    assert (
        cautious.json()["error"]
        == "The image policy option 'reward_std_penalty' must be a number from 0 to 10."
    )
    # The image reward model from the API too, its options checked as the image trainer's.
    lora = staff_api.post(
        f"/api/studies/{study.slug}/jobs/train-reward-model/", {"config": {"lora": True}}, format="json"
    )
    assert lora.status_code == 400 and lora.json()["error"].startswith(
        "'lora' is not an option of the image reward model"
    )
    # Every image option has its range in the service, as the dashboard's forms do: the API refuses
    # what a form would, before a job is queued, naming the option.
    jobs_before = Job.objects.count()
    for path, config, message in [
        (
            "train-reward-model",
            {"ensemble_size": 0},
            "The image reward model option 'ensemble_size' must be a whole number from 1 to 16.",
        ),
        (
            "train-reward-model",
            {"learning_rate": 2.0},
            "The image reward model option 'learning_rate' must be a number from 1e-07 to 1.",
        ),
        (
            "train-reward-model",
            {"bootstrap": 1},
            "The image reward model option 'bootstrap' must be true or false.",
        ),
        (
            "train-policy",
            {"steps": 2.5},
            "The image policy option 'steps' must be a whole number from 1 to 1,000,000.",
        ),
        ("train-policy", {"beta": 101}, "The image policy option 'beta' must be a number from 0 to 100."),
    ]:
        body = (
            {"config": config}
            if path == "train-reward-model"
            else {**parent, "method": "image_reward", "config": config}
        )
        answer = staff_api.post(f"/api/studies/{study.slug}/jobs/{path}/", body, format="json")
        assert (answer.status_code, answer.json()["error"]) == (400, message)
        assert answer.json()["details"] == {"field": f"config.{next(iter(config))}"}
    assert Job.objects.count() == jobs_before

    text_study = factories.study()
    refused = staff_api.post(
        f"/api/studies/{text_study.slug}/jobs/train-policy/", {"method": "image_reward"}, format="json"
    )
    assert refused.status_code == 400
    assert refused.json()["error"] == (
        "'image_reward' is the method of an image study; a text study trains with 'dpo', 'rloo' or 'grpo'."
    )


def _form_of(response, slug: str):  # type: ignore[no-untyped-def]
    return next((item["form"] for item in response.context["actions"] if item["action"].slug == slug), None)


def test_the_dashboard_offers_image_forms_to_an_image_study_and_text_forms_to_a_text_study(  # type: ignore[no-untyped-def]
    image_study, staff_page
) -> None:
    from server.dashboard.forms import ImageBuildForm, ImagePolicyForm, ImageRewardModelForm

    study, _ = image_study
    page = staff_page.get(f"/dashboard/studies/{study.slug}/")
    assert page.status_code == 200
    assert isinstance(_form_of(page, "build-image-generator"), ImageBuildForm)
    reward_form = _form_of(page, "train-reward-model")
    policy_form = _form_of(page, "train-policy")
    assert isinstance(reward_form, ImageRewardModelForm) and isinstance(policy_form, ImagePolicyForm)
    assert "ensemble_size" in reward_form.fields and "kind" not in reward_form.fields
    assert "method" not in policy_form.fields and "lora" not in policy_form.fields
    # Every option the image services accept has its typed field, and no field is unknown to them.
    from server.training.services import IMAGE_POLICY_OPTIONS, IMAGE_REWARD_OPTIONS

    assert set(reward_form.setting_names()) == set(IMAGE_REWARD_OPTIONS)
    assert set(policy_form.setting_names()) == set(IMAGE_POLICY_OPTIONS)
    html = page.content.decode()
    assert 'id="action-build-image-generator"' in html and 'name="beta"' in html

    text_study = factories.study()
    page = staff_page.get(f"/dashboard/studies/{text_study.slug}/")
    assert _form_of(page, "build-image-generator") is None
    assert "image_reward" not in dict(_form_of(page, "train-policy").fields["method"].choices)
    assert "kind" in _form_of(page, "train-reward-model").fields  # the text reward model's own settings
    assert 'id="action-build-image-generator"' not in page.content.decode()
    refused = staff_page.post(
        f"/dashboard/studies/{text_study.slug}/actions/build-image-generator/",
        {"architecture": "vae", "generator": "g", "label": "base", "size": "tiny"},
    )
    assert refused.status_code == 400
    assert (
        "Build an image generator: this is a text study; the action is for image studies only."
        in refused.content.decode()
    )
    assert Job.objects.filter(study=text_study).count() == 0


def test_the_dashboard_starts_an_image_build_with_typed_checked_settings(  # type: ignore[no-untyped-def]
    image_study, staff_page, settings, tmp_path: Path
) -> None:
    settings.VAR_DIR = tmp_path
    study, _ = image_study
    url = f"/dashboard/studies/{study.slug}/actions/build-image-generator/"
    data = {"architecture": "vae", "generator": "Shapes VAE", "label": "base", "size": "tiny"}

    out_of_range = staff_page.post(url, {**data, "steps": "0", "learning_rate": "2"})
    assert out_of_range.status_code == 400
    form = _form_of(out_of_range, "build-image-generator")
    assert form.errors == {
        "steps": ["Ensure this value is greater than or equal to 1."],
        "learning_rate": ["Ensure this value is less than or equal to 1.0."],
    }
    unknown = staff_page.post(url, {**data, "config": '{"lora": true}'})
    assert unknown.status_code == 400
    assert (
        _form_of(unknown, "build-image-generator")
        .errors["config"][0]
        .startswith("config.lora is not a setting of a vae build")
    )
    assert Job.objects.count() == 0

    started = staff_page.post(url, {**data, "steps": "5", "seed": "0", "config": '{"kl_weight": 0.5}'})
    assert started.status_code == 303
    job = Job.objects.get()
    assert job.params["config"] == {"steps": 5, "seed": 0, "kl_weight": 0.5}
    assert (job.params["architecture"], job.params["generator"], job.study_id) == (
        "vae",
        "Shapes VAE",
        study.id,
    )


def test_the_dashboard_trains_the_image_reward_model_and_policy(  # type: ignore[no-untyped-def]
    image_study, staff_page, settings, tmp_path: Path
) -> None:
    settings.VAR_DIR = tmp_path
    study, versions = image_study
    base = f"/dashboard/studies/{study.slug}/actions/"

    no_model = staff_page.post(f"{base}train-policy/", {"parent_version": str(versions[0].id), "steps": "3"})
    assert no_model.status_code == 400
    assert _form_of(no_model, "train-policy").errors == {
        "reward_model": ["The image policy needs an image reward model of the study."]
    }
    reward_model = _judged_image_study_with_reward_model(study, versions)
    lora = staff_page.post(f"{base}train-reward-model/", {"epochs": "2", "config": '{"lora": true}'})
    assert lora.status_code == 400
    assert (
        _form_of(lora, "train-reward-model")
        .errors["config"][0]
        .startswith("'lora' is not an option of the image reward model")
    )
    too_big = staff_page.post(f"{base}train-reward-model/", {"ensemble_size": "17"})
    assert _form_of(too_big, "train-reward-model").errors == {
        "ensemble_size": ["Ensure this value is less than or equal to 16."]
    }
    before = Job.objects.count()
    started = staff_page.post(
        f"{base}train-reward-model/", {"ensemble_size": "2", "epochs": "2", "bootstrap": "false"}
    )
    assert started.status_code == 303
    job = Job.objects.order_by("-id").first()
    assert Job.objects.count() == before + 1 and job.kind == JobKind.TRAIN_REWARD_MODEL
    assert job.params["config"] == {"ensemble_size": 2, "epochs": 2, "bootstrap": False}

    policy = staff_page.post(
        f"{base}train-policy/",
        {
            "parent_version": str(versions[0].id),
            "reward_model": str(reward_model.id),
            "steps": "3",
            "beta": "0.1",
            "reward_std_penalty": "0.5",
        },
    )
    assert policy.status_code == 303
    job = Job.objects.order_by("-id").first()
    assert (job.kind, job.params["method"], job.params["config"]) == (
        JobKind.TRAIN_POLICY,
        "image_reward",
        {"steps": 3, "beta": 0.1, "reward_std_penalty": 0.5},
    )
    too_cautious = staff_page.post(f"{base}train-policy/", {"reward_std_penalty": "10.5"})
    assert _form_of(too_cautious, "train-policy").errors == {
        "reward_std_penalty": ["Ensure this value is less than or equal to 10.0."]
    }
    assert Job.objects.order_by("-id").first() == job
