"""The REST API's behaviour: shapes, blindness, idempotency, imports, jobs, exports, errors,
pagination, throttling, tokens and the served schema."""

from __future__ import annotations

import io
import json

import pytest
from django.core.management import CommandError, call_command
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from server.api.throttling import ScopedThrottle
from server.generators.models import Sample
from server.jobs.models import Job, JobStatus
from server.ratings.models import Assignment, AssignmentStatus, Judgment, RaterStatus
from server.studies.models import Prompt, Study
from tests.server.api.conftest import token_client
from tests.server.api.world import World

STUDY = "/api/studies/poems"


def test_a_validation_error_names_the_field_in_the_one_error_shape(staff_client: APIClient) -> None:
    response = staff_client.post(
        f"{STUDY}/prompts/", {"prompts": [{"text": "fine"}, {"split": "train"}]}, format="json"
    )
    assert response.status_code == 400
    assert response.json() == {
        "error": "The request is not valid: prompts.1.text: This field is required.",
        "details": {"fields": {"prompts": {"1": {"text": ["This field is required."]}}}},
    }


def test_an_application_error_keeps_its_status_message_and_details(
    world: World, staff_client: APIClient
) -> None:
    response = staff_client.post(
        f"{STUDY}/jobs/generate/", {"version_ids": [world.versions[0].id]}, format="json"
    )
    assert response.status_code == 400
    assert response.json() == {
        "error": f"{world.versions[0]} is external: import its samples instead.",
        "details": {"field": "version_ids"},
    }
    assert not Job.objects.filter(kind="generate", status=JobStatus.QUEUED).exists()


def test_unknown_api_paths_and_malformed_ids_answer_json_404(staff_client: APIClient) -> None:
    for path in ["/api/nothing/", "/api/jobs/-3/", "/api/studies/no%20such/"]:
        response = staff_client.get(path)
        assert response.status_code == 404
        assert response.json()["error"] in ("There is no such API endpoint.", "There is no such study.")


def test_prompts_are_added_in_bulk_and_duplicates_reported_by_position(
    world: World, staff_client: APIClient
) -> None:
    before = Prompt.objects.filter(study=world.study_a).count()
    response = staff_client.post(
        f"{STUDY}/prompts/",
        {
            "prompts": [
                {"text": "Night train"},
                {"text": "  night   TRAIN "},
                {"text": "Dawn", "split": "holdout"},
            ]
        },
        format="json",
    )
    assert response.status_code == 201
    body = response.json()
    assert [(p["text"], p["split"]) for p in body["created"]] == [
        ("Night train", "train"),
        ("Dawn", "holdout"),
    ]
    assert body["duplicates"] == [1]
    assert Prompt.objects.filter(study=world.study_a).count() == before + 2


def test_samples_import_from_json_rows(world: World, staff_client: APIClient) -> None:
    response = staff_client.post(
        f"{STUDY}/samples/import/",
        {
            "rows": [
                {
                    "prompt": "The lighthouse",
                    "text": "A beam\u2028in the fog",
                    "generator": "poet-bot",
                    "version": "2",
                },
                {
                    "prompt": "The lighthouse",
                    "text": "Salt and light",
                    "generator": "human",
                    "split": "train",
                },
            ]
        },
        format="json",
    )
    assert response.status_code == 201, response.json()
    assert response.json() == {
        "created": 2,
        "duplicates": [],
        "prompts_created": 1,
        "versions": ["human/external", "poet-bot/2"],
        "images": [],
    }
    assert Sample.objects.filter(text="A beam\u2028in the fog").exists()


def test_samples_import_from_a_multipart_file(world: World, staff_client: APIClient) -> None:
    upload = io.BytesIO(b"prompt,text,generator\nThe harbour,Boats asleep,csv-bot\n")
    upload.name = "samples.csv"
    response = staff_client.post(f"{STUDY}/samples/import/", {"file": upload}, format="multipart")
    assert response.status_code == 201
    assert response.json()["created"] == 1


def test_a_bad_import_names_the_line_and_imports_nothing(world: World, staff_client: APIClient) -> None:
    samples_before, prompts_before = Sample.objects.count(), Prompt.objects.count()
    upload = io.BytesIO(
        b'{"prompt": "p", "text": "t", "generator": "g"}\n'
        b'{"prompt": "p", "generator": "g"}\n'
        b'{"prompt": "q", "text": "u"}\n'
    )
    upload.name = "samples.jsonl"
    response = staff_client.post(f"{STUDY}/samples/import/", {"file": upload}, format="multipart")
    assert response.status_code == 400
    body = response.json()
    assert body["error"] == (
        "The file was not imported: line 2, field 'text': is missing or empty; "
        "line 3, field 'generator': is missing or empty."
    )
    assert body["details"]["errors"] == [
        {"line": 2, "field": "text", "message": "is missing or empty"},
        {"line": 3, "field": "generator", "message": "is missing or empty"},
    ]
    assert (Sample.objects.count(), Prompt.objects.count()) == (samples_before, prompts_before)


