"""``manage.py job start KIND [--study ID] [--params JSON]``, ``job status ID``, ``job cancel ID``."""

from __future__ import annotations

import json
import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from server.core.exceptions import ApplicationError
from server.core.untrusted_json import UntrustedJSONError, json_loads_untrusted
from server.jobs.models import Job
from server.jobs.services import job_cancel, job_enqueue


def _job_as_dict(job: Job) -> dict[str, Any]:
    return {
        "id": job.id,
        "kind": job.kind,
        "status": job.status,
        "progress_step": job.progress_step,
        "progress_total": job.progress_total,
        "progress_message": job.progress_message,
        "error": job.error,
        "result": job.result,
        "attempts": job.attempts,
        "worker": job.worker,
        "steps_per_second": job.steps_per_second,
        "eta_seconds": job.eta_seconds,
    }


FOLLOW_POLL_SECONDS = 1.0
BAR_WIDTH = 30


def progress_line(job: Job) -> str:
    """One terminal line: a bar, step / total, pace and time left, and the job's message."""
    fraction = 1.0 if job.status == "succeeded" else (job.progress_fraction or 0.0)
    filled = round(fraction * BAR_WIDTH)
    bar = "#" * filled + "-" * (BAR_WIDTH - filled)
    parts = [f"job {job.id} {job.kind} [{bar}] {fraction:6.1%}", job.status]
    if job.progress_total:
        parts.append(f"{job.progress_step}/{job.progress_total}")
    if job.steps_per_second:
        parts.append(f"{job.steps_per_second:.3g} steps/s")
    if job.eta_seconds is not None:
        minutes, seconds = divmod(round(job.eta_seconds), 60)
        parts.append(f"ETA {minutes}:{seconds:02d}")
    if job.progress_message:
        parts.append(job.progress_message)
    return " · ".join(parts)


class Command(BaseCommand):
    help = "Start, inspect or cancel a job."

    def add_arguments(self, parser: CommandParser) -> None:
        actions = parser.add_subparsers(dest="action", required=True)
        start = actions.add_parser("start", help="enqueue a job")
        start.add_argument("kind")
        start.add_argument("--study", type=int, default=None)
        start.add_argument("--params", default="{}", help="job parameters as a JSON object")
        status = actions.add_parser("status", help="print a job as JSON")
        status.add_argument("job_id", type=int)
        status.add_argument(
            "--follow", action="store_true", help="show a live progress bar until the job ends, then the JSON"
        )
        cancel = actions.add_parser("cancel", help="cancel a job")
        cancel.add_argument("job_id", type=int)

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            if options["action"] == "start":
                try:
                    params = json_loads_untrusted(options["params"])
                except UntrustedJSONError as error:
                    where = f"--params {error.path}" if error.path else "--params"
                    raise CommandError(f"{where} {error.message}.") from None
                if not isinstance(params, dict):
                    raise CommandError("--params must be a JSON object.")
                with transaction.atomic():
                    job = job_enqueue(kind=options["kind"], params=params, study_id=options["study"])
            elif options["action"] == "cancel":
                job = job_cancel(job_id=options["job_id"])
            else:
                job = Job.objects.filter(id=options["job_id"]).first()
                if job is None:
                    raise CommandError(f"There is no job {options['job_id']}.")
                if options.get("follow"):
                    job = self._follow(job)
        except ApplicationError as error:
            raise CommandError(error.message) from None
        self.stdout.write(json.dumps(_job_as_dict(job)))

    def _follow(self, job: Job) -> Job:
        """Redraw the progress line (on a terminal; one line per change otherwise) until the job
        has ended; Ctrl-C stops following, not the job."""
        on_terminal = self.stdout.isatty()
        shown = ""
        try:
            while True:
                line = progress_line(job)
                if line != shown:
                    if on_terminal:
                        self.stdout.write("\r\033[K" + line, ending="")
                        self.stdout.flush()
                    else:
                        self.stdout.write(line)
                    shown = line
                if job.is_finished:
                    break
                time.sleep(FOLLOW_POLL_SECONDS)
                job.refresh_from_db()
        except KeyboardInterrupt:
            pass
        if on_terminal:
            self.stdout.write("")
        return job
