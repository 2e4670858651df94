"""The demo: accounts, a study of short creative texts and a study of images (coloured shapes drawn
by two small generators), and the jobs that fill them with samples."""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction

from server.core.demo_texts import DEMO_PROMPTS_HOLDOUT, DEMO_PROMPTS_TRAIN
from server.core.exceptions import ApplicationError
from server.ratings.models import Rater
from server.studies.models import Modality, PromptSplit, Study
from server.studies.services import PromptInput, prompt_bulk_create, study_create

DEMO_ADMIN = ("admin", "lovelace-admin")
DEMO_RATER = ("rater", "lovelace-rater")
DEMO_STUDY_SLUG = "short-pieces"

DEMO_IMAGE_STUDY_SLUG = "shapes"
# The conditions of the demo's image generators: workers.ml.image_dataset.class_names(), written
# out because the web process does not import the data set's module (numpy); a test keeps the two
# equal. One of each colour and shape is held out for the evaluation.
DEMO_IMAGE_PROMPTS_HOLDOUT = ["a red cross", "a yellow triangle", "a green square", "a blue circle"]
DEMO_IMAGE_PROMPTS_TRAIN = [
    f"a {colour} {shape}"
    for colour in ("red", "yellow", "green", "blue")
    for shape in ("circle", "square", "triangle", "cross")
    if f"a {colour} {shape}" not in DEMO_IMAGE_PROMPTS_HOLDOUT
]


@dataclass(frozen=True)
class DemoSeed:
    study: Study
    created: bool
    image_study: Study


def demo_check_allowed() -> None:
    """Refuse in production mode: the demo creates a superuser whose password the README prints."""
    if settings.DEBUG:
        return
    database = settings.DATABASES["default"]
    raise ApplicationError(
        "The demo runs only in development mode (DJANGO_DEBUG on, the default of the embedded "
        "SQLite topology): it creates the accounts admin / lovelace-admin and rater / lovelace-rater, "
        "whose passwords are public. DJANGO_DEBUG is off here, so the database "
        f"({database['ENGINE'].rsplit('.', 1)[-1]} {database['NAME']}) is treated as a production "
        "one and nothing was changed. Create real accounts with `manage.py createsuperuser`."
    )


@transaction.atomic
def demo_seed() -> DemoSeed:
    """Create the demo accounts and study. Safe to run again: it changes nothing that exists.
    Refused in production mode (``demo_check_allowed``)."""
    demo_check_allowed()
    users = get_user_model()
    admin_name, admin_password = DEMO_ADMIN
    if not users.objects.filter(username=admin_name).exists():
        users.objects.create_superuser(admin_name, email="admin@localhost", password=admin_password)
    rater_name, rater_password = DEMO_RATER
    rater_user = users.objects.filter(username=rater_name).first()
    if rater_user is None:
        rater_user = users.objects.create_user(rater_name, password=rater_password)

    study = Study.objects.filter(slug=DEMO_STUDY_SLUG).first()
    created = study is None
    if study is None:
        study = study_create(
            name="Short pieces",
            slug=DEMO_STUDY_SLUG,
            question="Which piece is more creative while still making sense?",
            guidelines=(
                "Each piece continues the opening sentence shown above it. Read both. Prefer the one "
                "that surprises you in a good way: a fresh image, an unexpected turn, words that fit "
                "together and fit the opening. A piece that is nonsense is not creative. Use 'tie' "
                "when both are equally good and 'both bad' when neither works."
            ),
            overlap=2,
            completion_code="LOVELACE-DEMO",
        )
        prompt_bulk_create(
            study=study,
            prompts=[PromptInput(text) for text in DEMO_PROMPTS_TRAIN]
            + [PromptInput(text, split=PromptSplit.HOLDOUT) for text in DEMO_PROMPTS_HOLDOUT],
        )
    Rater.objects.get_or_create(study=study, user=rater_user)
    image_study = Study.objects.filter(slug=DEMO_IMAGE_STUDY_SLUG).first()
    if image_study is None:
        image_study = study_create(
            name="Shapes",
            slug=DEMO_IMAGE_STUDY_SLUG,
            modality=Modality.IMAGE,
            question="Which image shows the requested shape better, in a more interesting way?",
            guidelines=(
                "Each image was drawn for the request above it, such as 'a red circle'. Prefer the "
                "image that clearly shows the requested shape in the requested colour and is drawn "
                "well: clean edges, a shape that is not smeared or broken. Between two good images, "
                "prefer the one that is less ordinary. An image of the wrong shape or colour loses. "
                "Use 'tie' when both are equally good and 'both bad' when neither shows the request. "
                "Press Z or X (or click) to see an image larger."
            ),
            overlap=2,
            completion_code="LOVELACE-DEMO-SHAPES",
        )
        prompt_bulk_create(
            study=image_study,
            prompts=[PromptInput(text) for text in DEMO_IMAGE_PROMPTS_TRAIN]
            + [PromptInput(text, split=PromptSplit.HOLDOUT) for text in DEMO_IMAGE_PROMPTS_HOLDOUT],
        )
    Rater.objects.get_or_create(study=image_study, user=rater_user)
    return DemoSeed(study=study, created=created, image_study=image_study)
