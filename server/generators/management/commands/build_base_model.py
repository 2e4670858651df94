"""``manage.py build_base_model --corpus FILE --generator NAME [--label L] [--size demo|tiny]``, or
``--image vae|dcgan`` (no corpus) for a class-conditional image generator on the procedural shapes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from server.core.exceptions import ApplicationError
from server.generators.services import (
    base_model_build_start,
    corpus_import_local,
    image_generator_build_start,
)
from server.studies.models import Study


class Command(BaseCommand):
    help = (
        "Start a job that trains a small GPT-2 and its BPE tokenizer on a text corpus, or (--image) "
        "a class-conditional image generator on the project's procedural shapes."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--corpus", type=Path, help="UTF-8 text, pieces separated by blank lines")
        parser.add_argument(
            "--image",
            choices=["vae", "dcgan"],
            default=None,
            help="build an image generator of this architecture",
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
        if options["image"]:
            if options["corpus"]:
                raise CommandError("An image generator trains on the procedural shapes: give no --corpus.")
            try:
                with transaction.atomic():
                    job = image_generator_build_start(
                        architecture=options["image"],
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
            return
        if not options["corpus"]:
            raise CommandError("Give --corpus FILE (a text generator) or --image vae|dcgan.")
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
