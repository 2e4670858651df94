"""Image samples: validation and re-encoding, content-addressed storage, the sample services."""

from __future__ import annotations

import hashlib
import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from PIL import Image, PngImagePlugin

from server.core.exceptions import ApplicationError
from server.generators.images import (
    ImageRefused,
    image_asset_read,
    image_asset_store,
    image_asset_store_array,
    image_reencode,
    image_sample_create,
)
from server.generators.models import ImageAsset, ImageFormat, Sample
from tests import factories

pytestmark = pytest.mark.django_db


def png_with_size_header(width: int, height: int) -> bytes:
    """A PNG whose header declares ``width`` x ``height`` (its data is one tiny row: a bomb's header)."""
    data = factories.image_bytes(8, 8)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    return data[:8] + struct.pack(">I", 13) + chunk + struct.pack(">I", zlib.crc32(chunk)) + data[33:]


def exif_with(make: str, orientation: int = 1) -> bytes:
    exif = Image.Exif()
    exif[0x010F] = make  # Make
    exif[0x0112] = orientation
    return exif.tobytes()


def test_an_image_is_stored_once_under_the_hash_of_its_reencoded_bytes(image_storage: Path) -> None:
    data = factories.image_bytes(16, 12)
    asset = image_asset_store(data=data)
    stored = (image_storage / asset.storage_name).read_bytes()
    assert asset.sha256 == hashlib.sha256(stored).hexdigest()
    assert asset.storage_name == f"{asset.sha256[:2]}/{asset.sha256}.png"
    assert (asset.width, asset.height, asset.format, asset.byte_size) == (
        16,
        12,
        ImageFormat.PNG,
        len(stored),
    )
    assert image_asset_store(data=data).id == asset.id
    assert ImageAsset.objects.count() == 1
    assert [path.name for path in image_storage.rglob("*") if path.is_file()] == [f"{asset.sha256}.png"]


def test_reencoding_is_idempotent_for_png_and_jpeg(image_storage: Path) -> None:
    png = image_reencode(factories.image_bytes(20, 20))
    assert image_reencode(png.data).sha256 == png.sha256
    jpeg = image_asset_store(data=factories.image_bytes(20, 20, fmt="JPEG", quality=70))
    assert jpeg.format == ImageFormat.JPEG
    # The stored bytes handed back are the same asset, although a JPEG re-encoded changes.
    assert image_asset_store(data=image_asset_read(jpeg)).id == jpeg.id
    assert ImageAsset.objects.count() == 1


def test_exif_text_chunks_and_icc_profiles_do_not_survive(image_storage: Path) -> None:
    jpeg = factories.image_bytes(
        24, 16, fmt="JPEG", exif=exif_with("SecretCam gen-x v2"), icc_profile=b"ICC secret comment"
    )
    assert b"SecretCam" in jpeg
    stored_jpeg = image_asset_read(image_asset_store(data=jpeg))
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", "generator gen-x v2, seed 7")
    info.add_itxt("Comment", "made by gen-x", zip=True)
    png = factories.image_bytes(24, 16, pnginfo=info, icc_profile=b"ICC secret comment", dpi=(300, 300))
    stored_png = image_asset_read(image_asset_store(data=png))
    for stored in (stored_jpeg, stored_png):
        assert b"SecretCam" not in stored and b"gen-x" not in stored and b"ICC secret" not in stored
        with Image.open(io.BytesIO(stored)) as image:
            assert set(image.info) <= {"jfif", "jfif_version", "jfif_unit", "jfif_density"}
            assert image.getexif() == {}


def test_the_exif_orientation_is_applied_to_the_pixels_before_it_is_dropped(image_storage: Path) -> None:
    rotated = factories.image_bytes(30, 10, fmt="JPEG", exif=exif_with("cam", orientation=6))
    asset = image_asset_store(data=rotated)
    assert (asset.width, asset.height) == (10, 30)


def test_png_transparency_is_kept_and_modes_are_normalised() -> None:
    buffer = io.BytesIO()
    Image.new("RGBA", (10, 10), (1, 2, 3, 4)).save(buffer, format="PNG")
    with Image.open(io.BytesIO(image_reencode(buffer.getvalue()).data)) as image:
        assert (image.mode, image.getpixel((0, 0))) == ("RGBA", (1, 2, 3, 4))
    buffer = io.BytesIO()
    Image.new("L", (10, 10), 77).save(buffer, format="PNG")
    with Image.open(io.BytesIO(image_reencode(buffer.getvalue()).data)) as image:
        assert (image.mode, image.getpixel((0, 0))) == ("RGB", (77, 77, 77))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "the file is empty"),
        (b"hello, not an image", "the file is not a PNG or JPEG image"),
        (factories.image_bytes(fmt="GIF"), "the file is not a PNG or JPEG image"),
        (factories.image_bytes(4, 40), "the image is 4×40 pixels; each side must be at least 8"),
        (factories.image_bytes(5000, 8), "the image is 5000×8 pixels; no side may exceed 4096"),
        (png_with_size_header(4096, 4096), "the image is 4096×4096 pixels; the limit is 16,773,120 pixels"),
    ],
)
def test_what_is_not_a_storable_image_is_refused_with_its_reason(data: bytes, message: str, settings) -> None:  # type: ignore[no-untyped-def]
    settings.LOVELACE_IMAGE_MAX_PIXELS = 4096 * 4095
    with pytest.raises(ImageRefused) as refused:
        image_reencode(data)
    assert refused.value.message == message


