"""Importing image samples: a zip of PNG/JPEG files with a JSONL or CSV manifest."""

from __future__ import annotations

import io
import json
import re
import zipfile
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.test import Client
from PIL import Image
from rest_framework.test import APIClient

from server.core.exceptions import ApplicationError
from server.generators.images import image_asset_read
from server.generators.models import GeneratorVersion, ImageAsset, Sample, VersionKind
from server.generators.services import samples_import_file
from server.studies.models import Prompt
from tests import factories

pytestmark = pytest.mark.django_db

RED = factories.image_bytes(16, 16, color=(220, 0, 0))
BLUE = factories.image_bytes(16, 16, color=(0, 0, 220))


def exif_jpeg() -> bytes:
    exif = Image.Exif()
    exif[0x010F] = "SecretCam"
    return factories.image_bytes(16, 16, color=(0, 200, 0), fmt="JPEG", exif=exif.tobytes())


def archive(manifest: str | bytes, files: dict[str, bytes], manifest_name: str = "manifest.jsonl") -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as zipped:
        zipped.writestr(manifest_name, manifest)
        for name, data in files.items():
            zipped.writestr(name, data)
    return buffer.getvalue()


def jsonl(*records: dict[str, object]) -> str:
    return "\n".join(json.dumps(record) for record in records)


def image_study():  # type: ignore[no-untyped-def]
    return factories.study(modality="image")


def nothing_imported(storage: Path) -> bool:
    return (
        Sample.objects.count() == 0
        and ImageAsset.objects.count() == 0
        and Prompt.objects.count() == 0
        and GeneratorVersion.objects.count() == 0
        and not any(path.is_file() for path in storage.rglob("*"))
    )


def refusal(study_slug: str, data: bytes) -> ApplicationError:
    with pytest.raises(ApplicationError) as refused:
        samples_import_file(study_slug=study_slug, data=data, filename="images.zip")
    return refused.value


def test_a_zip_with_a_jsonl_manifest_imports_image_samples(image_storage: Path) -> None:
    study = image_study()
    data = archive(
        jsonl(
            {"prompt": "a red square", "file": "images/red.png", "generator": "dcgan", "version": "e10"},
            {
                "condition": "digit 7",
                "file": "./images/photo.jpg",
                "generator": "vae",
                "metadata": {"seed": 3},
            },
            {"prompt": "a red square", "file": "blue.png", "generator": "dcgan", "version": "e10"},
        ),
        {"images/red.png": RED, "images/photo.jpg": exif_jpeg(), "blue.png": BLUE, "unused.png": RED},
    )
    result = samples_import_file(study_slug=study.slug, data=data, filename="images.zip")
    assert (result.created, result.prompts_created, result.duplicates) == (3, 2, [])
    assert result.versions == ["dcgan/e10", "vae/external"]
    assert set(study.versions.values_list("kind", flat=True)) == {VersionKind.EXTERNAL}
    samples = list(Sample.objects.select_related("image").order_by("id"))
    assert [sample.text for sample in samples] == ["", "", ""]
    assert [sample.image.format for sample in samples] == ["png", "jpeg", "png"]
    assert [sample.text_hash for sample in samples] == [sample.image.sha256 for sample in samples]
    assert samples[1].metadata == {"seed": 3}
    assert samples[1].prompt.text == "digit 7"
    assert Prompt.objects.get(text="a red square").split == "train"  # its first line says so
    assert b"SecretCam" not in image_asset_read(samples[1].image)
    # Stored by content only: no uploaded name anywhere.
    names = sorted(path.name for path in image_storage.rglob("*") if path.is_file())
    assert names == sorted(
        f"{sample.image.sha256}.{'jpg' if sample.image.format == 'jpeg' else 'png'}" for sample in samples
    )


def test_a_csv_manifest_reads_the_same_fields(image_storage: Path) -> None:
    study = image_study()
    manifest = 'prompt,file,generator,version,metadata\nsquares,red.png,dcgan,e1,"{""k"": 1}"\n'
    data = archive(manifest, {"red.png": RED}, manifest_name="manifest.csv")
    result = samples_import_file(study_slug=study.slug, data=data, filename="upload.zip")
    assert result.created == 1
    assert Sample.objects.get().metadata == {"k": 1}


def test_duplicate_images_are_reported_by_line_skipped_and_stored_once(image_storage: Path) -> None:
    study = image_study()
    data = archive(
        jsonl(
            {"prompt": "p", "file": "red.png", "generator": "g"},
            {"prompt": "p", "file": "copy-of-red.png", "generator": "g"},  # the same pixels
            {"prompt": "p", "file": "red.png", "generator": "h"},  # another generator: a sample
        ),
        {"red.png": RED, "copy-of-red.png": RED},
    )
    result = samples_import_file(study_slug=study.slug, data=data, filename="images.zip")
    assert (result.created, result.duplicates) == (2, [2])
    assert ImageAsset.objects.count() == 1
    again = samples_import_file(study_slug=study.slug, data=data, filename="images.zip")
    assert (again.created, again.duplicates) == (0, [1, 2, 3])
    assert (Sample.objects.count(), ImageAsset.objects.count()) == (2, 1)


