"""The staff dashboard: access, what each section shows, escaping, the actions (POST + CSRF), the
import form, rater pause / resume, the polled jobs endpoint, downloads, tokens, and the estimate
of time to the target interval width."""

from __future__ import annotations

import html
import io
import json
import math
import re
from datetime import timedelta
from pathlib import Path

import pytest
from django.test import Client
from django.utils import timezone
from rest_framework.authtoken.models import Token

from server.dashboard.selectors import ci_width_eta, study_dashboard
from server.generators.models import Sample
from server.jobs.models import Job, JobStatus
from server.ratings.models import RaterStatus
from server.studies.models import Prompt
from tests import factories
from tests.server.api.world import HOSTILE, World, build_world

STUDY_URL = "/dashboard/studies/poems/"


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings) -> None:  # type: ignore[no-untyped-def]
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def world(db: None, settings, tmp_path: Path) -> World:  # type: ignore[no-untyped-def]
    settings.VAR_DIR = tmp_path
    return build_world()


@pytest.fixture
def staff(world: World) -> Client:
    client = Client()
    client.force_login(world.staff)
    return client


# --- The estimate ---------------------------------------------------------------------------------


def test_eta_follows_the_inverse_square_root_law_and_the_recent_rate() -> None:
    # W0 = 100 at n0 = 100; the target 50 needs n* = 100 · (100/50)² = 400 judgments.
    estimate = ci_width_eta(
        mean_width=100.0, snapshot_judgments=100, counted_judgments=150, target_width=50.0, rate_per_hour=10.0
    )
    assert (estimate.state, estimate.judgments_needed, estimate.eta_hours) == ("estimated", 400, 25.0)


@pytest.mark.parametrize(
    ("arguments", "state", "needed", "eta"),
    [
        (
            {"mean_width": 40.0, "snapshot_judgments": 100, "counted_judgments": 100, "rate_per_hour": 5.0},
            "reached",
            100,
            0.0,
        ),
        (
            {"mean_width": None, "snapshot_judgments": 0, "counted_judgments": 9, "rate_per_hour": 5.0},
            "no_leaderboard",
            None,
            None,
        ),
        (
            {"mean_width": 100.0, "snapshot_judgments": 100, "counted_judgments": 100, "rate_per_hour": None},
            "no_rate",
            400,
            None,
        ),
        (
            {"mean_width": 100.0, "snapshot_judgments": 100, "counted_judgments": 500, "rate_per_hour": None},
            "estimated",
            400,
            0.0,
        ),
    ],
)
def test_eta_edge_cases(arguments, state, needed, eta) -> None:  # type: ignore[no-untyped-def]
    estimate = ci_width_eta(target_width=50.0, **arguments)
    assert (estimate.state, estimate.judgments_needed, estimate.eta_hours) == (state, needed, eta)


def test_study_dashboard_numbers(world: World) -> None:
    data = study_dashboard(study=world.study_a)
    # 11 pairs judged twice, one once; 13 regular comparisons at overlap 3.
    assert (data.progress.done, data.progress.target, data.progress.comparisons) == (23, 39, 13)
    assert data.live_judgment_count == 23
    estimate = data.estimate
    assert estimate.mean_width == pytest.approx((89.2 + 96.7 + 99.1) / 3)
    assert estimate.judgments_needed == math.ceil(22 * (estimate.mean_width / 50.0) ** 2) == 80
    # 13 judgments in the last 24 hours (12 spread ones and the recent one).
    assert estimate.rate_per_hour == pytest.approx(13 / 24)
    assert estimate.eta_hours == pytest.approx((80 - 23) / (13 / 24))
    assert data.over_time["unit"] == "hour" and sum(data.over_time["counts"]) == 23
    assert data.over_time["cumulative"][-1] == 23


# --- Access ---------------------------------------------------------------------------------------


def test_anonymous_visitors_are_sent_to_login_and_raters_are_refused(world: World) -> None:
    response = Client().get(STUDY_URL)
    assert response.status_code == 302 and response["Location"] == f"/accounts/login/?next={STUDY_URL}"
    rater = Client()
    rater.force_login(world.rater_a_user)
    for url in ["/dashboard/", STUDY_URL, f"{STUDY_URL}jobs.json", "/dashboard/token/"]:
        assert rater.get(url).status_code == 403
    assert rater.post(f"{STUDY_URL}actions/recompute-leaderboard/").status_code == 403
    assert not Job.objects.filter(kind="recompute_leaderboard").exists()