def test_the_next_pair_shows_texts_only_and_never_the_generator(
    world: World, rater_client: APIClient
) -> None:
    response = rater_client.post(f"{STUDY}/assignments/next/")
    assert response.status_code == 200
    body = response.json()
    comparison = world.open_assignment.comparison
    assert body["assignment"] == {
        "token": world.open_assignment.token,
        "status": "reserved",
        # As the rating page shows them: without surrounding whitespace.
        "prompt": comparison.prompt.text.strip(),
        # left_is_a is False: sample B is on the left
        "left": comparison.sample_b.text.strip(),
        "right": comparison.sample_a.text.strip(),
        "images": None,  # a text pair
        "reserved_at": body["assignment"]["reserved_at"],
        "expires_at": body["assignment"]["expires_at"],
    }
    assert (body["judged"], body["quota"], body["no_work"]) == (12, None, None)
    raw = json.dumps(body)
    for version in world.versions:
        assert version.generator.name not in raw
    for key in ("version", "generator", "sample_a", "sample_b", "kind", "gold_answer"):
        assert f'"{key}' not in raw


def test_a_vote_is_recorded_once_and_a_retry_returns_the_stored_vote(
    world: World, rater_client: APIClient
) -> None:
    url = f"{STUDY}/assignments/{world.open_assignment.token}/judgment/"
    vote = {
        "choice": "left",
        "idempotency_key": "api-vote-0001",
        "strength": 2,
        "rationale": "Richer images.",
    }
    first = rater_client.post(url, vote, format="json")
    again = rater_client.post(url, vote, format="json")
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json()["choice"] == "left" and first.json()["created"] is True
    assert again.json()["created"] is False and again.json()["id"] == first.json()["id"]
    judgment = Judgment.objects.get(idempotency_key="api-vote-0001")
    assert (judgment.outcome, judgment.chose_left, judgment.strength) == ("B", True, 2)  # B was on the left
    raw = json.dumps(first.json())
    assert all(version.generator.name not in raw for version in world.versions)


def test_undo_revokes_the_vote_and_gives_the_pair_back(world: World, rater_client: APIClient) -> None:
    response = rater_client.post(
        f"{STUDY}/judgments/undo/", {"idempotency_key": world.recent_judgment.idempotency_key}, format="json"
    )
    assert response.status_code == 200
    assert response.json()["status"] == "reserved"
    world.recent_judgment.refresh_from_db()
    assert world.recent_judgment.revoked_reason == "undo"


def test_skip_needs_a_reason(world: World, rater_client: APIClient) -> None:
    url = f"{STUDY}/assignments/{world.open_assignment.token}/skip/"
    assert rater_client.post(url, {"reason": ""}, format="json").status_code == 400
    response = rater_client.post(url, {"reason": "Not my language."}, format="json")
    assert response.status_code == 200
    assert Assignment.objects.get(id=world.open_assignment.id).status == AssignmentStatus.SKIPPED


def test_a_paused_rater_gets_no_pair(world: World) -> None:
    response = token_client(world.paused_rater.user).post(f"{STUDY}/assignments/next/")
    assert response.json() == {"assignment": None, "judged": 0, "quota": None, "no_work": "paused"}


def test_staff_pause_and_resume_a_rater(world: World, staff_client: APIClient) -> None:
    paused = staff_client.post(
        f"{STUDY}/raters/{world.rater_a.id}/pause/", {"reason": "Too fast."}, format="json"
    )
    assert (paused.json()["status"], paused.json()["paused_reason"]) == ("paused", "Too fast.")
    assert Judgment.objects.filter(assignment__rater=world.rater_a, is_flagged=True).count() == 12
    resumed = staff_client.post(f"{STUDY}/raters/{world.rater_a.id}/resume/")
    assert resumed.json()["status"] == "active"
    again = staff_client.post(f"{STUDY}/raters/{world.rater_a.id}/resume/")
    assert again.status_code == 409 and again.json()["error"] == "This rater is not paused."


