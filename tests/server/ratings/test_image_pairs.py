"""Image pairs on the rating path: what the page gets (opaque image URLs, sizes, nothing of the
source), the image view (headers, who may see what), and the query counts."""

from __future__ import annotations

import json

import pytest
from django.test import Client
from django.urls import reverse

from server.generators.images import image_asset_read, image_asset_store
from server.generators.models import ImageAsset, Sample
from server.ratings.models import Comparison
from server.studies.models import Study
from tests import factories
from tests.server.ratings.conftest import make_study
from tests.server.ratings.test_views import START, api, invited, page_url

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("image_storage")]


def image_pair(study: Study, number: int = 0) -> Comparison:
    prompt = factories.prompt(study=study, text=f"digit {number}")
    left = factories.image_sample(
        prompt=prompt,
        version=factories.version(label=f"secret-label-{number}a"),
        data=factories.image_bytes(28, 28, color=(number, 10, 10)),
    )
    right = factories.image_sample(
        prompt=prompt,
        version=factories.version(label=f"secret-label-{number}b"),
        data=factories.image_bytes(32, 24, color=(number, 200, 10)),
    )
    return factories.comparison(prompt=prompt, sample_a=left, sample_b=right)


def image_study(pairs: int = 1) -> Study:
    study = make_study(modality="image", per_rater_cap=50)
    for number in range(pairs):
        image_pair(study, number)
    return study


def test_an_image_pair_is_sent_as_opaque_urls_with_sizes_and_nothing_of_its_source() -> None:
    study = image_study()
    client = invited(study)
    client.get(page_url(study))
    answer = api(client, study, "next", START).json()
    pair = answer["pair"]
    comparison = Comparison.objects.select_related("sample_a__image", "sample_b__image").get()
    shown = {sample.image.sha256: sample for sample in (comparison.sample_a, comparison.sample_b)}
    left = shown[pair["images"]["left"]["url"].rsplit("/", 1)[1]]
    right = shown[pair["images"]["right"]["url"].rsplit("/", 1)[1]]
    assert {left.id, right.id} == {comparison.sample_a_id, comparison.sample_b_id}
    assert pair["images"]["left"] == {
        "url": f"/rate/{study.slug}/image/{left.image.sha256}",
        "width": left.image.width,
        "height": left.image.height,
    }
    assert (pair["prompt"], pair["left"], pair["right"]) == ("digit 0", "", "")
    assert set(pair) == {"token", "prompt", "left", "right", "images"}
    payload = json.dumps(answer)
    for sample in (left, right):
        assert sample.version.label not in payload
        assert sample.version.generator.name not in payload
        assert f"/{sample.id}" not in payload


def test_a_text_pair_carries_no_images_key() -> None:
    study = make_study()
    factories.comparison(study=study)
    client = invited(study)
    pair = api(client, study, "next", START).json()["pair"]
    assert "images" not in pair


def test_the_open_pair_and_an_undone_vote_show_the_same_images() -> None:
    study = image_study(pairs=2)
    client = invited(study)
    pair = api(client, study, "next", START).json()["pair"]
    assert api(client, study, "next", START).json()["pair"] == pair  # the open reservation (ORM path)
    vote = {"token": pair["token"], "choice": "left", "idempotency_key": "key-00001"}
    assert api(client, study, "vote", vote).status_code == 200
    undone = api(client, study, "undo", {"idempotency_key": "key-00001"}).json()["pair"]
    assert undone == pair


def test_the_image_view_serves_the_stored_bytes_with_safe_headers() -> None:
    study = image_study()
    client = invited(study)
    pair = api(client, study, "next", START).json()["pair"]
    url = pair["images"]["left"]["url"]
    response = client.get(url)
    asset = ImageAsset.objects.get(sha256=url.rsplit("/", 1)[1])
    assert response.status_code == 200
    assert b"".join(response.streaming_content) == image_asset_read(asset)
    assert response["Content-Type"] == "image/png"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Cache-Control"] == "private, max-age=31536000, immutable"
    assert response["ETag"] == f'"{asset.sha256}"'
    assert response["Content-Security-Policy"] == "default-src 'none'; sandbox"
    assert "Content-Disposition" not in response
    again = client.get(url, headers={"If-None-Match": f'"{asset.sha256}"'})
    assert (again.status_code, again.content) == (304, b"")


