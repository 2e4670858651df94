"""Image samples: validation, re-encoding and content-addressed storage.

Every image enters through ``image_reencode``: it must be a PNG or a JPEG within the size limits
of the settings (``LOVELACE_IMAGE_*``), and it is decoded and encoded again here, so nothing of the
uploaded file survives but its pixels: no EXIF (its orientation is applied to the pixels first),
no text chunks, no ICC profile or comment, no file name. A PNG stays a PNG (lossless, RGB or RGBA);
a JPEG stays a JPEG (RGB, quality 95): turning photographs into PNGs would multiply their size,
and turning PNGs into JPEGs would add artefacts a rater could learn to tell sources by.

``image_asset_store`` keeps one ``ImageAsset`` per distinct re-encoded content, named by its
SHA-256 in the ``images`` storage (``settings.STORAGES["images"]``: a folder under the var dir by
default, any Django storage backend such as S3 through ``LOVELACE_IMAGE_STORAGE_BACKEND``). It is
idempotent: the same upload, or the stored bytes themselves, give back the same asset.
``image_asset_store_array`` does the same for an HxWx3 ``uint8`` array (what an image generator
produces), and ``image_sample_create`` records a generated image sample with its provenance.

Pillow (and numpy) are imported inside the functions: the web process loads this module at start
and must stay light.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import Storage, storages
from django.db import IntegrityError, transaction

from server.core.exceptions import ApplicationError
from server.generators.models import GeneratorVersion, ImageAsset, ImageFormat, Sample
from server.studies.models import Modality, Prompt

JPEG_QUALITY = 95


@dataclass(frozen=True)
class EncodedImage:
    """An image as it is stored: its re-encoded bytes and what is known of them."""

    data: bytes
    sha256: str
    width: int
    height: int
    format: str  # an ImageFormat value

    @property
    def storage_name(self) -> str:
        return image_storage_name(self.sha256, self.format)


def image_storage_name(sha256: str, image_format: str) -> str:
    """Where an image's bytes lie in the storage: derived from the hash only (two hex digits of
    fan-out keep a folder from holding millions of files)."""
    extension = "png" if image_format == ImageFormat.PNG else "jpg"
    return f"{sha256[:2]}/{sha256}.{extension}"


EXPORT_IMAGES_FOLDER = "images"


def image_export_name(storage_name: str) -> str:
    """An image's path in an export folder, ``images/<sha256>.<ext>``: its storage name without
    the fan-out folder (the content hash, so one file per image whatever shows it how often)."""
    return f"{EXPORT_IMAGES_FOLDER}/{storage_name.rsplit('/', 1)[-1]}"


def image_storage() -> Storage:
    return storages["images"]


class ImageRefused(ApplicationError):
    """An image that cannot be stored; the message says why in words a person can act on."""


def _limits_check(width: int, height: int) -> None:
    low, high, pixels = (
        settings.LOVELACE_IMAGE_MIN_SIDE,
        settings.LOVELACE_IMAGE_MAX_SIDE,
        settings.LOVELACE_IMAGE_MAX_PIXELS,
    )
    if width < low or height < low:
        raise ImageRefused(f"the image is {width}×{height} pixels; each side must be at least {low}")
    if width > high or height > high:
        raise ImageRefused(f"the image is {width}×{height} pixels; no side may exceed {high}")
    if width * height > pixels:
        raise ImageRefused(f"the image is {width}×{height} pixels; the limit is {pixels:,} pixels")


def image_reencode(data: bytes) -> EncodedImage:
    """Check an uploaded image and encode it again without metadata (see the module docstring).

    Raises ``ImageRefused`` for anything else: another format, a truncated or corrupt file, an
    animation, an image outside the limits. The size is checked from the header before any pixel
    is decoded, so a decompression bomb costs nothing; Pillow's own bomb guard and its limits on
    compressed text chunks are turned into the same error.
    """
    from PIL import Image, ImageOps

    if len(data) > settings.LOVELACE_IMAGE_MAX_BYTES:
        raise ImageRefused(
            f"the file is {len(data):,} bytes; the limit is {settings.LOVELACE_IMAGE_MAX_BYTES:,} bytes"
        )
    if not data:
        raise ImageRefused("the file is empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=["PNG", "JPEG"]) as image:
                source_format = image.format
                _limits_check(*image.size)
                if getattr(image, "n_frames", 1) > 1:
                    raise ImageRefused("the image is animated; only still images can be rated")
                image.load()
                upright = ImageOps.exif_transpose(image)
                has_alpha = upright.mode in ("RGBA", "LA", "PA") or (
                    upright.mode == "P" and "transparency" in upright.info
                )
                if source_format == "PNG" and has_alpha:
                    pixels = upright.convert("RGBA")
                else:
                    pixels = upright.convert("RGB")
    except ImageRefused:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageRefused("the image declares more pixels than can be decoded safely") from None
    except Image.UnidentifiedImageError:
        raise ImageRefused("the file is not a PNG or JPEG image") from None
    except (OSError, ValueError, SyntaxError, EOFError, IndexError, TypeError, MemoryError) as error:
        # Pillow reports truncated data as OSError, a broken PNG chunk as SyntaxError, an
        # oversized text chunk as ValueError.
        raise ImageRefused(f"the image is truncated or corrupt ({error})") from None
    pixels.info = {}  # nothing of the source's metadata may reach the encoder
    buffer = io.BytesIO()
    if source_format == "PNG":
        pixels.save(buffer, format="PNG", optimize=False, compress_level=6)
        image_format = ImageFormat.PNG
    else:
        pixels.save(buffer, format="JPEG", quality=JPEG_QUALITY, optimize=False, progressive=False)
        image_format = ImageFormat.JPEG
    encoded = buffer.getvalue()
    return EncodedImage(
        data=encoded,
        sha256=hashlib.sha256(encoded).hexdigest(),
        width=pixels.width,
        height=pixels.height,
        format=image_format,
    )


def image_encode_array(array: Any) -> bytes:
    """PNG bytes of an HxWx3 ``uint8`` array (RGB), as an image generator returns its samples."""
    import numpy as np
    from PIL import Image

    if not isinstance(array, np.ndarray) or array.dtype != np.uint8 or array.ndim != 3 or array.shape[2] != 3:
        shape = getattr(array, "shape", None)
        dtype = getattr(array, "dtype", type(array).__name__)
        raise ImageRefused(f"an image array must be HxWx3 uint8 (RGB), not {shape} {dtype}")
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(array), mode="RGB").save(buffer, format="PNG")
    return buffer.getvalue()


def _write(storage: Storage, name: str, data: bytes) -> None:
    """Write ``data`` under ``name`` unless it is there. Content-addressed: a file already there
    holds these bytes; a concurrent writer's copy under another name is removed."""
    if storage.exists(name):
        return
    written = storage.save(name, ContentFile(data))
    if written != name:  # another process wrote ``name`` meanwhile; the storage picked a new one
        storage.delete(written)