def test_unknown_study_and_action_are_404(staff: Client) -> None:
    assert staff.get("/dashboard/studies/nope/").status_code == 404
    assert staff.post(f"{STUDY_URL}actions/bake/").status_code == 404


def test_home_lists_studies_with_counts(staff: Client) -> None:
    response = staff.get("/dashboard/")
    assert response.status_code == 200
    rows = re.findall(
        r'<a class="dash-strong" href="/dashboard/studies/([a-z-]+)/">', response.content.decode()
    )
    assert rows == ["stories", "poems"]
    assert [(s.study.slug, s.judgments, s.raters, s.active_jobs) for s in response.context["studies"]] == [
        ("stories", 0, 1, 0),
        ("poems", 23, 3, 1),
    ]


# --- The study page -------------------------------------------------------------------------------


def test_the_study_page_has_every_section_and_its_chart_data(world: World, staff: Client) -> None:
    response = staff.get(STUDY_URL)
    assert response.status_code == 200
    page = response.content.decode()
    for canvas in [
        "chart-over-time",
        "chart-intervals",
        "chart-heatmap",
        "chart-metrics",
        "chart-reward-models",
        "chart-scatter",
    ]:
        assert f'id="{canvas}"' in page
    assert '<script src="/static/vendor/chart.js/chart.umd.min.js">' in page
    assert '<script src="/static/vendor/chartjs-chart-matrix/chartjs-chart-matrix.min.js">' in page
    leaderboard = json.loads(
        re.search(r'<script id="leaderboard-data" type="application/json">(.*?)</script>', page).group(1)
    )
    assert leaderboard["rows"] == world.leaderboard.rows
    evaluations = json.loads(
        re.search(r'<script id="evaluations-data" type="application/json">(.*?)</script>', page).group(1)
    )
    assert len(evaluations["versions"][0]["points"]) == 5 and len(evaluations["versions"][0]["front"]) == 2
    assert evaluations["novelty_axis"] == "novelty (share of novel 4-grams)"  # a text study
    # Raters: pause for the active ones, resume for the paused one, each a CSRF-protected POST.
    assert page.count('action="/dashboard/studies/poems/raters/') == 3
    assert f'action="/dashboard/studies/poems/raters/{world.paused_rater.id}/resume/"' in page
    assert page.count('name="csrfmiddlewaretoken"') >= 12
    assert "Gold accuracy 1 of 4." in page
    # All seven actions and the import form.
    for slug in [
        "generate",
        "select-pairs",
        "train-reward-model",
        "train-policy",
        "evaluate",
        "recompute-leaderboard",
        "export",
    ]:
        assert f'id="action-{slug}"' in page
    assert 'enctype="multipart/form-data"' in page


