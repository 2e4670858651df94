"""Staff supply gold checks with their expected answers: a file or JSON pairs, checked line by line,
all or nothing; a repeated import changes nothing; raters meet them as any pair."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from django.test import Client
from rest_framework.test import APIClient

from server.core.exceptions import ApplicationError
from server.generators.models import Sample
from server.ratings.gold_import import gold_pairs_import_file
from server.ratings.models import Comparison, ComparisonKind
from server.ratings.pair_selection import GOLD_GENERATOR, STAFF_GOLD_LABEL
from server.ratings.services import judgment_submit, rater_quality_update
from server.studies.models import Prompt
from tests import factories
from tests.server.api.conftest import token_client
from tests.server.api.world import World

pytestmark = pytest.mark.django_db

PAIRS = [
    {"prompt": "The sea at night", "text_a": "The sea hums.", "text_b": "Bread rises.", "expected": "A"},
    {"prompt": "The sea at night", "text_a": " Tax forms.", "text_b": "Moonlit waves.\n", "expected": "b"},
    {
        "prompt": "A new prompt",
        "text_a": "One way.",
        "text_b": "Another way.",
        "expected": "tie",
        "split": "holdout",
    },
]


def jsonl(records: list[dict] | list[str]) -> bytes:
    return "\n".join(r if isinstance(r, str) else json.dumps(r) for r in records).encode()


def checks(study) -> list[tuple[str, str, str, str]]:  # type: ignore[no-untyped-def]
    return [
        (c.prompt.text, c.sample_a.text, c.sample_b.text, c.gold_answer)
        for c in Comparison.objects.filter(study=study, kind=ComparisonKind.GOLD)
        .select_related("prompt", "sample_a", "sample_b")
        .order_by("id")
    ]


def test_a_file_of_pairs_becomes_gold_checks_and_importing_it_again_changes_nothing() -> None:
    study = factories.study()
    factories.prompt(study=study, text="The sea at night")
    result = gold_pairs_import_file(study=study, data=jsonl(PAIRS), filename="gold.jsonl")
    assert (result.created, result.duplicates, result.prompts_created) == (3, [], 1)
    assert checks(study) == [
        ("The sea at night", "The sea hums.", "Bread rises.", "A"),
        ("The sea at night", "Tax forms.", "Moonlit waves.", "B"),
        ("A new prompt", "One way.", "Another way.", "tie"),
    ]
    assert Prompt.objects.get(study=study, text="A new prompt").split == "holdout"
    labels = set(Sample.objects.values_list("version__generator__name", "version__label"))
    assert labels == {(GOLD_GENERATOR, STAFF_GOLD_LABEL)}

    again = gold_pairs_import_file(study=study, data=jsonl(PAIRS), filename="gold.jsonl")
    assert (again.created, again.duplicates, again.prompts_created) == (0, [1, 2, 3], 0)
    assert len(checks(study)) == 3 and Sample.objects.count() == 6


def test_csv_has_the_same_columns() -> None:
    study = factories.study()
    data = b'prompt,text_a,text_b,expected\nThe sea,"Waves, and foam.",Bread.,A\n'
    result = gold_pairs_import_file(study=study, data=data, filename="gold.csv")
    assert result.created == 1
    assert checks(study) == [("The sea", "Waves, and foam.", "Bread.", "A")]


def test_any_error_names_its_line_and_imports_nothing() -> None:
    study = factories.study()
    lines = [
        PAIRS[0],
        {**PAIRS[1], "expected": "left"},
        {"prompt": "P", "text_a": "Same.", "text_b": " Same. ", "expected": "A"},
        "{not json",
        {**PAIRS[2], "colour": "red"},
        PAIRS[0],
    ]
    with pytest.raises(ApplicationError) as raised:
        gold_pairs_import_file(study=study, data=jsonl(lines), filename="gold.jsonl")
    assert raised.value.extra["errors"] == [
        {"line": 2, "field": "expected", "message": "must be A, B or tie"},
        {"line": 3, "field": "text_b", "message": "is the same text as text_a"},
        {
            "line": 4,
            "field": "",
            "message": "is not valid JSON (Expecting property name enclosed in double quotes at column 2)",
        },
        {
            "line": 5,
            "field": "colour",
            "message": "is not a known field (known: prompt, text_a, text_b, expected, split)",
        },
    ]
    assert raised.value.message.startswith(
        "The file was not imported: line 2, field 'expected': must be A, B or tie;"
    )
    assert (Comparison.objects.count(), Sample.objects.count(), Prompt.objects.count()) == (0, 0, 0)


def test_a_repeated_pair_and_a_conflicting_answer_are_refused_by_line() -> None:
    study = factories.study()
    gold_pairs_import_file(study=study, data=jsonl([PAIRS[0]]), filename="gold.jsonl")
    swapped = {**PAIRS[0], "text_a": PAIRS[0]["text_b"], "text_b": PAIRS[0]["text_a"], "expected": "A"}
    new_prompt = [{**PAIRS[2], "split": "train"}, {**PAIRS[2], "text_b": "A third way."}]
    with pytest.raises(ApplicationError) as raised:
        gold_pairs_import_file(
            study=study, data=jsonl([swapped, PAIRS[1], PAIRS[1], *new_prompt]), filename="g.jsonl"
        )
    assert raised.value.extra["errors"] == [
        {"line": 1, "field": "expected", "message": "the study has this check with the answer B"},
        {"line": 3, "field": "", "message": "repeats the pair of line 2"},
        {"line": 5, "field": "split", "message": "the prompt has split 'train' on line 4"},
    ]
    assert len(checks(study)) == 1 and Prompt.objects.count() == 1


def test_staff_pairs_through_the_api_and_their_errors_by_line(world: World, staff_client: APIClient) -> None:
    url = "/api/studies/poems/gold/import/"
    before = Comparison.objects.filter(kind=ComparisonKind.GOLD).count()
    refused = staff_client.post(url, {"pairs": [PAIRS[0], {**PAIRS[1], "text_b": ""}]}, format="json")
    assert refused.status_code == 400
    assert refused.json()["details"]["errors"] == [
        {"line": 2, "field": "text_b", "message": "is missing or empty"}
    ]
    assert Comparison.objects.filter(kind=ComparisonKind.GOLD).count() == before

    created = staff_client.post(url, {"pairs": PAIRS}, format="json")
    assert created.status_code == 201
    assert created.json() == {"created": 3, "duplicates": [], "prompts_created": 2}
    upload = io.BytesIO(jsonl(PAIRS))
    upload.name = "gold.jsonl"
    again = staff_client.post(url, {"file": upload}, format="multipart")
    assert again.json() == {"created": 0, "duplicates": [1, 2, 3], "prompts_created": 0}
    assert token_client(world.rater_a_user).post(url, {"pairs": PAIRS}, format="json").status_code == 403


def test_staff_pairs_through_the_dashboard_form(world: World) -> None:
    staff = Client()
    staff.force_login(world.staff)
    url = "/dashboard/studies/poems/gold/"
    bad = io.BytesIO(jsonl([PAIRS[0], {**PAIRS[1], "expected": "maybe"}]))
    bad.name = "gold.jsonl"
    response = staff.post(url, {"gold-file": bad, "gold-format": ""})
    assert response.status_code == 400
    page = response.content.decode()
    assert (
        'id="gold-errors"' in page
        and '<td class="num">2</td><td>expected</td><td>must be A, B or tie</td>' in page
    )
    before = Comparison.objects.filter(kind=ComparisonKind.GOLD).count()

    good = io.BytesIO(jsonl(PAIRS))
    good.name = "gold.jsonl"
    response = staff.post(url, {"gold-file": good, "gold-format": ""}, follow=True)
    assert response.redirect_chain[-1][0].endswith("/dashboard/studies/poems/#gold")
    assert "Added 3 gold checks and 2 new prompts." in response.content.decode()
    assert Comparison.objects.filter(kind=ComparisonKind.GOLD).count() == before + 3


def test_a_tie_check_is_passed_by_a_tie_and_failed_by_a_side() -> None:
    study = factories.study()
    gold_pairs_import_file(study=study, data=jsonl([PAIRS[2]]), filename="gold.jsonl")
    check = Comparison.objects.get(kind=ComparisonKind.GOLD)
    results = []
    for choice in ("tie", "left"):
        rater = factories.rater(study=study)
        assignment = factories.assignment(comparison=check, rater=rater)
        judgment_submit(rater=rater, token=assignment.token, choice=choice, idempotency_key=f"key-{choice}")
        signals = rater_quality_update(rater_id=rater.id).signals
        results.append((signals.gold_checks, signals.gold_accuracy))
    assert results == [(1, 1.0), (1, 0.0)]


@pytest.fixture
def world(db: None, settings, tmp_path: Path) -> World:  # type: ignore[no-untyped-def]
    from tests.server.api.world import build_world

    settings.VAR_DIR = tmp_path
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    return build_world()


@pytest.fixture
def staff_client(world: World) -> APIClient:
    return token_client(world.staff)


# --- Image studies: a gold pair names two images of the study by their SHA-256 ---------------------


def imported_images(study) -> list[str]:  # type: ignore[no-untyped-def]
    """Three images imported into the study (a zip with a manifest); their SHA-256 as the import
    reports them, by manifest line."""
    from server.generators.services import samples_import_file
    from tests.server.generators.test_image_import import archive
    from tests.server.generators.test_image_import import jsonl as manifest

    colours = {"red.png": (220, 0, 0), "blue.png": (0, 0, 220), "grey.png": (90, 90, 90)}
    data = archive(
        manifest(*({"prompt": "a square", "file": name, "generator": "dcgan"} for name in colours)),
        {name: factories.image_bytes(16, 16, color=colour) for name, colour in colours.items()},
    )
    result = samples_import_file(study_slug=study.slug, data=data, filename="images.zip")
    assert [entry["line"] for entry in result.images] == [1, 2, 3]
    return [entry["sha256"] for entry in result.images]


@pytest.mark.usefixtures("image_storage")
def test_an_image_study_imports_gold_pairs_of_its_images_by_sha256() -> None:
    study = factories.study(modality="image")
    red, blue, grey = imported_images(study)
    pairs = [
        {"prompt": "a square", "image_a": red, "image_b": blue, "expected": "A"},
        {"prompt": "a square", "image_a": grey.upper(), "image_b": red, "expected": "tie"},
        {"prompt": "a new prompt", "image_a": blue, "image_b": grey, "expected": "B", "split": "holdout"},
    ]
    result = gold_pairs_import_file(study=study, data=jsonl(pairs), filename="gold.jsonl")
    assert (result.created, result.duplicates, result.prompts_created) == (3, [], 1)
    gold = list(
        Comparison.objects.filter(study=study, kind=ComparisonKind.GOLD)
        .select_related("prompt", "sample_a__image", "sample_b__image", "sample_a__version__generator")
        .order_by("id")
    )
    assert [
        (c.prompt.text, c.sample_a.image.sha256, c.sample_b.image.sha256, c.gold_answer) for c in gold
    ] == [
        ("a square", red, blue, "A"),
        ("a square", grey, red, "tie"),
        ("a new prompt", blue, grey, "B"),
    ]
    for comparison in gold:
        for sample in (comparison.sample_a, comparison.sample_b):
            assert (sample.text, sample.text_hash) == ("", sample.image.sha256)
            assert (sample.version.generator.name, sample.version.label) == (GOLD_GENERATOR, STAFF_GOLD_LABEL)
    # The same file again (and a pair swapped with the swapped answer) changes nothing; CSV works.
    again = gold_pairs_import_file(study=study, data=jsonl(pairs), filename="gold.jsonl")
    assert (again.created, again.duplicates) == (0, [1, 2, 3])
    swapped = {**pairs[0], "image_a": blue, "image_b": red, "expected": "B"}
    assert gold_pairs_import_file(study=study, data=jsonl([swapped]), filename="g.jsonl").duplicates == [1]
    csv = f"prompt,image_a,image_b,expected\na square,{blue},{grey},A\n".encode()
    assert gold_pairs_import_file(study=study, data=csv, filename="gold.csv").created == 1
    # One gold sample per prompt and image: red, blue, grey for "a square"; blue, grey for the new one.
    assert Sample.objects.filter(version__generator__name=GOLD_GENERATOR).count() == 5


@pytest.mark.usefixtures("image_storage")
def test_image_gold_pairs_are_refused_by_line_for_texts_unknown_and_foreign_images() -> None:
    study = factories.study(modality="image")
    red, blue, _ = imported_images(study)
    other = factories.study(modality="image")
    foreign = factories.image_sample(
        prompt=factories.prompt(study=other), data=factories.image_bytes(color=(1, 2, 3))
    ).image.sha256
    lines = [
        {"prompt": "a square", "image_a": red, "image_b": blue, "expected": "A"},
        {"prompt": "a square", "text_a": "Waves.", "text_b": "Bread.", "expected": "A"},
        {"prompt": "a square", "image_a": red, "image_b": "red.png", "expected": "A"},
        {"prompt": "a square", "image_a": blue, "image_b": blue, "expected": "B"},
        {"prompt": "a square", "image_a": red, "image_b": "0" * 64, "expected": "A"},
        {"prompt": "a square", "image_a": foreign, "image_b": red, "expected": "A"},
        {"prompt": "a square", "image_a": blue, "image_b": red, "expected": "A"},
    ]
    before = (Comparison.objects.count(), Sample.objects.count())
    images_please = (
        "is for text studies: an image study's gold pair names its images as image_a and image_b "
        "(the SHA-256 of images of the study)"
    )
    unknown = "no image of this study has this SHA-256 (import the image first)"
    # First each line on its own, then the lines against the study (as for texts).
    with pytest.raises(ApplicationError) as raised:
        gold_pairs_import_file(study=study, data=jsonl(lines), filename="gold.jsonl")
    assert raised.value.extra["errors"] == [
        {"line": 2, "field": "text_a", "message": images_please},
        {"line": 2, "field": "text_b", "message": images_please},
        {"line": 2, "field": "image_a", "message": "is missing or empty"},
        {"line": 2, "field": "image_b", "message": "is missing or empty"},
        {"line": 3, "field": "image_b", "message": "must be an image's SHA-256 (64 hexadecimal digits)"},
        {"line": 4, "field": "image_b", "message": "is the same image as image_a"},
    ]
    with pytest.raises(ApplicationError) as raised:
        gold_pairs_import_file(study=study, data=jsonl([lines[0], *lines[4:]]), filename="gold.jsonl")
    assert raised.value.extra["errors"] == [
        {"line": 2, "field": "image_b", "message": unknown},
        {"line": 3, "field": "image_a", "message": unknown},
        {"line": 4, "field": "", "message": "repeats the pair of line 1"},
    ]
    assert (Comparison.objects.count(), Sample.objects.count()) == before
    # A text study keeps its fields: an image pair there names its unknown field.
    with pytest.raises(ApplicationError) as text_study:
        gold_pairs_import_file(study=factories.study(), data=jsonl([lines[0]]), filename="gold.jsonl")
    assert {
        "line": 1,
        "field": "image_a",
        "message": ("is not a known field (known: prompt, text_a, text_b, expected, split)"),
    } in text_study.value.extra["errors"]


@pytest.mark.usefixtures("image_storage")
def test_image_gold_pairs_through_the_api(world: World, staff_client: APIClient) -> None:
    study = factories.study(modality="image", slug="digits")
    red, blue, _ = imported_images(study)
    url = "/api/studies/digits/gold/import/"
    refused = staff_client.post(
        url,
        {"pairs": [{"prompt": "a square", "image_a": red, "image_b": "x", "expected": "A"}]},
        format="json",
    )
    assert refused.status_code == 400
    assert refused.json()["details"]["errors"] == [
        {"line": 1, "field": "image_b", "message": "must be an image's SHA-256 (64 hexadecimal digits)"}
    ]
    pair = {"prompt": "a square", "image_a": red, "image_b": blue, "expected": "B"}
    created = staff_client.post(url, {"pairs": [pair]}, format="json")
    assert created.status_code == 201 and created.json() == {
        "created": 1,
        "duplicates": [],
        "prompts_created": 0,
    }
    check = Comparison.objects.get(study=study, kind=ComparisonKind.GOLD)
    assert (check.sample_a.image.sha256, check.sample_b.image.sha256, check.gold_answer) == (red, blue, "B")


def test_the_dashboard_names_the_gold_fields_of_the_studys_modality(world: World) -> None:
    staff = Client()
    staff.force_login(world.staff)
    factories.study(modality="image", slug="digits")
    image_page = staff.get("/dashboard/studies/digits/").content.decode()
    text_page = staff.get("/dashboard/studies/poems/").content.decode()
    assert (
        "<code>image_a</code>, <code>image_b</code>" in image_page and "<code>text_a</code>" not in image_page
    )
    assert "<code>text_a</code>, <code>text_b</code>" in text_page and "<code>image_a</code>" not in text_page