def test_a_truncated_image_is_refused() -> None:
    data = factories.image_bytes(64, 64, color=(1, 2, 3))
    with pytest.raises(ImageRefused) as refused:
        image_reencode(data[: len(data) - 30])
    assert refused.value.message.startswith("the image is truncated or corrupt")


def test_a_decompression_bomb_is_refused_from_its_header_by_pillows_guard_too(settings) -> None:  # type: ignore[no-untyped-def]
    # Our limits lifted: Pillow's own guard (twice its MAX_IMAGE_PIXELS) still refuses the header.
    settings.LOVELACE_IMAGE_MAX_SIDE = 10**6
    settings.LOVELACE_IMAGE_MAX_PIXELS = 10**12
    with pytest.raises(ImageRefused) as refused:
        image_reencode(png_with_size_header(100_000, 100_000))
    assert refused.value.message == "the image declares more pixels than can be decoded safely"


def test_an_oversized_file_is_refused_before_it_is_decoded(settings) -> None:  # type: ignore[no-untyped-def]
    settings.LOVELACE_IMAGE_MAX_BYTES = 100
    with pytest.raises(ImageRefused) as refused:
        image_reencode(b"\x89PNG" + b"\0" * 200)
    assert refused.value.message == "the file is 204 bytes; the limit is 100 bytes"


def test_an_array_from_a_generator_is_stored_as_png(image_storage: Path) -> None:
    array = np.zeros((12, 16, 3), dtype=np.uint8)
    array[:, :8] = (255, 0, 0)
    asset = image_asset_store_array(array=array)
    assert (asset.width, asset.height, asset.format) == (16, 12, ImageFormat.PNG)
    with Image.open(io.BytesIO(image_asset_read(asset))) as image:
        assert (image.getpixel((0, 0)), image.getpixel((15, 0))) == ((255, 0, 0), (0, 0, 0))
    assert image_asset_store_array(array=array.copy()).id == asset.id
    with pytest.raises(ImageRefused, match="HxWx3 uint8"):
        image_asset_store_array(array=np.zeros((12, 16), dtype=np.uint8))
    with pytest.raises(ImageRefused, match="HxWx3 uint8"):
        image_asset_store_array(array=np.zeros((12, 16, 3), dtype=np.float32))


def test_an_image_sample_records_its_provenance_once_per_seed(image_storage: Path) -> None:
    prompt = factories.prompt(study=factories.study(modality="image"))
    version = factories.version()
    asset = image_asset_store_array(array=np.full((8, 8, 3), 9, dtype=np.uint8))
    sample = image_sample_create(
        prompt=prompt, version=version, asset=asset, seed=7, decoding={"steps": 50}, metadata={"z_dim": 64}
    )
    again = image_sample_create(prompt=prompt, version=version, asset=asset, seed=7)
    assert again.id == sample.id
    sample.refresh_from_db()
    assert (sample.text, sample.text_hash, sample.seed, sample.decoding) == (
        "",
        asset.sha256,
        7,
        {"steps": 50},
    )
    text_prompt = factories.prompt(study=factories.study())
    with pytest.raises(ApplicationError, match="is a text study; image samples belong to an image study"):
        image_sample_create(prompt=text_prompt, version=version, asset=asset, seed=1)


def test_a_sample_is_a_text_or_an_image_never_both(image_storage: Path) -> None:
    sample = factories.image_sample()
    sample.text = "a caption"
    with pytest.raises(ValidationError):
        sample.save()
    with pytest.raises(IntegrityError), transaction.atomic():
        Sample.objects.filter(id=sample.id).update(text="a caption")


def test_two_images_of_one_prompt_and_version_are_two_imported_samples(image_storage: Path) -> None:
    prompt = factories.prompt(study=factories.study(modality="image"))
    version = factories.version()
    first = factories.image_sample(
        prompt=prompt, version=version, data=factories.image_bytes(color=(1, 1, 1))
    )
    second = factories.image_sample(
        prompt=prompt, version=version, data=factories.image_bytes(color=(2, 2, 2))
    )
    assert first.text_hash != second.text_hash
    with pytest.raises(IntegrityError), transaction.atomic():
        factories.image_sample(prompt=prompt, version=version, data=factories.image_bytes(color=(1, 1, 1)))
