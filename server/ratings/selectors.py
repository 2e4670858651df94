"""Reading ratings: who the rater of a request is, quality rows, completion details."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from django.db.models import QuerySet

from server.core.exceptions import NotFound
from server.generators.models import ImageAsset, Sample
from server.ratings.models import Assignment, ComparisonKind, Judgment, Platform, Rater, RaterStatus
from server.studies.models import Study

# MTurk posts the finished HIT back to one of these hosts only; anything else would make the
# completion form an open redirect.
MTURK_SUBMIT_HOSTS = ("https://www.mturk.com", "https://workersandbox.mturk.com")


def study_get_by_slug(*, slug: str) -> Study:
    study = Study.objects.filter(slug=slug).first()
    if study is None:
        raise NotFound("There is no such study.")
    return study


def shown_text(text: str) -> str:
    """A text as raters see it. Surrounding whitespace is dropped: generated samples often begin
    with the space that followed the prompt, typed or imported texts do not, and such a margin
    would tell one kind of text (or a check question) from another without reading it."""
    return text.strip()


@dataclass(frozen=True)
class ShownImage:
    """An image sample as a rater's page gets it: the content hash that addresses it (it names
    nothing but the pixels) and its size, which the page uses to lay it out before it loads."""

    sha256: str
    width: int
    height: int


def shown_image(sample: Sample) -> ShownImage | None:
    image = sample.image
    return None if image is None else ShownImage(sha256=image.sha256, width=image.width, height=image.height)


def assignment_texts(*, assignment: Assignment) -> dict[str, str]:
    """The prompt and the two texts of an assignment, on the sides the rater sees them (an image
    sample's text is empty; see ``assignment_images``)."""
    comparison = assignment.comparison
    left, right = (
        (comparison.sample_a, comparison.sample_b)
        if assignment.left_is_a
        else (comparison.sample_b, comparison.sample_a)
    )
    return {
        "prompt": shown_text(comparison.prompt.text),
        "left": shown_text(left.text),
        "right": shown_text(right.text),
    }


def assignment_images(*, assignment: Assignment) -> tuple[ShownImage | None, ShownImage | None]:
    """The images of an assignment's samples, left then right (None for a text sample). Loaded
    with the pair (``CONTENT_RELATIONS``): no query."""
    comparison = assignment.comparison
    left, right = (
        (comparison.sample_a, comparison.sample_b)
        if assignment.left_is_a
        else (comparison.sample_b, comparison.sample_a)
    )
    return shown_image(left), shown_image(right)


def study_image_get(*, study_id: int, sha256: str) -> ImageAsset | None:
    """The image with this content hash if a sample of the study shows it (one query)."""
    return (
        ImageAsset.objects.filter(sha256=sha256, samples__prompt__study_id=study_id)
        .only("id", "sha256", "storage_name", "format")
        .first()
    )


# A pair on screen needs the prompt and the two texts (or images), nothing else of those rows
# (their JSON columns cost more to decode than the texts).
CONTENT_FIELDS = (
    "prompt__text",
    "sample_a__text",
    "sample_b__text",
    *(
        f"{side}__image__{name}"
        for side in ("sample_a", "sample_b")
        for name in ("sha256", "width", "height")
    ),
)
CONTENT_RELATIONS = ("prompt", "sample_a__image", "sample_b__image")


def rater_get(*, rater_id: int, study_slug: str) -> Rater | None:
    """The rater (with its study) if it belongs to the study named in the URL."""
    return Rater.objects.select_related("study").filter(id=rater_id, study__slug=study_slug).first()


@dataclass(frozen=True)
class Completion:
    code: str
    url: str  # where a finished participant goes (Prolific: with the completion code)
    mturk_submit_url: str  # MTurk: the form target that closes the HIT
    mturk_assignment_id: str


def _with_query_parameter(url: str, name: str, value: str) -> str:
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    if any(key == name for key, _ in query):
        return url
    return urlunsplit(parts._replace(query=urlencode([*query, (name, value)])))


def completion_for_rater(*, rater: Rater) -> Completion:
    """What a participant who has finished sees: the code, and where to go with it."""
    study = rater.study
    url = study.completion_url
    if url and study.completion_code and rater.platform == Platform.PROLIFIC:
        url = _with_query_parameter(url, "cc", study.completion_code)
    submit_to, assignment_id = "", ""
    if rater.platform == Platform.MTURK:
        turk_submit_to = str(rater.session_info.get("turk_submit_to", "")).rstrip("/")
        if turk_submit_to in MTURK_SUBMIT_HOSTS:
            submit_to = f"{turk_submit_to}/mturk/externalSubmit"
            assignment_id = str(rater.session_info.get("assignment_id", ""))
    return Completion(
        code=study.completion_code, url=url, mturk_submit_url=submit_to, mturk_assignment_id=assignment_id
    )


def judgments_trusted(*, study: Study) -> QuerySet[Judgment]:
    """The judgments every statistic and every training run may use: live (not undone or
    corrected), not flagged (too fast, or made while the rater was paused), from raters who are
    not paused now, on regular comparisons (gold checks test raters, not generators; swapped
    repeats would count one rater's opinion twice)."""
    return Judgment.objects.filter(
        assignment__comparison__study=study,
        assignment__comparison__kind=ComparisonKind.REGULAR,
        revoked_at__isnull=True,
        is_flagged=False,
    ).exclude(assignment__rater__status=RaterStatus.PAUSED)
