"""Load test of the rating hot path: concurrent raters voting over HTTP against gunicorn.

    .venv/bin/python -m bench.rating_load [--raters 12] [--seconds 20] [--workers 4] [--threads 1]
                                          [--no-baseline]

What it does:
1. drops and re-creates a PostgreSQL database (``lovelace_bench`` unless BENCH_DATABASE_URL says
   otherwise), migrates it and seeds one study: regular comparisons, a few gold ones, repeats on;
2. serves the app under gunicorn in production mode (DEBUG off) with the given workers / threads;
3. runs ``--raters`` simulated participants for ``--seconds``, each with its own session and a
   keep-alive connection: invite link, rating page, then votes as fast as answers come (no think
   time: this measures capacity, not a realistic crowd). About 1 % of the votes are sent twice
   with the same idempotency key, as a flaky network would. A request that fails (no connection,
   or a 5xx answer: the database restarting) is resent as it was, same idempotency key, with
   exponential backoff; only a 2xx answer counts as acknowledged. Two runs, each after a warm-up:
   the baseline asks "next pair" and sends "vote" as two requests; the second does what the
   rating page does, one vote request whose answer carries the next pair. The second run meets
   the tables the first one filled, which if anything slows it;
4. prints judgments/s, p50 / p99 latencies (of each request, and per judgment: what a rater waits
   between two votes) and CPU per judgment of each run, then reconciles
   the database with what the clients saw acknowledged: every acknowledged vote stored once,
   nothing stored that was not acknowledged, no comparison past its overlap, counters equal to
   the rows.

The simulated rater answers gold pairs right (it recognises the broken sample) and prefers the
sample whose text hashes higher, so it is consistent on repeats and unbiased on sides: quality
control runs as in production but pauses nobody.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import os
import re
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/lovelace_bench"
STUDY_SLUG = "bench"
BROKEN_MARK = "[broken]"
DUPLICATE_SHARE = 0.01  # votes resent with the same idempotency key
# A failed request is resent after 0.05 s, then 0.1, 0.2 ... up to 2 s between tries, for at most
# 30 s in all: long enough to ride out a database restart, short enough to end a run that is broken.
RETRY_FIRST_DELAY, RETRY_MAX_DELAY, RETRY_BUDGET = 0.05, 2.0, 30.0


# --- Database -------------------------------------------------------------------------------------


def recreate_database(url: str) -> None:
    import psycopg

    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    maintenance = parts._replace(path="/postgres").geturl()
    with psycopg.connect(maintenance, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        connection.execute(f'CREATE DATABASE "{name}"')


def setup_django(url: str, var_dir: Path) -> None:
    os.environ["DATABASE_URL"] = url
    os.environ["LOVELACE_VAR_DIR"] = str(var_dir)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "server.config.settings")
    os.environ.setdefault("DJANGO_DEBUG", "true")  # this process seeds; the server runs production mode
    os.environ.setdefault("LOVELACE_LOG_LEVEL", "WARNING")
    import django

    django.setup()


def seed(*, comparisons: int, golds: int) -> str:
    """One study with ``comparisons`` regular pairs and ``golds`` gold pairs; its invite token."""
    from server.generators.models import Generator, GeneratorVersion, Sample, VersionKind, sample_text_hash
    from server.ratings.models import Comparison, ComparisonKind
    from server.studies.models import Prompt, Study, StudyVersion, prompt_text_hash

    study = Study.objects.create(
        name="Bench",
        slug=STUDY_SLUG,
        question="Which piece is better?",
        overlap=3,
        gold_rate=0.05,
        repeat_rate=0.05,
        reservation_seconds=600,
        fast_judgment_seconds=1.0,
        # The bot picks sides at random: a fair coin is never paused for position bias at 95 %.
        max_position_bias=0.95,
        min_quality_judgments=20,
    )
    versions = []
    for name in ("alpha", "beta"):
        generator = Generator.objects.create(name=f"bench-{name}")
        versions.append(
            GeneratorVersion.objects.create(generator=generator, label="v1", kind=VersionKind.EXTERNAL)
        )
        StudyVersion.objects.create(study=study, version=versions[-1])
    texts = [
        f"Bench prompt {number}: write four lines about the number {number}." for number in range(comparisons)
    ]
    prompts = Prompt.objects.bulk_create(
        [Prompt(study=study, text=text, text_hash=prompt_text_hash(text)) for text in texts], batch_size=2000
    )
    sample_rows = []
    for prompt in prompts:
        for version in versions:
            text = (
                f"{version.generator.name} on {prompt.id}: " + "the sea turns over its coins of light. " * 6
            )
            sample_rows.append(
                Sample(prompt=prompt, version=version, text=text, text_hash=sample_text_hash(text))
            )
    samples = Sample.objects.bulk_create(sample_rows, batch_size=2000)
    pairs = [
        Comparison(study=study, prompt_id=a.prompt_id, sample_a=a, sample_b=b)
        for a, b in zip(samples[0::2], samples[1::2], strict=True)
    ]
    gold_prompts = prompts[:golds]
    broken = Sample.objects.bulk_create(
        [
            Sample(
                prompt=prompt,
                version=versions[1],
                text=f"{BROKEN_MARK} sea sea sea the the {prompt.id}",
                text_hash=sample_text_hash(f"{BROKEN_MARK} sea sea sea the the {prompt.id}"),
            )
            for prompt in gold_prompts
        ]
    )
    good = {sample.prompt_id: sample for sample in samples[0::2]}
    pairs += [
        Comparison(
            study=study,
            prompt_id=bad.prompt_id,
            sample_a=good[bad.prompt_id],
            sample_b=bad,
            kind=ComparisonKind.GOLD,
            gold_answer="A",
        )
        for bad in broken
    ]
    Comparison.objects.bulk_create(pairs, batch_size=2000)
    return study.invite_token


# --- Server ---------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def server_environment(url: str, var_dir: Path) -> dict[str, str]:
    return {
        **os.environ,
        "DATABASE_URL": url,
        "LOVELACE_VAR_DIR": str(var_dir),
        "DJANGO_DEBUG": "false",
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(64),
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
        "DJANGO_SECURE_SSL_REDIRECT": "false",
        "LOVELACE_LOG_LEVEL": "WARNING",
        "PYTHONPATH": str(ROOT),
        # Every simulated participant joins from 127.0.0.1 at once: no crowd entry limit applies.
        "LOVELACE_CROWD_JOINS_PER_ADDRESS": "1000000/hour",
        "LOVELACE_CROWD_JOINS_PER_LINK": "1000000/hour",
        "LOVELACE_CROWD_FIRST_PAIRS_PER_ADDRESS": "1000000/hour",
        "LOVELACE_CROWD_FIRST_PAIRS_PER_LINK": "1000000/hour",
    }


def start_gunicorn(env: dict[str, str], *, port: int, workers: int, threads: int) -> subprocess.Popen[bytes]:
    gunicorn = str(Path(sys.executable).with_name("gunicorn"))
    command = [
        gunicorn,
        "server.config.wsgi:application",
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        str(workers),
        "--threads",
        str(threads),
        "--worker-class",
        "gthread" if threads > 1 else "sync",
        "--keep-alive",
        "30",
        "--log-level",
        "warning",
    ]
    process = subprocess.Popen(command, cwd=ROOT, env=env, start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            connection.request("GET", "/healthz")
            if connection.getresponse().status == 200:
                return process
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise SystemExit("gunicorn did not answer within 60 s")


# --- CPU accounting ---------------------------------------------------------------------------------
# The machine is shared, so throughput alone says little: CPU seconds per judgment of the server,
# the database and the load generator give the capacity of two otherwise idle cores.

TICKS = os.sysconf("SC_CLK_TCK")


def process_cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


def gunicorn_pids(master: int) -> list[int]:
    try:
        children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    except OSError:
        children = []
    return [master, *map(int, children)]


_BACKEND_TITLE = re.compile(rb"^postgres: (?:\S+: )?\S+ (\S+) (?:\S+\(\d+\)|\[local\])")


def postgres_pids(database: str) -> list[int]:
    """The server processes of connections to ``database``, from their process titles (no query:
    the monitor must not add connections of its own to what it measures)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            title = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        match = _BACKEND_TITLE.match(title)
        if match and match.group(1).decode(errors="replace") == database:
            pids.append(int(entry.name))
    return pids


