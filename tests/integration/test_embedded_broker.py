"""The embedded broker under load: several producer processes, two consuming workers, bad files.

kombu's own filesystem transport let a worker read a message file before it was fully written and
then stopped the worker; this drives the real Celery worker over the real folder broker.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from tests.integration.worker_process import ROOT, celery_worker, environment, wait_for

pytestmark = pytest.mark.integration

PRODUCERS = 4
MESSAGES_PER_PRODUCER = 1_250  # 5,000 in all

# Each producer sends real job tasks for job ids that do not exist: the worker's claim finds no
# queued row and the task returns 'skipped', so the run measures delivery, not job work.
PRODUCER = """
import os, sys
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "server.config.settings")
import django
django.setup()
from workers.celery_app import app
producer, count = int(sys.argv[1]), int(sys.argv[2])
for number in range(count):
    app.send_task(
        "lovelace.job.noop", args=[10_000_000 + number], queue="default",
        task_id=f"stress-{producer}-{number}",
    )
"""

SUCCEEDED = re.compile(r"Task lovelace\.job\.noop\[(stress-\d+-\d+)\] succeeded")


def test_producers_and_two_workers_deliver_every_message_once_despite_bad_files(tmp_path: Path) -> None:
    env = environment(LOVELACE_VAR_DIR=str(tmp_path / "var"))
    env.pop("DATABASE_URL", None)
    env.pop("CELERY_BROKER_URL", None)
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--verbosity", "0"],
        cwd=ROOT,
        env=env,
        check=True,
        timeout=120,
    )
    queue = tmp_path / "var" / "broker" / "queue"
    logs = [tmp_path / "worker-1.log", tmp_path / "worker-2.log"]
    # A higher prefetch than production's 1 keeps each worker busy instead of waiting a polling
    # interval per message; what is tested is that no message is lost, doubled or fatal.
    options = ["--prefetch-multiplier", "16"]
    with (
        celery_worker(env, queues="default", log_path=logs[0], extra=[*options, "-n", "one@%h"]) as one,
        celery_worker(env, queues="default", log_path=logs[1], extra=[*options, "-n", "two@%h"]) as two,
    ):
        producers = [
            subprocess.Popen(
                [sys.executable, "-c", PRODUCER, str(producer), str(MESSAGES_PER_PRODUCER)], cwd=ROOT, env=env
            )
            for producer in range(PRODUCERS)
        ]
        # Meanwhile, files no transport should ever leave, as a crashed writer or a foreign process
        # would: empty, truncated, not a message, a body that cannot be decoded.
        bad_files = {
            "00000000000000000001_a.default.msg": b"",
            "00000000000000000002_b.default.msg": b'{"body": "eyJ0YXNrIjogIm5vb3Ai", "prop',
            "00000000000000000003_c.default.msg": b"[1, 2, 3]",
            "00000000000000000004_d.default.msg": (
                b'{"body": "x", "properties": {"delivery_tag": "t", "body_encoding": "rot-99"}}'
            ),
        }
        wait_for(queue.is_dir, timeout=60, what="the broker folder", log_path=logs[0])
        for name, content in bad_files.items():
            (queue / name).write_bytes(content)
        for producer in producers:
            assert producer.wait(timeout=300) == 0

        def delivered() -> Counter[str]:
            return Counter(
                task for log in logs for task in SUCCEEDED.findall(log.read_text(errors="replace"))
            )

        def all_consumed() -> bool:
            assert one.poll() is None and two.poll() is None, (
                "a worker stopped:\n" + logs[0].read_text()[-3000:]
            )
            return sum(delivered().values()) >= PRODUCERS * MESSAGES_PER_PRODUCER

        wait_for(
            all_consumed,
            timeout=300,
            what="every message to be consumed",
            log_path=logs[0],
        )

    counts = delivered()
    expected = {f"stress-{p}-{n}" for p in range(PRODUCERS) for n in range(MESSAGES_PER_PRODUCER)}
    assert set(counts) == expected
    assert [task for task, count in counts.items() if count > 1] == []
    assert all(counts[task] == 1 for task in expected)
    both_worked = [sum(1 for _ in SUCCEEDED.finditer(log.read_text(errors="replace"))) for log in logs]
    assert min(both_worked) > 0, both_worked
    assert sorted(path.name for path in (tmp_path / "var" / "broker" / "malformed").iterdir()) == sorted(
        bad_files
    )
    assert list(queue.iterdir()) == []
    assert list((tmp_path / "var" / "broker" / "claimed").iterdir()) == []
    assert "Unrecoverable error" not in "".join(log.read_text(errors="replace") for log in logs)