def test_every_generated_string_is_escaped(settings, db: None, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    settings.VAR_DIR = tmp_path
    world = build_world(hostile_text=True)
    client = Client()
    client.force_login(world.staff)
    for url in ["/dashboard/", STUDY_URL]:
        page = client.get(url).content.decode()
        assert HOSTILE not in page
        assert "<script>window.__pwned" not in page and "<img src=x" not in page
        assert "&lt;script&gt;window.__pwned = 1&lt;/script&gt;" in page
    jobs = client.get(f"{STUDY_URL}jobs.json").json()
    assert any(
        HOSTILE in job["error"] for job in jobs["jobs"]
    )  # JSON carries it as data; the page's script sets textContent


def test_jobs_endpoint_reports_progress_metrics_and_export_files(world: World, staff: Client) -> None:
    jobs = {job["id"]: job for job in staff.get(f"{STUDY_URL}jobs.json").json()["jobs"]}
    running = jobs[world.running_job.id]
    assert (running["status"], running["step"], running["total"], running["fraction"]) == (
        "running",
        40,
        100,
        0.4,
    )
    assert running["metrics"]["names"] == ["loss"]
    assert [point["loss"] for point in running["metrics"]["points"]][:3] == [0.7, 0.684, 0.668]
    assert jobs[world.export_job.id]["files"] == ["leaderboard.csv"]
    Job.objects.filter(id=world.running_job.id).update(progress_step=90)
    again = {job["id"]: job for job in staff.get(f"{STUDY_URL}jobs.json").json()["jobs"]}
    assert again[world.running_job.id]["step"] == 90


def test_long_metric_timelines_are_thinned_for_polling(world: World, staff: Client) -> None:
    now = timezone.now().isoformat()
    Job.objects.filter(id=world.running_job.id).update(
        metrics=[{"step": step, "time": now, "loss": 1.0 / (step + 1)} for step in range(5000)]
    )
    running = next(
        job for job in staff.get(f"{STUDY_URL}jobs.json").json()["jobs"] if job["id"] == world.running_job.id
    )
    steps = [point["step"] for point in running["metrics"]["points"]]
    assert len(steps) == 400 and steps[0] == 0 and steps[-1] == 4999


# --- Actions --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("slug", "data", "kind", "params"),
    [
        (
            "generate",
            {
                "versions": "BASE",
                "split": "all",
                "samples_per_prompt": "3",
                "decoding": '{"temperature": 0.8}',
            },
            "generate",
            {"split": "all", "samples_per_prompt": 3, "decoding": {"temperature": 0.8}, "then": []},
        ),
        (
            "select-pairs",
            {"strategy": "random", "pairs_per_prompt": "4", "seed": "9"},
            "select_pairs",
            {"strategy": "random", "pairs_per_prompt": 4, "seed": 9},
        ),
        # The training forms: tests/server/dashboard/test_training_forms.py
        (
            "evaluate",
            {"version": "EXTERNAL"},
            "evaluate",
            {"split": "holdout", "samples_per_prompt": 4, "seed": 0},
        ),
        (
            "recompute-leaderboard",
            {"bootstrap_clusters": "prompt_and_rater"},
            "recompute_leaderboard",
            {"rounds": 1000, "seed": 0, "bootstrap_clusters": "prompt_and_rater"},
        ),
        ("export", {"kind": "leaderboard"}, "export", {"kind": "leaderboard", "snapshot_id": None}),
    ],
)
def test_each_action_starts_its_job_and_redirects_to_jobs(
    world: World, staff: Client, slug, data, kind, params
) -> None:  # type: ignore[no-untyped-def]
    replacements = {"BASE": str(world.base_version.id), "EXTERNAL": str(world.versions[0].id)}
    form = {key: replacements.get(value, value) for key, value in data.items()}
    response = staff.post(f"{STUDY_URL}actions/{slug}/", form)
    assert response.status_code == 303
    assert response["Location"] == f"{STUDY_URL}#jobs"
    job = Job.objects.filter(kind=kind, status=JobStatus.QUEUED).get()
    assert {key: job.params[key] for key in params} == params
    assert job.created_by_id == world.staff.id
    page = staff.get(STUDY_URL).content.decode()
    assert f"job #{job.id} is queued" in page


def test_an_invalid_form_rerenders_the_page_with_the_error_and_starts_nothing(
    world: World, staff: Client
) -> None:
    response = staff.post(
        f"{STUDY_URL}actions/generate/", {"split": "train", "samples_per_prompt": "500", "decoding": "[1]"}
    )
    assert response.status_code == 400
    page = response.content.decode()
    assert "Ensure this value is less than or equal to 64." in page
    assert "This field is required." in page
    assert "Decoding must be a JSON object" in page
    assert not Job.objects.filter(kind="generate", status=JobStatus.QUEUED).exists()


def test_a_service_refusal_is_shown_next_to_its_form(world: World, staff: Client) -> None:
    response = staff.post("/dashboard/studies/stories/actions/export/", {"kind": "leaderboard"})
    assert response.status_code == 400
    assert "The study has no leaderboard yet; recompute it first." in response.content.decode()
    assert not Job.objects.filter(kind="export", status=JobStatus.QUEUED).exists()


def test_actions_require_the_csrf_token(world: World) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(world.staff)
    assert client.post(f"{STUDY_URL}actions/recompute-leaderboard/").status_code == 403
    assert client.post(f"{STUDY_URL}raters/{world.rater_a.id}/pause/").status_code == 403
    assert not Job.objects.filter(kind="recompute_leaderboard").exists()


# --- Import ---------------------------------------------------------------------------------------