def image_asset_for(encoded: EncodedImage) -> ImageAsset:
    """The asset of an already re-encoded image: the existing row, or a new one with its bytes
    written to the storage. The file goes first: a row never names a missing file, and a file
    whose row was rolled back is harmless (the next store of the same pixels reuses it)."""
    existing = ImageAsset.objects.filter(sha256=encoded.sha256).first()
    if existing is not None:
        return existing
    _write(image_storage(), encoded.storage_name, encoded.data)
    try:
        with transaction.atomic():
            return ImageAsset.objects.create(
                sha256=encoded.sha256,
                storage_name=encoded.storage_name,
                width=encoded.width,
                height=encoded.height,
                format=encoded.format,
                byte_size=len(encoded.data),
            )
    except IntegrityError:  # the same image stored concurrently
        return ImageAsset.objects.get(sha256=encoded.sha256)


def image_asset_store(*, data: bytes) -> ImageAsset:
    """Validate, re-encode and store an image (PNG or JPEG bytes); idempotent.

    Bytes that are already a stored asset's (its hash matches) give that asset without being
    encoded again: re-encoding a JPEG is not a fixed point, and a stored image handed back (by an
    export, say) must not become a second asset."""
    stored = ImageAsset.objects.filter(sha256=hashlib.sha256(data).hexdigest()).first()
    if stored is not None:
        return stored
    return image_asset_for(image_reencode(data))


def image_asset_store_array(*, array: Any) -> ImageAsset:
    """Store an HxWx3 ``uint8`` RGB array as a PNG asset (validated like an upload)."""
    return image_asset_store(data=image_encode_array(array))


def image_asset_read(asset: ImageAsset) -> bytes:
    with image_storage().open(asset.storage_name, "rb") as handle:
        return handle.read()


def image_sample_create(
    *,
    prompt: Prompt,
    version: GeneratorVersion,
    asset: ImageAsset,
    seed: int | None = None,
    decoding: dict[str, Any] | None = None,
    metadata: dict[str, Any] | None = None,
    latency_seconds: float | None = None,
    job_id: int | None = None,
) -> Sample:
    """Record an image sample with its provenance (the seed and sampling parameters that made it).

    Idempotent like text generation: a sample with this seed for the version and prompt (or,
    without a seed, with this image) is returned as it is."""
    if prompt.study.modality != Modality.IMAGE:
        raise ApplicationError(
            f"The study {prompt.study.slug!r} is a {prompt.study.modality} study; image samples "
            "belong to an image study.",
            extra={"field": "study"},
        )
    existing = Sample.objects.filter(version=version, prompt=prompt)
    existing = (
        existing.filter(seed=seed)
        if seed is not None
        else existing.filter(seed__isnull=True, text_hash=asset.sha256)
    )
    found = existing.first()
    if found is not None:
        return found
    sample = Sample(
        prompt=prompt,
        version=version,
        image=asset,
        text="",
        seed=seed,
        decoding=decoding or {},
        metadata=metadata or {},
        latency_seconds=latency_seconds,
        job_id=job_id,
    )
    sample.save()
    return sample
