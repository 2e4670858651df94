from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from django.core.exceptions import ValidationError
from django.db import transaction

from server.core.exceptions import ApplicationError
from server.generators.models import GeneratorVersion
from server.studies.models import Prompt, PromptSplit, Study, StudyVersion, prompt_text_hash


@dataclass(frozen=True)
class PromptInput:
    text: str
    split: str = PromptSplit.TRAIN
    external_id: str = ""


@dataclass(frozen=True)
class PromptBulkResult:
    created: list[Prompt]
    duplicates: list[int]  # positions (0-based) of inputs whose text the study already has


def study_create(
    *, name: str, slug: str, question: str, created_by_id: int | None = None, **rules: object
) -> Study:
    study = Study(name=name, slug=slug, question=question, created_by_id=created_by_id, **rules)
    try:
        study.full_clean()
    except ValidationError as error:
        raise ApplicationError("The study is not valid.", extra={"fields": error.message_dict}) from None
    study.save()
    return study


@transaction.atomic
def prompt_bulk_create(*, study: Study, prompts: Iterable[PromptInput]) -> PromptBulkResult:
    """Add prompts to a study, all or none. Duplicates (in the study or in the input) are skipped
    and reported by position; any invalid prompt refuses the whole batch, naming its position."""
    items = list(prompts)
    existing = set(Prompt.objects.filter(study=study).values_list("text_hash", flat=True))
    seen: set[str] = set()
    to_create: list[Prompt] = []
    duplicates: list[int] = []
    errors: dict[str, str] = {}
    for position, item in enumerate(items):
        if not item.text or not item.text.strip():
            errors[f"prompts[{position}].text"] = "A prompt needs some text."
            continue
        if item.split not in PromptSplit.values:
            errors[f"prompts[{position}].split"] = f"Split must be one of {', '.join(PromptSplit.values)}."
            continue
        text_hash = prompt_text_hash(item.text)
        if text_hash in existing or text_hash in seen:
            duplicates.append(position)
            continue
        seen.add(text_hash)
        to_create.append(
            Prompt(
                study=study,
                text=item.text.strip(),
                text_hash=text_hash,
                split=item.split,
                external_id=item.external_id,
            )
        )
    if errors:
        raise ApplicationError("Some prompts are not valid; none were added.", extra={"fields": errors})
    created = Prompt.objects.bulk_create(to_create)
    return PromptBulkResult(created=created, duplicates=duplicates)


def study_enrol_version(
    *, study: Study, version: GeneratorVersion, job_id: int | None = None
) -> StudyVersion:
    enrolment, _ = StudyVersion.objects.get_or_create(
        study=study, version=version, defaults={"enrolled_by_job_id": job_id}
    )
    return enrolment