def _upload(content: bytes, name: str) -> io.BytesIO:
    upload = io.BytesIO(content)
    upload.name = name
    return upload


def test_import_of_a_good_file_reports_what_it_did(world: World, staff: Client) -> None:
    content = (
        b'{"prompt": "Fog", "text": "Grey", "generator": "fog-bot"}\n'
        b'{"prompt": "Fog", "text": "Soft", "generator": "fog-bot"}\n'
    )
    response = staff.post(f"{STUDY_URL}import/", {"file": _upload(content, "fog.jsonl")}, follow=True)
    assert response.redirect_chain == [(f"{STUDY_URL}#import", 303)]
    assert "Imported 2 samples and 1 new prompts (fog-bot/external)." in response.content.decode()
    assert Sample.objects.filter(version__generator__name="fog-bot").count() == 2


def test_import_errors_are_listed_by_line_and_nothing_is_imported(world: World, staff: Client) -> None:
    before = (Sample.objects.count(), Prompt.objects.count())
    content = b"prompt,text,generator\nFog,Grey,bot\nFog,,bot\nRain,Wet,bot,extra\n"
    response = staff.post(f"{STUDY_URL}import/", {"file": _upload(content, "fog.csv")})
    assert response.status_code == 400
    rows = re.findall(
        r'<tr><td class="num">(\d+)</td><td>([^<]*)</td><td>([^<]*)</td></tr>',
        re.search(
            r'<table class="dash-table dash-errors" id="import-errors">(.*?)</table>',
            response.content.decode(),
            re.S,
        ).group(1),
    )
    assert rows == [("3", "text", "is missing or empty"), ("4", "–", "has more cells than the header")]
    assert (Sample.objects.count(), Prompt.objects.count()) == before


def test_import_of_a_deeply_nested_file_is_refused_by_line_and_nothing_is_imported(
    world: World, staff: Client
) -> None:
    before = (Sample.objects.count(), Prompt.objects.count())
    deep = '{"a": ' * 10_000 + "1" + "}" * 10_000
    content = f'{{"prompt": "Fog", "text": "Grey", "generator": "bot", "metadata": {deep}}}\n'.encode()

    response = staff.post(f"{STUDY_URL}import/", {"file": _upload(content, "fog.jsonl")})

    assert response.status_code == 400
    assert "line 1: nests arrays and objects deeper than 64 levels" in response.content.decode()
    assert (Sample.objects.count(), Prompt.objects.count()) == before


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (
            '{"epochs": 1e9}',
            "The reward-model option &#x27;epochs&#x27; must be a whole number from 1 to 1,000",
        ),
        ('{"epochs": NaN}', "Enter valid JSON: is not valid JSON (NaN is not a number)."),
        ('{"learning_rate": Infinity}', "Enter valid JSON: is not valid JSON (Infinity is not a number)."),
        ('{"learning_rate": 1e400}', "Enter valid JSON: learning_rate is not a finite number."),
        ('{"backbone_path": "a\\u0000b"}', "Enter valid JSON: backbone_path contains a NUL character"),
        ("[" * 10_000 + "]" * 10_000, "Enter valid JSON: nests arrays and objects deeper than 64 levels."),
    ],
)
def test_training_options_are_refused_on_the_form_and_start_nothing(
    world: World, staff: Client, config: str, message: str
) -> None:
    jobs = Job.objects.count()

    response = staff.post(f"{STUDY_URL}actions/train-reward-model/", {"snapshot": "", "config": config})

    assert response.status_code == 400
    assert message in response.content.decode()
    assert Job.objects.count() == jobs


# --- Raters, jobs, downloads, tokens --------------------------------------------------------------


def test_pause_and_resume_from_the_rater_table(world: World, staff: Client) -> None:
    response = staff.post(f"{STUDY_URL}raters/{world.rater_a.id}/pause/", {"reason": "Clicks left only."})
    assert response.status_code == 303 and response["Location"] == f"{STUDY_URL}#raters"
    world.rater_a.refresh_from_db()
    assert (world.rater_a.status, world.rater_a.paused_reason) == (RaterStatus.PAUSED, "Clicks left only.")
    staff.post(f"{STUDY_URL}raters/{world.rater_a.id}/resume/")
    world.rater_a.refresh_from_db()
    assert world.rater_a.status == RaterStatus.ACTIVE
    other = factories.rater(study=world.study_b, user=factories.user())
    assert staff.post(f"{STUDY_URL}raters/{other.id}/pause/").status_code == 404