def autovacuum_is_off() -> bool:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SHOW autovacuum")
        return cursor.fetchone()[0] == "off"


def refresh_statistics() -> None:
    """What autovacuum does on a PostgreSQL with default settings (it analyses a table once a tenth
    of it changed). On a server with autovacuum off, the tables that start empty would keep
    "empty" statistics all run long, and the planner would pick plans for empty tables."""
    from django.db import connection

    if autovacuum_is_off():
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")


class CpuMonitor:
    """CPU seconds of the server's and the database's processes over a run, sampled every quarter
    second: processes that start during the run (a new database connection) count from zero, and
    those that end (a connection closed after CONN_MAX_AGE) keep what they used until then."""

    def __init__(self, master: int, database: str) -> None:
        self.master, self.database = master, database
        self.first: dict[tuple[str, int], float] = {}
        self.last: dict[tuple[str, int], float] = {}
        self.stopping = threading.Event()
        self._sample(initial=True)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _sample(self, *, initial: bool = False) -> None:
        for part, pids in (
            ("server", gunicorn_pids(self.master)),
            ("database", postgres_pids(self.database)),
        ):
            for pid in pids:
                used = process_cpu_seconds(pid)
                self.first.setdefault((part, pid), used if initial else 0.0)
                self.last[(part, pid)] = max(used, self.last.get((part, pid), 0.0))

    def _run(self) -> None:
        while not self.stopping.wait(0.25):
            self._sample()

    def stop(self) -> dict[str, float]:
        """CPU seconds used by each part since the monitor started."""
        self.stopping.set()
        self.thread.join()
        self._sample()
        used = {"server": 0.0, "database": 0.0}
        for (part, pid), last in self.last.items():
            used[part] += last - self.first[(part, pid)]
        return used


