"""GET /metrics: who may read it, and the exact values it reports on a small world, from the real
database and the real broker, in a bounded number of queries."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from django.test import Client
from django.utils import timezone
from kombu import Connection

from server.core.prometheus import CONTENT_TYPE, render
from server.dashboard.metrics import (
    HEARTBEAT_JOBS_LIMIT,
    broker_queue_depths,
    heartbeat_families,
    job_families,
    metrics_collect,
)
from server.jobs.models import Job, JobKind, JobStatus
from server.ratings.models import Comparison, ComparisonKind, Judgment
from tests import factories

pytestmark = pytest.mark.django_db

TOKEN = "metrics-token-" + "x" * 30


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings) -> None:  # type: ignore[no-untyped-def]
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def metrics_token(settings) -> str:  # type: ignore[no-untyped-def]
    settings.LOVELACE_METRICS_TOKEN = TOKEN
    return TOKEN


def scrape(client: Client | None = None, **headers: str):  # type: ignore[no-untyped-def]
    return (client or Client()).get("/metrics", **headers)


def samples(text: str) -> dict[str, str]:
    """``{'name{labels}': 'value'}`` of every sample line."""
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    return dict(line.rsplit(" ", 1) for line in lines)


def family(text: str, name: str) -> dict[str, str]:
    return {key: value for key, value in samples(text).items() if key.split("{")[0] == name}


# --- who may read it -----------------------------------------------------------------------------


def test_an_anonymous_scrape_is_refused_with_401_and_no_data(metrics_token: str) -> None:
    response = scrape()

    assert response.status_code == 401
    assert response["WWW-Authenticate"] == 'Bearer realm="lovelace-metrics"'
    assert b"lovelace_" not in response.content


def test_a_signed_in_rater_is_refused_with_403_and_no_data(metrics_token: str) -> None:
    client = Client()
    client.force_login(factories.user())

    response = scrape(client)

    assert response.status_code == 403
    assert b"lovelace_" not in response.content


def test_a_staff_session_reads_the_metrics() -> None:
    client = Client()
    client.force_login(factories.user(is_staff=True))

    response = scrape(client)

    assert response.status_code == 200
    assert response["Content-Type"] == CONTENT_TYPE == "text/plain; version=0.0.4; charset=utf-8"
    assert "no-cache" in response["Cache-Control"]
    assert "# TYPE lovelace_judgments_total counter\n" in response.content.decode()


def test_the_bearer_token_reads_the_metrics_without_a_session(metrics_token: str) -> None:
    response = scrape(HTTP_AUTHORIZATION=f"Bearer {metrics_token}")

    assert response.status_code == 200
    assert "lovelace_broker_up 1\n" in response.content.decode()


@pytest.mark.parametrize(
    "header",
    [f"Bearer {TOKEN}x", f"Bearer {TOKEN[:-1]}", "Bearer ", "Bearer tökén", f"Basic {TOKEN}"],
)
def test_a_wrong_token_is_refused_with_401(metrics_token: str, header: str) -> None:
    response = scrape(HTTP_AUTHORIZATION=header)

    assert response.status_code == 401
    assert b"lovelace_" not in response.content


def test_a_wrong_token_is_refused_even_beside_a_staff_session(metrics_token: str) -> None:
    client = Client()
    client.force_login(factories.user(is_staff=True))

    assert scrape(client, HTTP_AUTHORIZATION="Bearer not-the-token").status_code == 401


def test_without_a_configured_token_no_bearer_token_is_accepted(settings) -> None:  # type: ignore[no-untyped-def]
    settings.LOVELACE_METRICS_TOKEN = ""

    assert scrape(HTTP_AUTHORIZATION="Bearer ").status_code == 401
    assert scrape(HTTP_AUTHORIZATION="Bearer anything").status_code == 401


def test_an_inactive_staff_account_is_refused(metrics_token: str) -> None:
    staff = factories.user(is_staff=True)
    client = Client()
    client.force_login(staff)
    staff.is_active = False
    staff.save()

    # The session no longer authenticates anyone: the request is anonymous.
    assert scrape(client).status_code == 401


def test_the_host_check_still_applies_to_the_metrics(metrics_token: str, settings) -> None:  # type: ignore[no-untyped-def]
    settings.ALLOWED_HOSTS = ["lovelace.example.org"]

    refused = scrape(HTTP_AUTHORIZATION=f"Bearer {metrics_token}", HTTP_HOST="attacker.example")
    allowed = scrape(HTTP_AUTHORIZATION=f"Bearer {metrics_token}", HTTP_HOST="lovelace.example.org")

    assert (refused.status_code, allowed.status_code) == (400, 200)


# --- what it reports -----------------------------------------------------------------------------


@dataclass
class World:
    now: datetime


def _comparison(study, *, active: int, kind: str = ComparisonKind.REGULAR) -> Comparison:  # type: ignore[no-untyped-def]
    made = factories.comparison(
        study=study, kind=kind, gold_answer="A" if kind == ComparisonKind.GOLD else ""
    )
    Comparison.objects.filter(id=made.id).update(active_assignments=active)
    return made


def _job(kind: str, status: str, *, seconds: float | None = None, **fields) -> Job:  # type: ignore[no-untyped-def]
    now = timezone.now()
    if status in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED):
        fields["finished_at"] = now
        if seconds is not None:
            fields["started_at"] = now - timedelta(seconds=seconds)
    if status == JobStatus.FAILED:
        fields["error"] = "out of memory"
    return Job.objects.create(kind=kind, status=status, queue="default", **fields)


@pytest.fixture
def world() -> World:
    now = timezone.now()
    alpha = factories.study(slug="alpha", overlap=2)
    beta = factories.study(slug="beta", overlap=1, is_active=False)

    # alpha: two regular pairs with room, one full, a gold pair (never counted as available).
    open_pair = _comparison(alpha, active=0)
    half_pair = _comparison(alpha, active=1)
    _comparison(alpha, active=2)
    _comparison(alpha, active=0, kind=ComparisonKind.GOLD)
    # beta has room too, but is not active.
    beta_pair = _comparison(beta, active=0)

    factories.judgment(comparison=open_pair)
    factories.judgment(comparison=half_pair)
    undone = factories.judgment(comparison=half_pair)
    Judgment.objects.filter(id=undone.id).update(revoked_at=now, revoked_reason="undo")
    factories.judgment(comparison=beta_pair)

    # Finished jobs with known durations (seconds): generate 0.5, 30, 4000 (failed); noop 1 and a
    # cancel before it ever started.
    _job("generate", JobStatus.SUCCEEDED, seconds=0.5)
    _job("generate", JobStatus.SUCCEEDED, seconds=30)
    _job("generate", JobStatus.FAILED, seconds=4000)
    _job("noop", JobStatus.SUCCEEDED, seconds=1)
    _job("noop", JobStatus.CANCELLED)
    # Waiting and running jobs.
    _job("export", JobStatus.QUEUED)
    _job("export", JobStatus.QUEUED)
    for kind, worker, age in (
        ("train_policy", "gpu@a", 42),
        ("select_pairs", "cpu@b", 5),
        ("snapshot", "cpu@b", 100),
    ):
        _job(
            kind,
            JobStatus.RUNNING,
            worker=worker,
            started_at=now - timedelta(hours=1),
            heartbeat_at=now - timedelta(seconds=age),
        )
    return World(now=now)


def test_judgments_and_available_pairs_per_study(world: World) -> None:
    text = scrape(staff_client()).content.decode()

    assert family(text, "lovelace_judgments_total") == {
        'lovelace_judgments_total{study="alpha"}': "3",
        'lovelace_judgments_total{study="beta"}': "1",
    }
    assert family(text, "lovelace_judgments_live") == {
        'lovelace_judgments_live{study="alpha"}': "2",
        'lovelace_judgments_live{study="beta"}': "1",
    }
    assert family(text, "lovelace_pairs_available") == {'lovelace_pairs_available{study="alpha"}': "2"}


def test_jobs_waiting_running_and_finished_by_kind(world: World) -> None:
    text = render(job_families())
    jobs = family(text, "lovelace_jobs")
    finished = family(text, "lovelace_jobs_finished_total")

    assert {key: value for key, value in jobs.items() if value != "0"} == {
        'lovelace_jobs{status="queued",kind="export"}': "2",
        'lovelace_jobs{status="running",kind="select_pairs"}': "1",
        'lovelace_jobs{status="running",kind="snapshot"}': "1",
        'lovelace_jobs{status="running",kind="train_policy"}': "1",
    }
    assert len(jobs) == 2 * len(JobKind.values)  # every kind, zeros included, so a series never vanishes
    assert {key: value for key, value in finished.items() if value != "0"} == {
        'lovelace_jobs_finished_total{kind="generate",status="succeeded"}': "2",
        'lovelace_jobs_finished_total{kind="generate",status="failed"}': "1",
        'lovelace_jobs_finished_total{kind="noop",status="succeeded"}': "1",
        'lovelace_jobs_finished_total{kind="noop",status="cancelled"}': "1",
    }
    assert len(finished) == 3 * len(JobKind.values)


def test_job_durations_fall_into_their_buckets(world: World) -> None:
    text = render(job_families())
    durations = samples(text)

    generate = [
        durations[f'lovelace_job_duration_seconds_bucket{{kind="generate",le="{le}"}}']
        for le in ("1", "10", "60", "300", "1800", "3600", "21600", "+Inf")
    ]
    noop = [
        durations[f'lovelace_job_duration_seconds_bucket{{kind="noop",le="{le}"}}']
        for le in ("1", "10", "60", "300", "1800", "3600", "21600", "+Inf")
    ]
    assert generate == ["1", "1", "2", "2", "2", "2", "3", "3"]
    assert float(durations['lovelace_job_duration_seconds_sum{kind="generate"}']) == pytest.approx(4030.5)
    assert durations['lovelace_job_duration_seconds_count{kind="generate"}'] == "3"
    # 1 s exactly is in the 1 s bucket (le = at most); the cancel that never started is left out.
    assert noop == ["1"] * 8
    assert durations['lovelace_job_duration_seconds_count{kind="noop"}'] == "1"
    assert durations['lovelace_job_duration_seconds_count{kind="export"}'] == "0"
    assert durations['lovelace_job_duration_seconds_sum{kind="export"}'] == "0"


def test_heartbeats_of_running_jobs_and_workers(world: World) -> None:
    scraped_at = world.now + timedelta(seconds=3)
    text = render(heartbeat_families(now=scraped_at))
    ids = dict(Job.objects.filter(status=JobStatus.RUNNING).values_list("kind", "id"))

    age = "lovelace_job_heartbeat_age_seconds"
    assert family(text, age) == {
        f'{age}{{job_id="{ids["snapshot"]}",kind="snapshot",worker="cpu@b"}}': "103",
        f'{age}{{job_id="{ids["train_policy"]}",kind="train_policy",worker="gpu@a"}}': "45",
        f'{age}{{job_id="{ids["select_pairs"]}",kind="select_pairs",worker="cpu@b"}}': "8",
    }
    assert family(text, "lovelace_worker_last_heartbeat_timestamp_seconds") == {
        'lovelace_worker_last_heartbeat_timestamp_seconds{worker="cpu@b"}': repr(
            (world.now - timedelta(seconds=5)).timestamp()
        ),
        'lovelace_worker_last_heartbeat_timestamp_seconds{worker="gpu@a"}': repr(
            (world.now - timedelta(seconds=42)).timestamp()
        ),
    }


def test_heartbeat_ages_are_bounded_and_keep_the_stalest_jobs() -> None:
    now = timezone.now()
    Job.objects.bulk_create(
        Job(
            kind="noop",
            status=JobStatus.RUNNING,
            queue="default",
            worker=f"w{i % 3}",
            started_at=now,
            heartbeat_at=now - timedelta(seconds=i),
        )
        for i in range(HEARTBEAT_JOBS_LIMIT + 20)
    )

    ages = family(render(heartbeat_families(now=now)), "lovelace_job_heartbeat_age_seconds")

    assert len(ages) == HEARTBEAT_JOBS_LIMIT
    assert sorted(int(value) for value in ages.values()) == list(range(20, HEARTBEAT_JOBS_LIMIT + 20))


def test_the_query_count_does_not_grow_with_the_data(world: World, django_assert_num_queries) -> None:  # type: ignore[no-untyped-def]
    client = staff_client()
    # A session, its user, and five statements for the metrics.
    with django_assert_num_queries(7):
        assert scrape(client).status_code == 200

    for number in range(15):
        more = factories.study(slug=f"more-{number}")
        factories.judgment(comparison=_comparison(more, active=0))
        _job("evaluate", JobStatus.SUCCEEDED, seconds=number * 100)
        _job(
            "noop",
            JobStatus.RUNNING,
            worker=f"w{number}",
            started_at=timezone.now(),
            heartbeat_at=timezone.now(),
        )

    with django_assert_num_queries(7):
        text = scrape(client).content.decode()
    assert len(family(text, "lovelace_judgments_total")) == 17
    assert len(family(text, "lovelace_worker_last_heartbeat_timestamp_seconds")) == 17


def staff_client() -> Client:
    client = Client()
    client.force_login(factories.user(is_staff=True))
    return client


# --- the broker ----------------------------------------------------------------------------------


def test_queue_depth_counts_the_tasks_waiting_in_the_real_broker() -> None:
    from workers.celery_app import app

    queue = f"metrics-test-{uuid.uuid4().hex}"
    try:
        with app.connection_for_read() as broker:
            assert broker_queue_depths(broker=broker, queues=[queue]) == {queue: 0}
        for number in range(3):
            app.send_task("lovelace.metrics-test", args=[number], queue=queue)
        with app.connection_for_read() as broker:
            # An empty queue first: Redis refuses a passive declare of it, and the next still counts.
            assert broker_queue_depths(broker=broker, queues=[f"{queue}-empty", queue]) == {
                f"{queue}-empty": 0,
                queue: 3,
            }
    finally:
        with app.connection_for_write() as broker:
            broker.default_channel.queue_purge(queue)
            broker.default_channel.queue_delete(queue)


def test_queue_depth_counts_the_messages_of_the_embedded_broker(tmp_path: Path) -> None:
    from workers import broker as embedded

    with Connection(
        f"{embedded.SCHEME}://", transport_options=embedded.transport_options(tmp_path)
    ) as connection:
        waiting = connection.SimpleQueue("gpu")
        for number in range(4):
            waiting.put({"n": number})
        connection.SimpleQueue("cpu").put({"n": 0})

        assert broker_queue_depths(broker=connection, queues=["gpu", "cpu", "default"]) == {
            "gpu": 4,
            "cpu": 1,
            "default": 0,
        }


def test_a_broker_that_does_not_answer_leaves_the_database_metrics_and_says_so(world: World) -> None:
    with Connection("redis://127.0.0.1:1/0") as down:
        text = render(metrics_collect(broker=down))

    assert family(text, "lovelace_broker_up") == {"lovelace_broker_up": "0"}
    assert family(text, "lovelace_queue_depth") == {}
    assert "# TYPE lovelace_queue_depth gauge\n" in text
    assert family(text, "lovelace_judgments_total")['lovelace_judgments_total{study="alpha"}'] == "3"


def test_the_endpoint_reports_each_queue_of_the_broker(metrics_token: str) -> None:
    text = scrape(HTTP_AUTHORIZATION=f"Bearer {metrics_token}").content.decode()

    assert set(family(text, "lovelace_queue_depth")) == {
        'lovelace_queue_depth{queue="gpu"}',
        'lovelace_queue_depth{queue="cpu"}',
        'lovelace_queue_depth{queue="default"}',
    }
    assert family(text, "lovelace_broker_up") == {"lovelace_broker_up": "1"}