def test_any_error_names_its_line_and_file_and_imports_nothing(image_storage: Path) -> None:
    study = image_study()
    data = archive(
        jsonl(
            {"prompt": "p", "file": "red.png", "generator": "g"},
            {"prompt": "p", "file": "red.png"},
            {"prompt": "p", "file": "missing.png", "generator": "g"},
            {"prompt": "p", "file": "notes.txt", "generator": "g"},
            {"prompt": "p", "file": "tiny.png", "generator": "g"},
            {"prompt": "p", "condition": "c", "file": "red.png", "generator": "g"},
            {"file": "red.png", "generator": "g", "colour": "red"},
        )
        + "\n{not json",
        {"red.png": RED, "notes.txt": b"just some words", "tiny.png": factories.image_bytes(4, 4)},
    )
    error = refusal(study.slug, data)
    assert error.extra["errors"] == [
        {"line": 2, "field": "generator", "message": "is missing or empty"},
        {
            "line": 6,
            "field": "condition",
            "message": "give a prompt or a condition, not both",
        },
        {
            "line": 7,
            "field": "colour",
            "message": "is not a known field (known: file, generator, prompt, condition, version, split, "
            "metadata, prompt_id)",
        },
        {
            "line": 7,
            "field": "prompt",
            "message": "is missing or empty (give the prompt or the condition the image was made for; an "
            "unconditional generator's images can share one, e.g. 'unconditional')",
        },
        {"line": 8, "field": "", "message": error.extra["errors"][4]["message"]},
    ]
    assert error.message.startswith(
        "The file was not imported: line 2, field 'generator': is missing or empty;"
    )
    assert nothing_imported(image_storage)
    # With the manifest fixed, the files are checked: each error names the line and the file.
    data = archive(
        jsonl(
            {"prompt": "p", "file": "red.png", "generator": "g"},
            {"prompt": "p", "file": "missing.png", "generator": "g"},
            {"prompt": "p", "file": "notes.txt", "generator": "g"},
            {"prompt": "p", "file": "tiny.png", "generator": "g"},
            {"prompt": "p", "file": "../outside.png", "generator": "g"},
        ),
        {"red.png": RED, "notes.txt": b"just some words", "tiny.png": factories.image_bytes(4, 4)},
    )
    assert refusal(study.slug, data).extra["errors"] == [
        {"line": 2, "field": "file", "message": "'missing.png' is not in the archive"},
        {"line": 3, "field": "file", "message": "notes.txt: the file is not a PNG or JPEG image"},
        {
            "line": 4,
            "field": "file",
            "message": "tiny.png: the image is 4×4 pixels; each side must be at least 8",
        },
        {"line": 5, "field": "file", "message": "'../outside.png' is not a path inside the archive"},
    ]
    assert nothing_imported(image_storage)


def test_an_oversized_or_bomb_image_in_the_archive_is_refused(image_storage: Path, settings) -> None:  # type: ignore[no-untyped-def]
    from tests.server.generators.test_images import png_with_size_header

    settings.LOVELACE_IMAGE_MAX_BYTES = 2000
    study = image_study()
    data = archive(
        jsonl(
            {"prompt": "p", "file": "big.png", "generator": "g"},
            {"prompt": "p", "file": "bomb.png", "generator": "g"},
        ),
        {"big.png": b"\x89PNG" + bytes(5000), "bomb.png": png_with_size_header(60_000, 60_000)},
    )
    assert refusal(study.slug, data).extra["errors"] == [
        {"line": 1, "field": "file", "message": "big.png: the file is larger than 2,000 bytes"},
        {
            "line": 2,
            "field": "file",
            "message": "bomb.png: the image declares more pixels than can be decoded safely",
        },
    ]
    assert nothing_imported(image_storage)


def test_archive_limits_refuse_zip_bombs_before_unpacking(image_storage: Path, settings) -> None:  # type: ignore[no-untyped-def]
    study = image_study()
    manifest = jsonl({"prompt": "p", "file": "red.png", "generator": "g"})
    settings.LOVELACE_IMAGE_ARCHIVE_MAX_UNCOMPRESSED = 1_000_000
    bomb = archive(manifest, {"red.png": RED, "zeros.bin": bytes(2_000_000)})
    assert len(bomb) < 10_000
    assert refusal(study.slug, bomb).message.startswith("The archive unpacks to 2,")
    settings.LOVELACE_IMAGE_ARCHIVE_MAX_ENTRIES = 2
    many = archive(manifest, {"red.png": RED, "a.png": RED, "b.png": RED})
    assert refusal(study.slug, many).message == "The archive has 4 files; the limit is 2."
    settings.LOVELACE_IMAGE_ARCHIVE_MAX_BYTES = 100
    assert refusal(study.slug, many).message.endswith("the limit is 100 bytes.")
    assert nothing_imported(image_storage)