def test_cancel_a_job_from_the_dashboard(world: World, staff: Client) -> None:
    response = staff.post(f"/dashboard/jobs/{world.running_job.id}/cancel/")
    assert response.status_code == 303 and response["Location"] == f"{STUDY_URL}#jobs"
    world.running_job.refresh_from_db()
    assert world.running_job.cancel_requested is True


def test_download_an_export_file(world: World, staff: Client) -> None:
    response = staff.get(f"/dashboard/exports/{world.export_job.id}/files/leaderboard.csv")
    assert response.status_code == 200
    assert b"".join(response.streaming_content) == b"rank,version_id,label\n1,1,a\n"
    assert staff.get(f"/dashboard/exports/{world.export_job.id}/files/other.csv").status_code == 404


def test_staff_create_and_rotate_their_api_token(world: World, staff: Client) -> None:
    assert "You have no token yet." in staff.get("/dashboard/token/").content.decode()
    created = staff.post("/dashboard/token/")
    key = Token.objects.get(user=world.staff).key
    assert key in created.content.decode()
    rotated = staff.post("/dashboard/token/", {"rotate": "1"})
    new_key = Token.objects.get(user=world.staff).key
    assert new_key != key and new_key in rotated.content.decode()


def test_over_time_uses_days_for_an_older_study(world: World) -> None:
    from server.ratings.models import Judgment

    Judgment.objects.filter(idempotency_key="world-1").update(submitted_at=timezone.now() - timedelta(days=9))
    over_time = study_dashboard(study=world.study_a).over_time
    assert over_time["unit"] == "day" and over_time["cumulative"][-1] == 23


@pytest.mark.django_db
def test_the_study_page_lists_the_invite_and_crowd_links_with_the_study_token() -> None:
    study = factories.study()
    staff = factories.user(is_staff=True, is_superuser=True)
    client = Client()
    client.force_login(staff)
    page = client.get(f"/dashboard/studies/{study.slug}/").content.decode()
    assert f"/rate/{study.slug}/join/{study.invite_token}/" in page
    assert f"/rate/{study.slug}/?t={study.invite_token}&amp;PROLIFIC_PID={{{{%PROLIFIC_PID%}}}}" in page


# --- Reward models: accuracy with its n and interval, the too-few-pairs warning --------------------


def test_reward_model_accuracy_shows_its_n_and_interval_next_to_the_ceiling(
    world: World, staff: Client
) -> None:
    # given a reward model whose accuracy rests on 25 validation pairs
    world.reward_model.metrics = {
        "kind": "sequence_classification",
        "validation_pairs": 25,
        "validation_accuracy_interval": [0.4841, 0.8262],
        "ceiling_comparisons": 12,
    }
    world.reward_model.save(update_fields=["metrics"])

    # when the study page is shown
    page = staff.get(STUDY_URL).content.decode()

    # then the accuracy cell carries n and the 95 % interval, and the ceiling its comparisons
    cell = re.search(r'<td class="num rm-accuracy">(.*?)</td>', page, re.S).group(1)
    assert _text(cell) == "68% [48–83%] of 25 pairs"
    ceiling = re.search(r'<td class="num rm-ceiling">(.*?)</td>', page, re.S).group(1)
    # 74 % of 12 comparisons: 9 agreeing, Wilson [47 %, 91 %].
    assert _text(ceiling) == "74% [47–91%] of 12 comparisons"
    assert "sequence_classification · " in page