# --- Simulated raters -------------------------------------------------------------------------


@dataclass
class RaterStats:
    next_latencies: list[float] = field(default_factory=list)
    vote_latencies: list[float] = field(default_factory=list)
    # What the rater waits between two votes: "next pair" + "vote", or the one vote request.
    judgment_latencies: list[float] = field(default_factory=list)
    acknowledged: set[str] = field(default_factory=set)  # idempotency keys answered "saved"
    duplicates_sent: int = 0
    duplicates_answered_existing: int = 0
    errors: list[str] = field(default_factory=list)
    retries: int = 0  # requests resent after a connection error or a 5xx answer
    stopped: str = ""  # why the server stopped giving this rater pairs (paused, done, empty)


class Participant:
    def __init__(self, port: int, invite_token: str) -> None:
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        self.cookies: dict[str, str] = {}
        self.invite_token = invite_token
        self.retries = 0

    def request(self, method: str, path: str, body: dict | None = None) -> tuple[int, dict | None]:
        """Send until answered below 500: the same request each time (a vote keeps its idempotency
        key, so a vote that was stored but whose answer was lost comes back as the stored one).
        After RETRY_BUDGET seconds the last 5xx answer is returned, or the last error raised."""
        delay, give_up = RETRY_FIRST_DELAY, time.monotonic() + RETRY_BUDGET
        while True:
            failure: Exception | None = None
            try:
                status, data = self._send(method, path, body)
                if status < 500:
                    return status, data
            except (OSError, http.client.HTTPException) as error:
                self.connection.close()  # the next try opens a new connection
                status, data, failure = 0, None, error
            if time.monotonic() + delay > give_up:
                if failure is not None:
                    raise failure
                return status, data
            self.retries += 1
            time.sleep(delay)
            delay = min(delay * 2, RETRY_MAX_DELAY)

    def _send(self, method: str, path: str, body: dict | None) -> tuple[int, dict | None]:
        headers = {"Cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items())}
        payload = None
        if body is not None:
            payload = json.dumps(body).encode()
            headers.update(
                {"Content-Type": "application/json", "X-CSRFToken": self.cookies.get("csrftoken", "")}
            )
        self.connection.request(method, path, body=payload, headers=headers)
        response = self.connection.getresponse()
        data = response.read()
        for header in response.headers.get_all("Set-Cookie") or []:
            for name, morsel in SimpleCookie(header).items():
                self.cookies[name] = morsel.value
        if response.headers.get("Content-Type", "").startswith("application/json"):
            return response.status, json.loads(data)
        return response.status, None

    def join(self) -> None:
        status, _ = self.request("GET", f"/rate/{STUDY_SLUG}/join/{self.invite_token}/")
        assert status == 302, f"join answered {status}"
        status, _ = self.request("GET", f"/rate/{STUDY_SLUG}/")
        assert status == 200, f"rating page answered {status}"


def choose(pair: dict) -> str:
    left, right = pair["left"], pair["right"]
    if BROKEN_MARK in left:
        return "right"
    if BROKEN_MARK in right:
        return "left"
    left_hash = hashlib.sha256(left.encode()).digest()
    right_hash = hashlib.sha256(right.encode()).digest()
    if (left_hash[0] ^ right_hash[0]) % 10 == 0:
        return "tie"  # about one vote in ten, and the same for a pair whichever way round
    return "left" if left_hash > right_hash else "right"


def run_rater(
    port: int, invite_token: str, deadline: float, stats: RaterStats, seed: int, *, combined: bool
) -> None:
    """One participant voting until ``deadline``. ``combined``: each vote asks for the next pair in
    the same request (what the rating page does); otherwise "next" and "vote" are two requests."""
    import random

    rng = random.Random(seed)
    participant = Participant(port, invite_token)
    vote_path, next_path = f"/rate/{STUDY_SLUG}/api/vote", f"/rate/{STUDY_SLUG}/api/next"
    acknowledge_path = f"/rate/{STUDY_SLUG}/api/acknowledge"
    try:
        participant.join()
        answer: dict | None = None
        while time.monotonic() < deadline:
            waited = 0.0
            if answer is None:
                started = time.perf_counter()
                # "start": what the page sends once the person pressed Start.
                status, answer = participant.request("POST", next_path, {"start": True})
                if status == 200 and answer.get("status") == "guidelines":
                    # A new participant reads the guidelines and presses "I have read them" once.
                    status, answer = participant.request("POST", acknowledge_path, {})
                waited = time.perf_counter() - started
                stats.next_latencies.append(waited)
                if status != 200:
                    stats.errors.append(f"next: {status} {answer}")
                    return
            assert answer is not None
            if answer.get("status") in ("paused", "done", "empty"):
                stats.stopped = answer["status"]
                return
            if answer.get("status") != "pair":
                stats.errors.append(f"next: {answer}")
                return
            pair = answer["pair"]
            now_ms = int(time.time() * 1000)
            vote = {
                "token": pair["token"],
                "choice": choose(pair),
                "idempotency_key": str(uuid.uuid4()),
                "shown_at": now_ms - 8000,
                "first_input_at": now_ms - 3000,
                "sent_at": now_ms,
                "active_seconds": round(rng.uniform(3.0, 15.0), 2),
                "next": combined,
            }
            started = time.perf_counter()
            status, reply = participant.request("POST", vote_path, vote)
            stats.vote_latencies.append(time.perf_counter() - started)
            # The first pair came with the page; after that the rater waits for the vote's answer
            # and, in the baseline, for the next pair too.
            first = len(stats.vote_latencies) == 1
            stats.judgment_latencies.append(stats.vote_latencies[-1] + (0.0 if first else waited))
            answer = None
            if status != 200 or reply is None or reply.get("status") != "saved":
                stats.errors.append(f"vote: {status} {reply}")
                continue
            stats.acknowledged.add(reply["key"])
            if combined:
                answer = reply.get("next")
                if answer is None:
                    stats.errors.append(f"vote without its next pair: {reply}")
                    return
                if answer.get("status") == "error":
                    # The vote is stored but its next pair failed (the database went away in
                    # between): ask api/next, as the rating page does.
                    stats.retries += 1
                    answer = None
            if rng.random() < DUPLICATE_SHARE:
                stats.duplicates_sent += 1
                status, again = participant.request("POST", vote_path, vote)
                if (
                    status == 200
                    and again
                    and again.get("created") is False
                    and again["key"] == vote["idempotency_key"]
                    # The resent vote's next pair is the reservation the first answer made
                    # (unless either answer could not load it).
                    and (
                        not combined
                        or again.get("next") == answer
                        or answer is None
                        or again.get("next", {}).get("status") == "error"
                    )
                ):
                    stats.duplicates_answered_existing += 1
                else:
                    stats.errors.append(f"duplicate: {status} {again}")
    except Exception as error:  # reported with the figures; one broken client must not hide the rest
        stats.errors.append(f"{type(error).__name__}: {error}")
    finally:
        stats.retries += participant.retries
        participant.connection.close()


def percentile(values: list[float], share: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


# --- Reconciliation -------------------------------------------------------------------------------


def reconcile(acknowledged: set[str]) -> list[str]:
    from django.db.models import Count, Q

    from server.ratings.models import Assignment, AssignmentStatus, Comparison, Judgment

    problems = []
    stored = set(Judgment.objects.values_list("idempotency_key", flat=True))
    if Judgment.objects.count() != len(stored):
        problems.append("duplicate idempotency keys stored")
    if stored - acknowledged:
        problems.append(f"{len(stored - acknowledged)} judgments stored but never acknowledged")
    if acknowledged - stored:
        problems.append(f"{len(acknowledged - stored)} acknowledged votes lost")
    doubled = (
        Judgment.objects.filter(revoked_at__isnull=True)
        .values("assignment")
        .annotate(n=Count("id"))
        .filter(n__gt=1)
        .count()
    )
    if doubled:
        problems.append(f"{doubled} assignments with more than one live judgment")
    live = Q(assignments__status__in=[AssignmentStatus.RESERVED, AssignmentStatus.COMPLETED])
    done = Q(assignments__status=AssignmentStatus.COMPLETED)
    rows = Comparison.objects.annotate(
        live=Count("assignments", filter=live), done=Count("assignments", filter=done)
    )
    for comparison in rows.select_related("study"):
        if comparison.kind == "regular" and comparison.live > comparison.study.overlap:
            problems.append(f"comparison {comparison.id} has {comparison.live} live assignments")
        if (comparison.active_assignments, comparison.completed_assignments) != (
            comparison.live,
            comparison.done,
        ):
            problems.append(f"comparison {comparison.id} counters disagree with its rows")
    completed = Assignment.objects.filter(status=AssignmentStatus.COMPLETED).count()
    if completed != len(stored):
        problems.append(f"{completed} completed assignments for {len(stored)} judgments")
    return problems


# --- Runs -------------------------------------------------------------------------------------------


@dataclass
class Run:
    name: str
    stats: list[RaterStats]
    warm: list[RaterStats]
    elapsed: float
    cpu: dict[str, float]  # CPU milliseconds per judgment: server, database, load generator


def run_raters(
    port: int, invite_token: str, *, raters: int, seconds: float, combined: bool, seed: int
) -> list[RaterStats]:
    stats = [RaterStats() for _ in range(raters)]
    deadline = time.monotonic() + seconds
    threads = [
        threading.Thread(
            target=run_rater,
            args=(port, invite_token, deadline, stats[n], seed + n),
            kwargs={"combined": combined},
        )
        for n in range(raters)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return stats


def measure(
    name: str,
    *,
    port: int,
    master: int,
    database: str,
    invite_token: str,
    arguments: argparse.Namespace,
    combined: bool,
    seed: int,
) -> Run:
    """A warm-up with its own participants, then ``--seconds`` of load with new ones."""
    warm = []
    if arguments.warmup > 0:
        warm = run_raters(
            port,
            invite_token,
            raters=arguments.raters,
            seconds=arguments.warmup,
            combined=combined,
            seed=seed + 10_000,
        )
    refresh_statistics()
    monitor, cpu_before = CpuMonitor(master, database), os.times()
    begin = time.monotonic()
    stats = run_raters(
        port, invite_token, raters=arguments.raters, seconds=arguments.seconds, combined=combined, seed=seed
    )
    elapsed = time.monotonic() - begin
    cpu_after, used = os.times(), monitor.stop()
    votes = max(sum(len(rater.acknowledged) for rater in stats), 1)
    client = (cpu_after.user - cpu_before.user) + (cpu_after.system - cpu_before.system)
    cpu = {
        "server": used["server"] / votes * 1000,
        "database": used["database"] / votes * 1000,
        "load generator": client / votes * 1000,
    }
    return Run(name=name, stats=stats, warm=warm, elapsed=elapsed, cpu=cpu)


def report(run: Run) -> None:
    stats = run.stats
    votes = sum(len(rater.acknowledged) for rater in stats)
    print(f"\n{run.name}")
    print(f"  judgments/s        {votes / run.elapsed:8.1f}   ({votes} acknowledged in {run.elapsed:.1f} s)")
    for label, latencies in (
        ("next pair alone", [value for rater in stats for value in rater.next_latencies]),
        ("vote", [value for rater in stats for value in rater.vote_latencies]),
        ("per judgment", [value for rater in stats for value in rater.judgment_latencies]),
    ):
        if not latencies:
            continue
        p50, p99 = percentile(latencies, 0.5) * 1000, percentile(latencies, 0.99) * 1000
        print(
            f"  {label:<18} p50 {p50:6.1f} ms   p99 {p99:6.1f} ms"
            f"   mean {statistics.fmean(latencies) * 1000:6.1f} ms   ({len(latencies)} "
            + ("judgments)" if label == "per judgment" else "requests)")
        )
    print(
        "  CPU per judgment   "
        + ", ".join(f"{name} {milliseconds:.1f} ms" for name, milliseconds in run.cpu.items())
        + f"  (machine load average {os.getloadavg()[0]:.1f})"
    )
    total = run.cpu["server"] + run.cpu["database"]
    cores = os.cpu_count() or 1
    with_client = cores * 1000 / (total + run.cpu["load generator"])
    print(
        f"  capacity estimate  {cores * 1000 / total:8.0f} judgments/s on {cores} idle cores for server + "
        f"database ({with_client:.0f} with this load generator beside them)"
    )
    duplicates = sum(rater.duplicates_sent for rater in stats)
    answered = sum(rater.duplicates_answered_existing for rater in stats)
    print(f"  resent votes       {duplicates:8d}   answered with the stored judgment: {answered}")
    retries = sum(rater.retries for rater in stats + run.warm)
    if retries:
        print(f"  retried requests   {retries:8d}   (after a connection error or a 5xx answer)")
    errors = [error for rater in stats + run.warm for error in rater.errors]
    print(f"  client errors      {len(errors):8d}" + (f"   first: {errors[0]}" if errors else ""))
    stopped = [rater.stopped for rater in stats if rater.stopped]
    if stopped:
        print(f"  raters stopped     {len(stopped):8d}   ({', '.join(sorted(set(stopped)))})")


# --- Main -------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--raters", type=int, default=12, help="concurrent raters, no think time")
    parser.add_argument("--seconds", type=float, default=20.0, help="measured seconds of each run")
    # docker-compose.yml's web service: 4 synchronous workers. Threaded workers pin each keep-alive
    # connection to one process, so raters queue unevenly (p99 near 130 ms at 2 x 4 or 3 x 2, 12
    # raters); synchronous workers take requests from one shared queue.
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--comparisons", type=int, default=8000)
    parser.add_argument("--golds", type=int, default=60)
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds of load before measuring")
    parser.add_argument(
        "--no-baseline",
        action="store_true",
        help="skip the baseline run (next pair and vote as two requests)",
    )
    arguments = parser.parse_args()

    url = os.environ.get("BENCH_DATABASE_URL", DEFAULT_DATABASE_URL)
    var_dir = Path(tempfile.mkdtemp(prefix="lovelace-bench-"))
    started = time.monotonic()
    recreate_database(url)
    setup_django(url, var_dir)
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    invite_token = seed(comparisons=arguments.comparisons, golds=arguments.golds)
    env = server_environment(url, var_dir)
    subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "-v", "0"], cwd=ROOT, env=env, check=True
    )
    seconds = time.monotonic() - started
    print(f"database ready: {arguments.comparisons} comparisons + {arguments.golds} gold ({seconds:.0f} s)")
    print(
        f"{arguments.raters} raters, no think time, {arguments.seconds:.0f} s a run, gunicorn "
        f"{arguments.workers} workers x {arguments.threads} threads, {os.cpu_count()} CPUs"
    )

    if autovacuum_is_off():
        print("autovacuum is off on this PostgreSQL: each run analyses the tables after its warm-up")
    port = free_port()
    database = urlsplit(url).path.lstrip("/")
    server = start_gunicorn(env, port=port, workers=arguments.workers, threads=arguments.threads)
    runs = []
    try:
        common = {"port": port, "master": server.pid, "database": database, "invite_token": invite_token}
        if not arguments.no_baseline:
            runs.append(
                measure(
                    "baseline: next pair and vote as two requests",
                    **common,
                    arguments=arguments,
                    combined=False,
                    seed=0,
                )
            )
        runs.append(
            measure(
                "rating page: each vote answered with the next pair (one request per judgment)",
                **common,
                arguments=arguments,
                combined=True,
                seed=1000,
            )
        )
    finally:
        server.terminate()
        server.wait(timeout=30)
    for run in runs:
        report(run)
    if len(runs) == 2:
        rates = [sum(len(rater.acknowledged) for rater in run.stats) / run.elapsed for run in runs]
        print(f"\none request per judgment: {rates[1] / rates[0]:.2f}x the baseline's judgments/s")

    everyone = [rater for run in runs for rater in run.stats + run.warm]
    acknowledged = set().union(*(rater.acknowledged for rater in everyone))
    from django.db import connection

    # A fresh connection: the one this process opened to seed is broken if the database server
    # restarted during the runs (tests/integration/test_faults_database.py does that).
    connection.close()
    problems = reconcile(acknowledged)
    from server.ratings.models import Judgment, Rater

    print(
        f"\nreconciliation     {Judgment.objects.count()} judgments stored, {len(acknowledged)} acknowledged "
        f"(warm-ups included); paused raters: {Rater.objects.filter(status='paused').count()}"
    )
    print(
        "                   "
        + ("OK: nothing lost, nothing duplicated" if not problems else "; ".join(problems[:5]))
    )
    shutil.rmtree(var_dir, ignore_errors=True)
    if problems or any(rater.errors for rater in everyone):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
