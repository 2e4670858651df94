"""Reads of studies' criteria (the questions a vote answers)."""

from __future__ import annotations

from dataclasses import dataclass

from server.studies.models import Criterion, Study


@dataclass(frozen=True)
class CriterionView:
    """One question of a study, the first (the study's own) included. ``id`` is None for the
    first: it has no ``Criterion`` row (see ``Criterion``)."""

    key: str
    question: str
    guidelines: str
    position: int
    id: int | None
    answer_phrase: str = ""

    @property
    def is_primary(self) -> bool:
        return self.id is None

    @property
    def choice_labels(self) -> dict[str, str]:
        """The rating page's four answers to this question: "Left is more original" when the
        criterion has an answer phrase, plain "Left" / "Right" when it has none."""
        phrase = self.answer_phrase
        return {
            "left": f"Left is {phrase}" if phrase else "Left",
            "right": f"Right is {phrase}" if phrase else "Right",
            "tie": "Tie",
            "both_bad": "Both bad",
        }


def study_criteria(*, study: Study) -> list[CriterionView]:
    """The study's questions in the order a rater answers them (one query)."""
    first = CriterionView(
        key=study.criterion_key,
        question=study.question,
        guidelines=study.guidelines,
        position=0,
        id=None,
        answer_phrase=study.answer_phrase,
    )
    others = [
        CriterionView(
            key=c.key,
            question=c.question,
            guidelines=c.guidelines,
            position=c.position,
            id=c.id,
            answer_phrase=c.answer_phrase,
        )
        for c in Criterion.objects.filter(study=study).order_by("position")
    ]
    return [first, *others]


def study_criterion(*, study: Study, key: str | None) -> CriterionView:
    """The study's criterion named ``key`` (None or empty: the first); LookupError when none."""
    criteria = study_criteria(study=study)
    if not key:
        return criteria[0]
    for criterion in criteria:
        if criterion.key == key:
            return criterion
    raise LookupError(f"This study has no criterion {key!r}; it has {', '.join(c.key for c in criteria)}.")
