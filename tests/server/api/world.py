"""A small, complete world for API, dashboard and browser tests: two studies, their raters, staff,
samples, comparisons, judgments spread over two days, a leaderboard, a snapshot, a reward model,
an evaluation with a novelty–value scatter, jobs (one running with a loss curve) and a finished
export with its file on disk."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.utils import timezone

from server.evaluations.models import Evaluation, LeaderboardSnapshot
from server.generators.models import GeneratorVersion, Sample, VersionKind
from server.jobs.models import Job, JobKind, JobStatus
from server.judges.models import MachineJudge
from server.ratings.models import Assignment, AssignmentStatus, Comparison, Judgment, Rater, RaterStatus
from server.studies.models import Study
from server.training.exports import export_dir
from server.training.models import PreferenceSnapshot, RewardModel
from server.training.snapshots import snapshot_create
from tests import factories

HOSTILE = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2">'


@dataclass
class World:
    staff: object
    rater_a_user: object
    rater_b_user: object
    study_a: Study
    study_b: Study
    rater_a: Rater
    rater_b: Rater
    paused_rater: Rater
    versions: list[GeneratorVersion]
    base_version: GeneratorVersion
    open_assignment: Assignment
    recent_judgment: Judgment
    leaderboard: LeaderboardSnapshot
    snapshot: PreferenceSnapshot
    reward_model: RewardModel
    evaluation: Evaluation
    running_job: Job
    export_job: Job
    machine_judge: MachineJudge


def _judge(
    *, comparison: Comparison, rater: Rater, outcome: str, when, key: str, left_is_a: bool = True
) -> Judgment:
    assignment = Assignment.objects.create(
        comparison=comparison,
        rater=rater,
        left_is_a=left_is_a,
        status=AssignmentStatus.COMPLETED,
        reserved_at=when - timedelta(seconds=30),
        expires_at=when + timedelta(minutes=10),
    )
    Comparison.objects.filter(id=comparison.id).update(
        active_assignments=comparison.active_assignments + 1,
        completed_assignments=comparison.completed_assignments + 1,
    )
    comparison.refresh_from_db()
    chose_left = {"A": left_is_a, "B": not left_is_a}.get(outcome)
    return Judgment.objects.create(
        assignment=assignment,
        outcome=outcome,
        chose_left=chose_left,
        idempotency_key=key,
        submitted_at=when,
        active_seconds=12.5,
    )


def build_world(*, hostile_text: bool = False) -> World:
    """``hostile_text`` puts markup into every generated string, to prove it comes out escaped."""
    now = timezone.now()
    mark = HOSTILE if hostile_text else ""
    staff = factories.user(username="operator", is_staff=True, password="operator-password-1")
    rater_a_user = factories.user(username="rater-a", password="rater-a-password-1")
    rater_b_user = factories.user(username="rater-b", password="rater-b-password-1")
    study_a = factories.study(name=f"Poems {mark}", slug="poems", question=f"Which poem is better? {mark}")
    study_b = factories.study(name="Stories", slug="stories", question="Which story is better?")

    train_prompts = [
        factories.prompt(study=study_a, text=f"Prompt {i} about the sea {mark}") for i in range(4)
    ]
    holdout = factories.prompt(study=study_a, text=f"A holdout prompt {mark}", split="holdout")
    versions = [
        factories.version(enrol_in=study_a, label=f"external-{i}{mark}", kind=VersionKind.EXTERNAL)
        for i in range(3)
    ]
    # Jobs may load models only from the allowed folders (server.core.paths): the var folder here.
    model_dir = Path(settings.VAR_DIR) / "models" / "tiny"
    model_dir.mkdir(parents=True, exist_ok=True)
    base_version = factories.version(
        enrol_in=study_a, label="tiny-base", kind=VersionKind.BASE, model_path=str(model_dir)
    )
    samples = {
        (version.id, prompt.id): Sample.objects.create(
            prompt=prompt, version=version, text=f"{version.label} writes on {prompt.id} {mark}"
        )
        for version in versions
        for prompt in [*train_prompts, holdout]
    }

    rater_a = factories.rater(study=study_a, user=rater_a_user)
    rater_b = factories.rater(study=study_b, user=rater_b_user)
    paused_rater = factories.rater(
        study=study_a,
        user=factories.user(username="paused-one"),
        status=RaterStatus.PAUSED,
        paused_reason="Gold accuracy 1 of 4.",
        paused_at=now,
    )
    helper = factories.rater(study=study_a, user=factories.user(username="helper"))
    rater_a.quality = {
        "judgments": 9,
        "gold_checks": 2,
        "gold_accuracy": 1.0,
        "majority_comparisons": 5,
        "majority_agreement": 0.8,
        "decisive_judgments": 9,
        "left_rate": 0.56,
        "position_bias": 0.56,
        "repeat_pairs": 1,
        "self_consistency": 1.0,
        "median_active_seconds": 12.5,
    }
    rater_a.save(update_fields=["quality"])

    comparisons = []
    for prompt in train_prompts:
        for first, second in [(0, 1), (1, 2), (0, 2)]:
            comparisons.append(
                Comparison.objects.create(
                    study=study_a,
                    prompt=prompt,
                    sample_a=samples[(versions[first].id, prompt.id)],
                    sample_b=samples[(versions[second].id, prompt.id)],
                )
            )
    # Judgments over the last two days, the better version winning most of the time.
    count = 0
    for index, comparison in enumerate(comparisons[:-1]):
        for rater in (rater_a, helper):
            count += 1
            when = now - timedelta(hours=40) + timedelta(hours=3.3 * index + (0.5 if rater is helper else 0))
            outcome = "A" if (index + count) % 4 else "B"
            _judge(comparison=comparison, rater=rater, outcome=outcome, when=when, key=f"world-{count}")
    recent_judgment = _judge(
        comparison=comparisons[-1],
        rater=rater_a,
        outcome="B",
        when=now - timedelta(seconds=2),
        key="world-recent",
    )
    open_comparison = Comparison.objects.create(
        study=study_a,
        prompt=holdout,
        sample_a=samples[(versions[0].id, holdout.id)],
        sample_b=samples[(versions[1].id, holdout.id)],
        active_assignments=1,
    )
    open_assignment = Assignment.objects.create(
        comparison=open_comparison,
        rater=rater_a,
        left_is_a=False,
        reserved_at=now,
        expires_at=now + timedelta(minutes=10),
    )
    # Study B has a pair for its own rater, so cross-study access has something to find.
    other_prompt = factories.prompt(study=study_b, text="A story prompt")
    factories.comparison(study=study_b, prompt=other_prompt)

    labels = [str(version) for version in versions]
    leaderboard = LeaderboardSnapshot.objects.create(
        study=study_a,
        judgment_count=count,
        params={"rounds": 200, "seed": 0, "split": "all", "last_judgment_id": recent_judgment.id},
        rows=[
            {
                "version_id": versions[0].id,
                "label": labels[0],
                "rating": 1043.2,
                "lower": 1001.5,
                "upper": 1090.7,
                "rank": 1,
                "battles": 16,
                "win_rate": 0.6875,
                "win_rate_lower": 0.4441,
                "win_rate_upper": 0.8584,
            },
            {
                "version_id": versions[1].id,
                "label": labels[1],
                "rating": 998.4,
                "lower": 950.2,
                "upper": 1046.9,
                "rank": 1,
                "battles": 16,
                "win_rate": 0.5,
                "win_rate_lower": 0.28,
                "win_rate_upper": 0.72,
            },
            {
                "version_id": versions[2].id,
                "label": labels[2],
                "rating": 958.4,
                "lower": 905.0,
                "upper": 1004.1,
                "rank": 2,
                "battles": 14,
                "win_rate": 0.2857,
                "win_rate_lower": 0.1172,
                "win_rate_upper": 0.5465,
            },
        ],
        matrices={
            "version_ids": [version.id for version in versions],
            "labels": labels,
            "win_rate": [[None, 0.625, 0.75], [0.375, None, 0.625], [0.25, 0.375, None]],
            "battles": [[0, 8, 8], [8, 0, 8], [8, 6, 0]],
        },
    )
    snapshot = snapshot_create(study=study_a, validation_fraction=0.0)
    reward_model_dir = Path(settings.VAR_DIR) / "reward_models" / "rm-1"
    reward_model_dir.mkdir(parents=True, exist_ok=True)
    reward_model = RewardModel.objects.create(
        study=study_a,
        snapshot=snapshot,
        backbone=str(model_dir),
        ensemble_size=3,
        path=str(reward_model_dir),
        validation_accuracy=0.68,
        human_agreement_ceiling=0.74,
        expected_calibration_error=0.041,
    )
    evaluated = Sample.objects.filter(version=versions[0]).order_by("id")
    # The first two samples are the Pareto front; the other three are dominated by the second.
    coordinates = [(0.2, 0.9), (0.35, 0.65), (0.3, 0.3), (0.25, 0.05), (0.15, -0.3)]
    points = [
        {"sample_id": sample.id, "novelty": novelty, "value": value}
        for sample, (novelty, value) in zip(evaluated, coordinates, strict=True)
    ]
    evaluation = Evaluation.objects.create(
        study=study_a,
        version=versions[0],
        protocol={"split": "holdout", "samples_per_prompt": 1, "note": mark},
        metrics={
            "novelty_4gram": {"mean": 0.5, "lower": 0.41, "upper": 0.6, "count": 5},
            "distinct_2": {"mean": 0.83},
            "self_bleu": {"mean": 0.12, "lower": 0.08, "upper": 0.15, "count": 5},
            "novelty_curve": {
                "n": list(range(1, 9)),
                "mean": [0.05, 0.2, 0.38, 0.5, 0.61, 0.7, 0.76, 0.8],
                "lower": [0.03, 0.15, 0.3, 0.41, 0.52, 0.6, 0.66, 0.71],
                "upper": [0.07, 0.25, 0.45, 0.6, 0.7, 0.78, 0.84, 0.88],
            },
            "points": points,
            "pareto_sample_ids": [point["sample_id"] for point in points[:2]],
        },
    )
    running_job = Job.objects.create(
        kind=JobKind.TRAIN_REWARD_MODEL,
        status=JobStatus.RUNNING,
        study=study_a,
        queue="gpu",
        started_at=now - timedelta(minutes=3),
        heartbeat_at=now,
        progress_step=40,
        progress_total=100,
        progress_message=f"epoch 1 of 3 {mark}",
        metrics=[
            {"step": step, "time": now.isoformat(), "loss": round(0.7 - 0.004 * step, 4)}
            for step in range(0, 41, 4)
        ],
    )
    Job.objects.create(
        kind=JobKind.GENERATE,
        status=JobStatus.FAILED,
        study=study_a,
        queue="gpu",
        error=f"CUDA out of memory {mark}",
        started_at=now - timedelta(hours=1),
        finished_at=now - timedelta(minutes=50),
    )
    export_job = Job.objects.create(
        kind=JobKind.EXPORT,
        status=JobStatus.SUCCEEDED,
        study=study_a,
        queue="cpu",
        params={"kind": "leaderboard", "snapshot_id": None},
        started_at=now - timedelta(minutes=5),
        finished_at=now - timedelta(minutes=4),
    )
    folder = export_dir(export_job.id)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "leaderboard.csv").write_text("rank,version_id,label\n1,1,a\n", encoding="utf-8")
    export_job.result = {
        "kind": "leaderboard",
        "files": {"leaderboard.csv": str(Path(folder) / "leaderboard.csv")},
    }
    export_job.save(update_fields=["result"])
    machine_judge = MachineJudge.objects.create(
        study=study_a,
        name="endpoint-judge",
        kind="endpoint",
        endpoint={"base_url": "http://127.0.0.1:9/v1", "model": "judge", "mode": "chat"},
        judging_prompt="{prompt}\n1: {first}\n2: {second}\nReply 1, 2 or tie.",
    )

    return World(
        staff=staff,
        rater_a_user=rater_a_user,
        rater_b_user=rater_b_user,
        study_a=study_a,
        study_b=study_b,
        rater_a=rater_a,
        rater_b=rater_b,
        paused_rater=paused_rater,
        versions=versions,
        base_version=base_version,
        open_assignment=open_assignment,
        recent_judgment=recent_judgment,
        leaderboard=leaderboard,
        snapshot=snapshot,
        reward_model=reward_model,
        evaluation=evaluation,
        running_job=running_job,
        export_job=export_job,
        machine_judge=machine_judge,
    )
