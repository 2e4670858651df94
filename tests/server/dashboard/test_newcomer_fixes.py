"""Dashboard fixes for newcomers (#15 item 5): the "Take a snapshot" action, the too-few-pairs
warning shown before training, the qualification warning, raters in pages, and job rows with
duration, parameters and errors in plain words."""

from __future__ import annotations

import html
from datetime import timedelta
from pathlib import Path

import pytest
from django.test import Client
from django.utils import timezone

from server.dashboard.selectors import RaterPage, job_duration_seconds, job_payload, rater_page
from server.jobs.descriptions import job_error_in_words, job_params_summary
from server.jobs.models import Job, JobKind, JobStatus
from server.ratings.gold_import import GoldRow, gold_pairs_import
from server.ratings.models import GoldAnswer, Platform, Rater
from server.studies.models import Study
from server.training.models import PreferenceSnapshot
from tests import factories
from tests.server.api.world import World, build_world

STUDY_URL = "/dashboard/studies/poems/"


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings) -> None:  # type: ignore[no-untyped-def]
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def world(db: None, settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> World:  # type: ignore[no-untyped-def]
    settings.VAR_DIR = tmp_path
    monkeypatch.setattr("server.jobs.services._dispatch", lambda job_id, kind, queue: None)
    return build_world()


@pytest.fixture
def staff(world: World) -> Client:
    client = Client()
    client.force_login(world.staff)
    return client


def page_text(client: Client, url: str = STUDY_URL) -> str:
    return html.unescape(client.get(url).content.decode())


# --- Take a snapshot --------------------------------------------------------------------------------


def test_take_a_snapshot_queues_a_snapshot_job_with_its_validation_share(world: World, staff: Client) -> None:
    page = page_text(staff)
    assert 'id="action-snapshot"' in page
    eligible = world.snapshot.train_count + world.snapshot.validation_count
    assert f"{eligible} judgments that prefer a side are eligible now" in page

    response = staff.post(f"{STUDY_URL}actions/snapshot/", {"validation_fraction": "0.25"})

    assert response.status_code == 303
    job = Job.objects.get(kind=JobKind.SNAPSHOT)
    assert (job.status, job.study_id, job.params) == (
        JobStatus.QUEUED,
        world.study_a.id,
        {"validation_fraction": 0.25, "then": []},
    )


def test_a_validation_share_out_of_range_is_refused_next_to_its_field(world: World, staff: Client) -> None:
    response = staff.post(f"{STUDY_URL}actions/snapshot/", {"validation_fraction": "0.95"})
    assert response.status_code == 400
    assert "Ensure this value is less than or equal to 0.9." in response.content.decode()
    assert not Job.objects.filter(kind=JobKind.SNAPSHOT).exists()


# --- The warning before training ----------------------------------------------------------------------


def test_the_training_forms_warn_of_too_few_pairs_before_anything_starts(world: World, staff: Client) -> None:
    jobs_before = Job.objects.count()
    page = page_text(staff)
    snapshot = world.snapshot
    warning = (
        f"Latest snapshot #{snapshot.id}: The snapshot has {snapshot.train_count} training pairs, "
        "fewer than the study's minimum of 50: training still runs, on little data."
    )
    # Next to the reward-model and the policy buttons, and nowhere else.
    assert page.count(warning) == 2
    reward_form = page[page.index('id="action-train-reward-model"') : page.index('id="action-train-policy"')]
    assert warning in reward_form
    assert Job.objects.count() == jobs_before  # shown before a start, not after


def test_no_warning_when_the_snapshot_has_enough_pairs(world: World, staff: Client) -> None:
    Study.objects.filter(id=world.study_a.id).update(min_training_pairs=1)
    assert "dash-train-warning" not in page_text(staff)


def test_without_a_snapshot_the_forms_say_to_take_one_first(world: World, staff: Client) -> None:
    fresh = factories.study(slug="fresh")
    assert not PreferenceSnapshot.objects.filter(study=fresh).exists()
    page = page_text(staff, "/dashboard/studies/fresh/")
    assert (
        page.count("No snapshot yet: take one first (Take a snapshot). 0 judgments that prefer a side") == 2
    )


# --- The qualification warning --------------------------------------------------------------------------


def test_a_qualification_with_too_few_staff_checks_is_flagged_on_the_page(
    world: World, staff: Client
) -> None:
    Study.objects.filter(id=world.study_a.id).update(qualification_pairs=3, qualification_min_correct=2)
    gold_pairs_import(
        study=world.study_a,
        rows=[
            GoldRow(line=1, prompt="A harbour.", text_a="Boats.", text_b="Tax forms.", expected=GoldAnswer.A)
        ],
    )
    page = page_text(staff)
    message = (
        "The study asks each rater to qualify on 3 gold checks supplied by staff, and it has 1. New raters "
        "wait at the qualification until you add 2 more under Gold checks, or lower the number."
    )
    assert page.count(message) == 2  # at the top and under Gold checks
    assert "qualification 2 of 3" in page

    Study.objects.filter(id=world.study_a.id).update(qualification_pairs=1, qualification_min_correct=1)
    assert message[:40] not in page_text(staff)


# --- Raters in pages ---------------------------------------------------------------------------------------


def crowd(study: Study, count: int) -> None:
    Rater.objects.bulk_create(
        Rater(study=study, platform=Platform.PROLIFIC, external_id=f"pid-{n:03d}") for n in range(count)
    )


def test_raters_come_fifty_a_page_in_two_queries(world: World, django_assert_num_queries) -> None:  # type: ignore[no-untyped-def]
    crowd(world.study_a, 120)
    total = Rater.objects.filter(study=world.study_a).count()

    with django_assert_num_queries(2):
        second = rater_page(study=world.study_a, number=2)

    first = rater_page(study=world.study_a, number=1)
    last = rater_page(study=world.study_a, number=99)  # past the end: the last page
    assert (second.number, second.pages, second.total, second.first, second.last) == (2, 3, total, 51, 100)
    assert len(second.rows) == 50 and not {r.id for r in first.rows} & {r.id for r in second.rows}
    assert (last.number, len(last.rows)) == (3, total - 100)
    shown = {r.id for page in (first, second, last) for r in page.rows}
    assert shown == set(Rater.objects.filter(study=world.study_a).values_list("id", flat=True))


def test_the_raters_pager_links_pages_around_the_current_one(world: World, staff: Client) -> None:
    crowd(world.study_a, 300)
    page = page_text(staff, f"{STUDY_URL}?raters_page=4")
    assert page.count('data-rater-id="') == 50
    assert (
        'href="?raters_page=3#raters" rel="prev"' in page
        and 'href="?raters_page=5#raters" rel="next"' in page
    )
    assert page_text(staff, f"{STUDY_URL}?raters_page=x").count('data-rater-id="') == 50  # page 1


@pytest.mark.parametrize(
    ("number", "pages", "shown"),
    [
        (1, 1, [1]),
        (1, 7, [1, 2, 3, None, 7]),
        (4, 7, [1, 2, 3, 4, 5, 6, 7]),
        (6, 12, [1, None, 4, 5, 6, 7, 8, None, 12]),
        (12, 12, [1, None, 10, 11, 12]),
    ],
)
def test_page_numbers_keep_the_ends_and_the_neighbours(
    number: int, pages: int, shown: list[int | None]
) -> None:
    assert RaterPage(rows=[], number=number, pages=pages, total=0, first=0, last=0).numbers == shown


# --- Job rows --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "words"),
    [
        (
            "OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB",
            "The GPU ran out of memory. Try a smaller batch size, shorter texts (maximum length) or LoRA, "
            "or run it on a larger GPU.",
        ),
        (
            "The worker stopped sending heartbeats (3 attempts, 120 s timeout).",
            "The worker running the job stopped (a restart or a crash) before the job finished.",
        ),
        (
            "FileNotFoundError: [Errno 2] No such file or directory: '/models/tiny'",
            "A file the job needs is missing: check the model path or the files named in its settings.",
        ),
        ("SoftTimeLimitExceeded: ", "The job ran longer than its time limit and was stopped."),
        (
            "ApplicationError: The study has no eligible judgments to snapshot yet.",
            "The study has no eligible judgments to snapshot yet.",
        ),
        ("ValueError: bad shape (3, 4)\nTraceback ...", "The job failed (ValueError): bad shape (3, 4)"),
        ("something odd happened", "The job failed: something odd happened"),
        ("", ""),
    ],
)
def test_a_job_error_in_plain_words(error: str, words: str) -> None:
    assert job_error_in_words(error) == words


