"""Machine judges: registering, judging through a real endpoint server process (both orders), the
reward-model judge, agreement figures, and that nothing reaches people's statistics."""

from __future__ import annotations

from pathlib import Path

import pytest

from server.core.exceptions import ApplicationError, NotFound
from server.evaluations.leaderboard import counted_judgments
from server.jobs.models import Job
from server.judges.jobs import machine_judging_run, parse_answer
from server.judges.models import MachineJudge, MachineJudgment
from server.judges.selectors import machine_judges_overview
from server.judges.services import (
    judging_prompt_check,
    machine_judge_create,
    machine_judging_start,
)
from server.ratings.models import Judgment, Outcome
from server.training.snapshots import eligible_judgments
from tests import factories
from tests.openai_server import MODEL_NAME, SERVER_KEY, SERVER_KEY_ENV, OpenAITestServer
from workers.runner import run_job

pytestmark = pytest.mark.django_db

PROMPT = "Pair {prompt}\nText 1:\n{first}\nText 2:\n{second}\nWhich? Reply 1, 2 or tie."


def judged_study(pairs: int = 4):  # type: ignore[no-untyped-def]
    """Version "good" writes texts with the marker GOOD; people prefer it on every pair (two
    votes for, one against on the first pair)."""
    study = factories.study()
    good, plain = (
        factories.version(enrol_in=study, label="good"),
        factories.version(enrol_in=study, label="plain"),
    )
    comparisons = []
    for index in range(pairs):
        prompt = factories.prompt(study=study, text=f"Prompt {index}")
        comparison = factories.comparison(
            study=study,
            prompt=prompt,
            sample_a=factories.sample(
                prompt=prompt,
                version=good if index % 2 == 0 else plain,
                text=f"GOOD text {index}" if index % 2 == 0 else f"plain text {index}",
            ),
            sample_b=factories.sample(
                prompt=prompt,
                version=plain if index % 2 == 0 else good,
                text=f"plain text {index}" if index % 2 == 0 else f"GOOD text {index}",
            ),
        )
        good_side = Outcome.A if index % 2 == 0 else Outcome.B
        other = Outcome.B if good_side == Outcome.A else Outcome.A
        votes = [good_side, good_side, other] if index == 0 else [good_side, good_side]
        for vote in votes:
            factories.judgment(comparison=comparison, rater=factories.rater(study=study), outcome=vote)
        comparisons.append(comparison)
    return study, comparisons


@pytest.fixture(autouse=True)
def server_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """The test server's key in this process's environment (it runs the jobs, as a worker would)."""
    monkeypatch.setenv(SERVER_KEY_ENV, SERVER_KEY)


def endpoint_judge(study, server: OpenAITestServer, name: str = "scripted"):  # type: ignore[no-untyped-def]
    return machine_judge_create(
        study=study,
        name=name,
        kind="endpoint",
        endpoint={
            "base_url": server.base_url,
            "model": MODEL_NAME,
            "mode": "chat",
            "concurrency": 4,
            "api_key_env": SERVER_KEY_ENV,
        },
        judging_prompt=PROMPT,
    )


def run(judge: MachineJudge, scope: str = "judged_by_people") -> Job:
    job = machine_judging_start(judge=judge, scope=scope)
    run_job(job.id, machine_judging_run)
    job.refresh_from_db()
    return job