def test_an_archive_needs_one_manifest_and_must_be_a_zip(image_storage: Path) -> None:
    study = image_study()
    assert refusal(study.slug, b"PK not really").message.startswith("The file is not a zip archive")
    no_manifest = archive("", {}, manifest_name="readme.txt")
    assert refusal(study.slug, no_manifest).message == (
        "The archive must hold one manifest at its top level: manifest.jsonl or manifest.csv."
    )
    empty = archive("\n\n", {"red.png": RED})
    assert refusal(study.slug, empty).message == "The file is empty."


def test_a_text_study_refuses_an_image_archive(image_storage: Path) -> None:
    study = factories.study()
    data = archive(jsonl({"prompt": "p", "file": "red.png", "generator": "g"}), {"red.png": RED})
    assert refusal(study.slug, data).message == (
        f"The study '{study.slug}' is a text study: image samples go to an image study."
    )


def test_an_image_study_refuses_a_text_file(image_storage: Path) -> None:
    study = image_study()
    with pytest.raises(ApplicationError) as refused:
        samples_import_file(
            study_slug=study.slug, data=b'{"prompt": "p", "text": "t", "generator": "g"}', filename="a.jsonl"
        )
    assert refused.value.message == (
        f"The study '{study.slug}' is an image study: import a .zip of its images with a manifest "
        "(manifest.jsonl or manifest.csv)."
    )


def test_the_command_imports_an_archive(image_storage: Path, tmp_path: Path) -> None:
    study = image_study()
    path = tmp_path / "images.zip"
    path.write_bytes(archive(jsonl({"prompt": "p", "file": "red.png", "generator": "g"}), {"red.png": RED}))
    out = io.StringIO()
    call_command("import_samples", study.slug, str(path), stdout=out)
    assert out.getvalue() == "Imported 1 samples (1 new prompts) for g/external.\n"
    path.write_bytes(archive(jsonl({"prompt": "p", "file": "nope.png", "generator": "g"}), {}))
    with pytest.raises(
        CommandError, match=re.escape("line 1, field 'file': 'nope.png' is not in the archive")
    ):
        call_command("import_samples", study.slug, str(path))


def test_the_api_imports_an_archive_upload(image_storage: Path) -> None:
    study = image_study()
    client = APIClient()
    client.force_authenticate(factories.user(is_staff=True))
    upload = io.BytesIO(
        archive(jsonl({"prompt": "p", "file": "red.png", "generator": "g"}), {"red.png": RED})
    )
    upload.name = "images.zip"
    response = client.post(f"/api/studies/{study.slug}/samples/import/", {"file": upload}, format="multipart")
    assert response.status_code == 201, response.json()
    assert response.json()["created"] == 1
    stored = Sample.objects.select_related("image").get().image.sha256
    assert response.json()["images"] == [{"line": 1, "sha256": stored}]  # what gold pairs name
    bad = io.BytesIO(archive(jsonl({"prompt": "p", "file": "x.png", "generator": "g"}), {}))
    bad.name = "images.zip"
    response = client.post(f"/api/studies/{study.slug}/samples/import/", {"file": bad}, format="multipart")
    assert response.status_code == 400
    assert response.json()["details"]["errors"] == [
        {"line": 1, "field": "file", "message": "'x.png' is not in the archive"}
    ]


def test_the_dashboard_form_imports_an_archive_and_lists_errors(image_storage: Path) -> None:
    study = image_study()
    client = Client()
    client.force_login(factories.user(is_staff=True))
    upload = io.BytesIO(
        archive(jsonl({"prompt": "p", "file": "red.png", "generator": "g"}), {"red.png": RED})
    )
    upload.name = "images.zip"
    response = client.post(f"/dashboard/studies/{study.slug}/import/", {"file": upload})
    assert response.status_code == 303
    assert Sample.objects.filter(image__isnull=False).count() == 1
    stored = Sample.objects.select_related("image").get().image.sha256
    page = client.get(response["Location"]).content.decode()
    assert f"SHA-256 by manifest line (for gold checks): 1: {stored}." in page
    bad = io.BytesIO(
        archive(jsonl({"prompt": "p", "file": "notes.txt", "generator": "g"}), {"notes.txt": b"hi"})
    )
    bad.name = "images.zip"
    response = client.post(f"/dashboard/studies/{study.slug}/import/", {"file": bad})
    assert response.status_code == 400
    assert "notes.txt: the file is not a PNG or JPEG image" in response.content.decode()
    assert Sample.objects.count() == 1