def test_only_the_studys_raters_and_staff_see_its_images() -> None:
    study = image_study()
    sha256 = Sample.objects.select_related("image").first().image.sha256  # type: ignore[union-attr]
    url = reverse("ratings:image", args=[study.slug, sha256])
    assert Client().get(url).status_code == 403
    signed_in = Client()
    signed_in.force_login(factories.user())
    assert signed_in.get(url).status_code == 403
    staff = Client()
    staff.force_login(factories.user(is_staff=True))
    assert staff.get(url).status_code == 200
    # A rater of another study cannot read this study's images through its own study's URL.
    other = make_study(modality="image")
    image_pair(other, number=5)  # other pixels: other images
    other_client = invited(other)
    assert other_client.get(reverse("ratings:image", args=[other.slug, sha256])).status_code == 404
    assert other_client.get(url).status_code == 403  # no rater of this study in that session
    rater_client = invited(study)
    unrelated = image_asset_store(data=factories.image_bytes(40, 40, color=(1, 2, 3)))
    assert rater_client.get(reverse("ratings:image", args=[study.slug, unrelated.sha256])).status_code == 404
    assert rater_client.get(reverse("ratings:image", args=[study.slug, "not-a-hash"])).status_code == 404
    assert rater_client.get(url).status_code == 200


@pytest.fixture
def process_cache(settings):  # type: ignore[no-untyped-def]
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}


@pytest.mark.usefixtures("process_cache")
def test_an_image_pair_takes_as_few_queries_as_a_text_pair(django_assert_max_num_queries) -> None:  # type: ignore[no-untyped-def]
    study = image_study(pairs=3)
    client = invited(study)
    client.get(page_url(study))
    with django_assert_max_num_queries(8):
        pair = api(client, study, "next", START).json()["pair"]
    with django_assert_max_num_queries(4):
        assert api(client, study, "next", START).json()["pair"] == pair
    vote = {"token": pair["token"], "choice": "tie", "idempotency_key": "key-00001", "next": True}
    with django_assert_max_num_queries(14):
        assert "images" in api(client, study, "vote", vote).json()["next"]["pair"]
    # session, rater + study, the image
    with django_assert_max_num_queries(3):
        assert client.get(pair["images"]["left"]["url"]).status_code == 200


def test_a_programmatic_rater_gets_the_images_through_the_api_with_its_token() -> None:
    from rest_framework.authtoken.models import Token
    from rest_framework.test import APIClient

    study = image_study()
    user = factories.user()
    factories.rater(study=study, user=user)
    token = Token.objects.create(user=user)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    answer = client.post(f"/api/studies/{study.slug}/assignments/next/").json()
    images = answer["assignment"]["images"]
    assert set(images) == {"left", "right"}
    assert images["left"]["url"].startswith(f"/rate/{study.slug}/image/")
    assert (answer["assignment"]["left"], answer["assignment"]["right"]) == ("", "")
    assert "secret-label" not in json.dumps(answer)
    listed = client.get(f"/api/studies/{study.slug}/assignments/").json()["results"][0]
    assert listed["images"] == images
    response = client.get(images["left"]["url"])
    assert (response.status_code, response["Content-Type"]) == (200, "image/png")
    stranger = APIClient()
    stranger.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=factories.user()).key}")
    assert stranger.get(images["left"]["url"]).status_code == 403
    bad = APIClient()
    bad.credentials(HTTP_AUTHORIZATION="Token not-a-token")
    assert bad.get(images["left"]["url"]).status_code == 403