def test_a_judge_asked_in_both_orders_finds_the_better_text_wherever_it_stands(
    openai_server: OpenAITestServer, django_assert_num_queries
) -> None:
    study, comparisons = judged_study()
    # A scripted judge: it prefers the text with GOOD, wherever it is shown.
    openai_server.faults(
        {"prompt": "Text 1:\nGOOD", "answer": "text", "text": "1"},
        {"prompt": "Text 2:\nGOOD", "answer": "text", "text": "The second one: 2."},
    )
    judge = machine_judge_create(
        study=study,
        name="scripted",
        kind="endpoint",
        endpoint={
            "base_url": openai_server.base_url,
            "model": MODEL_NAME,
            "mode": "chat",
            "api_key_env": SERVER_KEY_ENV,
        },
        judging_prompt=PROMPT,
    )  # fmt: skip
    human_before = list(Judgment.objects.values_list("id", "outcome"))

    job = run(judge)

    assert job.status == "succeeded", job.error
    assert job.queue == "cpu"  # an endpoint judge waits on HTTP answers, no GPU needed
    assert job.result["judged"] == 4 and job.result["unusable"] == 0
    verdicts = {m.comparison_id: m for m in MachineJudgment.objects.filter(judge=judge)}
    for index, comparison in enumerate(comparisons):
        expected = "A" if index % 2 == 0 else "B"
        verdict = verdicts[comparison.id]
        assert (verdict.outcome, verdict.a_first, verdict.b_first) == (expected, expected, expected)
    asked = openai_server.received()
    assert len(asked) == 8  # each pair twice: A first, then B first
    # Nothing reached people's data: judgments, leaderboard counts, snapshots.
    assert list(Judgment.objects.values_list("id", "outcome")) == human_before
    assert counted_judgments(study=study, split=None).count() == 9
    assert eligible_judgments(study=study).count() == 9

    [row] = machine_judges_overview(study=study)
    assert row["verdicts"] == 4
    assert (row["with_majority"]["k"], row["with_majority"]["n"]) == (4, 4)
    # Pairs with two or more votes: all four (3 + 2 + 2 + 2 votes): the judge sides with 8 of 9
    # votes; raters agree on 1 + 1 + 1 + 1 of 3 + 1 + 1 + 1 vote pairs.
    assert (row["judge_vs_rater"]["k"], row["judge_vs_rater"]["n"]) == (8, 9)
    assert (row["rater_vs_rater"]["k"], row["rater_vs_rater"]["n"]) == (4, 6)
    assert 0 < row["with_majority"]["low"] < 1 == row["with_majority"]["high"]
    board = {entry["label"].split("/")[-1]: entry for entry in row["leaderboard"]}
    assert board["good"]["rank"] == 1 and board["plain"]["rank"] == 2
    # A second run asks for nothing: every pair is judged.
    openai_server.faults()
    assert run(judge).result["to_judge"] == 0 and openai_server.received() == []
    # Votes on a pair no judge saw change no figure (and are not read: still three queries).
    extra_prompt = factories.prompt(study=study, text="Prompt unjudged")
    unjudged = factories.comparison(study=study, prompt=extra_prompt)
    for vote in (Outcome.A, Outcome.B, Outcome.B):
        factories.judgment(comparison=unjudged, rater=factories.rater(study=study), outcome=vote)
    with django_assert_num_queries(3):
        [again] = machine_judges_overview(study=study)
    assert {key: again[key] for key in ("with_majority", "judge_vs_rater", "rater_vs_rater")} == {
        key: row[key] for key in ("with_majority", "judge_vs_rater", "rater_vs_rater")
    }


def test_a_judge_that_always_names_the_first_text_gets_ties_not_a_side(
    openai_server: OpenAITestServer,
) -> None:
    study, _ = judged_study(pairs=2)
    openai_server.faults({"prompt": "Which?", "answer": "text", "text": "1"})
    judge = endpoint_judge(study, openai_server)
    job = run(judge)
    assert job.status == "succeeded", job.error
    assert set(MachineJudgment.objects.filter(judge=judge).values_list("outcome", flat=True)) == {"tie"}
    [row] = machine_judges_overview(study=study)
    assert (row["with_majority"]["k"], row["ties"]["k"], row["ties"]["n"]) == (0, 2, 2)


def test_unusable_replies_and_failed_requests_are_counted_and_a_judge_with_no_verdict_fails(
    openai_server: OpenAITestServer,
) -> None:
    study, comparisons = judged_study(pairs=3)
    openai_server.faults(
        {"prompt": "Prompt 0", "answer": "text", "text": "I cannot decide."},
        {"prompt": "Prompt 1", "answer": "500"},
        {"prompt": "Which?", "answer": "text", "text": "tie"},
    )
    judge = endpoint_judge(study, openai_server)
    judge.endpoint = {**judge.endpoint, "max_retries": 0}
    judge.save()
    job = run(judge)
    assert job.status == "succeeded", job.error
    assert (job.result["judged"], job.result["unusable"], job.result["failed"]) == (1, 1, 1)
    assert MachineJudgment.objects.get(judge=judge).comparison_id == comparisons[2].id

    openai_server.faults({"prompt": "Which?", "answer": "text", "text": "no idea"})
    other = endpoint_judge(study, openai_server, name="clueless")
    failed = run(other)
    assert failed.status == "failed"
    assert "gave no usable verdict on 3 comparisons" in failed.error


