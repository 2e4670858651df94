"""``manage.py build_base_model --corpus FILE --generator NAME [--label L] [--size demo|tiny]``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from server.core.exceptions import ApplicationError
from server.generators.services import base_model_build_start, corpus_import_local
from server.studies.models import Study


class Command(BaseCommand):
    help = "Start a job that trains a small GPT-2 and its BPE tokenizer on a text corpus."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--corpus", type=Path, required=True, help="UTF-8 text, pieces separated by blank lines"
        )
        parser.add_argument("--generator", required=True, help="name of the generator to register")
        parser.add_argument("--label", default="base")
        parser.add_argument("--size", choices=["demo", "tiny"], default="demo")
        parser.add_argument("--study", default=None, help="slug of a study to enrol the version in")
        parser.add_argument(
            "--output", type=Path, default=None, help="model folder (default: var/models/NAME)"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        study = None
        if options["study"]:
            study = Study.objects.filter(slug=options["study"]).first()
            if study is None:
                raise CommandError(f"There is no study {options['study']!r}.")
        output = options["output"] or Path(settings.VAR_DIR) / "models" / options["generator"]
        try:
            # A file of the shell user's choosing: copied into var/ unless jobs may read it already.
            corpus = corpus_import_local(source=options["corpus"])
            with transaction.atomic():
                job = base_model_build_start(
                    corpus_path=str(corpus),
                    generator_name=options["generator"],
                    label=options["label"],
                    output_dir=str(output),
                    size=options["size"],
                    study=study,
                    enrol=study is not None,
                )
        except ApplicationError as error:
            raise CommandError(error.message) from None
        self.stdout.write(json.dumps({"job_id": job.id, "output_dir": str(output)}))
