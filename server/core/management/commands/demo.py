"""``manage.py demo``: migrate, seed, then run web, worker and beat in the foreground.

Ctrl-C stops all of them; if one of them dies, the others are stopped too.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser

from server.core.demo import DEMO_ADMIN, DEMO_RATER, demo_check_allowed, demo_seed
from server.core.exceptions import ApplicationError
from server.generators.demo import demo_generation_start, demo_image_generation_start
from server.generators.services import corpus_import_local


class Command(BaseCommand):
    help = "Run the whole product on this machine: web, worker (every queue) and beat."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--port", type=int, default=int(os.environ.get("LOVELACE_DEMO_PORT", "8000")))
        parser.add_argument("--no-serve", action="store_true", help="seed only, start no process")
        parser.add_argument(
            "--corpus",
            type=Path,
            default=None,
            help="train the demo generator on this UTF-8 text instead of the shipped corpus "
            "(e.g. ../shared/data/tinyshakespeare.txt)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            demo_check_allowed()  # before migrating: a refused demo touches nothing
            call_command("migrate", verbosity=0, interactive=False)
            seed = demo_seed()
            # A file of the shell user's choosing: copied into var/ unless jobs may read it already.
            corpus = corpus_import_local(source=options["corpus"]) if options["corpus"] else None
            started = demo_generation_start(study=seed.study, corpus=corpus)
            started_images = demo_image_generation_start(study=seed.image_study)
        except ApplicationError as error:
            raise CommandError(error.message) from None
        if started:
            self.stdout.write(f"Started the demo pipeline: {started}.")
        if started_images:
            self.stdout.write(f"Started the image demo pipeline: {started_images}.")
        port = options["port"]
        base = f"http://127.0.0.1:{port}"
        self.stdout.write(
            self.style.SUCCESS("Lovelace is starting.")
            + f"\n  rating page : {base}/rate/{seed.study.slug}/  (rater: {DEMO_RATER[0]} / {DEMO_RATER[1]})"
            + f"\n  images      : {base}/rate/{seed.image_study.slug}/  (the same rater; images)"
            + f"\n  dashboard   : {base}/dashboard/  (staff: {DEMO_ADMIN[0]} / {DEMO_ADMIN[1]})"
            + f"\n  admin       : {base}/admin/"
            + f"\n  API schema  : {base}/api/schema/"
            + f"\n  data        : {settings.VAR_DIR}"
            + "\nPress Ctrl-C to stop web, worker and beat.\n"
        )
        if options["no_serve"]:
            return
        self._serve(port)

    def _serve(self, port: int) -> None:
        bin_dir = Path(sys.executable).parent
        root = Path(settings.BASE_DIR)
        beat_file = Path(settings.VAR_DIR) / "celerybeat-schedule"
        commands = {
            "web": [
                str(bin_dir / "gunicorn"),
                "server.config.wsgi:application",
                "--bind",
                f"127.0.0.1:{port}",
                "--workers",
                "2",
                "--access-logfile",
                "-",
            ],
            "worker": [
                str(bin_dir / "celery"),
                "-A",
                "workers.celery_app",
                "worker",
                "-Q",
                "gpu,cpu,default",
                "-c",
                "2",
                "-B",
                "--schedule",
                str(beat_file),
                "--loglevel=INFO",
                "--without-mingle",
                "--without-gossip",
            ],
        }
        processes = {
            name: subprocess.Popen(command, cwd=root, start_new_session=True)
            for name, command in commands.items()
        }
        stopping = False

        def stop_all(*_: object) -> None:
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, stop_all)
        signal.signal(signal.SIGTERM, stop_all)
        try:
            while not stopping:
                for name, process in processes.items():
                    if process.poll() is not None:
                        self.stderr.write(
                            f"{name} exited with status {process.returncode}; stopping the rest."
                        )
                        stopping = True
                time.sleep(0.5)
        finally:
            for process in processes.values():
                if process.poll() is None:
                    os.killpg(process.pid, signal.SIGTERM)
            for process in processes.values():
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
            self.stdout.write("Stopped.")