def test_the_rater_table_carries_quality_and_counts(world: World, staff_client: APIClient) -> None:
    rows = {row["username"]: row for row in staff_client.get(f"{STUDY}/raters/").json()["results"]}
    assert rows["rater-a"]["judgments"] == 12 and rows["rater-a"]["quality"]["gold_accuracy"] == 1.0
    assert rows["paused-one"]["status"] == "paused"


def test_the_leaderboard_is_the_latest_snapshot(world: World, staff_client: APIClient) -> None:
    body = staff_client.get(f"{STUDY}/leaderboard/").json()
    assert body["id"] == world.leaderboard.id
    assert body["rows"] == world.leaderboard.rows
    assert body["matrices"]["win_rate"][0] == [None, 0.625, 0.75]


def test_a_study_without_a_leaderboard_answers_404(world: World, staff_client: APIClient) -> None:
    response = staff_client.get("/api/studies/stories/leaderboard/")
    assert response.status_code == 404
    assert response.json() == {"error": "The study has no leaderboard yet.", "details": {}}


def test_starting_a_job_queues_it_and_sends_it_after_commit(
    world: World, staff_client: APIClient, django_capture_on_commit_callbacks
) -> None:
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = staff_client.post(
            f"{STUDY}/jobs/select-pairs/", {"pairs_per_prompt": 3, "seed": 7}, format="json"
        )
    assert response.status_code == 202
    job = Job.objects.get(id=response.json()["id"])
    assert (job.kind, job.status, job.params) == (
        "select_pairs",
        "queued",
        {"strategy": "random", "pairs_per_prompt": 3, "seed": 7},
    )
    assert job.created_by_id == world.staff.id
    assert len(callbacks) == 1


def test_every_job_kind_can_be_started(world: World, staff_client: APIClient) -> None:
    starts = {
        "generate": {"version_ids": [world.base_version.id], "samples_per_prompt": 1},
        "train-reward-model": {"config": {"ensemble_size": 2}},
        "train-policy": {"method": "dpo"},
        "evaluate": {"version_id": world.versions[1].id},
        "recompute-leaderboard": {},
    }
    kinds = []
    for path, body in starts.items():
        response = staff_client.post(f"{STUDY}/jobs/{path}/", body, format="json")
        assert response.status_code == 202, response.json()
        kinds.append(response.json()["kind"])
    assert kinds == ["generate", "train_reward_model", "train_policy", "evaluate", "recompute_leaderboard"]


def test_cancel_a_running_job_then_a_finished_one_conflicts(world: World, staff_client: APIClient) -> None:
    response = staff_client.post(f"/api/jobs/{world.running_job.id}/cancel/")
    assert response.status_code == 200 and response.json()["cancel_requested"] is True
    finished = staff_client.post(f"/api/jobs/{world.export_job.id}/cancel/")
    assert finished.status_code == 409
    assert finished.json() == {"error": f"Job {world.export_job.id} has already succeeded.", "details": {}}


def test_job_detail_has_the_metrics_timeline(world: World, staff_client: APIClient) -> None:
    body = staff_client.get(f"/api/jobs/{world.running_job.id}/").json()
    assert [point["loss"] for point in body["metrics"]][:2] == [0.7, 0.684]
    assert (body["progress_step"], body["progress_total"], body["progress_fraction"]) == (40, 100, 0.4)


def test_jobs_are_filtered_and_paginated(world: World, staff_client: APIClient) -> None:
    page = staff_client.get("/api/jobs/?page_size=2").json()
    assert (page["count"], len(page["results"])) == (3, 2)
    assert page["next"].endswith("/api/jobs/?page=2&page_size=2")
    failed = staff_client.get("/api/jobs/?status=failed&study=poems").json()
    assert [job["kind"] for job in failed["results"]] == ["generate"]
    assert staff_client.get("/api/jobs/?page_size=0").status_code == 400
    assert staff_client.get("/api/jobs/?status=exploded").status_code == 400


def test_an_export_lists_its_files_and_serves_them(world: World, staff_client: APIClient) -> None:
    body = staff_client.get(f"/api/exports/{world.export_job.id}/").json()
    assert body["files"] == [
        {
            "name": "leaderboard.csv",
            "size": 28,
            "url": f"http://testserver/api/exports/{world.export_job.id}/files/leaderboard.csv",
        }
    ]
    download = staff_client.get(f"/api/exports/{world.export_job.id}/files/leaderboard.csv")
    assert download.status_code == 200
    assert download["Content-Type"] == "text/csv"
    assert b"".join(download.streaming_content) == b"rank,version_id,label\n1,1,a\n"
    missing = staff_client.get(f"/api/exports/{world.export_job.id}/files/..%2F..%2Fsecret")
    assert missing.status_code == 404


