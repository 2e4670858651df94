"""``manage.py job start KIND [--study ID] [--params JSON]``, ``job status ID``, ``job cancel ID``."""

from __future__ import annotations

import json
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
    }


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
        except ApplicationError as error:
            raise CommandError(error.message) from None
        self.stdout.write(json.dumps(_job_as_dict(job)))