def test_a_long_error_is_shortened_to_one_line() -> None:
    words = job_error_in_words("RuntimeError: " + "x" * 500)
    assert len(words) == 240 and words.endswith("…")


def test_job_parameters_in_one_line() -> None:
    params = {
        "method": "dpo",
        "parent_version_id": 4,
        "config": {"beta": 0.1, "lora": {"rank": 8}, "target_modules": ["q", "v"]},
        "warnings": ["shown elsewhere"],
        "then": [],
        "note": "<b>" + "y" * 60,
    }
    assert job_params_summary(params) == (
        "method=dpo · note=<b>" + "y" * 36 + "… · parent_version_id=4 · config.beta=0.1 · "
        'config.lora.rank=8 · config.target_modules=["q", "v"]'
    )


def test_a_job_row_has_its_duration_parameters_and_plain_error(world: World) -> None:
    started = timezone.now() - timedelta(minutes=5)
    job = Job.objects.create(
        kind=JobKind.GENERATE,
        study=world.study_a,
        status=JobStatus.FAILED,
        params={"version_ids": [3], "samples_per_prompt": 2},
        started_at=started,
        finished_at=started + timedelta(seconds=95),
        error="OutOfMemoryError: CUDA out of memory.",
    )
    payload = job_payload(job, with_metrics=False)
    assert payload["duration_seconds"] == 95.0
    assert payload["params_summary"] == "samples_per_prompt=2 · version_ids=[3]"
    assert payload["error_in_words"].startswith("The GPU ran out of memory.")
    assert payload["error"] == "OutOfMemoryError: CUDA out of memory."
    queued = Job.objects.create(kind=JobKind.GENERATE, study=world.study_a)
    assert job_duration_seconds(queued) is None
    assert job_payload(queued, with_metrics=False)["error_in_words"] == ""


def test_staff_let_an_unqualified_rater_in_from_the_raters_table(world: World, staff: Client) -> None:
    rater = Rater.objects.create(
        study=world.study_a,
        platform=Platform.PROLIFIC,
        external_id="pid-failed",
        status="unqualified",
        paused_reason="You answered 0 of 1 qualification questions as the study expects.",
    )
    page = page_text(staff)
    assert f'action="/dashboard/studies/poems/raters/{rater.id}/resume/"' in page

    response = staff.post(f"{STUDY_URL}raters/{rater.id}/resume/")

    assert response.status_code == 303
    rater.refresh_from_db()
    assert (rater.status, rater.paused_reason) == ("active", "")
    assert rater.qualified_at is not None