def test_an_unfinished_export_cannot_be_downloaded(world: World, staff_client: APIClient) -> None:
    response = staff_client.post(f"{STUDY}/exports/", {"kind": "preferences"}, format="json")
    assert response.status_code == 202
    job_id = response.json()["job"]["id"]
    assert response.json()["files"] == []
    download = staff_client.get(f"/api/exports/{job_id}/files/preferences.jsonl")
    assert download.status_code == 409
    assert download.json()["error"] == f"Export {job_id} is queued; download it when it has succeeded."


def test_an_export_that_cannot_be_made_is_refused_at_once(world: World, staff_client: APIClient) -> None:
    response = staff_client.post("/api/studies/stories/exports/", {"kind": "leaderboard"}, format="json")
    assert response.status_code == 409
    assert response.json()["error"] == "The study has no leaderboard yet; recompute it first."


def test_a_scope_over_its_rate_answers_429_with_retry_after(
    world: World, staff_client: APIClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        ScopedThrottle, "THROTTLE_RATES", {**ScopedThrottle.THROTTLE_RATES, "read": "2/minute"}
    )
    statuses = [staff_client.get("/api/jobs/").status_code for _ in range(3)]
    assert statuses == [200, 200, 429]
    refused = staff_client.get("/api/jobs/")
    assert refused.json()["error"] == "Too many requests; slow down."
    assert 0 < int(refused["Retry-After"]) <= 60
    # Another scope has its own budget.
    assert staff_client.post(f"{STUDY}/jobs/recompute-leaderboard/", {}, format="json").status_code == 202


def test_the_token_command_prints_and_rotates_a_key(world: World) -> None:
    out = io.StringIO()
    call_command("api_token", "operator", stdout=out)
    key = out.getvalue().strip()
    assert key == Token.objects.get(user=world.staff).key
    out = io.StringIO()
    call_command("api_token", "operator", "--rotate", stdout=out)
    assert out.getvalue().strip() != key
    assert token_client(world.staff).get("/api/jobs/").status_code == 200
    stale = APIClient()
    stale.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    assert stale.get("/api/jobs/").status_code == 401
    with pytest.raises(CommandError, match="There is no user 'nobody'"):
        call_command("api_token", "nobody")


def test_the_schema_is_served_and_the_docs_load_swagger_from_our_own_static_files(world: World) -> None:
    client = APIClient()
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert schema.status_code == 200
    document = json.loads(schema.content)
    assert document["openapi"].startswith("3.")
    assert "/api/studies/{slug}/assignments/next/" in document["paths"]
    assert set(document["paths"]["/api/jobs/"]["get"]["responses"]) == {
        "200",
        "400",
        "401",
        "403",
        "404",
        "409",
        "429",
    }
    docs = client.get("/api/docs/").content.decode()
    assert "/static/vendor/swagger-ui/swagger-ui-bundle.js" in docs
    assert "cdn" not in docs.lower()


def test_rater_status_is_reported_after_a_vote(world: World, rater_client: APIClient) -> None:
    world.rater_a.status = RaterStatus.ACTIVE
    response = rater_client.post(
        f"{STUDY}/assignments/{world.open_assignment.token}/judgment/",
        {"choice": "tie", "idempotency_key": "api-vote-0002"},
        format="json",
    )
    assert (response.json()["choice"], response.json()["rater_status"]) == ("tie", "active")


def test_a_study_is_created_with_its_quality_tests_and_shows_them(staff_client: APIClient) -> None:
    body = {"name": "Strict", "slug": "strict", "question": "Which is better?"}
    rules = {"min_gold_accuracy": 0.8, "quality_alpha": 0.05, "quality_min_checks": 8}

    created = staff_client.post("/api/studies/", {**body, **rules}, format="json")

    assert created.status_code == 201, created.json()
    shown = staff_client.get("/api/studies/strict/").json()
    assert {name: shown[name] for name in (*rules, "min_self_consistency", "max_position_bias")} == {
        **rules,
        "min_self_consistency": 0.5,
        "max_position_bias": 0.9,
    }


