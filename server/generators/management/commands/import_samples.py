"""``manage.py import_samples STUDY_SLUG FILE [--format jsonl|csv|zip]``: import external samples
(texts from JSONL/CSV; images from a zip with a manifest, for an image study)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from server.core.exceptions import ApplicationError
from server.generators.services import samples_import_file


class Command(BaseCommand):
    help = (
        "Import samples from an external generator "
        "(JSONL or CSV: prompt, text, generator[, version, split, metadata]; for an image study a .zip "
        "of PNG/JPEG files with manifest.jsonl or manifest.csv: prompt or condition, file, generator"
        "[, version, split, metadata])."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("study")
        parser.add_argument("file", type=Path)
        parser.add_argument("--format", choices=["jsonl", "csv", "zip"], default=None)

    def handle(self, *args: Any, **options: Any) -> None:
        path: Path = options["file"]
        if not path.is_file():
            raise CommandError(f"There is no file {path}.")
        try:
            result = samples_import_file(
                study_slug=options["study"],
                data=path.read_bytes(),
                filename=path.name,
                declared_format=options["format"],
            )
        except ApplicationError as error:
            details = "\n".join(
                f"  line {problem['line']}"
                + (f", field '{problem['field']}'" if problem["field"] else "")
                + f": {problem['message']}"
                for problem in error.extra.get("errors", [])
            )
            raise CommandError(error.message + ("\n" + details if details else "")) from None
        versions = ", ".join(result.versions)
        self.stdout.write(
            f"Imported {result.created} samples ({result.prompts_created} new prompts) for {versions}."
        )
        if result.duplicates:
            lines = ", ".join(str(line) for line in result.duplicates[:20])
            self.stdout.write(f"Skipped {len(result.duplicates)} duplicates (lines {lines}).")
