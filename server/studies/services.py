from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

from django.core.exceptions import ValidationError
from django.core.validators import slug_re
from django.db import transaction

from server.core.exceptions import ApplicationError
from server.generators.models import GeneratorVersion
from server.studies.models import (
    MAX_CRITERIA,
    Criterion,
    Prompt,
    PromptSplit,
    Study,
    StudyVersion,
    answer_phrase_from_question,
    answer_phrase_problem,
    prompt_text_hash,
)


@dataclass(frozen=True)
class PromptInput:
    text: str
    split: str = PromptSplit.TRAIN
    external_id: str = ""


@dataclass(frozen=True)
class PromptBulkResult:
    created: list[Prompt]
    duplicates: list[int]  # positions (0-based) of inputs whose text the study already has


@dataclass(frozen=True)
class CriterionInput:
    """One question of a study: the first is the study's own (``Study.question``), the others
    become ``Criterion`` rows."""

    key: str
    question: str
    guidelines: str = ""
    # What completes "Left is …" on the rating page's buttons; None: derived from the question
    # ("Which is more original?" → "more original", else plain Left / Right); "": plain.
    answer_phrase: str | None = None

    def phrase(self) -> str:
        if self.answer_phrase is None:
            return answer_phrase_from_question(self.question.strip())
        return self.answer_phrase.strip()


# Boden's two conditions of creativity, asked of people: novel ("original") and valuable
# ("better"). The creativity report validates the computed novelty and value metrics against them.
CREATIVITY_CRITERIA = (
    CriterionInput(
        key="original",
        question="Which is more original?",
        answer_phrase="more original",
        guidelines="Judge originality only: which answer is less expected, less like what anyone would "
        "write for this prompt (a surprising idea, image or turn), whether or not it is any good.",
    ),
    CriterionInput(
        key="better",
        question="Which is better?",
        answer_phrase="better",
        guidelines="Judge overall value only: which answer serves the prompt better (makes sense, is "
        "well written, is worth reading), whether or not it is original.",
    ),
)
STUDY_TEMPLATES = {"creativity": CREATIVITY_CRITERIA}
# The creativity report reads people's originality and value from the criteria with these keys.
ORIGINALITY_KEY, VALUE_KEY = (criterion.key for criterion in CREATIVITY_CRITERIA)


def criteria_problems(criteria: list[CriterionInput]) -> dict[str, str]:
    """A message per invalid field of a study's criteria (``criteria[2].key``), empty when valid."""
    errors: dict[str, str] = {}
    if not 1 <= len(criteria) <= MAX_CRITERIA:
        errors["criteria"] = f"A study asks 1 to {MAX_CRITERIA} questions (this has {len(criteria)})."
        return errors
    seen: set[str] = set()
    for position, criterion in enumerate(criteria):
        field = f"criteria[{position}]"
        key = criterion.key.strip()
        if not key or not slug_re.fullmatch(key) or len(key) > 40:
            errors[f"{field}.key"] = "Use 1 to 40 letters, digits, hyphens or underscores."
        elif key in seen:
            errors[f"{field}.key"] = f"The key {key!r} is used by another question of this study."
        seen.add(key)
        if not criterion.question.strip():
            errors[f"{field}.question"] = "A criterion needs a question."
        elif len(criterion.question.strip()) > 500:
            errors[f"{field}.question"] = "Use at most 500 characters."
        phrase_problem = answer_phrase_problem(criterion.phrase())
        if phrase_problem:
            errors[f"{field}.answer_phrase"] = phrase_problem
    return errors


def study_create(
    *,
    name: str,
    slug: str,
    question: str = "",
    created_by_id: int | None = None,
    criteria: list[CriterionInput] | None = None,
    template: str = "",
    **rules: object,
) -> Study:
    """A new study. Its questions come from ``criteria`` (1 to MAX_CRITERIA, answered in this
    order; the first is the study's own question), from a ``template`` (``"creativity"``: more
    original? and better?), or from ``question`` (one criterion, as before criteria existed).
    A question without an ``answer_phrase`` gets the one it implies (``answer_phrase_from_question``);
    an explicit ``answer_phrase=""`` beside criteria or a template makes the first question plain."""
    if template:
        if template not in STUDY_TEMPLATES:
            raise ApplicationError(
                f"Unknown study template {template!r}; known: {', '.join(sorted(STUDY_TEMPLATES))}.",
                extra={"fields": {"template": "Unknown template."}},
            )
        if criteria:
            raise ApplicationError(
                "Give either a template or criteria, not both.",
                extra={"fields": {"criteria": "A template sets the criteria."}},
            )
        criteria = list(STUDY_TEMPLATES[template])
    if criteria and rules.get("answer_phrase") == "":
        # An explicit empty phrase: plain Left / Right for the first question, over the phrase
        # its question implies or the template's; a phrase the caller gave that criterion too
        # contradicts it.
        if not template and criteria[0].answer_phrase not in (None, ""):
            raise ApplicationError(
                "answer_phrase is empty but the first criterion gives one; give it once, in criteria.",
                extra={"fields": {"answer_phrase": "Give it in criteria, one per question."}},
            )
        criteria = [replace(criteria[0], answer_phrase=""), *criteria[1:]]
        del rules["answer_phrase"]
    if criteria and rules.get("answer_phrase") is not None:
        raise ApplicationError(
            "With criteria or a template, give each criterion's own answer phrase.",
            extra={"fields": {"answer_phrase": "Give it in criteria, one per question."}},
        )
    if criteria:
        problems = criteria_problems(criteria)
        if problems:
            raise ApplicationError("The study's criteria are not valid.", extra={"fields": problems})
        first = criteria[0]
        question = first.question.strip()
        rules = {**rules, "criterion_key": first.key.strip(), "answer_phrase": first.phrase()}
        if not str(rules.get("guidelines") or "").strip():  # the caller's own guidelines win
            rules["guidelines"] = first.guidelines.strip()
    elif rules.get("answer_phrase") is None:
        rules["answer_phrase"] = answer_phrase_from_question(question.strip())
    else:
        rules["answer_phrase"] = str(rules["answer_phrase"]).strip()
    study = Study(name=name, slug=slug, question=question, created_by_id=created_by_id, **rules)
    try:
        study.full_clean()
    except ValidationError as error:
        raise ApplicationError("The study is not valid.", extra={"fields": error.message_dict}) from None
    with transaction.atomic():
        study.save()
        Criterion.objects.bulk_create(
            Criterion(
                study=study,
                key=criterion.key.strip(),
                question=criterion.question.strip(),
                guidelines=criterion.guidelines.strip(),
                answer_phrase=criterion.phrase(),
                position=position,
            )
            for position, criterion in enumerate(criteria or [], start=0)
            if position > 0
        )
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