@pytest.mark.parametrize(
    ("rule", "value", "message"),
    [
        ("quality_alpha", 0.5, "quality_alpha: Ensure this value is less than or equal to 0.2."),
        ("quality_min_checks", 1, "quality_min_checks: Ensure this value is greater than or equal to 2."),
    ],
)
def test_a_quality_rule_out_of_range_is_refused_by_name(
    staff_client: APIClient, rule: str, value: float, message: str
) -> None:
    body = {"name": "Loose", "slug": "loose", "question": "Which is better?", rule: value}

    response = staff_client.post("/api/studies/", body, format="json")

    assert response.status_code == 400
    assert response.json()["error"] == f"The request is not valid: {message}"
    assert not Study.objects.filter(slug="loose").exists()


def test_a_leaderboard_recompute_takes_its_bootstrap_clusters_or_the_studys(
    world: World, staff_client: APIClient
) -> None:
    url = f"{STUDY}/jobs/recompute-leaderboard/"
    before = Job.objects.filter(kind="recompute_leaderboard").count()
    default = staff_client.post(url, {}, format="json")
    assert default.status_code == 202
    assert Job.objects.get(id=default.json()["id"]).params["bootstrap_clusters"] == "prompt"
    crossed = staff_client.post(url, {"bootstrap_clusters": "prompt_and_rater", "rounds": 200}, format="json")
    assert crossed.status_code == 202
    params = Job.objects.get(id=crossed.json()["id"]).params
    assert (params["bootstrap_clusters"], params["rounds"]) == ("prompt_and_rater", 200)
    refused = staff_client.post(url, {"bootstrap_clusters": "samples"}, format="json")
    assert refused.status_code == 400
    assert list(refused.json()["details"]["fields"]) == ["bootstrap_clusters"]
    assert Job.objects.filter(kind="recompute_leaderboard").count() == before + 2


def test_a_study_is_created_with_its_onboarding_and_refuses_an_unreachable_threshold(
    staff_client: APIClient,
) -> None:
    body = {"name": "Onboarded", "slug": "onboarded", "question": "Which is better?"}
    onboarding = {"require_guidelines_ack": False, "qualification_pairs": 5, "qualification_min_correct": 4}

    created = staff_client.post("/api/studies/", {**body, **onboarding}, format="json")

    assert created.status_code == 201, created.json()
    shown = staff_client.get("/api/studies/onboarded/").json()
    assert {name: shown[name] for name in onboarding} == onboarding
    refused = staff_client.post(
        "/api/studies/",
        {**body, "slug": "unreachable", "qualification_pairs": 2, "qualification_min_correct": 3},
        format="json",
    )
    assert refused.status_code == 400
    assert "qualification_min_correct" in refused.json()["details"]["fields"]
    assert not Study.objects.filter(slug="unreachable").exists()


def test_a_study_is_created_with_its_loop_settings_and_refuses_options_a_trainer_would_refuse(
    staff_client: APIClient,
) -> None:
    body = {"name": "Looped", "slug": "looped", "question": "Which is better?"}
    loop = {
        "auto_train_policy": "grpo",
        "auto_reward_model_config": {"kind": "sequence_classification", "lora": {"rank": 8}},
        "auto_policy_config": {"num_generations": 2, "beta": 0.02},
    }

    created = staff_client.post("/api/studies/", {**body, **loop}, format="json")

    assert created.status_code == 201, created.json()
    shown = staff_client.get("/api/studies/looped/").json()
    assert {name: shown[name] for name in loop} == loop
    refused = staff_client.post(
        "/api/studies/",
        {**body, "slug": "refused", "auto_policy_config": {"lora": False, "lora_rank": 8}},
        format="json",
    )
    assert refused.status_code == 400
    assert refused.json()["details"]["fields"]["auto_policy_config"] == [
        "The DPO options do not fit together: lora_rank shape LoRA adapters, and lora false trains "
        "the whole model: remove them or set lora true."
    ]
    assert not Study.objects.filter(slug="refused").exists()


def test_a_program_acknowledges_the_guidelines_before_its_first_pair(
    world: World, staff_client: APIClient
) -> None:
    from tests import factories

    study = factories.study(
        slug="onboarding-api", require_guidelines_ack=True, gold_rate=0.0, repeat_rate=0.0
    )
    factories.comparison(study=study)
    base = "/api/studies/onboarding-api"

    first = staff_client.post(f"{base}/assignments/next/").json()
    acknowledged = staff_client.post(f"{base}/guidelines/acknowledge/").json()

    assert (first["assignment"], first["no_work"]) == (None, "guidelines")
    assert acknowledged["no_work"] is None and acknowledged["assignment"]["token"]
    rater = study.raters.get(user=world.staff)
    assert rater.guidelines_acknowledged_at is not None