def test_a_reward_model_judge_scores_each_text(tiny_model_allowed: Path, settings, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The study's reward model, trained on people's votes for the GOOD texts, judges the pairs."""
    from server.training.jobs import reward_model_train_run
    from server.training.services import reward_model_train_start
    from server.training.snapshots import snapshot_create

    settings.VAR_DIR = tmp_path
    study, _ = judged_study(pairs=8)
    snapshot = snapshot_create(study=study, validation_fraction=0.0)
    job = reward_model_train_start(
        study=study,
        snapshot_id=snapshot.id,
        config={
            "kind": "embedding_heads",
            "backbone_path": str(tiny_model_allowed),
            "ensemble_size": 2,
            "epochs": 30,
        },
    )
    assert run_job(job.id, reward_model_train_run) == "succeeded", Job.objects.get(id=job.id).error
    judge = machine_judge_create(study=study, name="rm", kind="reward_model")
    result = run(judge, scope="all")
    assert result.status == "succeeded", result.error
    assert result.queue == "gpu"  # a reward model scores on the GPU workers
    verdicts = list(MachineJudgment.objects.filter(judge=judge))
    assert len(verdicts) == 8
    assert all(v.score_a is not None and v.score_b is not None and v.a_first == "" for v in verdicts)
    for verdict in verdicts:
        assert verdict.outcome == ("A" if verdict.score_a > verdict.score_b else "B")


def test_registering_refuses_what_cannot_judge_in_plain_words(openai_server: OpenAITestServer) -> None:
    study, _ = judged_study(pairs=1)
    with pytest.raises(NotFound, match="no reward model yet"):
        machine_judge_create(study=study, name="rm", kind="reward_model")
    with pytest.raises(ApplicationError, match="base URL"):
        machine_judge_create(study=study, name="e", kind="endpoint", endpoint={"model": "m"})
    with pytest.raises(ApplicationError, match="must contain \\{second\\}"):
        judging_prompt_check("{prompt} {first}")
    with pytest.raises(ApplicationError, match="unknown placeholder \\{answer\\}"):
        judging_prompt_check("{prompt} {first} {second} {answer}")
    with pytest.raises(ApplicationError, match="not a valid template"):
        judging_prompt_check("{prompt} {first} {second} {")
    assert judging_prompt_check("{{json}} {prompt} {first} {second}")  # escaped braces are text
    endpoint_judge(study, openai_server, name="twice")
    with pytest.raises(ApplicationError, match="already has a judge named 'twice'"):
        endpoint_judge(study, openai_server, name="twice")
    with pytest.raises(ApplicationError, match="Unknown scope"):
        machine_judging_start(judge=MachineJudge.objects.get(name="twice"), scope="some")


def test_replies_are_read_for_the_first_1_2_or_tie() -> None:
    assert parse_answer("1") == "1"
    assert parse_answer("Text 2 is better") == "2"
    assert parse_answer("TIE.") == "tie"
    assert parse_answer("12 reasons") is None
    assert parse_answer("") is None


def test_staff_register_and_start_a_judge_from_the_study_page_and_see_its_agreement(
    openai_server: OpenAITestServer,
    settings,
    tmp_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    from django.test import Client

    settings.VAR_DIR = tmp_path
    study, _ = judged_study(pairs=2)
    staff = Client()
    staff.force_login(factories.user(is_staff=True))
    url = f"/dashboard/studies/{study.slug}/"
    page = staff.get(url).content.decode()
    assert 'id="machine-judges"' in page and "No machine judge yet" in page
    form = {
        "name": "gpt-judge",
        "kind": "endpoint",
        "endpoint": '{"base_url": "' + openai_server.base_url + '", "model": "' + MODEL_NAME + '", '
        '"mode": "chat", "api_key_env": "' + SERVER_KEY_ENV + '"}',
        "judging_prompt": PROMPT,
        "scope": "judged_by_people",
    }
    refused = staff.post(f"{url}actions/machine-judge/", {**form, "judging_prompt": "{prompt} only"})
    assert refused.status_code == 400 and "must contain {first}" in refused.content.decode()
    assert not MachineJudge.objects.exists()

    response = staff.post(f"{url}actions/machine-judge/", form)
    assert response.status_code == 303
    judge = MachineJudge.objects.get(name="gpt-judge")
    job = Job.objects.get(kind="machine_judge")
    assert job.params == {"judge_id": judge.id, "scope": "judged_by_people"}
    openai_server.faults({"prompt": "Text 1:\nGOOD", "answer": "text", "text": "1"},
                         {"prompt": "Text 2:\nGOOD", "answer": "text", "text": "2"})  # fmt: skip
    assert run_job(job.id, machine_judging_run) == "succeeded"
    page = staff.get(url).content.decode()
    assert f'data-judge-id="{judge.id}"' in page
    assert "100%" in page and "of 2</span>" in page  # with the majority: 2 of 2, with its interval
    # Starting the same judge again from its row queues a job that finds nothing left to judge.
    again = staff.post(f"{url}actions/machine-judge/", {"judge": judge.id, "scope": "judged_by_people"})
    assert again.status_code == 303, again.content.decode()[-3000:]
    assert Job.objects.filter(kind="machine_judge").count() == 2