def test_clustered_intervals_and_the_model_on_the_ceilings_comparisons_are_shown(
    world: World, staff: Client
) -> None:
    # given 30 validation pairs on 12 comparisons (several raters' votes on each), with the
    # intervals the job stored (clustered by comparison, wider than Wilson's over 30 votes)
    world.reward_model.validation_accuracy = 0.7
    world.reward_model.human_agreement_ceiling = 0.8
    world.reward_model.metrics = {
        "kind": "embedding_heads",
        "validation_pairs": 30,
        "validation_comparisons": 12,
        "validation_accuracy_interval": [0.41, 0.89],
        "ceiling_comparisons": 9,
        "ceiling_interval": [0.47, 0.95],
        "on_ceiling_comparisons": {"accuracy": 0.65, "interval": [0.38, 0.85], "votes": 20, "comparisons": 9},
    }
    world.reward_model.save(update_fields=["metrics", "validation_accuracy", "human_agreement_ceiling"])

    page = staff.get(STUDY_URL).content.decode()

    cell = re.search(r'<td class="num rm-accuracy">(.*?)</td>', page, re.S).group(1)
    assert _text(cell) == "70% [41–89%] of 30 pairs on 12 comparisons"
    ceiling = re.search(r'<td class="num rm-ceiling">(.*?)</td>', page, re.S).group(1)
    assert _text(ceiling) == "80% [47–95%] of 9 comparisons model there: 65% [38–85%] of 20 votes"
    same = re.search(r'<div class="dash-small rm-same-comparisons">(.*?)</div>', page, re.S).group(1)
    assert _text(same) == "model there: 65% [38–85%] of 20 votes"
    payload = study_dashboard(study=world.study_a).reward_models[0]
    assert (payload["validation_accuracy_low"], payload["ceiling_high"]) == (0.41, 0.95)


def test_a_reward_model_on_too_few_pairs_starts_with_a_warning_on_the_page(
    world: World, staff: Client
) -> None:
    response = staff.post(
        f"{STUDY_URL}actions/train-reward-model/", {"snapshot": "", "config": ""}, follow=True
    )

    job = Job.objects.get(kind="train_reward_model", status=JobStatus.QUEUED)
    assert job.params["warnings"] == [
        f"The snapshot has {world.snapshot.train_count} training pairs, fewer than the study's minimum "
        "of 50: the reward model's accuracy will rest on little data."
    ]
    page = response.content.decode()
    assert '<li class="dash-message dash-message-warning">' in page
    assert (
        f"Train a reward model, job #{job.id}: The snapshot has {world.snapshot.train_count} training pairs"
        in page
    )


def _text(markup: str) -> str:
    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", markup)).strip())


def test_a_reward_model_on_one_pair_shows_too_few_pairs_and_no_bar(world: World, staff: Client) -> None:
    # given a reward model that was validated on a single pair (and got it right)
    world.reward_model.validation_accuracy = 1.0
    world.reward_model.metrics = {"kind": "sequence_classification", "validation_pairs": 1}
    world.reward_model.save(update_fields=["metrics", "validation_accuracy"])

    page = staff.get(STUDY_URL).content.decode()

    # then no "100%" is shown for it, in the table or in the chart's data
    cell = re.search(r'<td class="num rm-accuracy">(.*?)</td>', page, re.S).group(1)
    assert _text(cell) == "too few pairs to judge (n = 1)"
    payload = study_dashboard(study=world.study_a).reward_models[0]
    assert payload["too_few_pairs"] is True
    assert payload["validation_pairs"] == 1


def test_rater_quality_shares_carry_their_interval_and_n(world: World, staff: Client) -> None:
    page = staff.get(STUDY_URL).content.decode()
    row = re.search(rf'<tr data-rater-id="{world.rater_a.id}">(.*?)</tr>', page, re.S).group(1)
    cells = {
        name: _text(re.search(rf'<td class="num rater-{name}">(.*?)</td>', row, re.S).group(1))
        for name in ("gold", "agreement", "left", "consistency")
    }
    # Wilson intervals of 2 of 2, 4 of 5, 5 of 9 and 1 of 1.
    assert cells == {
        "gold": "100% [34–100%] of 2",
        "agreement": "80% [38–96%] of 5",
        "left": "56% [27–81%] of 9",
        "consistency": "100% [21–100%] of 1",
    }
    # A rater with no quality signals yet shows dashes, not 0 %.
    helper_row = re.search(r'<tr data-rater-id="\d+">((?:(?!</tr>).)*helper(?:(?!</tr>).)*)</tr>', page, re.S)
    assert (
        _text(re.search(r'<td class="num rater-gold">(.*?)</td>', helper_row.group(1), re.S).group(1)) == "–"
    )


