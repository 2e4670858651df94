"""Each database constraint rejects the invalid state it exists for, written straight to the table
(bypassing model validation), so the guarantee holds whoever writes."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import IntegrityError, InternalError, connection, transaction
from django.utils import timezone

from server.generators.models import GeneratorVersion, Sample, VersionKind
from server.jobs.models import Job, JobStatus
from server.ratings.models import Comparison, ComparisonKind, Judgment, Outcome, Rater
from server.studies.models import Prompt
from tests import factories

pytestmark = pytest.mark.django_db

# A trigger raises a check_violation on PostgreSQL (IntegrityError) and ABORT on SQLite.
DATABASE_REFUSAL = (IntegrityError, InternalError)


def refused(callable_) -> bool:  # type: ignore[no-untyped-def]
    try:
        with transaction.atomic():
            callable_()
    except DATABASE_REFUSAL:
        return True
    return False


def test_comparison_of_a_sample_with_itself_is_refused() -> None:
    sample = factories.sample()
    assert refused(
        lambda: Comparison.objects.create(
            study=sample.prompt.study, prompt=sample.prompt, sample_a=sample, sample_b=sample
        )
    )
    assert Comparison.objects.count() == 0


def test_comparison_of_samples_from_two_prompts_is_refused() -> None:
    study = factories.study()
    first = factories.sample(prompt=factories.prompt(study=study))
    second = factories.sample(prompt=factories.prompt(study=study))
    assert refused(
        lambda: Comparison.objects.create(study=study, prompt=first.prompt, sample_a=first, sample_b=second)
    )
    assert Comparison.objects.count() == 0


def test_comparison_moved_to_another_prompt_by_update_is_refused() -> None:
    comparison = factories.comparison()
    other_prompt = factories.prompt(study=comparison.study)
    assert refused(lambda: Comparison.objects.filter(id=comparison.id).update(prompt=other_prompt))
    comparison.refresh_from_db()
    assert comparison.prompt_id != other_prompt.id


def test_comparison_of_two_samples_of_its_prompt_is_accepted() -> None:
    comparison = factories.comparison()
    assert comparison.sample_a.prompt_id == comparison.sample_b.prompt_id == comparison.prompt_id


def test_gold_comparison_without_answer_is_refused() -> None:
    assert refused(lambda: factories.comparison(kind=ComparisonKind.GOLD))


def test_repeat_comparison_without_original_is_refused() -> None:
    assert refused(lambda: factories.comparison(kind=ComparisonKind.REPEAT))


def test_second_live_judgment_on_one_assignment_is_refused() -> None:
    assignment = factories.assignment()
    now = timezone.now()
    Judgment.objects.create(assignment=assignment, outcome=Outcome.A, idempotency_key="k1", submitted_at=now)
    assert refused(
        lambda: Judgment.objects.create(
            assignment=assignment, outcome=Outcome.B, idempotency_key="k2", submitted_at=now
        )
    )
    assert Judgment.objects.filter(assignment=assignment).count() == 1


def test_revoked_judgment_leaves_room_for_its_correction() -> None:
    assignment = factories.assignment()
    now = timezone.now()
    first = Judgment.objects.create(
        assignment=assignment,
        outcome=Outcome.A,
        idempotency_key="k1",
        submitted_at=now,
        revoked_at=now,
        revoked_reason="undo",
    )
    second = Judgment.objects.create(
        assignment=assignment, outcome=Outcome.B, idempotency_key="k2", submitted_at=now, replaces=first
    )
    assert list(Judgment.objects.filter(assignment=assignment, revoked_at__isnull=True)) == [second]


def test_judgment_strength_outside_one_to_three_is_refused() -> None:
    assignment = factories.assignment()
    assert refused(
        lambda: Judgment.objects.create(
            assignment=assignment,
            outcome=Outcome.A,
            strength=4,
            idempotency_key="k",
            submitted_at=timezone.now(),
        )
    )


def test_same_comparison_twice_for_one_rater_is_refused() -> None:
    assignment = factories.assignment()
    assert refused(lambda: factories.assignment(comparison=assignment.comparison, rater=assignment.rater))


def test_assignment_expiring_before_its_reservation_is_refused() -> None:
    now = timezone.now()
    assert refused(lambda: factories.assignment(reserved_at=now, expires_at=now - timedelta(seconds=1)))


def test_rater_without_identity_is_refused() -> None:
    study = factories.study()
    assert refused(lambda: Rater.objects.create(study=study))


def test_one_rater_row_per_user_and_study() -> None:
    rater = factories.rater()
    assert refused(lambda: Rater.objects.create(study=rater.study, user=rater.user))


def test_paused_rater_without_reason_is_refused() -> None:
    rater = factories.rater()
    assert refused(lambda: Rater.objects.filter(id=rater.id).update(status="paused"))


def test_duplicate_prompt_text_in_one_study_is_refused() -> None:
    prompt = factories.prompt(text="Write about the moon.")
    assert refused(lambda: Prompt.objects.create(study=prompt.study, text="  write about   the MOON. "))


def test_empty_prompt_is_refused() -> None:
    study = factories.study()
    assert refused(lambda: Prompt.objects.create(study=study, text=""))


def test_sample_with_same_version_prompt_and_seed_is_refused() -> None:
    sample = factories.sample(seed=7)
    assert refused(
        lambda: Sample.objects.create(prompt=sample.prompt, version=sample.version, text="other", seed=7)
    )


def test_imported_sample_with_same_text_is_refused() -> None:
    sample = factories.sample(text="same words")
    assert refused(
        lambda: Sample.objects.create(prompt=sample.prompt, version=sample.version, text="same words")
    )


def test_trained_version_without_lineage_is_refused() -> None:
    generator = factories.version(kind=VersionKind.BASE, model_path="/models/base").generator
    assert refused(
        lambda: GeneratorVersion.objects.create(
            generator=generator, label="child", kind=VersionKind.TRAINED, model_path="/models/child"
        )
    )


def test_external_version_with_weights_is_refused() -> None:
    assert refused(lambda: factories.version(kind=VersionKind.EXTERNAL, model_path="/models/x"))


def test_job_status_cannot_jump_from_queued_to_succeeded() -> None:
    job = Job.objects.create(kind="noop", queue="default")
    assert refused(
        lambda: Job.objects.filter(id=job.id).update(status=JobStatus.SUCCEEDED, finished_at=timezone.now())
    )
    job.refresh_from_db()
    assert job.status == JobStatus.QUEUED


def test_finished_job_cannot_be_revived() -> None:
    now = timezone.now()
    job = Job.objects.create(kind="noop", queue="default", status=JobStatus.QUEUED)
    Job.objects.filter(id=job.id).update(status=JobStatus.CANCELLED, finished_at=now)
    assert refused(lambda: Job.objects.filter(id=job.id).update(status=JobStatus.QUEUED, finished_at=None))
    assert refused(
        lambda: Job.objects.filter(id=job.id).update(
            status=JobStatus.RUNNING, finished_at=None, started_at=now
        )
    )


def test_failed_job_needs_an_error() -> None:
    now = timezone.now()
    job = Job.objects.create(kind="noop", queue="default", status=JobStatus.QUEUED)
    assert refused(lambda: Job.objects.filter(id=job.id).update(status=JobStatus.FAILED, finished_at=now))


def test_job_progress_beyond_total_is_refused() -> None:
    job = Job.objects.create(kind="noop", queue="default")
    assert refused(lambda: Job.objects.filter(id=job.id).update(progress_step=5, progress_total=3))


def test_running_job_without_started_at_is_refused() -> None:
    job = Job.objects.create(kind="noop", queue="default")
    assert refused(lambda: Job.objects.filter(id=job.id).update(status=JobStatus.RUNNING))


def test_tests_run_on_postgresql_when_configured() -> None:
    # CI sets DATABASE_URL to PostgreSQL; the constraints above must hold on the production database.
    import os

    if os.environ.get("DATABASE_URL", "").startswith("postgres"):
        assert connection.vendor == "postgresql"
    else:
        assert connection.vendor == "sqlite"