def test_the_overview_explains_which_judgments_count_from_the_data(world: World, staff: Client) -> None:
    # given the world's 23 regular judgments, plus one flagged, one gold check and one repeat
    from server.ratings.models import Comparison

    comparison = Comparison.objects.filter(study=world.study_a, kind="regular").order_by("id").first()
    extra = factories.rater(study=world.study_a)
    factories.judgment(comparison=comparison, rater=extra, is_flagged=True, flag_reasons=["fast"])
    gold = factories.gold_comparison(study=world.study_a, prompt=comparison.prompt)
    factories.judgment(comparison=gold, rater=extra)
    repeat = factories.comparison(
        study=world.study_a,
        prompt=comparison.prompt,
        sample_a=comparison.sample_b,
        sample_b=comparison.sample_a,
        kind="repeat",
        repeat_of=comparison,
    )
    factories.judgment(comparison=repeat, rater=factories.rater(study=world.study_a))

    page = staff.get(STUDY_URL).content.decode()

    note = _text(re.search(r'<div class="dash-tile-note" id="counted-note">(.*?)</div>', page, re.S).group(1))
    assert note == (
        "23 of 26 count for the leaderboard which, and why "
        "23 count, on all prompts "
        "1 gold checks: they test raters, not versions "
        "1 swapped repeats: the same rater's opinion a second time "
        "1 flagged: too fast, or made while the rater was paused"
    )


def test_the_leaderboard_section_names_its_bootstrap_and_the_win_rate_interval(
    world: World, staff: Client
) -> None:
    from server.evaluations.leaderboard import leaderboard_compute

    leaderboard_compute(study=world.study_a, rounds=100)
    page = staff.get(STUDY_URL).content.decode()
    bootstrap = _text(
        re.search(r'<p class="dash-muted dash-small" id="leaderboard-bootstrap">(.*?)</p>', page, re.S).group(
            1
        )
    )
    # 4 train prompts judged (the holdout one has no vote yet).
    assert bootstrap == "95% intervals: bootstrap resampling whole prompts (4 prompts)."
    assert (
        "The bootstrap resampled only 4 prompts: with fewer than 20 the intervals are too narrow to trust."
        in page
    )
    cells = [_text(cell) for cell in re.findall(r'<td class="num lb-win-rate">(.*?)</td>', page, re.S)]
    assert len(cells) == 4
    assert all(re.fullmatch(r"\d+% \[\d+%–\d+%\] of \d+|–", cell) for cell in cells), cells
    assert "What this leaderboard counted" in page


@pytest.mark.django_db
def test_the_rate_window_starts_at_the_first_vote_and_says_when_data_are_too_few() -> None:
    from server.dashboard.selectors import judgment_rate
    from server.ratings.models import Judgment

    study = factories.study()
    now = timezone.now()
    prompt = factories.prompt(study=study)
    comparison = factories.comparison(study=study, prompt=prompt)
    for minute in range(23):  # 23 votes in the last half hour, the study's first
        factories.judgment(
            comparison=comparison,
            rater=factories.rater(study=study),
            submitted_at=now - timedelta(minutes=minute),
        )
    judgments = Judgment.objects.filter(assignment__comparison__study=study)
    first = now - timedelta(minutes=22)
    rate = judgment_rate(judgments=judgments, first_vote_at=first, now=now)
    # Not 23 spread over 7 days (0.1 per hour): 23 in the last hour, the chart's current bar.
    assert (rate.state, rate.judgments, rate.hours, rate.per_hour) == ("measured", 23, 1.0, 23.0)
    few = judgments.filter(id__in=list(judgments.values_list("id", flat=True)[:2]))
    sparse = judgment_rate(judgments=few, first_vote_at=now - timedelta(hours=2), now=now)
    assert (sparse.state, sparse.judgments, sparse.per_hour) == ("too_little_data", 2, None)
    assert sparse.hours == pytest.approx(2.0)
    assert judgment_rate(judgments=judgments, first_vote_at=None, now=now).state == "too_little_data"


def test_an_estimate_from_two_judgments_is_not_shown() -> None:
    estimate = ci_width_eta(
        mean_width=400.0, snapshot_judgments=2, counted_judgments=2, target_width=50.0, rate_per_hour=0.01
    )
    assert (estimate.state, estimate.eta_hours, estimate.judgments_needed) == (
        "too_few_judgments",
        None,
        None,
    )
